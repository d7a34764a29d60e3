"""pyarrow <-> numpy conversions shared by the tokenizer, the chunk views and the preprocessor."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

STRING = pa.string()
NULL_STRING = pa.scalar(None, STRING)


def plain_str(value: Any) -> str:
    """``str`` of a raw value, with integral floats written as integers (``3.0`` -> ``"3"``)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return str(value)


def as_string_array(values: Any) -> pa.Array | pa.ChunkedArray:
    """Raw values (a pyarrow array of any type, or a Python sequence) as a pyarrow string array."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        arr = values
    else:
        arr = pa.array([None if v is None else (v if isinstance(v, str) else plain_str(v)) for v in values], STRING)
    if arr.type == STRING:
        return arr
    if pa.types.is_floating(arr.type):
        # pyarrow writes 3.0 as "3.0"; the token rules read it as the integer 3
        return pa.array([None if v is None else plain_str(v) for v in arr.to_pylist()], STRING)
    return arr.cast(STRING)


def to_numpy(a: pa.Array | pa.ChunkedArray) -> np.ndarray:
    if isinstance(a, pa.ChunkedArray):
        if a.num_chunks == 1:
            return a.chunk(0).to_numpy(zero_copy_only=False)
        return a.to_numpy()
    return a.to_numpy(zero_copy_only=False)


def ids_from_index(idx: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """``pyarrow.compute.index_in`` result (null = not found) -> int32 ids, 0 for unknown."""
    arr = to_numpy(pc.fill_null(idx, -1))
    out = arr.astype(np.int32, copy=True) if arr.dtype != np.int32 else arr.copy()
    out += 1
    return out
