"""Counting tokens per field across chunks, and the vocabulary order they give.

Per field, id 0 is the "unknown" row (missing values, features seen fewer than ``min_count`` times
when the vocabulary was counted, and values never seen). Known tokens get ids 1..V-1 by descending
count, ties broken by the token string in byte order.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .arrow import STRING

__all__ = ["VocabCounter"]


class VocabCounter:
    """Accumulates (token, count) pairs per field across chunks; memory ~ distinct tokens."""

    def __init__(self, n_fields: int, merge_every: int = 2_000_000):
        self._pending: list[list[pa.Table]] = [[] for _ in range(n_fields)]
        self._pending_len = [0] * n_fields
        self._merged: list[pa.Table | None] = [None] * n_fields
        self._merge_every = merge_every

    def add(self, j: int, keys: pa.Array, counts: np.ndarray) -> None:
        if len(keys) == 0:
            return
        t = pa.table({"k": keys, "c": pa.array(counts, pa.int64())})
        if t["k"].null_count:
            t = t.filter(pc.is_valid(t["k"]))
        self._pending[j].append(t)
        self._pending_len[j] += t.num_rows
        # merge once the pending pairs outgrow the merged table, so memory stays ~ distinct tokens
        if self._pending_len[j] > self._merge_every + (self._merged[j].num_rows if self._merged[j] else 0):
            self._merge(j)

    def _merge(self, j: int) -> None:
        parts = self._pending[j]
        if self._merged[j] is not None:
            parts = [self._merged[j]] + parts
        if not parts:
            return
        t = pa.concat_tables(parts)
        g = t.group_by("k").aggregate([("c", "sum")])
        self._merged[j] = g.select(["k", "c_sum"]).rename_columns(["k", "c"])
        self._pending[j] = []
        self._pending_len[j] = 0

    def counts(self, j: int) -> pa.Table:
        """Table (k: token, c: count) of field j, unsorted."""
        self._merge(j)
        t = self._merged[j]
        if t is None:
            return pa.table({"k": pa.array([], STRING), "c": pa.array([], pa.int64())})
        return t

    def vocabulary(self, j: int, min_count: int) -> list[str]:
        """Tokens of field j seen at least ``min_count`` times: descending count, ties by token."""
        t = self.counts(j)
        t = t.filter(pc.greater_equal(t["c"], max(1, int(min_count))))
        t = t.sort_by([("c", "descending"), ("k", "ascending")])
        return t["k"].to_pylist()
