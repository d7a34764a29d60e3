"""The preprocessor: per-field vocabularies plus the format they were built from.

It turns raw rows into the int32 ids a model reads (id 0 = unknown, see :mod:`.counting` for the id
order) and round-trips through a plain-Python dict, stored in checkpoints and encoded datasets.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import DataError, Fm2OnnxError
from .arrow import STRING, as_string_array, ids_from_index
from .chunk_view import ChunkView, FieldCodes
from .counting import VocabCounter
from .formats import FIELD_KINDS, FieldSpec, NamedFields, TableFormat
from .int_keys import IntLookup
from .validation import field_problems

__all__ = ["Preprocessor", "PREPROCESSOR_VERSION"]

PREPROCESSOR_VERSION = 1
_KIND = "fm2onnx.preprocessor"
_TRANSPOSE_TILE = 4096  # rows per tile: a column-at-a-time write into row-major memory is ~10x slower


class Preprocessor(NamedFields):
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
        self._int_lookup: list[IntLookup | None] = [None] * len(self.fields)

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
            a = pa.array(self._tokens[j], STRING)
            self._arrays[j] = a
        return a

    def _field_index(self, field: int | str) -> int:
        if isinstance(field, (int, np.integer)):
            return int(field)
        try:
            return self.field_names.index(field)
        except ValueError:
            raise Fm2OnnxError(f"no field named {field!r}") from None

    def _int_lookup_of(self, j: int) -> IntLookup:
        if self._int_lookup[j] is None:
            self._int_lookup[j] = IntLookup(self._tokens[j])
        return self._int_lookup[j]

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
                cols[j] = self._int_lookup_of(j)(*ik)
            else:
                cols[j] = view.field_ids(spec, self.vocab_array(j))
        out = np.empty((n, nf), np.int32)
        transpose_into(out, cols)
        return out

    def value_ids(self, j: int, fc: FieldCodes) -> np.ndarray:
        """int32 id of each of the ``fc.size`` values a field's :class:`FieldCodes` can index."""
        if fc.tokens is None:
            keys = np.arange(fc.size, dtype=np.int64) + fc.offset
            return self._int_lookup_of(j)(keys, np.ones(fc.size, bool))
        if not len(fc.tokens):
            return np.zeros(0, np.int32)
        return ids_from_index(pc.index_in(fc.tokens, value_set=self.vocab_array(j)))

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
            table = pa.table({k: as_string_array(v) for k, v in table.items()})
        view = ChunkView(table)
        if errors == "raise":
            self._raise_first_problem(view, where, first_line)
        return self.encode_view(view)

    def _raise_first_problem(self, view: ChunkView, where: str, first_line: int) -> None:
        first: tuple[int, str] | None = None
        for spec in self.fields:
            problem = field_problems(view, spec)
            if problem is not None:
                row = int(np.flatnonzero(problem[0])[0])
                if first is None or row < first[0]:
                    first = (row, problem[1](row))
        if first is not None:
            raise DataError(f"{where}:{first_line + first[0]}: {first[1]}")

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
            "kind": _KIND,
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

        _check_header(d, bad)
        fields, tokens = _fields_from_dicts(d.get("fields"), bad)
        pre = cls(fields, tokens, format_spec=dict(d["format"]), min_count=d["min_count"], label=d.get("label"))
        if pre.format_name != "ids":
            try:
                fmt = TableFormat.from_dict(d["format"])
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


def transpose_into(dst: np.ndarray, src: np.ndarray) -> None:
    """``dst[n, f] = src[f, n]`` in cache-sized tiles."""
    for a in range(0, src.shape[1], _TRANSPOSE_TILE):
        dst[a:a + _TRANSPOSE_TILE] = src[:, a:a + _TRANSPOSE_TILE].T


# ----------------------------------------------------------------------------- dict form

_Complaint = Callable[[str], Fm2OnnxError]  # message -> the error naming the file being read


def _check_header(d: Any, bad: _Complaint) -> None:
    """Everything of a preprocessor dict except its fields."""
    if not isinstance(d, Mapping):
        raise bad(f"expected a dict, got {type(d).__name__}")
    if d.get("kind") != _KIND:
        raise bad(f"kind is {d.get('kind')!r}, expected {_KIND!r}")
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


def _fields_from_dicts(raw_fields: Any, bad: _Complaint) -> tuple[list[FieldSpec], list[list[str]]]:
    if not isinstance(raw_fields, list) or not raw_fields:
        raise bad("'fields' must be a non-empty list")
    fields: list[FieldSpec] = []
    tokens: list[list[str]] = []
    names: set[str] = set()
    for i, f in enumerate(raw_fields):
        spec, toks = _field_from_dict(i, f, bad, names)
        fields.append(spec)
        tokens.append(toks)
    return fields, tokens


def _field_from_dict(i: int, f: Any, bad: _Complaint, names: set[str]) -> tuple[FieldSpec, list[str]]:
    """One field and its tokens; ``names`` (the names seen so far) catches duplicates."""
    if not isinstance(f, Mapping):
        raise bad(f"fields[{i}] is not a dict")
    name, kind, source = f.get("name"), f.get("kind"), f.get("source")
    if not isinstance(name, str) or not name:
        raise bad(f"fields[{i}].name must be a non-empty string")
    if name in names:
        raise bad(f"duplicate field name {name!r}")
    names.add(name)
    where = f"fields[{i}] ({name})"
    if kind not in FIELD_KINDS:
        raise bad(f"{where}: unknown kind {kind!r}")
    if not isinstance(source, str) or not source:
        raise bad(f"{where}: 'source' must be a non-empty string")
    integer = f.get("integer", False)
    if not isinstance(integer, bool):
        raise bad(f"{where}: 'integer' must be a bool")
    toks = f.get("tokens")
    if not isinstance(toks, list):
        raise bad(f"{where}: 'tokens' must be a list of strings")
    if not all(type(t) is str and t for t in toks):
        raise bad(f"{where}: every token must be a non-empty string")
    if len(set(toks)) != len(toks):
        raise bad(f"{where}: duplicate tokens")
    return FieldSpec(name, kind, source, integer), list(toks)


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
