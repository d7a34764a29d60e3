"""Train / valid / test splits: a seeded hash of the row index, so chunking never changes a row's split."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import Fm2OnnxError

__all__ = ["SPLIT_NAMES", "WHOLE_FILE", "DEFAULT_SPLIT", "check_split", "assign_split", "train_mask",
           "rows_filling_every_split"]

SPLIT_NAMES = ("train", "valid", "test")
DEFAULT_SPLIT = (0.8, 0.1, 0.1)
# The fractions that put every row of a file in one split: how a user's own train/valid/test files
# are encoded, each into the split it was given as.
WHOLE_FILE = {"train": (1.0, 0.0, 0.0), "valid": (0.0, 1.0, 0.0), "test": (0.0, 0.0, 1.0)}


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def check_split(split: Sequence[float]) -> tuple[float, float, float]:
    """The three fractions (train, valid, test) as floats; one-line errors unless they sum to 1."""
    try:
        fr = tuple(float(x) for x in split)
    except (TypeError, ValueError):
        raise Fm2OnnxError(f"split must be three fractions (train, valid, test), got {split!r}") from None
    if len(fr) != 3 or any(not (0 <= x <= 1) for x in fr) or abs(sum(fr) - 1) > 1e-6:
        raise Fm2OnnxError(f"split must be three fractions in [0, 1] summing to 1, got {split!r}")
    return fr  # type: ignore[return-value]


def assign_split(rows: np.ndarray, seed: int, split: Sequence[float]) -> np.ndarray:
    """uint8 split (0 train, 1 valid, 2 test) of each row index."""
    fr = check_split(split)
    key = _splitmix64(np.array([int(seed) & 0xFFFFFFFFFFFFFFFF], np.uint64))[0]
    with np.errstate(over="ignore"):
        z = _splitmix64(np.asarray(rows, np.int64).astype(np.uint64) ^ key)
    u = (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
    out = np.full(len(u), 2, np.uint8)
    out[u < fr[0] + fr[1]] = 1
    out[u < fr[0]] = 0
    return out


def train_mask(row0: int, n: int, seed: int, split: Sequence[float]) -> np.ndarray:
    """bool [n]: which of the rows ``row0 .. row0 + n - 1`` fall in the training split (what the
    vocabulary is counted on, so validation and test rows never add features)."""
    return assign_split(np.arange(row0, row0 + n), seed, split) == 0


def rows_filling_every_split(seed: int, split: Sequence[float] = DEFAULT_SPLIT) -> int:
    """The fewest leading rows of a file that give every split with a nonzero fraction at least one row
    (the hash decides, so it depends on the seed)."""
    fr = check_split(split)
    wanted = [k for k, fraction in enumerate(fr) if fraction > 0]
    n = 64
    while True:
        splits = assign_split(np.arange(n), seed, fr)
        if all((splits == k).any() for k in wanted):
            return 1 + max(int(np.argmax(splits == k)) for k in wanted)
        n *= 2
