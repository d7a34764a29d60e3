"""Training-throughput benchmark: the FM-family model against a naive FmFM baseline, in one run."""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models import ModelSpec, build_model
from models.paper_shapes import (AVAZU_FEATURES_PER_FIELD, AVAZU_FIELD_NAMES, CRITEO_FEATURES_PER_FIELD,
                                 CRITEO_FIELD_NAMES, vocab_sizes)

from .errors import Fm2OnnxError
from .train import TrainConfig, make_optimizers

SHAPES = {
    "criteo": (CRITEO_FIELD_NAMES, CRITEO_FEATURES_PER_FIELD),
    "avazu": (AVAZU_FIELD_NAMES, AVAZU_FEATURES_PER_FIELD),
}


class NaivePairFmFM(nn.Module):
    """The textbook formulation: gather both sides of every pair, one einsum with P stacked K x K matrices."""

    def __init__(self, vocab, k):
        super().__init__()
        n = len(vocab)
        self.tables = nn.ModuleList(nn.Embedding(v, k, sparse=True) for v in vocab)
        pairs = [(a, b) for a in range(n) for b in range(a + 1, n)]
        self.register_buffer("left", torch.tensor([a for a, _ in pairs]))
        self.register_buffer("right", torch.tensor([b for _, b in pairs]))
        self.matrices = nn.Parameter(torch.eye(k).repeat(len(pairs), 1, 1))
        self.field_vectors = nn.Parameter(torch.zeros(n, k))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, ids):
        e = torch.stack([t(ids[:, f]) for f, t in enumerate(self.tables)], dim=1)
        pairs = torch.einsum("bpk,pkl,bpl->b", e[:, self.left], self.matrices, e[:, self.right])
        return self.bias + pairs + (e * self.field_vectors).sum(dim=(1, 2))


def _time_training(model, optimizers, batches, steps) -> float:
    def step(x, y):
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        out = model(x)
        logits = out[0] if isinstance(out, tuple) else out
        F.binary_cross_entropy_with_logits(logits, y).backward()
        for opt in optimizers:
            opt.step()

    for x, y in batches[:3]:  # warm-up
        step(x, y)
    start = time.perf_counter()
    for i in range(steps):
        step(*batches[i % len(batches)])
    return steps * len(batches[0][1]) / (time.perf_counter() - start)


def run_train_bench(kind: str, shape: str, dim: int, batch_size: int, steps: int, repeats: int,
                    threads: int | None) -> dict:
    if shape not in SHAPES:
        raise Fm2OnnxError(f"unknown shape {shape!r}; expected one of {', '.join(SHAPES)}")
    counts = {"--dim": dim, "--batch-size": batch_size, "--steps": steps, "--repeats": repeats, "--threads": threads}
    for option, value in counts.items():
        if value is not None and value < 1:
            raise Fm2OnnxError(f"{option} {value}: must be >= 1")
    if threads:
        torch.set_num_threads(threads)
    names, features = SHAPES[shape]
    vocab = vocab_sizes(features)
    rng = np.random.default_rng(0)
    batches = [(torch.from_numpy(np.stack([rng.integers(0, v, batch_size) for v in vocab], axis=1)),
                torch.from_numpy(rng.integers(0, 2, batch_size).astype(np.float32))) for _ in range(8)]
    spec = ModelSpec.create(kind, list(names), vocab, dim=dim)
    ours = build_model(spec, sparse=True, seed=0)
    candidates = [(f"fm2onnx {kind}", ours, make_optimizers(ours, TrainConfig()))]
    naive = NaivePairFmFM(vocab, dim)
    dense = [p for n_, p in naive.named_parameters() if not n_.startswith("tables")]
    candidates.insert(0, ("naive pair-gather + einsum FmFM", naive,
                          [torch.optim.Adam(dense, 1e-3), torch.optim.SparseAdam(list(naive.tables.parameters()), 1e-3)]))
    runs: dict[str, list[float]] = {name: [] for name, _, _ in candidates}
    for _ in range(repeats):  # interleaved, so drift on the machine hits both alike
        for name, model, optimizers in candidates:
            model.train()
            runs[name].append(_time_training(model, optimizers, batches, steps))
    base = statistics.median(runs[candidates[0][0]])
    results = [{"name": name, "median": statistics.median(r), "min": min(r), "max": max(r),
                "ratio_vs_naive": statistics.median(r) / base} for name, r in runs.items()]
    return {"model": kind, "shape": shape, "dim": dim, "batch_size": batch_size, "steps": steps,
            "repeats": repeats, "threads": torch.get_num_threads(), "results": results}
