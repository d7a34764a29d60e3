"""Token rules of the paper (Section 5.1): how one raw value becomes the string a vocabulary holds.

* numeric fields: a value ``x > 2`` becomes the bucket token ``"L<k>"`` with ``k = floor(ln(x)**2)``
  (``3 -> "L1"``, ``100 -> "L21"``; see :mod:`.buckets`); any other value (``x <= 2``, negatives
  included) is its own token, written canonically (``"2"``, ``"-1"``, ``"0.5"``; ``"02"`` -> ``"2"``);
  an empty value is missing and always maps to the unknown id 0.
* categorical fields: the raw string; empty -> unknown.
* ``day_of_week`` / ``hour_of_day`` (from an Avazu ``YYMMDDHH`` column): ``"0"``..``"6"``
  (Monday = 0) and ``"0"``..``"23"``.

The array functions tokenize a chunk's *distinct* raw values; callers map rows onto them.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .arrow import NULL_STRING, STRING, plain_str
from .buckets import BUCKETED_ABOVE, log2_buckets

__all__ = ["numeric_token", "numeric_keys", "hour_tokens", "hour_keys"]

_PARSE_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError)


def numeric_token(value: Any, integer: bool = False) -> str | None:
    """The token of one numeric value (``"L1"`` for 3, ``"2"`` for 2, None for empty/missing).

    Raises ValueError for a value that is not a number (or, with ``integer``, not an integer).
    """
    if value is None:
        return None
    s = value if isinstance(value, str) else plain_str(value)
    keys, bad, _ = numeric_keys(pa.array([s], STRING), integer)
    if bad[0]:
        raise ValueError(f"not {'an integer' if integer else 'a number'}: {value!r}")
    return keys[0].as_py()


def numeric_keys(d: pa.Array, integer: bool) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """Tokens of an array of raw numeric strings (typically a chunk's distinct values).

    Returns (tokens: string array, null for empty or malformed values; bad mask; empty mask).
    """
    n = len(d)
    if n == 0:
        return pa.array([], STRING), np.zeros(0, bool), np.zeros(0, bool)
    d = d.fill_null("") if d.null_count else d
    empty = pc.equal(pc.binary_length(d), 0).to_numpy(zero_copy_only=False)
    filled = pc.if_else(pa.array(empty), "0", d) if empty.any() else d
    x, bad = _parse_numbers(filled, integer)
    xf = x.astype(np.float64) if integer else x
    bad &= ~empty
    big = (xf > BUCKETED_ABOVE) & ~bad & ~empty
    keys = _bucket_or_value_tokens(x, xf, big, integer)
    missing = bad | empty
    if missing.any():
        keys = pc.if_else(pa.array(missing), NULL_STRING, keys)
    return keys, bad, empty


def _parse_numbers(filled: pa.Array, integer: bool) -> tuple[np.ndarray, np.ndarray]:
    """(int64 or float64 values, bad mask) of non-empty numeric strings; bad values read as 0."""
    n = len(filled)
    target = pa.int64() if integer else pa.float64()
    bad = np.zeros(n, bool)
    try:
        x = pc.cast(filled, target).to_numpy(zero_copy_only=False)
    except _PARSE_ERRORS:  # some value does not parse: find which, one by one
        x = np.zeros(n, np.int64 if integer else np.float64)
        for i, s in enumerate(filled.to_pylist()):
            try:
                x[i] = pc.cast(pa.array([s], STRING), target)[0].as_py()
            except _PARSE_ERRORS:
                bad[i] = True
    if integer:
        return x, bad
    xf = np.asarray(x, np.float64) + 0.0  # -0.0 -> 0.0: both are the token "0"
    bad |= ~np.isfinite(xf)
    return np.where(bad, 0.0, xf), bad


def _bucket_or_value_tokens(x: np.ndarray, xf: np.ndarray, big: np.ndarray, integer: bool) -> pa.Array:
    """``"L<k>"`` where ``big``, else the value itself written canonically."""
    small = np.where(big, 0, x).astype(np.int64) if integer else np.where(big, 0.0, xf)
    small_str = pc.cast(pa.array(small), STRING)
    if not big.any():
        return small_str
    k = log2_buckets(np.where(big, xf, BUCKETED_ABOVE + 1)).astype(np.int64)
    big_str = pc.binary_join_element_wise("L", pc.cast(pa.array(k), STRING), "")
    return pc.if_else(pa.array(big), big_str, small_str)


def hour_tokens(value: str) -> tuple[str, str]:
    """(day_of_week, hour_of_day) tokens of an Avazu ``YYMMDDHH`` value; ValueError if malformed."""
    s = value.strip() if isinstance(value, str) else str(value)
    if len(s) != 8 or not s.isdigit():
        raise ValueError(f"expected YYMMDDHH, found {value!r}")
    yy, mm, dd, hh = int(s[0:2]), int(s[2:4]), int(s[4:6]), int(s[6:8])
    if hh > 23:
        raise ValueError(f"expected YYMMDDHH, found {value!r} (hour {hh} > 23)")
    try:
        day = _dt.date(2000 + yy, mm, dd)
    except ValueError:
        raise ValueError(f"expected YYMMDDHH, found {value!r} (no such date)") from None
    return str(day.weekday()), str(hh)


def hour_keys(d: pa.Array) -> tuple[pa.Array, pa.Array, np.ndarray]:
    """(day-of-week tokens, hour tokens, bad mask) of an array of distinct YYMMDDHH strings."""
    dows: list[str | None] = []
    hours: list[str | None] = []
    bad = np.zeros(len(d), bool)
    for i, s in enumerate(d.to_pylist()):
        dw = hh = None
        if s:
            try:
                dw, hh = hour_tokens(s)
            except ValueError:
                bad[i] = True
        dows.append(dw)
        hours.append(hh)
    return pa.array(dows, STRING), pa.array(hours, STRING), bad
