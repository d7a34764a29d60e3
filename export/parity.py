"""Torch vs ONNX Runtime on the same ids: the gate a model passes before it is written."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from fm2onnx.errors import Fm2OnnxError
from models import FMFamilyModel, ModelSpec
from models.scoring import score_rows

from .contract import INPUT_NAME
from .request_parity import request_outputs, request_roles

ATOL = 1e-4
RTOL = 1e-4
# |Δlogit| <= atol + rtol·|logit| per table dtype of a cached graph. float16 keeps 11 significant
# bits, int8 7 plus a per-row scale: each logit sums thousands of rounded products.
TOLERANCES = {"float32": (ATOL, RTOL), "float16": (5e-3, 5e-3), "int8": (5e-2, 5e-2)}


def tolerance_of(table_dtype: str) -> tuple[float, float]:
    return TOLERANCES[table_dtype]


def require_rows(rows: int, needs_them: str) -> int:
    """``rows`` (--rows) if at least one: with none, a comparison would pass having compared nothing."""
    if rows < 1:
        raise Fm2OnnxError(f"--rows {rows}: {needs_them} needs at least one row")
    return rows


def require_tolerance(tolerance: float | None) -> float | None:
    """``tolerance`` (--tolerance) if a finite number >= 0 (None: the table dtype's): a negative or NaN one
    would fail every row, an infinite one pass every row."""
    if tolerance is not None and not 0 <= tolerance < float("inf"):
        raise Fm2OnnxError(f"--tolerance {tolerance}: must be a finite number >= 0 (|Δlogit| <= tol + tol·|logit|)")
    return tolerance


def parity_ids(spec: ModelSpec, rows: int = 512, seed: int = 0) -> np.ndarray:
    """Random ids [rows, n]: mostly in range, ~5% each the unknown row 0, negative, past the vocabulary."""
    rng = np.random.default_rng(seed)
    vocab = np.array(spec.vocab_sizes, dtype=np.int64)
    ids = (rng.random((rows, len(vocab))) * vocab).astype(np.int64)
    far = rng.integers(0, 1 << 40, size=ids.shape)
    case = rng.integers(0, 20, size=ids.shape)
    ids = np.where(case == 0, 0, ids)
    ids = np.where(case == 1, -1 - far, ids)
    return np.where(case == 2, vocab + far, ids)


def torch_logits(model: FMFamilyModel, ids: np.ndarray) -> np.ndarray:
    """In chunks sized by the default memory budget: check --data may pass a whole data file's ids."""
    return score_rows(model, ids)


# A cached graph branches on the batch size (one request, a few, many; or the GEMM for 2+), so parity
# rows go in as single requests, then one small batch, then the rest at once: every branch is checked.
SINGLE_REQUESTS = 6
SMALL_BATCH = 5


def serving_batches(rows: int) -> list[slice]:
    cuts = sorted({min(c, rows) for c in [*range(SINGLE_REQUESTS + 1), SINGLE_REQUESTS + SMALL_BATCH, rows]})
    return [slice(a, b) for a, b in zip(cuts, cuts[1:])] or [slice(0, rows)]


def outputs_in_serving_batches(sess: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every output, the feeds (rows along axis 0) cut into ``serving_batches``; a request graph takes
    ``feature_ids`` rows as requests (export/request_parity.py)."""
    roles = request_roles(sess)
    if roles is not None and INPUT_NAME in feeds:
        return request_outputs(sess, feeds[INPUT_NAME], roles)
    names = [o.name for o in sess.get_outputs()]
    rows = len(next(iter(feeds.values())))
    runs = [sess.run(None, {k: v[cut] for k, v in feeds.items()}) for cut in serving_batches(rows)]
    return {name: np.concatenate([run[i] for run in runs]) for i, name in enumerate(names)}


def ort_outputs(sess: ort.InferenceSession, ids: np.ndarray) -> dict[str, np.ndarray]:
    return outputs_in_serving_batches(sess, {INPUT_NAME: ids})


@dataclass(frozen=True)
class Parity:
    max_abs: float  # max |Δlogit|
    max_rel: float  # max |Δlogit| / max(|logit|, 1e-12)
    ok: bool  # every row within |Δ| ≤ atol + rtol·|logit|

    def describe(self) -> str:
        return f"max |Δlogit| {self.max_abs:.2e}, max rel {self.max_rel:.2e}"


def compare(want: np.ndarray, got: np.ndarray, *, atol: float = ATOL, rtol: float = RTOL) -> Parity:
    want, got = np.asarray(want, np.float64), np.asarray(got, np.float64)
    if want.shape != got.shape or not np.all(np.isfinite(got)):
        return Parity(float("inf"), float("inf"), False)
    diff = np.abs(want - got)
    rel = diff / np.maximum(np.abs(want), 1e-12)
    return Parity(float(diff.max(initial=0)), float(rel.max(initial=0)),
                  bool(np.all(diff <= atol + rtol * np.abs(want))))
