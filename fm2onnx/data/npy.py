"""Writing a .npy file block by block when the row count is only known at the end."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import Fm2OnnxError

__all__ = ["NpyAppender", "NpyRows"]

_HEADER_BYTES = 128  # fixed, so the shape can be rewritten in place once the row count is known


def _npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    d = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": tuple(shape)}
    text = repr(d).encode("latin1")
    body_len = _HEADER_BYTES - 10  # magic (6) + version (2) + header length (2)
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
        """Finish the file: write the final row count into the header."""
        if self._f.closed:
            return
        self._f.seek(0)
        self._f.write(_npy_header(self.dtype, (self.rows,) + self.row_shape))
        self._f.close()

    def abort(self) -> None:
        if not self._f.closed:
            self._f.close()


class NpyRows:
    """Rows of a C-order .npy file read (and rewritten) block by block through plain file I/O.

    Unlike a memory map, the process's resident memory stays one block: every page of a mapped file
    that was touched counts as resident, so a pass over a multi-gigabyte array would report (and, under
    a memory cap, be charged for) all of it.
    """

    def __init__(self, path: str, writable: bool = False):
        self.path = path
        self._f = open(path, "r+b" if writable else "rb")
        fmt = np.lib.format
        read_header = fmt.read_array_header_1_0 if fmt.read_magic(self._f) == (1, 0) else fmt.read_array_header_2_0
        shape, fortran, self.dtype = read_header(self._f)
        if fortran:
            raise Fm2OnnxError(f"{path}: Fortran-order arrays are not supported")
        self.shape = tuple(shape)
        self._offset = self._f.tell()
        self._row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    def read(self, row0: int, n: int) -> np.ndarray:
        self._f.seek(self._offset + row0 * self._row_bytes)
        block = np.fromfile(self._f, self.dtype, count=n * self._row_bytes // self.dtype.itemsize)
        return block.reshape((n,) + self.shape[1:])

    def write(self, row0: int, block: np.ndarray) -> None:
        self._f.seek(self._offset + row0 * self._row_bytes)
        self._f.write(memoryview(np.ascontiguousarray(block, self.dtype)).cast("B"))

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "NpyRows":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
