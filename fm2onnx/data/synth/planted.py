"""The planted model behind the synthetic labels: an FmFM built with :mod:`models`, as trained ones are.

Per field ``f`` an embedding dim ``d_f``, embeddings of shape ``[cardinality_f + 1, d_f]`` (row 0 is
"value missing", feature k is row k + 1), a linear field vector and a field matrix ``M_ab``
(``d_a x d_b``) for every field pair, all drawn standard normal (embeddings scaled by ``1/sqrt(d_f)``).
Its two terms are standardized and mixed 30 / 70, then scaled and shifted::

    score = sqrt(0.3) * standardized linear term + sqrt(0.7) * standardized pair term
    logit = bias + alpha * score,   y ~ Bernoulli(sigmoid(logit))

``alpha`` and ``bias`` are solved on a calibration sample for a target AUC and positive rate, then
folded into the model's weights, so the model's own forward pass gives the planted logit.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from models import FMFamilyModel, ModelSpec, build_model

__all__ = ["PlantedFmFM", "sigmoid"]

_LINEAR_SHARE = 0.3  # of the score's variance; the pair interactions carry the rest


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


class PlantedFmFM:
    """A random FmFM over planted features, calibrated so its logits give labels of a chosen AUC."""

    def __init__(self, names: Sequence[str], cards: Sequence[int], dims: Sequence[int], rng: np.random.Generator):
        spec = ModelSpec.create("fmfm", list(names), [int(c) + 1 for c in cards], dims=list(dims),
                                linear="field_vector")
        # every weight is overwritten from ``rng`` below: keep the global torch generator untouched
        with torch.random.fork_rng(devices=[]):
            self.model: FMFamilyModel = build_model(spec).eval()
        _draw_weights(self.model, rng)
        self.bias = 0.0
        self.alpha = 1.0

    def shrink_rare(self, ranks: Sequence[np.ndarray | None], decay: float) -> None:
        """Scale the embedding of the feature of frequency rank ``r`` by ``(1 + r/3) ** -decay``."""
        with torch.no_grad():
            for table, rank in zip(self.model.embeddings.tables, ranks):
                if rank is not None:
                    table.weight[1:] *= torch.from_numpy((1.0 + rank / 3.0) ** (-float(decay))).float()[:, None]

    def calibrate(self, ids: np.ndarray, target_auc: float, target_pos: float) -> float:
        """Solve ``alpha`` (for the AUC) and ``bias`` (for the positive rate) on the sample ``ids``
        and fold them into the model; returns the planted model's expected AUC on the sample."""
        linear, pair = self._terms(ids)
        lin_mu, lin_sd = float(linear.mean()), float(linear.std() or 1.0)
        pair_mu, pair_sd = float(pair.mean()), float(pair.std() or 1.0)
        lin_w, pair_w = np.sqrt(_LINEAR_SHARE), np.sqrt(1.0 - _LINEAR_SHARE)
        score = np.sort(lin_w * (linear - lin_mu) / lin_sd + pair_w * (pair - pair_mu) / pair_sd, kind="stable")
        self.alpha = _bisect(lambda a: _auc_for(score, a, target_pos)[0] < target_auc, 0.05, 20.0, 30)
        auc, self.bias = _auc_for(score, self.alpha, target_pos)
        shift = self.alpha * (lin_w * lin_mu / lin_sd + pair_w * pair_mu / pair_sd)
        self._fold(self.alpha * lin_w / lin_sd, self.alpha * pair_w / pair_sd, self.bias - shift)
        return auc

    def logits(self, ids: np.ndarray) -> np.ndarray:
        """float32 planted logit of each row of ids [n, fields] (valid after :meth:`calibrate`)."""
        with torch.no_grad(), _one_thread():
            return self.model(torch.from_numpy(ids).long()).numpy()

    def sample_labels(self, ids: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(float32 logits, bool labels ~ Bernoulli(sigmoid(logit))) of the rows of ids."""
        logits = self.logits(ids)
        return logits, rng.random(len(ids)) < sigmoid(logits.astype(np.float64))

    def _terms(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(linear, pair) terms of the uncalibrated model, float64."""
        model = self.model
        with torch.no_grad(), _one_thread():
            ids_t = torch.from_numpy(ids).long()
            row = torch.cat(model.embeddings(ids_t), dim=1)
            linear, _ = model.linear(ids_t, row)
            pair = model.interaction(row)
        return linear.double().numpy(), pair.double().numpy()

    def _fold(self, linear_scale: float, pair_scale: float, bias: float) -> None:
        """Make ``model(ids)`` equal ``bias + linear_scale * linear + pair_scale * pair``."""
        with torch.no_grad():
            self.model.linear.field_vectors *= linear_scale
            for rows in self.model.interaction.field_matrices.rows:
                rows *= pair_scale
            self.model.bias.fill_(bias)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one thread, restoring the caller's setting afterwards.

    The forward pass is mostly small per-field gathers, on which extra threads spin more than they
    work: on a busy 2-core machine one thread took 0.36 s per 65,536 Criteo rows, two 0.85-1.6 s.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _draw_weights(model: FMFamilyModel, rng: np.random.Generator) -> None:
    """Standard normal weights from ``rng``: embeddings (scaled by 1/sqrt(d)), field vectors, then the
    field matrices pair by pair in row-major order (a, b > a)."""
    dims = model.spec.dims
    with torch.no_grad():
        for table, d in zip(model.embeddings.tables, dims):
            drawn = rng.standard_normal(tuple(table.weight.shape)).astype(np.float32) / np.float32(np.sqrt(d))
            table.weight.copy_(torch.from_numpy(np.roll(drawn, 1, axis=0)))  # the last row drawn is "missing"
        model.linear.field_vectors.copy_(torch.from_numpy(rng.standard_normal(sum(dims)).astype(np.float32)))
        for a, rows in enumerate(model.interaction.field_matrices.rows):
            blocks = [rng.standard_normal((dims[a], dims[b])).astype(np.float32) for b in range(a + 1, len(dims))]
            rows.copy_(torch.from_numpy(np.concatenate(blocks, axis=1)))


def _bisect(below: Callable[[float], bool], lo: float, hi: float, steps: int) -> float:
    """The point of [lo, hi] where the monotone predicate ``below`` turns false."""
    for _ in range(steps):
        mid = (lo + hi) / 2
        if below(mid):
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _auc_for(score_sorted: np.ndarray, alpha: float, target_pos: float) -> tuple[float, float]:
    """(expected AUC, bias giving the target positive rate) of labels ~ sigmoid(bias + alpha * score)."""
    bias = _bisect(lambda b: sigmoid(b + alpha * score_sorted).mean() < target_pos, -20.0, 20.0, 40)
    return _expected_auc(sigmoid(bias + alpha * score_sorted)), bias


def _expected_auc(p: np.ndarray) -> float:
    """AUC of a score sorted ascending when row i is positive with probability p_i (no ties assumed)."""
    neg_before = np.cumsum(1.0 - p) - (1.0 - p)
    return float((p * neg_before).sum() / (p.sum() * (1.0 - p).sum()))
