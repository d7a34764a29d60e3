"""Shared fixtures: tiny randomized checkpoints of every kind, exported once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fm2onnx.checkpoint import Checkpoint, save_checkpoint
from models import ModelSpec, build_model

FIELDS = ["site", "app", "device", "hour", "banner", "city"]
VOCAB = [7, 3, 11, 24, 2, 9]
VARIABLE_DIMS = (3, 5, 1, 4, 2, 5)
# (kind, per-field dims or None for uniform K = 4)
CASES = [("lr", None), ("fm", None), ("ffm", None), ("fwfm", None), ("fvfm", None), ("fmfm", None),
         ("fmfm", VARIABLE_DIMS)]


def case_id(case) -> str:
    kind, dims = case
    return f"{kind}-{'variable' if dims else 'uniform'}"


def randomized_model(kind: str, dims=None, seed: int = 0, *, fields=FIELDS, vocab=VOCAB, dim: int = 4,
                     linear: str | None = None):
    """Every parameter random (not the structured init), so a wrong table or matrix shows up."""
    model = build_model(ModelSpec.create(kind, fields, vocab, dim=dim, dims=dims, linear=linear), seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model.eval()


def criteo_shaped_model(kind: str, dims=None, *, linear: str | None = None):
    """A 39-field model of Criteo's fields (K = 16, or ``dims``) with small vocabularies: what the
    paper's FLOPs and the per-field dims depend on, at a fraction of the tables. Tests share these
    few models, so each is traced once in a run (tests/traced_once.py)."""
    from models.paper_shapes import CRITEO_FEATURES_PER_FIELD, CRITEO_FIELD_NAMES

    vocab = [min(f, 20) + 1 for f in CRITEO_FEATURES_PER_FIELD]
    return randomized_model(kind, dims, fields=list(CRITEO_FIELD_NAMES), vocab=vocab, dim=16, linear=linear)


def write_checkpoint(model, path: Path) -> Path:
    return save_checkpoint(Checkpoint.from_model(model), path)


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """case -> (checkpoint, cached, uncached, cached pair-major), exported with ``--form both`` on first use."""
    from export import CachedFormOptions, export_checkpoint, load_model, make_cached, save_model

    cache = {}

    def get(case):
        if case not in cache:
            kind, dims = case
            root = tmp_path_factory.mktemp(case_id(case))
            ckpt = write_checkpoint(randomized_model(kind, dims, seed=len(cache)), root / "ckpt.pt")
            export_checkpoint(ckpt, root / "model.onnx", form="both")
            pair_major = CachedFormOptions(layout="pairs", pair_major=True)
            save_model(make_cached(load_model(root / "model.uncached.onnx"), pair_major).model,
                       root / "model.pair-major.onnx")
            cache[case] = (ckpt, root / "model.onnx", root / "model.uncached.onnx", root / "model.pair-major.onnx")
        return cache[case]

    return get

