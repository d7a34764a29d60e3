"""fold_field_matrix: MatMul(Gather(T, ids), W) -> Gather(T·W, ids)   (FmFM; field-vector linear)

W = [M_ab ...] stacks the field matrices of one field's partners of one dim: the lookup of T·W
reads v_a·M_ab, the intermediate vectors of Section 4.2, computed once per feature.
"""

from __future__ import annotations

from onnxscript.rewriter import pattern

from ...folds import project
from ..graph_match import as_ints, constant
from ._lookups import cached_table, is_row_lookup


def target(op, table, ids, matrix):
    return op.MatMul(op.Gather(table, ids, _outputs=["rows"]), matrix, _outputs=["projected"])


def condition(context, rows, matrix, projected, **_):
    """Fold only projections into a space no larger than the source (Section 4.3).

    The consumer Reshape [-1, c, d] tells the block width d (the field-vector linear term is a single
    [d_a, 1] block). Equal dims always fold: the export's canonical order put the field with fewer
    features on the left, so its table is the one to grow."""
    check = pattern.MatchResult()
    w = constant(matrix)
    if not is_row_lookup(rows):
        return check.fail("the MatMul's input is not a row lookup of a 2-D initializer table", rows.producer())
    if w is None or w.ndim != 2:
        return check.fail("the field matrices are not a 2-D initializer", matrix)
    block, users = w.shape[1], projected.uses()
    if len(users) == 1 and users[0].node.op_type == "Reshape":
        shape = as_ints(users[0].node.inputs[1])
        if shape is None or w.shape[1] % shape[-1]:
            return check.fail("the Reshape after the MatMul does not split W into whole blocks", users[0].node)
        block = shape[-1]
    if block > w.shape[0]:
        return check.fail(f"v·M would grow each vector from {w.shape[0]} to {block} values: cached on the "
                          "partner's side instead", projected.producer())
    return True


def replacement(op, table, ids, matrix, **_):
    t = constant(table)
    folded = project(t, constant(matrix))
    return op.Gather(cached_table(op, f"{table.name}@{matrix.name}", folded, t.dtype), ids, axis=0)


rule = pattern.RewriteRule(target, replacement, condition, name="fold_field_matrix", remove_nodes=False)
