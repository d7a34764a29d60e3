"""Per-chunk views of raw columns: the token transforms that validation, counting and encoding share.

A :class:`ChunkView` caches, for one chunk of string columns, each column's tokens so that checking,
counting and encoding a chunk parse every value once. :class:`RawMemo` extends that across the
chunks of a pass: a distinct numeric / ``YYMMDDHH`` raw value is parsed the first time it is seen.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import Fm2OnnxError
from .arrow import STRING, as_string_array, ids_from_index, to_numpy
from .formats import FieldSpec
from .int_keys import KEY_MIN_VALUE, int_key_token, int_token_keys
from .tokens import hour_keys, numeric_keys

__all__ = ["RawMemo", "ChunkView", "FieldCodes"]

_DENSE_INT_SPAN = 1 << 22  # an integer field whose keys span more than this is coded per distinct value


class RawMemo:
    """Distinct raw values of one numeric / YYMMDDHH source column seen so far, with their tokens.

    Rows are mapped to positions in ``values`` with one hash lookup (``pyarrow.compute.index_in``).
    Only a cache: it resets itself past ``limit`` distinct values.
    """

    def __init__(self, kind: str, integer: bool = False, limit: int = 1 << 21):
        self.kind = kind  # "numeric" or "hour"
        self.integer = integer
        self.limit = limit
        self._reset()

    def _reset(self) -> None:
        self.values: pa.Array = pa.array([], STRING)
        self.keys: list[pa.Array] = []  # numeric: [tokens]; hour: [day_of_week tokens, hour tokens]
        self.bad = np.zeros(0, bool)
        self._ids: dict[tuple[int, int], tuple[pa.Array, np.ndarray]] = {}

    def _tokenize(self, new: pa.Array) -> tuple[list[pa.Array], np.ndarray]:
        if self.kind == "numeric":
            keys, bad, _ = numeric_keys(new, self.integer)
            return [keys], bad
        dows, hours, bad = hour_keys(new)
        return [dows, hours], bad

    def positions(self, col: pa.ChunkedArray) -> np.ndarray:
        """int32 position in ``values`` of every row (``values`` grows by the unseen ones)."""
        if len(col) == 0:
            return np.zeros(0, np.int32)
        pos = pc.index_in(col, value_set=self.values) if len(self.values) else None
        if pos is None or pos.null_count:
            self._add(_distinct(col if pos is None else col.filter(pc.is_null(pos))), col)
            pos = pc.index_in(col, value_set=self.values)
        return to_numpy(pos).astype(np.int32, copy=False)

    def _add(self, new: pa.Array, col: pa.ChunkedArray) -> None:
        """Tokenize the unseen values ``new`` of ``col`` and append them (restarting when full)."""
        if len(self.values) + len(new) > self.limit:
            self._reset()
            new = _distinct(col)
        keys, bad = self._tokenize(new)
        if len(self.values):
            self.values = pa.concat_arrays([self.values, new])
            self.keys = [pa.concat_arrays([a, b]) for a, b in zip(self.keys, keys)]
            self.bad = np.concatenate([self.bad, bad])
        else:
            self.values, self.keys, self.bad = new, keys, bad
        self._ids.clear()

    def ids(self, which: int, vocab: pa.Array) -> np.ndarray:
        """int32 id of every known raw value under ``vocab`` (0 = unknown/missing/malformed)."""
        key = (which, id(vocab))
        hit = self._ids.get(key)
        if hit is None or hit[0] is not vocab:
            hit = (vocab, ids_from_index(pc.index_in(self.keys[which], value_set=vocab)))
            self._ids[key] = hit
        return hit[1]


def _distinct(col: pa.ChunkedArray) -> pa.Array:
    new = pc.unique(col)
    return new.combine_chunks() if isinstance(new, pa.ChunkedArray) else new


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
            col = as_string_array(self.table.column(name))
            if isinstance(col, pa.Array):
                col = pa.chunked_array([col], STRING)
            self._cols[name] = col
        return col

    def memo_positions(self, name: str, kind: str, integer: bool) -> tuple[RawMemo, np.ndarray]:
        """The pass's memo of a source column and each row's position in it."""
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
        if name not in self._ik:
            self._ik[name] = self._parse_int_keys(self.column(name))
        return self._ik[name]

    @staticmethod
    def _parse_int_keys(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray] | None:
        try:
            x = pc.cast(col, pa.int64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
        xi = to_numpy(pc.fill_null(x, 0)).astype(np.int64, copy=False)
        valid = ~to_numpy(pc.is_null(x)) if x.null_count else np.ones(len(xi), bool)
        if len(xi) and xi.min() < KEY_MIN_VALUE:
            return None
        return int_token_keys(xi), valid

    def numeric(self, name: str, integer: bool) -> tuple[pa.Array, np.ndarray, np.ndarray, pa.Array]:
        """(tokens per distinct value, bad mask per distinct value, codes per row, distinct values)."""
        memo, codes = self.memo_positions(name, "numeric", integer)
        return memo.keys[0], memo.bad, codes, memo.values

    def hour(self, name: str) -> tuple[pa.Array, pa.Array, np.ndarray, np.ndarray, pa.Array]:
        """(day-of-week tokens, hour tokens, bad mask: per distinct value; codes per row; distinct values)."""
        memo, codes = self.memo_positions(name, "hour", False)
        return memo.keys[0], memo.keys[1], memo.bad, codes, memo.values

    # -- per field -----------------------------------------------------------------

    def field_codes(self, spec: FieldSpec, keep: np.ndarray | None) -> "FieldCodes":
        """Compact per-chunk encoding of this field over the kept rows, to count now and map later."""
        if spec.kind == "numeric" and spec.integer:
            codes = self._int_field_codes(spec, keep)
            if codes is not None:
                return codes
        if spec.kind == "categorical":
            return self._categorical_codes(spec, keep)
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
            used &= to_numpy(pc.is_valid(keys))
        nz = np.flatnonzero(used)
        remap = np.full(len(keys) + 1, -1, np.int32)
        remap[nz] = np.arange(len(nz), dtype=np.int32)
        return FieldCodes(keys.take(pa.array(nz)), 0, remap[pos])

    def _int_field_codes(self, spec: FieldSpec, keep: np.ndarray | None) -> "FieldCodes | None":
        """Integer keys offset to start at 0, or None (no fast path, or too wide a spread of keys)."""
        ik = self.int_keys(spec.source)
        if ik is None:
            return None
        k, valid = ik
        if keep is not None:
            k, valid = k[keep], valid[keep]
        # missing values hold the key of 0 (-3); including it in the range costs one slot
        lo, hi = (int(k.min()), int(k.max())) if len(k) else (0, 0)
        if hi - lo >= _DENSE_INT_SPAN:
            return None
        codes = (k - lo).astype(np.int32)
        codes[~valid] = -1
        return FieldCodes(None, lo, codes, hi - lo + 1)

    def _categorical_codes(self, spec: FieldSpec, keep: np.ndarray | None) -> "FieldCodes":
        col = self.column(spec.source)
        if len(col) == 0:
            return FieldCodes(pa.array([], STRING), 0, np.zeros(0, np.int32))
        enc = pc.dictionary_encode(col)
        values = enc.chunk(enc.num_chunks - 1).dictionary
        idx = pa.chunked_array([c.indices for c in enc.chunks], pa.int32())
        codes = to_numpy(pc.fill_null(idx, -1) if idx.null_count else idx).astype(np.int32, copy=False)
        if keep is not None:
            codes = codes[keep]
        return FieldCodes(values, 0, codes)

    def field_ids(self, spec: FieldSpec, vocab: pa.Array) -> np.ndarray:
        """int32 id of every row of this field (0 = unknown/missing/malformed)."""
        if spec.kind == "categorical":
            return ids_from_index(pc.index_in(self.column(spec.source), value_set=vocab))
        if spec.kind == "numeric":
            memo, codes = self.memo_positions(spec.source, "numeric", spec.integer)
            per_value = memo.ids(0, vocab)
        else:
            memo, codes = self.memo_positions(spec.source, "hour", False)
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
            toks = pa.array([int_key_token(int(k) + self.offset) for k in nz], STRING)
            return toks, cnt[nz].astype(np.int64)
        toks = self.tokens
        ok = (cnt > 0) & to_numpy(pc.fill_null(pc.greater(pc.binary_length(toks), 0), False))
        if not ok.all():
            return toks.filter(pa.array(ok)), cnt[ok].astype(np.int64)
        return toks, cnt.astype(np.int64)
