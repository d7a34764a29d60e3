"""Token rules of the paper (Section 5.1), per-field vocabularies, and vectorized chunk encoding.

Tokens (the strings that vocabularies hold):

* numeric fields: a value ``x > 2`` becomes the bucket token ``"L<k>"`` with ``k = floor(ln(x)**2)``
  (``3 -> "L1"``, ``100 -> "L21"``); any other value (``x <= 2``, negatives included) is its own
  token, written canonically (``"2"``, ``"-1"``, ``"0.5"``; ``"02"`` -> ``"2"``); an empty value is
  missing and always maps to the unknown id 0.
* categorical fields: the raw string; empty -> unknown.
* ``day_of_week`` / ``hour_of_day`` (from an Avazu ``YYMMDDHH`` column): ``"0"``..``"6"``
  (Monday = 0) and ``"0"``..``"23"``.

Per field, id 0 is the "unknown" row (missing values, features seen fewer than ``min_count`` times
when the vocabulary was counted, and values never seen). Known tokens get ids 1..V-1 by descending
count, ties broken by the token string in byte order. ``vocab_sizes`` include row 0.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import DataError, Fm2OnnxError
from .formats import FIELD_KINDS, FieldSpec, TableFormat

__all__ = [
    "Preprocessor",
    "VocabCounter",
    "numeric_token",
    "log2_bucket",
    "hour_tokens",
    "PREPROCESSOR_VERSION",
]

PREPROCESSOR_VERSION = 1
_STR = pa.string()
_NULL_STR = pa.scalar(None, _STR)


# ----------------------------------------------------------------------------- token rules


def log2_bucket(x: float) -> int:
    """``floor(ln(x)**2)``, the paper's bucket for a numeric value ``x > 2``."""
    return int(np.floor(np.log(np.float64(x)) ** 2))


def _as_string_array(values: Any) -> pa.Array | pa.ChunkedArray:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        arr = values
    else:
        arr = pa.array(
            [None if v is None else (v if isinstance(v, str) else _plain_str(v)) for v in values], _STR
        )
    if arr.type != _STR:
        if pa.types.is_large_string(arr.type) or pa.types.is_dictionary(arr.type):
            arr = arr.cast(_STR)
        elif pa.types.is_floating(arr.type):
            arr = pa.array([None if v is None else _plain_str(v) for v in arr.to_pylist()], _STR)
        else:
            arr = arr.cast(_STR)
    return arr


def _plain_str(v: Any) -> str:
    if isinstance(v, float) and v.is_integer() and abs(v) < 2**53:
        return str(int(v))
    return str(v)


def _numeric_keys(d: pa.Array, integer: bool) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """Tokens for an array of raw numeric strings (typically a chunk's distinct values).

    Returns (keys: string array with null for empty/bad values, bad: bool mask, empty: bool mask).
    """
    n = len(d)
    if n == 0:
        return pa.array([], _STR), np.zeros(0, bool), np.zeros(0, bool)
    d = d.fill_null("") if d.null_count else d
    empty = pc.equal(pc.binary_length(d), 0).to_numpy(zero_copy_only=False)
    filled = pc.if_else(pa.array(empty), "0", d) if empty.any() else d
    bad = np.zeros(n, bool)
    target = pa.int64() if integer else pa.float64()
    try:
        x = pc.cast(filled, target).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        x = np.zeros(n, np.int64 if integer else np.float64)
        for i, s in enumerate(filled.to_pylist()):
            try:
                x[i] = pc.cast(pa.array([s], _STR), target)[0].as_py()
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                bad[i] = True
    if integer:
        xf = x.astype(np.float64)
    else:
        xf = np.asarray(x, np.float64) + 0.0  # -0.0 -> 0.0
        bad |= ~np.isfinite(xf)
        xf = np.where(bad, 0.0, xf)
    bad &= ~empty
    big = (xf > 2) & ~bad & ~empty
    if integer:
        code = np.where(big, 0, x).astype(np.int64)
        small_str = pc.cast(pa.array(code), _STR)
    else:
        small_str = pc.cast(pa.array(np.where(big, 0.0, xf)), _STR)
    if big.any():
        with np.errstate(all="ignore"):
            b = np.floor(np.log(np.where(big, xf, 3.0)) ** 2).astype(np.int64)
        big_str = pc.binary_join_element_wise("L", pc.cast(pa.array(b), _STR), "")
        keys = pc.if_else(pa.array(big), big_str, small_str)
    else:
        keys = small_str
    missing = bad | empty
    if missing.any():
        keys = pc.if_else(pa.array(missing), _NULL_STR, keys)
    return keys, bad, empty


