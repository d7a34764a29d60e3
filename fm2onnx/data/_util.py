"""Small helpers shared by the encoder and the synthetic generator: progress, .npy appending, splits."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import Fm2OnnxError

SPLIT_NAMES = ("train", "valid", "test")
_NPY_HEADER_BYTES = 128  # fixed, so the shape can be rewritten in place once the row count is known


# ----------------------------------------------------------------------------- npy appender


def _npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    d = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": tuple(shape)}
    text = repr(d).encode("latin1")
    total = _NPY_HEADER_BYTES
    body_len = total - 10
    if len(text) + 1 > body_len:
        raise Fm2OnnxError(f"array shape {shape} too large for the npy header")
    text = text + b" " * (body_len - len(text) - 1) + b"\n"
    return b"\x93NUMPY\x01\x00" + body_len.to_bytes(2, "little") + text


class NpyAppender:
    """Write a C-order .npy file row-block by row-block without knowing the row count up front."""

    def __init__(self, path: str, dtype, row_shape: Sequence[int] = ()):
        self.path = path
        self.dtype = np.dtype(dtype)
        self.row_shape = tuple(int(x) for x in row_shape)
        self.rows = 0
        self._f = open(path, "wb")
        self._f.write(_npy_header(self.dtype, (0,) + self.row_shape))

    def write(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if block.shape[1:] != self.row_shape:
            raise ValueError(f"block shape {block.shape} does not match rows of shape {self.row_shape}")
        self._f.write(memoryview(block).cast("B"))
        self.rows += block.shape[0]

    def close(self) -> None:
        if self._f.closed:
            return
        self._f.seek(0)
        self._f.write(_npy_header(self.dtype, (self.rows,) + self.row_shape))
        self._f.close()

    def abort(self) -> None:
        if not self._f.closed:
            self._f.close()


# ----------------------------------------------------------------------------- splits

def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def check_split(split: Sequence[float]) -> tuple[float, float, float]:
    try:
        fr = tuple(float(x) for x in split)
    except (TypeError, ValueError):
        raise Fm2OnnxError(f"split must be three fractions (train, valid, test), got {split!r}") from None
    if len(fr) != 3 or any(not (0 <= x <= 1) for x in fr) or abs(sum(fr) - 1) > 1e-6:
        raise Fm2OnnxError(f"split must be three fractions in [0, 1] summing to 1, got {split!r}")
    return fr  # type: ignore[return-value]


def assign_split(rows: np.ndarray, seed: int, split: Sequence[float]) -> np.ndarray:
    """uint8 split (0 train, 1 valid, 2 test) of row indices: a seeded hash, so chunking does not matter."""
    fr = check_split(split)
    key = _splitmix64(np.array([int(seed) & 0xFFFFFFFFFFFFFFFF], np.uint64))[0]
    with np.errstate(over="ignore"):
        z = _splitmix64(np.asarray(rows, np.int64).astype(np.uint64) ^ key)
    u = (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
    out = np.full(len(u), 2, np.uint8)
    out[u < fr[0] + fr[1]] = 1
    out[u < fr[0]] = 0
    return out
