"""Per-field embedding dims from a CSV (``field,dim``), e.g. the paper's Table 3 or ``fm2onnx dims`` output."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from .errors import Fm2OnnxError
from .files import read_text, require_file

DIM_COLUMNS = ("dim", "emb_dim")


def read_dims(path: str | Path, field_names: list[str]) -> list[int]:
    """Fields are named, or numbered from 1 in the model's field order; every field needs a dim."""
    path = Path(path)
    require_file(path, "dims")
    with io.StringIO(read_text(path), newline="") as f:
        reader = csv.DictReader(f)
        column = next((c for c in DIM_COLUMNS if c in (reader.fieldnames or [])), None)
        if "field" not in (reader.fieldnames or []) or column is None:
            raise Fm2OnnxError(f"{path}:1: expected a header with 'field' and 'dim' columns")
        dims: dict[int, int] = {}
        first_lines: dict[int, int] = {}
        for row in reader:
            line = reader.line_num  # the row's own line, blank lines skipped by the reader counted
            where = f"{path}:{line}"
            check_width(row, reader.fieldnames, where)
            index = field_index((row["field"] or "").strip(), field_names, where)
            if index in first_lines:
                raise Fm2OnnxError(f"{where}: field {field_names[index]!r} listed twice "
                                   f"(first on line {first_lines[index]})")
            first_lines[index] = line
            dims[index] = parse_dim(row[column], where)
    missing = [field_names[i] for i in range(len(field_names)) if i not in dims]
    if missing:
        raise Fm2OnnxError(f"{path}: no dim for field(s) {', '.join(missing[:5])}")
    return [dims[i] for i in range(len(field_names))]


def check_width(row: dict, header: list[str], where: str) -> None:
    """Every row has one value per header column: an extra one would otherwise be dropped unseen."""
    values = len([v for k, v in row.items() if k is not None and v is not None]) + len(row.get(None) or [])
    if values != len(header):
        raise Fm2OnnxError(f"{where}: expected {','.join(header)!r}, got {values} value{'s' if values != 1 else ''}")


def field_index(key: str, field_names: list[str], where: str) -> int:
    """A field by name, or by its number from 1 in the model's field order."""
    if key in field_names:
        return field_names.index(key)
    if key.isdigit() and 1 <= int(key) <= len(field_names):
        return int(key) - 1
    raise Fm2OnnxError(f"{where}: unknown field {key!r}")


def parse_dim(text: str, where: str) -> int:
    try:
        dim = int(text)
    except (TypeError, ValueError):
        raise Fm2OnnxError(f"{where}: dim {text!r} is not an integer") from None
    if dim < 1:
        raise Fm2OnnxError(f"{where}: dim {dim} < 1")
    return dim