def numeric_token(value: Any, integer: bool = False) -> str | None:
    """The token of one numeric value (``"L1"`` for 3, ``"2"`` for 2, None for empty/missing).

    Raises ValueError for a value that is not a number (or, with ``integer``, not an integer).
    """
    if value is None:
        return None
    s = value if isinstance(value, str) else _plain_str(value)
    keys, bad, _ = _numeric_keys(pa.array([s], _STR), integer)
    if bad[0]:
        raise ValueError(f"not {'an integer' if integer else 'a number'}: {value!r}")
    return keys[0].as_py()


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


def _hour_keys(d: pa.Array) -> tuple[pa.Array, pa.Array, np.ndarray]:
    """(day-of-week keys, hour keys, bad mask) for an array of distinct YYMMDDHH strings."""
    dows: list[str | None] = []
    hours: list[str | None] = []
    bad = np.zeros(len(d), bool)
    for i, s in enumerate(d.to_pylist()):
        if s is None or s == "":
            dows.append(None)
            hours.append(None)
            continue
        try:
            dw, hh = hour_tokens(s)
        except ValueError:
            bad[i] = True
            dw = hh = None
        dows.append(dw)
        hours.append(hh)
    return pa.array(dows, _STR), pa.array(hours, _STR), bad


_K_MIN = -(1 << 62)  # raw values below this take the exact (string) path


_LUT_N = 1 << 16
_lut: np.ndarray | None = None


def _bucket_lut() -> np.ndarray:
    """Key of every integer 0 <= x < 2**16 (the common case) computed once."""
    global _lut
    if _lut is None:
        x = np.arange(_LUT_N, dtype=np.int64)
        lut = x - 3
        lut[3:] = np.floor(np.log(x[3:].astype(np.float64)) ** 2).astype(np.int64)
        _lut = lut
    return _lut


def _int_token_keys(x: np.ndarray) -> np.ndarray:
    """int64 key of each integer value: the bucket k = floor(ln(x)**2) >= 0 for x > 2, else x - 3 (< 0)."""
    inl = (x >= 0) & (x < _LUT_N)
    k = _bucket_lut()[np.where(inl, x, 0)]
    rest = np.flatnonzero(~inl)
    if len(rest):
        xr = x[rest]
        big = xr > 2
        with np.errstate(all="ignore"):
            lg = np.log(np.where(big, xr, 3).astype(np.float64))
        k[rest] = np.where(big, np.floor(lg * lg).astype(np.int64), xr - 3)
    return k


def _int_key_token(k: int) -> str:
    return f"L{k}" if k >= 0 else str(k + 3)


def _token_int_key(tok: str) -> int | None:
    """Inverse of :func:`_int_key_token` (None for a token no integer value produces)."""
    try:
        if tok.startswith("L"):
            k = int(tok[1:])
            return k if k >= 0 and tok[1:].isdigit() else None
        v = int(tok)
    except ValueError:
        return None
    return v - 3 if v <= 2 and str(v) == tok else None


