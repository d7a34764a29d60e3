"""The cache folds as declarative rewrite rules: target pattern, condition, replacement.

Each rule recognises a per-field projection of a looked-up embedding, ``f(Gather(T, ids), W)`` with
T and W initializers, and replaces it by a lookup in a precomputed table, ``Gather(f(T, W), ids)``:
the intermediate vectors v_a·M_ab of Section 4.2, computed once for every row instead of per request.
The folds are exact (the same products, summed in float64 and stored as float32).

Rules keep the matched nodes (``remove_nodes=False``) because the looked-up embedding is shared with
the partner side and the linear term; the cleanup pass drops whatever became dead.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern


def constant(value: ir.Value | None) -> np.ndarray | None:
    """The value's array if it is a fixed initializer (not overridable as a graph input), else None."""
    if value is None or value.const_value is None or value.is_graph_input():
        return None
    return value.const_value.numpy()


def is_row_lookup(rows: ir.Value) -> bool:
    """``rows`` = Gather(table, ids) along axis 0 of a 2-D initializer table."""
    node = rows.producer()
    table = constant(node.inputs[0])
    return node.attributes.get_int("axis", 0) == 0 and table is not None and table.ndim == 2


def as_ints(value: ir.Value | None) -> list[int] | None:
    array = constant(value)
    return None if array is None else [int(x) for x in array.reshape(-1)]


def cached_table(op, name: str, array: np.ndarray, dtype) -> ir.Value:
    return op.initializer(ir.tensor(array.astype(dtype), name=name), name=name)


def shape_constant(op, name: str, dims) -> ir.Value:
    return op.initializer(ir.tensor(np.array(dims, dtype=np.int64), name=name), name=name)


# fold_field_matrix: MatMul(Gather(T, ids), W) -> Gather(T·W, ids)   (FmFM; field-vector linear)

def field_matrix_target(op, table, ids, matrix):
    return op.MatMul(op.Gather(table, ids, _outputs=["rows"]), matrix, _outputs=["projected"])


def field_matrix_condition(context, rows, matrix, projected, **_) -> bool:
    """Fold only projections into a space no larger than the source (Section 4.3).

    W = [M_ab ...] is [d_a, c·d]; the consumer Reshape [-1, c, d] tells the block width d (the
    field-vector linear term is a single [d_a, 1] block). Equal dims always fold: the export's
    canonical order put the field with fewer features on the left, so its table is the one to grow.
    """
    w = constant(matrix)
    if not is_row_lookup(rows) or w is None or w.ndim != 2:
        return False
    block = w.shape[1]
    users = projected.uses()
    if len(users) == 1 and users[0].node.op_type == "Reshape":
        shape = as_ints(users[0].node.inputs[1])
        if shape is None or w.shape[1] % shape[-1]:
            return False
        block = shape[-1]
    return block <= w.shape[0]


def field_matrix_replacement(op, table, ids, matrix, **_):
    t, w = constant(table), constant(matrix)
    folded = t.astype(np.float64) @ w.astype(np.float64)
    return op.Gather(cached_table(op, f"{table.name}@{matrix.name}", folded, t.dtype), ids, axis=0)


# fold_pair_vectors: Unsqueeze(Gather(T, ids), 1) * D -> Reshape(Gather(T ⊙ D, ids), [-1, c, K])   (FvFM)

def pair_vectors_target(op, table, ids, axes, vectors):
    return op.Mul(op.Unsqueeze(op.Gather(table, ids, _outputs=["rows"]), axes), vectors)


def pair_vectors_condition(context, rows, axes, vectors, table, **_) -> bool:
    d, t = constant(vectors), constant(table)
    return (is_row_lookup(rows) and as_ints(axes) == [1] and d is not None and d.ndim == 2
            and d.shape[1] == t.shape[1])


def pair_vectors_replacement(op, table, ids, vectors, **_):
    t, d = constant(table), constant(vectors)
    c, k = d.shape
    folded = (t.astype(np.float64)[:, None, :] * d.astype(np.float64)[None]).reshape(len(t), c * k)
    name = f"{table.name}*{vectors.name}"
    rows = op.Gather(cached_table(op, name, folded, t.dtype), ids, axis=0)
    return op.Reshape(rows, shape_constant(op, f"{name}.shape", [-1, c, k]))


# fold_pair_scalars: ReduceSum(Unsqueeze(Gather(T, ids), 1) * Y) * r
#                 -> ReduceSum(Reshape(Gather(T ⊗ r, ids), [-1, c, K]) * Y)   (FwFM: <v_a r_ab, v_b>)

def pair_scalars_target(op, table, ids, axes, partners, sum_axes, weights):
    left = op.Unsqueeze(op.Gather(table, ids, _outputs=["rows"]), axes)
    dots = op.ReduceSum(op.Mul(left, partners), sum_axes, keepdims=0)
    return op.Mul(dots, weights)


def pair_scalars_condition(context, rows, axes, sum_axes, weights, **_) -> bool:
    r = constant(weights)
    return (is_row_lookup(rows) and as_ints(axes) == [1] and as_ints(sum_axes) in ([2], [-1])
            and r is not None and r.ndim == 1)


def pair_scalars_replacement(op, table, ids, partners, sum_axes, weights, **_):
    t, r = constant(table), constant(weights)
    k = t.shape[1]
    folded = (t.astype(np.float64)[:, None, :] * r.astype(np.float64)[None, :, None]).reshape(len(t), len(r) * k)
    name = f"{table.name}*{weights.name}"
    rows = op.Gather(cached_table(op, name, folded, t.dtype), ids, axis=0)
    left = op.Reshape(rows, shape_constant(op, f"{name}.shape", [-1, len(r), k]))
    return op.ReduceSum(op.Mul(left, partners), sum_axes, keepdims=0)


def rule(name, target, replacement, condition) -> pattern.RewriteRule:
    return pattern.RewriteRule(target, replacement, condition, name=name, remove_nodes=False)


fold_field_matrix = rule("fold_field_matrix", field_matrix_target, field_matrix_replacement, field_matrix_condition)
fold_pair_vectors = rule("fold_pair_vectors", pair_vectors_target, pair_vectors_replacement, pair_vectors_condition)
fold_pair_scalars = rule("fold_pair_scalars", pair_scalars_target, pair_scalars_replacement, pair_scalars_condition)

# Applied in this order. FFM, FM and LR graphs match none of them: only merge.py re-lays their lookups.
CACHE_RULES = (fold_field_matrix, fold_pair_scalars, fold_pair_vectors)
