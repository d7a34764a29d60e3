"""Lookup tables that let a graph apply the checkpoint's preprocessing (fm2onnx.data.tokens) exactly.

Numeric fields. A finite value ``x > 2`` has the token ``"L<k>"``, k its log² bucket
(fm2onnx.data.buckets: ``floor(ln(x)**2)`` as numpy computes it in float64); any other value is its own token. A runtime's ``Log`` need not round like
numpy's, and a bucket flips on one ulp, so the graph only *estimates* k with ``Log`` and then
corrects the estimate against exact *edges*: ``bucket_edge(k)`` is the smallest float64 whose bucket
is k or more, searched with numpy's own ``log``. An estimate is never off by more than one bucket
(``ln(x)**2`` is below 5.1e5 and a libm is within a few ulps), and one comparison with each
neighbouring edge settles it. Values ``x <= 2`` are looked up by value (``small_keys``).

Day-of-week / hour-of-day fields (Avazu ``hour``): ids of the tokens ``"0".."6"`` and ``"0".."23"``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fm2onnx.data import Preprocessor
from fm2onnx.data.buckets import log2_buckets

_POSITIVE_INF_BITS = np.float64(np.inf).view(np.int64)
SMALLEST_ABOVE_2 = float(np.nextafter(2.0, 3.0))  # where bucket 0 ("L0") starts: the rule is x > 2


def bucket_edge(ks: np.ndarray) -> np.ndarray:
    """Smallest float64 ``x > 2`` with bucket >= k, per k (+inf past the largest double's bucket).

    Bisection over the bit patterns of positive doubles, which sort like the doubles themselves.
    """
    ks = np.asarray(ks, np.float64)
    lo = np.full(ks.shape, np.float64(2.0).view(np.int64))  # bucket(lo) < k always holds (lo is 2, or below k)
    hi = np.full(ks.shape, _POSITIVE_INF_BITS)  # bucket(hi) >= k: ln(inf) is inf
    while True:
        open_ = hi - lo > 1
        if not open_.any():
            break
        mid = lo + (hi - lo) // 2
        at_or_above = log2_buckets(mid.view(np.float64)) >= ks
        hi = np.where(open_ & at_or_above, mid, hi)
        lo = np.where(open_ & ~at_or_above, mid, lo)
    edges = hi.view(np.float64).copy()
    edges[ks <= 0] = SMALLEST_ABOVE_2
    return edges


def _bucket_of_token(token: str) -> int | None:
    if token.startswith("L") and token[1:].isdigit():
        return int(token[1:])
    return None


def _small_value(token: str, integer: bool) -> float | None:
    """The float64 whose token is ``token`` (a value <= 2), or None if no float64 input has it."""
    try:
        value = float(token)
    except ValueError:
        return None
    if not np.isfinite(value) or value > 2:
        return None
    if integer:
        return value if value.is_integer() and str(int(value)) == token else None
    # the vocabulary writes a float as pyarrow's shortest round-trip string, with -0.0 as 0
    canonical = pc.cast(pa.array([value + 0.0], pa.float64()), pa.string())[0].as_py()
    return value + 0.0 if canonical == token else None


@dataclass
class NumericTable:
    """One numeric field: ids of the buckets 0..K (values > 2), a value table for values <= 2."""

    bucket_ids: np.ndarray  # int64 [K + 1]: id of "L<k>" (0 if the vocabulary lacks it)
    small_keys: np.ndarray  # float64 values <= 2 with a token in the vocabulary
    small_ids: np.ndarray  # int64 ids of those values
    unreachable: int  # tokens that no float64 input produces (integers past 2**53)

    @property
    def top_bucket(self) -> int:
        return len(self.bucket_ids) - 1


def numeric_table(tokens: list[str], integer: bool) -> NumericTable:
    known: dict[int, int] = {}
    small: dict[float, int] = {}
    unreachable = 0
    for i, token in enumerate(tokens):
        k = _bucket_of_token(token)
        if k is not None:
            known[k] = i + 1
            continue
        value = _small_value(token, integer)
        if value is None:
            unreachable += 1
        else:
            small[value] = i + 1
    bucket_ids = np.zeros(max(known, default=0) + 1, np.int64)
    for k, id_ in known.items():
        bucket_ids[k] = id_
    keys = np.array(sorted(small), np.float64)
    return NumericTable(bucket_ids, keys, np.array([small[k] for k in keys.tolist()], np.int64), unreachable)


def token_ids(pre: Preprocessor, field: int, tokens: list[str]) -> np.ndarray:
    """int64 id of each token in a field (0 for tokens the vocabulary lacks)."""
    return np.array([pre.lookup(field, t) for t in tokens], np.int64)


def day_of_week_ids(pre: Preprocessor, field: int) -> np.ndarray:
    return token_ids(pre, field, [str(d) for d in range(7)])  # Monday = 0


def hour_of_day_ids(pre: Preprocessor, field: int) -> np.ndarray:
    return token_ids(pre, field, [str(h) for h in range(24)])
