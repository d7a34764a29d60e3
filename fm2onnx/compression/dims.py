"""Per-field dims for a variance threshold (the paper's Table 3), and the dims CSV that `train --dims` reads."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models import FMFamilyModel

from ..data.staging import staged_file
from ..errors import Fm2OnnxError
from .cost import DimsCost, cached_flops
from .pca import FieldPCA, check_threshold, fit_field_pca

WEIGHTINGS = ("uniform", "frequency")
CSV_COLUMNS = ("field", "dim", "features", "explained_variance", "threshold", "weighting")


@dataclass(frozen=True)
class FieldDim:
    field: str
    dim: int
    features: int  # known features, i.e. vocabulary size without the unknown row
    explained: float  # variance fraction the kept components hold
    original: int  # the trained model's dim for this field


@dataclass(frozen=True)
class DimsSelection(DimsCost):
    threshold: float
    weighting: str
    fields: tuple[FieldDim, ...]
    pcas: tuple[FieldPCA, ...]

    @property
    def dims(self) -> list[int]:
        return [f.dim for f in self.fields]

    @property
    def original_flops(self) -> int:
        return cached_flops([f.original for f in self.fields])


def require_field_matrices(spec, source: str = "model") -> None:
    """Only models whose interaction is <v_a M_ab, v_b> can change dims; say why the others cannot."""
    if spec.kind == "lr":
        raise Fm2OnnxError(f"{source}: LR has no embeddings, so there are no dims to reduce")
    if spec.kind == "ffm":
        raise Fm2OnnxError(f"{source}: FFM keeps n-1 field-aware vectors per feature and no field matrices "
                           "to fold a projection into; use FM, FwFM, FvFM or FmFM")


def embedding_tables(model: FMFamilyModel) -> list[np.ndarray]:
    return [t.weight.detach().double().numpy() for t in model.embeddings.tables]


def fit_pcas(model: FMFamilyModel, counts: list[np.ndarray] | None = None) -> list[FieldPCA]:
    require_field_matrices(model.spec)
    tables = embedding_tables(model)
    return [fit_field_pca(t, None if counts is None else counts[a]) for a, t in enumerate(tables)]


def select_dims(model: FMFamilyModel, threshold: float, counts: list[np.ndarray] | None = None,
                pcas: list[FieldPCA] | None = None) -> DimsSelection:
    """``counts``: per field, how often each id occurs (frequency weighting), or None for uniform."""
    check_threshold(threshold)
    spec = model.spec
    pcas = pcas if pcas is not None else fit_pcas(model, counts)
    fields = []
    for a, pca in enumerate(pcas):
        dim = pca.dim_for_variance(threshold)
        fields.append(FieldDim(spec.field_names[a], dim, spec.vocab_sizes[a] - 1,
                               float(pca.explained_ratio[dim - 1]), spec.dims[a]))
    return DimsSelection(threshold, "uniform" if counts is None else "frequency", tuple(fields), tuple(pcas))


def feature_counts(ids: np.ndarray, vocab_sizes, rows: np.ndarray | None = None,
                   block_rows: int = 1 << 20) -> list[np.ndarray]:
    """Per field, occurrences of each id over ``rows`` (all rows if None); out-of-range ids count as unknown."""
    counts = [np.zeros(v, dtype=np.int64) for v in vocab_sizes]
    total = len(ids) if rows is None else len(rows)
    for start in range(0, total, block_rows):
        block = ids[start:start + block_rows] if rows is None else ids[np.sort(rows[start:start + block_rows])]
        block = np.asarray(block, dtype=np.int64)
        for a, v in enumerate(vocab_sizes):
            column = block[:, a]
            column = np.where((column >= 0) & (column < v), column, 0)
            counts[a] += np.bincount(column, minlength=v)
    return counts


def write_dims_csv(selection: DimsSelection, path: str | Path, *, force: bool = False) -> Path:
    """``field,dim,...`` — readable by ``fm2onnx.dims_file.read_dims`` (so by ``train --dims``)."""
    path = Path(path)
    # staged: a full disk or an interrupt never leaves a half-written CSV under the real name
    with staged_file(path, force=force) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for row in selection.fields:
            writer.writerow([row.field, row.dim, row.features, f"{row.explained:.4f}", selection.threshold,
                             selection.weighting])
    return path
