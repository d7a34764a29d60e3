"""Inference cost of per-field dims in the cached form (Section 4.3, Table 4 of the paper).

With intermediate vectors cached, a pair (a, b) costs one dot product of length min(d_a, d_b) (cache the
side that maps down to the smaller field) plus one add into the sum; the n linear terms add n more.
For the paper's Table 3 dims this gives its 8,960. (Table 8's "full" row, 24,531, counts the linear
terms as 2n; by this formula a uniform K = 16 over 39 fields is 24,492.)
"""

from __future__ import annotations

import numpy as np

from models.cost import cached_flops

__all__ = ["DimsCost", "cached_flops", "cross_field_dims"]


def cross_field_dims(dims) -> np.ndarray:
    """[n, n] matrix of min(d_a, d_b): the cache width, and so the cost, of each field pair (Figure 7)."""
    d = np.asarray(dims, dtype=np.int64)
    return np.minimum.outer(d, d)


class DimsCost:
    """What a set of per-field ``dims`` costs at inference: their mean and the cached form's FLOPs per row."""

    dims: list[int]

    @property
    def mean_dim(self) -> float:
        return float(np.mean(self.dims))

    @property
    def flops(self) -> int:
        return cached_flops(self.dims)
