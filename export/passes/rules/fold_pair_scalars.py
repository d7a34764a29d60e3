"""fold_pair_scalars: ReduceSum(Unsqueeze(Gather(T, ids), 1) * Y) * r
                   -> ReduceSum(Reshape(Gather(T ⊗ r, ids), [-1, c, K]) * Y)   (FwFM: <v_a r_ab, v_b>)
"""

from __future__ import annotations

from onnxscript.rewriter import pattern

from ...folds import project_scalar
from ..graph_match import as_ints, constant
from ._lookups import cached_table, is_row_lookup, shape_constant


def target(op, table, ids, axes, partners, sum_axes, weights):
    left = op.Unsqueeze(op.Gather(table, ids, _outputs=["rows"]), axes)
    dots = op.ReduceSum(op.Mul(left, partners), sum_axes, keepdims=0)
    return op.Mul(dots, weights)


def condition(context, rows, axes, sum_axes, weights, **_):
    check = pattern.MatchResult()
    r = constant(weights)
    if not is_row_lookup(rows) or as_ints(axes) != [1]:
        return check.fail("not Unsqueeze(row lookup, [1])", rows.producer())
    if as_ints(sum_axes) not in ([2], [-1]):
        return check.fail("the dot products are not summed over the vector axis", sum_axes)
    if r is None or r.ndim != 1:
        return check.fail("the pair weights are not a constant [c] initializer", weights)
    return True


def replacement(op, table, ids, partners, sum_axes, weights, **_):
    t, r = constant(table), constant(weights)
    k = t.shape[1]
    folded = project_scalar(t, r)
    name = f"{table.name}*{weights.name}"
    rows = op.Gather(cached_table(op, name, folded, t.dtype), ids, axis=0)
    left = op.Reshape(rows, shape_constant(op, f"{name}.shape", [-1, len(r), k]))
    return op.ReduceSum(op.Mul(left, partners), sum_axes, keepdims=0)


rule = pattern.RewriteRule(target, replacement, condition, name="fold_pair_scalars", remove_nodes=False)
