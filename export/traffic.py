"""Request ids for timing: what a server sees, drawn per field.

``zipf`` (the default): feature frequencies fall off like real CTR traffic, rank r drawn with
probability ~ (r + 1)^-1.1 as in ``fm2onnx synth``; ranks map to ids through a fixed random
permutation, so hot rows are scattered over the table instead of packed at its start.
``uniform``: every id equally likely, the worst case for caches.
"""

from __future__ import annotations

import numpy as np

from fm2onnx.errors import Fm2OnnxError

DISTRIBUTIONS = ("zipf", "uniform")
ZIPF_EXPONENT = 1.1


def request_ids(vocab_sizes, rows: int, distribution: str = "zipf", seed: int = 0) -> np.ndarray:
    """int64 [rows, n] valid ids (1..V-1; 0 when a field only has its unknown row)."""
    if distribution not in DISTRIBUTIONS:
        raise Fm2OnnxError(f"unknown id distribution {distribution!r}; expected one of {', '.join(DISTRIBUTIONS)}")
    rng = np.random.default_rng(seed)
    out = np.zeros((rows, len(vocab_sizes)), np.int64)
    for f, v in enumerate(vocab_sizes):
        if v < 2:
            continue
        if distribution == "uniform":
            out[:, f] = rng.integers(1, v, rows)
            continue
        ranks = zipf_ranks(v - 1, rows, rng)
        out[:, f] = 1 + np.random.default_rng([seed, f]).permutation(v - 1)[ranks]
    return out


def zipf_ranks(count: int, rows: int, rng: np.random.Generator) -> np.ndarray:
    cdf = np.cumsum(np.arange(1, count + 1, dtype=np.float64) ** -ZIPF_EXPONENT)
    return np.minimum(np.searchsorted(cdf, rng.random(rows) * cdf[-1], side="right"), count - 1)
