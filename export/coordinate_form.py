"""Pairs of diagonal field matrices, one coordinate at a time.

FwFM's and FvFM's field matrices are diagonal (r·I, diag(d), Table 1), so coordinate k of v_a meets
only coordinate k of v_b. Rows X [B, n fields · width] turned to [width, B, n] meet one [n, n] matrix
per coordinate in one batched MatMul: width·n² multiply-adds per row, where the GEMM form's dense
width×width blocks would do (n·width)².
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from .graph_writer import GraphWriter

DIAGONAL_KINDS = ("fwfm", "fvfm")


def coordinate_matrices(matrix: np.ndarray, n: int, width: int) -> np.ndarray:
    """A GEMM form's W over n fields' rows of ``width`` values as one [n, n] matrix per coordinate,
    [width, n, n]; only for a W whose (a, b) blocks are diagonal."""
    blocks = matrix.reshape(n, width, n, width)
    same_coordinate = np.broadcast_to(np.eye(width, dtype=bool)[None, :, None, :], blocks.shape)
    if np.any(blocks[~same_coordinate]):
        raise ValueError("W mixes coordinates: its field matrices are not diagonal")
    return np.einsum("akbk->kab", blocks)


def coordinate_terms(w: GraphWriter, store: GraphWriter, x: ir.Value, matrix: np.ndarray, shift: ir.Value, n: int,
                     width: int) -> ir.Value:
    """Σ X ⊙ (X·W + shift) per row, [B]: X [B, n·width], W = ``matrix`` (its per-coordinate matrices go to
    ``store``), ``shift`` [width, 1, n] (or anything that broadcasts to [width, B, n])."""
    matrices = store.const(coordinate_matrices(matrix, n, width).astype(np.float32), "coordinate_matrices")
    rows = w.op("Transpose", [w.op("Reshape", [x, w.ints(-1, n, width)], "field_rows")], "rows_by_coordinate",
                perm=[2, 0, 1])
    projected = w.op("Add", [w.op("MatMul", [rows, matrices], "projected"), shift], "shifted")
    return w.op("ReduceSum", [w.op("Mul", [rows, projected], "products"), w.ints(0, 2)], "pairs", keepdims=0)
