"""Input table formats: which column is the label, which columns become which fields.

A :class:`TableFormat` describes a delimited text file (no reading happens here):

* ``criteo`` -- Criteo Display Advertising Challenge ``train.txt``: tab-separated, no header,
  ``label, I1..I13 (integer), C1..C26 (categorical)`` -> 39 fields in that order.
* ``avazu`` -- Avazu CTR ``train``: comma-separated with a header; ``id`` is dropped, ``click`` is the
  label, ``hour`` (``YYMMDDHH``) becomes the two fields ``day_of_week`` (0 = Monday .. 6 = Sunday) and
  ``hour_of_day`` (0..23) at its position, the other 21 columns are categorical -> 23 fields.
* ``csv`` / ``tsv`` -- a generic file described by a JSON schema::

      {"label": "clicked", "categorical": ["site", "ad"], "numeric": ["price"],
       "delimiter": ",", "header": true}

  Fields are the ``numeric`` columns followed by the ``categorical`` ones, in schema order.
  Without a header, columns are referenced by 0-based index strings (``"0"``, ``"3"``) and those
  strings are the field names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from ..errors import Fm2OnnxError
from ..field_names import check_field_name
from ..files import read_json

__all__ = [
    "FIELD_KINDS",
    "FieldSpec",
    "TableFormat",
    "get_format",
    "FORMAT_NAMES",
    "CRITEO_COLUMNS",
    "AVAZU_COLUMNS",
]

FIELD_KINDS = ("numeric", "categorical", "day_of_week", "hour_of_day")
FORMAT_NAMES = ("criteo", "avazu", "csv", "tsv")

CRITEO_NUMERIC = tuple(f"I{i}" for i in range(1, 14))
CRITEO_CATEGORICAL = tuple(f"C{i}" for i in range(1, 27))
CRITEO_COLUMNS = ("label",) + CRITEO_NUMERIC + CRITEO_CATEGORICAL

AVAZU_COLUMNS = (
    "id", "click", "hour", "C1", "banner_pos", "site_id", "site_domain", "site_category",
    "app_id", "app_domain", "app_category", "device_id", "device_ip", "device_model",
    "device_type", "device_conn_type", "C14", "C15", "C16", "C17", "C18", "C19", "C20", "C21",
)
AVAZU_CATEGORICAL = AVAZU_COLUMNS[3:]

DEFAULT_MIN_COUNT = {"criteo": 8, "avazu": 5, "csv": 1, "tsv": 1}

_SCHEMA_KEYS = {"label", "categorical", "numeric", "delimiter", "header"}


@dataclass(frozen=True)
class FieldSpec:
    """One model field: its name, how raw values become tokens, and the source column it reads."""

    name: str
    kind: str  # one of FIELD_KINDS
    source: str  # source column name
    integer: bool = False  # numeric fields only: values must be integers (Criteo I1..I13)

    def to_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "source": self.source, "integer": self.integer}


class NamedFields:
    """Something with a ``fields`` list of named fields, in column order."""

    fields: Sequence

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def n_fields(self) -> int:
        return len(self.fields)


@dataclass(frozen=True)
class TableFormat(NamedFields):
    """How to read one delimited text format into (label, fields)."""

    name: str
    fields: tuple[FieldSpec, ...]
    label: str
    delimiter: str
    header: bool
    #: names given to the file's columns when it has no header (None: count them from the first line
    #: and name them "0", "1", ...); ignored when ``header`` is true.
    column_names: tuple[str, ...] | None = None
    #: whether '"' quotes values (csv-like formats); off for Criteo, whose values are never quoted
    quoting: bool = False
    schema: Mapping[str, Any] | None = None  # the normalized generic schema (csv/tsv only)

    @property
    def default_min_count(self) -> int:
        return DEFAULT_MIN_COUNT.get(self.name, 1)

    @property
    def source_columns(self) -> list[str]:
        """Columns the reader must convert: the label, then each field's source (no duplicates)."""
        out = [self.label]
        for f in self.fields:
            if f.source not in out:
                out.append(f.source)
        return out

    def to_dict(self) -> dict:
        """Plain-Python description, enough for :meth:`from_dict` to rebuild the format."""
        if self.name in ("criteo", "avazu"):
            return {"name": self.name}
        return {"name": self.name, "schema": dict(self.schema or {})}

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> "TableFormat":
        if not isinstance(d, Mapping) or not isinstance(d.get("name"), str):
            raise Fm2OnnxError(f"bad format description: {d!r:.200}")
        if d["name"] in ("criteo", "avazu"):
            return get_format(d["name"])
        return get_format(d["name"], dict(d.get("schema") or {}))


