"""Per-field embedding dims from a CSV (``field,dim``), e.g. the paper's Table 3 or ``fm2onnx dims`` output."""

from __future__ import annotations

import csv
from pathlib import Path

from .errors import Fm2OnnxError

DIM_COLUMNS = ("dim", "emb_dim")


def read_dims(path: str | Path, field_names: list[str]) -> list[int]:
    """Fields are named, or numbered from 1 in the model's field order; every field needs a dim."""
    path = Path(path)
    if not path.is_file():
        raise Fm2OnnxError(f"{path}: no such dims file")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        column = next((c for c in DIM_COLUMNS if c in (reader.fieldnames or [])), None)
        if "field" not in (reader.fieldnames or []) or column is None:
            raise Fm2OnnxError(f"{path}:1: expected a header with 'field' and 'dim' columns")
        dims: dict[int, int] = {}
        for line, row in enumerate(reader, start=2):
            key = (row["field"] or "").strip()
            if key in field_names:
                index = field_names.index(key)
            elif key.isdigit() and 1 <= int(key) <= len(field_names):
                index = int(key) - 1
            else:
                raise Fm2OnnxError(f"{path}:{line}: unknown field {key!r}")
            try:
                dim = int(row[column])
            except (TypeError, ValueError):
                raise Fm2OnnxError(f"{path}:{line}: dim {row[column]!r} is not an integer") from None
            if dim < 1:
                raise Fm2OnnxError(f"{path}:{line}: dim {dim} < 1")
            dims[index] = dim
    missing = [field_names[i] for i in range(len(field_names)) if i not in dims]
    if missing:
        raise Fm2OnnxError(f"{path}: no dim for field(s) {', '.join(missing[:5])}")
    return [dims[i] for i in range(len(field_names))]
