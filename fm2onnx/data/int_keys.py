"""Integer token keys: the fast path for integer numeric fields (Criteo's I1..I13).

An integer value's token is encoded as one int64 *key*: the bucket ``k >= 0`` for ``x > 2``, else
``x - 3 < 0`` for the values that are their own token. Keys make tokenizing a column one vectorized
lookup and let the encoder count and map integer fields without building strings per row.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .buckets import BUCKETED_ABOVE, log2_buckets

__all__ = ["KEY_MIN_VALUE", "int_token_keys", "int_key_token", "token_int_key", "IntLookup"]

KEY_MIN_VALUE = -(1 << 62)  # raw values below this take the exact (string) path: x - 3 must not overflow
_OWN_TOKEN_SHIFT = BUCKETED_ABOVE + 1  # x <= 2 has key x - 3 < 0, below every bucket
_LUT_SIZE = 1 << 16
_lut: np.ndarray | None = None


def _small_value_lut() -> np.ndarray:
    """Key of every integer 0 <= x < 2**16 (the common case), computed once."""
    global _lut
    if _lut is None:
        x = np.arange(_LUT_SIZE, dtype=np.int64)
        lut = x - _OWN_TOKEN_SHIFT
        lut[_OWN_TOKEN_SHIFT:] = log2_buckets(x[_OWN_TOKEN_SHIFT:]).astype(np.int64)
        _lut = lut
    return _lut


def int_token_keys(x: np.ndarray) -> np.ndarray:
    """int64 key of each int64 value (values must be >= :data:`KEY_MIN_VALUE`)."""
    in_lut = (x >= 0) & (x < _LUT_SIZE)
    k = _small_value_lut()[np.where(in_lut, x, 0)]
    rest = np.flatnonzero(~in_lut)
    if len(rest):
        xr = x[rest]
        big = xr > BUCKETED_ABOVE
        buckets = log2_buckets(np.where(big, xr, _OWN_TOKEN_SHIFT)).astype(np.int64)
        k[rest] = np.where(big, buckets, xr - _OWN_TOKEN_SHIFT)
    return k


def int_key_token(k: int) -> str:
    return f"L{k}" if k >= 0 else str(k + _OWN_TOKEN_SHIFT)


def token_int_key(tok: str) -> int | None:
    """Inverse of :func:`int_key_token` (None for a token no integer value produces)."""
    try:
        if tok.startswith("L"):
            k = int(tok[1:])
            return k if k >= 0 and tok[1:].isdigit() else None
        v = int(tok)
    except ValueError:
        return None
    return v - _OWN_TOKEN_SHIFT if v <= BUCKETED_ABOVE and str(v) == tok else None


class IntLookup:
    """Token key -> id for an integer numeric field (sorted keys + ids, searched with numpy).

    Vocabularies spanning under 2**20 keys get a dense table instead: one gather per row.
    """

    def __init__(self, tokens: Sequence[str]):
        pairs = sorted((k, i + 1) for i, t in enumerate(tokens) if (k := token_int_key(t)) is not None)
        self.keys = np.array([k for k, _ in pairs], np.int64)
        self.ids = np.array([i for _, i in pairs], np.int32)
        self.dense: np.ndarray | None = None
        if len(self.keys) and int(self.keys[-1]) - int(self.keys[0]) < (1 << 20):
            self.lo = int(self.keys[0])
            # slot 0 and the last slot stay 0: out-of-range keys are clipped onto them
            dense = np.zeros(int(self.keys[-1]) - self.lo + 3, np.int32)
            dense[self.keys - self.lo + 1] = self.ids
            self.dense = dense

    def __call__(self, k: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """int32 id of every key (0 where unknown or not ``valid``)."""
        if not len(self.keys):
            return np.zeros(len(k), np.int32)
        if self.dense is not None:
            idx = np.clip(k - (self.lo - 1), 0, len(self.dense) - 1)
            out = self.dense[idx]
            if not valid.all():
                out[~valid] = 0
            return out
        pos = np.searchsorted(self.keys, k)
        np.minimum(pos, len(self.keys) - 1, out=pos)
        hit = (self.keys[pos] == k) & valid
        return np.where(hit, self.ids[pos], 0).astype(np.int32, copy=False)