def _criteo() -> TableFormat:
    fields = tuple(FieldSpec(c, "numeric", c, integer=True) for c in CRITEO_NUMERIC) + tuple(
        FieldSpec(c, "categorical", c) for c in CRITEO_CATEGORICAL
    )
    return TableFormat("criteo", fields, "label", "\t", False, CRITEO_COLUMNS, quoting=False)


def _avazu() -> TableFormat:
    fields: list[FieldSpec] = []
    for c in AVAZU_COLUMNS[2:]:
        if c == "hour":
            fields.append(FieldSpec("day_of_week", "day_of_week", "hour"))
            fields.append(FieldSpec("hour_of_day", "hour_of_day", "hour"))
        else:
            fields.append(FieldSpec(c, "categorical", c))
    return TableFormat("avazu", tuple(fields), "click", ",", True, None, quoting=True)


def _load_schema(schema: str | os.PathLike | Mapping[str, Any]) -> dict:
    if isinstance(schema, Mapping):
        return dict(schema)
    path = os.fspath(schema)
    d = read_json(path)
    if not isinstance(d, dict):
        raise Fm2OnnxError(f"{path}: schema must be a JSON object")
    return d


def _generic(name: str, schema: str | os.PathLike | Mapping[str, Any] | None) -> TableFormat:
    if schema is None:
        raise Fm2OnnxError(f"format {name!r} needs a schema file (JSON with label/categorical/numeric)")
    where = schema if isinstance(schema, (str, os.PathLike)) else "schema"
    d = _load_schema(schema)
    unknown = set(d) - _SCHEMA_KEYS
    if unknown:
        raise Fm2OnnxError(f"{where}: unknown schema key(s) {sorted(unknown)}; allowed: {sorted(_SCHEMA_KEYS)}")
    label = d.get("label")
    if not isinstance(label, str) or not label:
        raise Fm2OnnxError(f"{where}: schema needs \"label\": a column name (or 0-based index string)")
    lists = {}
    for key in ("numeric", "categorical"):
        v = d.get(key, [])
        if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
            raise Fm2OnnxError(f"{where}: schema \"{key}\" must be a list of column names")
        lists[key] = v
    cols = lists["numeric"] + lists["categorical"]
    if not cols:
        raise Fm2OnnxError(f"{where}: schema lists no numeric or categorical columns")
    seen = set()
    for c in cols:
        check_field_name(c, str(where))  # each column is a field of the model trained on it
        if c in seen:
            raise Fm2OnnxError(f"{where}: column {c!r} listed twice in the schema")
        seen.add(c)
    if label in seen:
        raise Fm2OnnxError(f"{where}: label column {label!r} is also listed as a feature column")
    delimiter = d.get("delimiter", "\t" if name == "tsv" else ",")
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in "\r\n\"":
        raise Fm2OnnxError(f"{where}: schema \"delimiter\" must be one character, got {delimiter!r}")
    header = d.get("header", True)
    if not isinstance(header, bool):
        raise Fm2OnnxError(f"{where}: schema \"header\" must be true or false")
    if not header:
        for c in [label] + cols:
            if not c.isdigit():
                raise Fm2OnnxError(
                    f"{where}: without a header, columns are 0-based index strings like \"3\", got {c!r}"
                )
    fields = tuple(FieldSpec(c, "numeric", c) for c in lists["numeric"]) + tuple(
        FieldSpec(c, "categorical", c) for c in lists["categorical"]
    )
    norm = {
        "label": label,
        "numeric": list(lists["numeric"]),
        "categorical": list(lists["categorical"]),
        "delimiter": delimiter,
        "header": header,
    }
    return TableFormat(name, fields, label, delimiter, header, None, quoting=True, schema=norm)


def get_format(name: str, schema: str | os.PathLike | Mapping[str, Any] | None = None) -> TableFormat:
    """The :class:`TableFormat` called ``name`` ("criteo", "avazu", "csv", "tsv").

    ``schema`` (a JSON file path, or an already-parsed dict) is required for "csv"/"tsv" and
    refused for the fixed formats.
    """
    if not isinstance(name, str):
        raise Fm2OnnxError(f"format name must be a string, got {name!r}")
    key = name.lower()
    if key in ("criteo", "avazu"):
        if schema is not None:
            raise Fm2OnnxError(f"format {key!r} has a fixed layout and takes no schema")
        return _criteo() if key == "criteo" else _avazu()
    if key in ("csv", "tsv"):
        return _generic(key, schema)
    raise Fm2OnnxError(f"unknown data format {name!r}; known: {', '.join(FORMAT_NAMES)}")
