"""fold_pair_vectors: Unsqueeze(Gather(T, ids), 1) * D -> Reshape(Gather(T ⊙ D, ids), [-1, c, K])   (FvFM)

D = [d_ab ...] holds the diagonals of one field's pair matrices: each feature's v_a ⊙ d_ab is cached.
"""

from __future__ import annotations

from onnxscript.rewriter import pattern

from ...folds import project_diagonal
from ..graph_match import as_ints, constant
from ._lookups import cached_table, is_row_lookup, shape_constant


def target(op, table, ids, axes, vectors):
    return op.Mul(op.Unsqueeze(op.Gather(table, ids, _outputs=["rows"]), axes), vectors)


def condition(context, rows, axes, vectors, table, **_):
    check = pattern.MatchResult()
    d, t = constant(vectors), constant(table)
    if not is_row_lookup(rows) or as_ints(axes) != [1]:
        return check.fail("not Unsqueeze(row lookup, [1])", rows.producer())
    if d is None or d.ndim != 2 or d.shape[1] != t.shape[1]:
        return check.fail("the pair vectors are not a constant [c, K] initializer", vectors)
    return True


def replacement(op, table, ids, vectors, **_):
    t, d = constant(table), constant(vectors)
    c, k = d.shape
    folded = project_diagonal(t, d)
    name = f"{table.name}*{vectors.name}"
    rows = op.Gather(cached_table(op, name, folded, t.dtype), ids, axis=0)
    return op.Reshape(rows, shape_constant(op, f"{name}.shape", [-1, c, k]))


rule = pattern.RewriteRule(target, replacement, condition, name="fold_pair_vectors", remove_nodes=False)