def _short(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 42 else r[:39] + "...'"


# ----------------------------------------------------------------------------- chunk views


class RawMemo:
    """Distinct raw values of one numeric / YYMMDDHH source column seen so far, with their tokens.

    Shared across the chunks of a pass, so each distinct raw value is parsed once; rows are mapped
    to positions in ``values`` with one hash lookup (``pyarrow.compute.index_in``). Only a cache:
    it resets itself past ``limit`` distinct values.
    """

    def __init__(self, kind: str, integer: bool = False, limit: int = 1 << 21):
        self.kind = kind  # "numeric" or "hour"
        self.integer = integer
        self.limit = limit
        self._reset()

    def _reset(self) -> None:
        self.values: pa.Array = pa.array([], _STR)
        self.keys: list[pa.Array] = []  # numeric: [keys]; hour: [day_of_week keys, hour keys]
        self.bad = np.zeros(0, bool)
        self._ids: dict[tuple[int, int], tuple[pa.Array, np.ndarray]] = {}

    def _transform(self, new: pa.Array) -> tuple[list[pa.Array], np.ndarray]:
        if self.kind == "numeric":
            keys, bad, _ = _numeric_keys(new, self.integer)
            return [keys], bad
        dows, hours, bad = _hour_keys(new)
        return [dows, hours], bad

    def positions(self, col: pa.ChunkedArray) -> np.ndarray:
        """int32 position in ``values`` of every row (``values`` grows by the unseen ones)."""
        if len(col) == 0:
            return np.zeros(0, np.int32)
        pos = pc.index_in(col, value_set=self.values) if len(self.values) else None
        if pos is None or pos.null_count:
            missing = col if pos is None else col.filter(pc.is_null(pos))
            new = pc.unique(missing)
            if isinstance(new, pa.ChunkedArray):
                new = new.combine_chunks()
            if len(self.values) + len(new) > self.limit:
                self._reset()
                new = pc.unique(col)
                if isinstance(new, pa.ChunkedArray):
                    new = new.combine_chunks()
            keys, bad = self._transform(new)
            if len(self.values):
                self.values = pa.concat_arrays([self.values, new])
                self.keys = [pa.concat_arrays([a, b]) for a, b in zip(self.keys, keys)]
                self.bad = np.concatenate([self.bad, bad])
            else:
                self.values, self.keys, self.bad = new, keys, bad
            self._ids.clear()
            pos = pc.index_in(col, value_set=self.values)
        return _to_numpy(pos).astype(np.int32, copy=False)

    def ids(self, which: int, vocab: pa.Array) -> np.ndarray:
        """int32 id of every known raw value under ``vocab`` (0 = unknown/missing/malformed)."""
        key = (which, id(vocab))
        hit = self._ids.get(key)
        if hit is None or hit[0] is not vocab:
            hit = (vocab, _ids_from_index(pc.index_in(self.keys[which], value_set=vocab)))
            self._ids[key] = hit
        return hit[1]


def _to_numpy(a: pa.Array | pa.ChunkedArray) -> np.ndarray:
    if isinstance(a, pa.ChunkedArray):
        if a.num_chunks == 1:
            return a.chunk(0).to_numpy(zero_copy_only=False)
        return a.to_numpy()
    return a.to_numpy(zero_copy_only=False)


class ChunkView:
    """Per-chunk cache of the transforms that validation, counting and encoding share.

    ``table`` holds the source columns as strings (pyarrow Table / RecordBatch). ``memos`` (source
    column -> :class:`RawMemo`) may be shared by the views of one pass to parse each distinct
    numeric value once.
    """

    def __init__(self, table: pa.Table | pa.RecordBatch, memos: dict[tuple, RawMemo] | None = None):
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        self.table = table
        self.rows = table.num_rows
        self.memos = memos if memos is not None else {}
        self._cols: dict[str, pa.ChunkedArray] = {}
        self._pos: dict[tuple, tuple[RawMemo, np.ndarray]] = {}
        self._ik: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}

    def column(self, name: str) -> pa.ChunkedArray:
        col = self._cols.get(name)
        if col is None:
            if name not in self.table.column_names:
                raise Fm2OnnxError(f"input has no column {name!r} (has {self.table.column_names[:50]})")
            col = _as_string_array(self.table.column(name))
            if isinstance(col, pa.Array):
                col = pa.chunked_array([col], _STR)
            self._cols[name] = col
        return col

    def _memo_positions(self, name: str, kind: str, integer: bool) -> tuple[RawMemo, np.ndarray]:
        key = (name, kind, integer)
        hit = self._pos.get(key)
        if hit is None:
            memo = self.memos.get(key)
            if memo is None:
                memo = self.memos[key] = RawMemo(kind, integer)
            hit = (memo, memo.positions(self.column(name)))
            self._pos[key] = hit
        return hit

    def int_keys(self, name: str) -> tuple[np.ndarray, np.ndarray] | None:
        """Fast path for integer columns: (int64 key per row, valid mask), or None if some value
        does not parse (then the exact per-value path reports it)."""
        if name in self._ik:
            return self._ik[name]
        hit = None
        col = self.column(name)
        try:
            x = pc.cast(col, pa.int64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            x = None
        if x is not None:
            xi = _to_numpy(pc.fill_null(x, 0)).astype(np.int64, copy=False)
            valid = ~_to_numpy(pc.is_null(x)) if x.null_count else np.ones(len(xi), bool)
            if not len(xi) or xi.min() >= _K_MIN:
                hit = (_int_token_keys(xi), valid)
        self._ik[name] = hit
        return hit

    def numeric(self, name: str, integer: bool) -> tuple[pa.Array, np.ndarray, np.ndarray, pa.Array]:
        """(keys per distinct value, bad mask per distinct value, codes per row, distinct values)."""
        memo, codes = self._memo_positions(name, "numeric", integer)
        return memo.keys[0], memo.bad, codes, memo.values

    def hour(self, name: str) -> tuple[pa.Array, pa.Array, np.ndarray, np.ndarray, pa.Array]:
        memo, codes = self._memo_positions(name, "hour", False)
        return memo.keys[0], memo.keys[1], memo.bad, codes, memo.values

    # -- per field -----------------------------------------------------------------

    def field_problems(self, spec: FieldSpec) -> tuple[np.ndarray, Callable[[int], str]] | None:
        """(bad row mask, row -> message) if some value of this field is malformed, else None."""
        if spec.kind == "categorical":
            return None
        if spec.kind == "numeric":
            if spec.integer and self.int_keys(spec.source) is not None:
                return None
            keys, bad, codes, values = self.numeric(spec.source, spec.integer)
            if not bad.any():
                return None
            what = "an integer" if spec.integer else "a number"
        else:
            _, _, bad, codes, values = self.hour(spec.source)
            if not bad.any():
                return None
            what = "YYMMDDHH"
        rows_bad = bad[codes]

        def describe(row: int, values=values, codes=codes, what=what, src=spec.source) -> str:
            return f"column {src}: expected {what}, found {_short(values[int(codes[row])].as_py())}"

        return rows_bad, describe

    def field_codes(self, spec: FieldSpec, keep: np.ndarray | None) -> "FieldCodes":
        """Compact per-chunk encoding of this field over the kept rows, to count now and map later."""
        if spec.kind == "numeric" and spec.integer:
            ik = self.int_keys(spec.source)
            if ik is not None:
                k, valid = ik
                if keep is not None:
                    k, valid = k[keep], valid[keep]
                # missing values hold the key of 0 (-3); including it in the range costs one slot
                lo, hi = (int(k.min()), int(k.max())) if len(k) else (0, 0)
                if hi - lo < (1 << 22):
                    codes = (k - lo).astype(np.int32)
                    codes[~valid] = -1
                    return FieldCodes(None, lo, codes, hi - lo + 1)
                # a wide spread of values: fall through to the per-value path
        if spec.kind == "categorical":
            col = self.column(spec.source)
            if len(col) == 0:
                return FieldCodes(pa.array([], _STR), 0, np.zeros(0, np.int32))
            enc = pc.dictionary_encode(col)
            values = enc.chunk(enc.num_chunks - 1).dictionary
            idx = pa.chunked_array([c.indices for c in enc.chunks], pa.int32())
            codes = _to_numpy(pc.fill_null(idx, -1) if idx.null_count else idx).astype(np.int32, copy=False)
            if keep is not None:
                codes = codes[keep]
            return FieldCodes(values, 0, codes)
        if spec.kind == "numeric":
            keys, _, pos, _ = self.numeric(spec.source, spec.integer)
        else:
            dows, hours, _, pos, _ = self.hour(spec.source)
            keys = dows if spec.kind == "day_of_week" else hours
        if keep is not None:
            pos = pos[keep]
        # keep only the memo entries used in this chunk (the memo spans the whole pass)
        used = np.bincount(pos, minlength=len(keys)) > 0
        if keys.null_count:
            used &= _to_numpy(pc.is_valid(keys))
        nz = np.flatnonzero(used)
        remap = np.full(len(keys) + 1, -1, np.int32)
        remap[nz] = np.arange(len(nz), dtype=np.int32)
        return FieldCodes(keys.take(pa.array(nz)), 0, remap[pos])

    def field_ids(self, spec: FieldSpec, vocab: pa.Array) -> np.ndarray:
        """int32 id of every row of this field (0 = unknown/missing/malformed)."""
        if spec.kind == "categorical":
            col = self.column(spec.source)
            idx = pc.index_in(col, value_set=vocab)
            return _ids_from_index(idx)
        if spec.kind == "numeric":
            memo, codes = self._memo_positions(spec.source, "numeric", spec.integer)
            per_value = memo.ids(0, vocab)
        else:
            memo, codes = self._memo_positions(spec.source, "hour", False)
            per_value = memo.ids(0 if spec.kind == "day_of_week" else 1, vocab)
        return per_value[codes] if len(codes) else np.zeros(0, np.int32)


class FieldCodes:
    """One field of one chunk: ``codes`` (int32, -1 = missing) in ``0..size-1`` index either the
    string ``tokens`` (``tokens`` not None) or, for integer fields, the integer token keys
    ``offset + 0 .. offset + size - 1``."""

    __slots__ = ("tokens", "offset", "codes", "size")

    def __init__(self, tokens: pa.Array | None, offset: int, codes: np.ndarray, size: int | None = None):
        self.tokens = tokens
        self.offset = offset
        self.codes = codes
        self.size = len(tokens) if tokens is not None else int(size or 0)

    def counts(self) -> tuple[pa.Array, np.ndarray]:
        """(tokens, counts) of the non-missing values, empty strings excluded."""
        cnt = np.bincount(self.codes + 1, minlength=self.size + 1)[1:]
        if self.tokens is None:
            nz = np.flatnonzero(cnt)
            toks = pa.array([_int_key_token(int(k) + self.offset) for k in nz], _STR)
            return toks, cnt[nz].astype(np.int64)
        toks = self.tokens
        ok = (cnt > 0) & _to_numpy(pc.fill_null(pc.greater(pc.binary_length(toks), 0), False))
        if not ok.all():
            return toks.filter(pa.array(ok)), cnt[ok].astype(np.int64)
        return toks, cnt.astype(np.int64)


class _IntLookup:
    """token key -> id for an integer numeric field (sorted keys + ids, searched with numpy)."""

    def __init__(self, tokens: Sequence[str]):
        pairs = sorted(
            (k, i + 1) for i, t in enumerate(tokens) if (k := _token_int_key(t)) is not None
        )
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


def _ids_from_index(idx: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """index_in result (null = not found) -> int32 ids with 0 for unknown."""
    arr = _to_numpy(pc.fill_null(idx, -1))
    out = arr.astype(np.int32, copy=True) if arr.dtype != np.int32 else arr.copy()
    out += 1
    return out


# ----------------------------------------------------------------------------- counting


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
            return pa.table({"k": pa.array([], _STR), "c": pa.array([], pa.int64())})
        return t

    def vocabulary(self, j: int, min_count: int) -> list[str]:
        """Tokens of field j seen at least ``min_count`` times: descending count, ties by token."""
        t = self.counts(j)
        t = t.filter(pc.greater_equal(t["c"], max(1, int(min_count))))
        t = t.sort_by([("c", "descending"), ("k", "ascending")])
        return t["k"].to_pylist()


# ----------------------------------------------------------------------------- preprocessor


class Preprocessor:
    """The per-field vocabularies plus the format they were built from.

    ``format_spec`` is ``TableFormat.to_dict()`` of the source format, or ``{"name": "ids"}`` for a
    dataset written directly as ids (no text format).
    """

    def __init__(
        self,
        fields: Sequence[FieldSpec],
        tokens: Sequence[Sequence[str]],
        *,
        format_spec: Mapping[str, Any],
        min_count: int,
        label: str | None = None,
    ):
        if len(fields) != len(tokens):
            raise Fm2OnnxError("preprocessor: one token list per field is required")
        self.fields: tuple[FieldSpec, ...] = tuple(fields)
        self._tokens: list[list[str]] = [list(t) for t in tokens]
        self.format_spec: dict = dict(format_spec)
        self.min_count: int = int(min_count)
        self.label = label
        self._arrays: list[pa.Array | None] = [None] * len(self.fields)
        self._index: list[dict[str, int] | None] = [None] * len(self.fields)
        self._int_lookup: list[_IntLookup | None] = [None] * len(self.fields)

    # -- construction ------------------------------------------------------------------

    @classmethod
    def from_counter(cls, fmt: TableFormat, counter: VocabCounter, min_count: int) -> "Preprocessor":
        tokens = [counter.vocabulary(j, min_count) for j in range(fmt.n_fields)]
        return cls(fmt.fields, tokens, format_spec=fmt.to_dict(), min_count=min_count, label=fmt.label)

    # -- properties ----------------------------------------------------------------------

    @property
    def format_name(self) -> str:
        return str(self.format_spec.get("name"))

    @property
    def format(self) -> TableFormat | None:
        """The text format (None for an "ids" dataset)."""
        if self.format_name == "ids":
            return None
        return TableFormat.from_dict(self.format_spec)

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def n_fields(self) -> int:
        return len(self.fields)

    @property
    def vocab_sizes(self) -> list[int]:
        """Rows of each field's embedding table, including the unknown row 0."""
        return [len(t) + 1 for t in self._tokens]

    def tokens(self, field: int | str) -> list[str]:
        """Tokens of a field in id order (token i has id i + 1)."""
        return list(self._tokens[self._field_index(field)])

    def lookup(self, field: int | str, token: str | None) -> int:
        """Id of one token (0 if unknown or None)."""
        j = self._field_index(field)
        if self._index[j] is None:
            self._index[j] = {t: i + 1 for i, t in enumerate(self._tokens[j])}
        return 0 if token is None else self._index[j].get(token, 0)

    def vocab_array(self, j: int) -> pa.Array:
        a = self._arrays[j]
        if a is None:
            a = pa.array(self._tokens[j], _STR)
            self._arrays[j] = a
        return a

    def _field_index(self, field: int | str) -> int:
        if isinstance(field, (int, np.integer)):
            return int(field)
        try:
            return self.field_names.index(field)
        except ValueError:
            raise Fm2OnnxError(f"no field named {field!r}") from None

    def compatible_with(self, fmt: TableFormat) -> bool:
        """True if this preprocessor's fields are exactly ``fmt``'s (same names, kinds, sources)."""
        return [f.to_dict() for f in self.fields] == [f.to_dict() for f in fmt.fields]

    # -- encoding --------------------------------------------------------------------

    def encode_view(self, view: ChunkView) -> np.ndarray:
        """int32 [rows, n_fields] ids of a :class:`ChunkView` (malformed values -> 0)."""
        n, nf = view.rows, self.n_fields
        cols = np.empty((nf, n), np.int32)
        for j, spec in enumerate(self.fields):
            ik = view.int_keys(spec.source) if spec.kind == "numeric" and spec.integer else None
            if ik is not None:
                if self._int_lookup[j] is None:
                    self._int_lookup[j] = _IntLookup(self._tokens[j])
                cols[j] = self._int_lookup[j](*ik)
            else:
                cols[j] = view.field_ids(spec, self.vocab_array(j))
        # transpose in cache-sized tiles: a column-at-a-time write into row-major memory is ~10x slower
        out = np.empty((n, nf), np.int32)
        step = 4096
        for a in range(0, n, step):
            out[a:a + step] = cols[:, a:a + step].T
        return out

    def value_ids(self, j: int, fc: "FieldCodes") -> np.ndarray:
        """int32 id of each of the ``fc.size`` values a field's :class:`FieldCodes` can index."""
        if fc.tokens is None:
            if self._int_lookup[j] is None:
                self._int_lookup[j] = _IntLookup(self._tokens[j])
            keys = np.arange(fc.size, dtype=np.int64) + fc.offset
            return self._int_lookup[j](keys, np.ones(fc.size, bool))
        if not len(fc.tokens):
            return np.zeros(0, np.int32)
        return _ids_from_index(pc.index_in(fc.tokens, value_set=self.vocab_array(j)))

    def encode_table(
        self,
        table: pa.Table | pa.RecordBatch | Mapping[str, Any],
        *,
        errors: str = "raise",
        where: str = "<table>",
        first_line: int = 1,
    ) -> np.ndarray:
        """Encode a parsed chunk of raw columns into int32 ids [rows, n_fields].

        ``table`` maps the format's source column names (e.g. ``I1``.., ``hour``) to raw values
        (strings; numbers are converted). ``errors="raise"`` raises :class:`DataError`
        ``"{where}:{first_line + row}: ..."`` on the first malformed value; ``"unknown"`` maps
        malformed values to id 0.
        """
        if errors not in ("raise", "unknown"):
            raise Fm2OnnxError(f"errors must be 'raise' or 'unknown', got {errors!r}")
        if isinstance(table, Mapping):
            table = pa.table({k: _as_string_array(v) for k, v in table.items()})
        view = ChunkView(table)
        if errors == "raise":
            first: tuple[int, str] | None = None
            for spec in self.fields:
                prob = view.field_problems(spec)
                if prob is not None:
                    row = int(np.flatnonzero(prob[0])[0])
                    if first is None or row < first[0]:
                        first = (row, prob[1](row))
            if first is not None:
                raise DataError(f"{where}:{first_line + first[0]}: {first[1]}")
        return self.encode_view(view)

    def encode_records(self, records: Iterable[Mapping[str, Any]], **kw: Any) -> np.ndarray:
        """Encode dict rows ``{source column: raw value}``; a missing key counts as empty."""
        records = list(records)
        cols: dict[str, list] = {}
        for spec in self.fields:
            if spec.source not in cols:
                cols[spec.source] = [r.get(spec.source) for r in records]
        return self.encode_table(cols, **kw)

    # -- (de)serialization ----------------------------------------------------------------

    def to_dict(self) -> dict:
        """Plain-Python form (dict/list/str/int/bool/None only), safe for ``torch.load(weights_only=True)``."""
        return {
            "kind": "fm2onnx.preprocessor",
            "version": PREPROCESSOR_VERSION,
            "format": _plain(self.format_spec),
            "label": self.label,
            "min_count": self.min_count,
            "fields": [dict(f.to_dict(), tokens=list(t)) for f, t in zip(self.fields, self._tokens)],
        }

    @classmethod
    def from_dict(cls, d: Any, where: str = "preprocessor") -> "Preprocessor":
        """Rebuild from :meth:`to_dict` output; raises a one-line :class:`Fm2OnnxError` on bad content."""

        def bad(msg: str) -> Fm2OnnxError:
            return Fm2OnnxError(f"{where}: invalid preprocessor: {msg}")

        if not isinstance(d, Mapping):
            raise bad(f"expected a dict, got {type(d).__name__}")
        if d.get("kind") != "fm2onnx.preprocessor":
            raise bad(f"kind is {d.get('kind')!r}, expected 'fm2onnx.preprocessor'")
        if d.get("version") != PREPROCESSOR_VERSION:
            raise bad(f"unsupported version {d.get('version')!r} (this fm2onnx reads {PREPROCESSOR_VERSION})")
        fmt_spec = d.get("format")
        if not isinstance(fmt_spec, Mapping) or not isinstance(fmt_spec.get("name"), str):
            raise bad("'format' must be a dict with a 'name'")
        mc = d.get("min_count")
        if not isinstance(mc, int) or isinstance(mc, bool) or mc < 1:
            raise bad(f"'min_count' must be a positive int, got {mc!r}")
        label = d.get("label")
        if label is not None and not isinstance(label, str):
            raise bad("'label' must be a string or None")
        raw_fields = d.get("fields")
        if not isinstance(raw_fields, list) or not raw_fields:
            raise bad("'fields' must be a non-empty list")
        fields: list[FieldSpec] = []
        tokens: list[list[str]] = []
        names: set[str] = set()
        for i, f in enumerate(raw_fields):
            if not isinstance(f, Mapping):
                raise bad(f"fields[{i}] is not a dict")
            name, kind, source = f.get("name"), f.get("kind"), f.get("source")
            if not isinstance(name, str) or not name:
                raise bad(f"fields[{i}].name must be a non-empty string")
            if name in names:
                raise bad(f"duplicate field name {name!r}")
            names.add(name)
            if kind not in FIELD_KINDS:
                raise bad(f"fields[{i}] ({name}): unknown kind {kind!r}")
            if not isinstance(source, str) or not source:
                raise bad(f"fields[{i}] ({name}): 'source' must be a non-empty string")
            integer = f.get("integer", False)
            if not isinstance(integer, bool):
                raise bad(f"fields[{i}] ({name}): 'integer' must be a bool")
            toks = f.get("tokens")
            if not isinstance(toks, list):
                raise bad(f"fields[{i}] ({name}): 'tokens' must be a list of strings")
            if not all(type(t) is str and t for t in toks):
                raise bad(f"fields[{i}] ({name}): every token must be a non-empty string")
            if len(set(toks)) != len(toks):
                raise bad(f"fields[{i}] ({name}): duplicate tokens")
            fields.append(FieldSpec(name, kind, source, integer))
            tokens.append(list(toks))
        pre = cls(fields, tokens, format_spec=dict(fmt_spec), min_count=mc, label=label)
        if pre.format_name != "ids":
            try:
                fmt = TableFormat.from_dict(fmt_spec)
            except Fm2OnnxError as e:
                raise bad(str(e)) from None
            if not pre.compatible_with(fmt):
                raise bad(f"fields do not match format {pre.format_name!r}")
        return pre

    def __repr__(self) -> str:
        return (
            f"Preprocessor(format={self.format_name!r}, fields={self.n_fields}, "
            f"features={sum(self.vocab_sizes)}, min_count={self.min_count})"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Preprocessor) and self.to_dict() == other.to_dict()


def _plain(x: Any) -> Any:
    """Deep copy into plain Python containers."""
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if x is None or isinstance(x, (str, int, float, bool)):
        return x
    raise Fm2OnnxError(f"cannot store {type(x).__name__} in a preprocessor")
