"""Seeded random streams and the Zipf sampler of the synthetic generator."""

from __future__ import annotations

import numpy as np

__all__ = ["seeded_rng", "Streams", "Zipf"]


def seeded_rng(seed: int, *stream: int) -> np.random.Generator:
    """An independent generator for (``seed``, ``stream``...); any 64-bit seed."""
    seed = int(seed)
    return np.random.default_rng(np.random.SeedSequence([seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF, *stream]))


class Streams:
    """Independent random streams of one chunk, one per purpose and field, so that drawing n rows
    gives the first n rows of a longer draw (files of different lengths share their prefix)."""

    RANK, EMPTY, VALUE, LABEL, DAY, HOUR, ID = range(7)

    def __init__(self, seed: int, chunk: int):
        self.seed = seed
        self.chunk = chunk

    def __call__(self, purpose: int, f: int = 0) -> np.random.Generator:
        return seeded_rng(self.seed, self.chunk, purpose, f)


class Zipf:
    """Exact inverse-CDF sampling of ranks 0..C-1 with P(k) ~ (k+1)^-s, via a guide table."""

    def __init__(self, c: int, s: float):
        p = (np.arange(1, c + 1, dtype=np.float64)) ** (-s)
        cdf = np.cumsum(p)
        cdf /= cdf[-1]
        cdf[-1] = 1.0
        self.cdf = cdf
        self.m = min(max(4 * c, 1024), 1 << 22)
        self.guide = np.searchsorted(cdf, np.arange(self.m) / self.m, side="right")

    def sample(self, u: np.ndarray) -> np.ndarray:
        """Rank of each uniform ``u`` in [0, 1)."""
        k = self.guide[(u * self.m).astype(np.int64)]
        cdf = self.cdf
        todo = np.flatnonzero(cdf[k] <= u)
        while len(todo):
            k[todo] += 1
            todo = todo[cdf[k[todo]] <= u[todo]]
        return k
