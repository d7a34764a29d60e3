"""The paper's log² bucket rule (Section 5.1): a numeric value ``x > 2`` falls into bucket
``k = floor(ln(x)**2)`` (``3 -> 1``, ``100 -> 21``), computed in float64 exactly as numpy does.

This module is the rule's only home: the tokenizer, the synthetic generator and the exported raw
graphs' bucket edges all call it, so a value can never land in different buckets in different places.
"""

from __future__ import annotations

import numpy as np

#: values strictly above this are bucketed; the others are tokens of their own
BUCKETED_ABOVE = 2


def log2_buckets(x) -> np.ndarray:
    """float64 ``floor(ln(x)**2)`` of every value of ``x`` (meaningful for ``x > 2``; ``inf`` stays ``inf``)."""
    with np.errstate(all="ignore"):
        return np.floor(np.log(np.asarray(x, np.float64)) ** 2)


def log2_bucket(x: float) -> int:
    """The bucket of one numeric value ``x > 2``."""
    return int(log2_buckets(x))


def first_integers(buckets: np.ndarray) -> np.ndarray:
    """Smallest integer ``x > 2`` whose bucket is ``b`` or more, for each ``b >= 1`` in ``buckets``."""
    b = np.asarray(buckets, np.int64)
    lo = np.maximum(np.ceil(np.exp(np.sqrt(b.astype(np.float64)))).astype(np.int64), BUCKETED_ABOVE + 1)
    for _ in range(4):  # exp/sqrt land within an integer of the edge; settle it with the rule itself
        lo = np.where(log2_buckets(lo) < b, lo + 1, lo)
        lo = np.where((lo > BUCKETED_ABOVE + 1) & (log2_buckets(lo - 1) >= b), lo - 1, lo)
    return lo
