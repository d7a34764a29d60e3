"""The float64 folds every cached form is made of, in one place.

An FmFM-like model is, for serving, its per-field embedding tables, the field matrix between every
two fields, a linear value per feature and a bias (``FieldWeights``). The cached forms multiply
these out ahead of time: v·M per feature (Section 4.2), the linear term folded into one value per
feature (Eq. 12), and then store the products in a table dtype (``encode``). Everything is summed
in float64 and rounded once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fm2onnx.errors import Fm2OnnxError
from models import FMFamilyModel, ModelSpec

TABLE_DTYPES = ("float32", "float16", "int8")
BYTES_PER_VALUE = {"float32": 4, "float16": 2, "int8": 1}


def check_table_dtype(dtype: str) -> str:
    if dtype not in TABLE_DTYPES:
        raise Fm2OnnxError(f"unknown table dtype {dtype!r}; expected one of {', '.join(TABLE_DTYPES)}")
    return dtype


def project(table: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """v·M for every row v of ``table``: float64 [V, columns of M] (full field matrices, FmFM)."""
    return np.asarray(table, np.float64) @ np.asarray(matrix, np.float64)


def project_diagonal(table: np.ndarray, diagonals: np.ndarray) -> np.ndarray:
    """v ⊙ d for every row v and every diagonal d [c, K]: float64 [V, c·K] (FvFM)."""
    t, d = np.asarray(table, np.float64), np.asarray(diagonals, np.float64)
    return (t[:, None, :] * d[None]).reshape(len(t), -1)


def project_scalar(table: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """v·r for every row v and every pair weight r [c]: float64 [V, c·K] (FwFM)."""
    t, r = np.asarray(table, np.float64), np.asarray(weights, np.float64)
    return (t[:, None, :] * r[None, :, None]).reshape(len(t), -1)


@dataclass(frozen=True)
class FieldWeights:
    """What serving an FmFM model needs, as float64 arrays indexed by original field.

    ``matrices[(a, b)]`` for a < b is M_ab, so that a pair contributes <v_a M_ab, v_b>;
    ``linear[f]`` is per feature (Eq. 2) or a [d_f] field vector (Eq. 12), as ``spec.linear`` says."""

    spec: ModelSpec
    tables: tuple[np.ndarray, ...]  # [V_f, d_f]
    matrices: dict[tuple[int, int], np.ndarray]  # (a, b), a < b -> [d_a, d_b]
    linear: tuple[np.ndarray, ...]  # [V_f] or [d_f]
    bias: float

    def pair_matrix(self, fa: int, fb: int) -> np.ndarray:
        """M with field ``fa`` on the projected (left) side: M_ab, or M_ba transposed (Eq. 10)."""
        return self.matrices[(fa, fb)] if fa < fb else self.matrices[(fb, fa)].T

    def linear_values(self, f: int) -> np.ndarray:
        """Field f's linear term per feature, [V_f]: the weight (Eq. 2) or <v, w_f> folded (Eq. 12)."""
        if self.spec.linear == "feature":
            return self.linear[f]
        return self.tables[f] @ self.linear[f]

    @classmethod
    def of_model(cls, model: FMFamilyModel) -> "FieldWeights":
        """The weights of a torch FmFM-kind model (tests and benchmarks build graphs from one)."""
        spec = model.spec
        if model.embeddings is None or spec.kind == "ffm":
            raise Fm2OnnxError(f"{spec.kind} models have no field matrices")
        fm = model.interaction.field_matrices
        as64 = lambda t: t.detach().double().numpy()  # noqa: E731
        tables = tuple(as64(t.weight) for t in model.embeddings.tables)
        matrices = {(a, b): as64(fm.pair_matrix(a, b)) for a, b in spec.field_pairs}
        if spec.linear == "feature":
            linear = tuple(as64(w.weight)[:, 0] for w in model.linear.weights)
        else:
            vectors = as64(model.linear.field_vectors)
            linear = tuple(vectors[o:o + d] for o, d in zip(spec.offsets, spec.dims))
        return cls(spec, tables, matrices, linear, float(model.bias.detach()[0]))


def encode(values: np.ndarray, own: np.ndarray, dtype: str) -> tuple[np.ndarray, np.ndarray | None]:
    """float64 table rows -> (rows in ``dtype``, int8's per-row scales [V, 2] or None).

    int8: the cached vectors and the linear term share a scale (they are summed together into one
    dot product); the own vector, marked by the boolean column mask ``own``, has its own."""
    if dtype == "float32":
        return values.astype(np.float32), None
    if dtype == "float16":
        if np.abs(values).max(initial=0) > np.finfo(np.float16).max:
            raise Fm2OnnxError("a table value exceeds the float16 range; use --table-dtype float32 or int8")
        return values.astype(np.float16), None
    check_table_dtype(dtype)
    scale_dot = np.maximum(np.abs(values[:, ~own]).max(axis=1, initial=0), 1e-30) / 127
    scale_own = np.maximum(np.abs(values[:, own]).max(axis=1, initial=0), 1e-30) / 127
    scaled = values / np.where(own, scale_own[:, None], scale_dot[:, None])
    scales = np.stack([scale_dot, scale_own], axis=1).astype(np.float32)
    return np.clip(np.rint(scaled), -127, 127).astype(np.int8), scales


@dataclass(frozen=True)
class FFMWeights:
    """What serving an FFM model needs (Eq. 5): per field its table of n-1 vectors per feature, the
    vectors for the other fields in increasing order, [V_f, (n-1)·K]; a linear weight per feature."""

    spec: ModelSpec
    tables: tuple[np.ndarray, ...]  # [V_f, (n-1)·K]
    linear: tuple[np.ndarray, ...]  # [V_f]
    bias: float

    def slot(self, f: int, g: int) -> int:
        """Which of field f's n-1 vectors meets field g."""
        return g if g < f else g - 1
