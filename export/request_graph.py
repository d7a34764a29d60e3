"""The request graph: one context, N candidates, the context's products computed once per request.

With the fields split into context fields C (the user, the page, the time) and item fields I (the
ad, the product), a full row's logit (Eq. 6 with Table 1's field matrices) splits as

    logit(c, i) = bias + lin(c) + Σ_{a<b ∈ C} <v_a M_ab, v_b>        per request, once
                + Σ_{b ∈ I} <s_b, v_b>,   s_b = Σ_{a ∈ C} v_a M_ab     s once per request
                + lin(i) + Σ_{a<b ∈ I} <v_a M_ab, v_b>                per candidate, item fields only

Both halves are the GEMM form (export/gemm_form.py) over their own fields: the context row X_C
gives the per-request scalar and, by one more product, s laid out in the candidates' X columns
(X_C · W_CI); the candidates' rows X_I take s as a shift of X_I · W_II, so each candidate costs its
item fields' rows, their pairs and one short dot product with s. A candidate never touches a
context field's table or a context pair.

Rows are stored in the table dtype and converted after the Gather (float16 Cast, int8 times the
row's scale); the field matrices stay float32.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from .contract import CANDIDATES_INPUT, CONTEXT_INPUT, FieldRoles, clamp_rows
from .folds import FieldWeights
from .gemm_form import GemmTables, gemm_rows, gemm_tables, gemm_terms
from .graph_writer import INT64, GraphWriter

CANDIDATES = "candidates"  # the dynamic row count of a request graph's candidates and outputs


def build_request_graph(weights: FieldWeights, roles: FieldRoles, props: dict[str, str],
                        table_dtype: str = "float32") -> ir.Model:
    """The request graph of a model's ``weights`` (``props``: the uncached graph's metadata)."""
    w, spec = GraphWriter(), weights.spec
    context = ir.val(CONTEXT_INPUT, dtype=INT64, shape=ir.Shape([1, len(roles.context)]))
    candidates = ir.val(CANDIDATES_INPUT, dtype=INT64, shape=ir.Shape([CANDIDATES, len(roles.items)]))
    context_tables = gemm_tables(weights, fields=list(roles.context))
    item_tables = gemm_tables(weights, fields=list(roles.items))
    per_request, shifts = context_part(w, weights, context_tables, item_tables,
                                      rows_of(w, context, spec, roles.context), table_dtype)
    xs_items = gemm_rows(w, item_tables, rows_of(w, candidates, spec, roles.items), None, w, table_dtype)
    per_candidate = gemm_terms(w, item_tables, xs_items, w, shifts=shifts)
    logit = w.op("Add", [per_candidate, per_request], "logit_sum")
    props = props | {"form": "request", "layout": "request", "table_dtype": table_dtype} | roles.to_props(spec)
    return w.serving_model([context, candidates], logit, "fm2onnx_request", props, rows=CANDIDATES)


def context_part(w: GraphWriter, weights: FieldWeights, context: GemmTables, items: GemmTables, rows: ir.Value,
                 table_dtype: str) -> tuple[ir.Value, list[ir.Value] | None]:
    """(bias + lin(c) + the context's pairs [1], s laid out as X_I's columns, one [1, width] per item
    group, or None for LR), both from the context row X_C times one matrix [W_CC | W_CI]: one row,
    so one MatMul however much of W_CC is zero, and one Split."""
    xs = gemm_rows(w, context, rows, None, w, table_dtype)
    x = w.op("Concat", xs, "x_context", axis=1) if len(xs) > 1 else xs[0]
    if not any(weights.spec.dims):  # LR: no pairs, nothing for a candidate to meet
        return w.op("Add", [gemm_terms(w, context, xs, w), w.const(np.array([weights.bias], np.float32), "bias")],
                    "per_request"), None
    matrix = np.concatenate([context.matrix, cross_matrix(weights, context, items)], axis=1)
    projected = w.op("MatMul", [x, w.const(matrix, "context_matrix")], "context_projected")
    widths = [context.group_ends()[-1]] + np.diff([0] + items.group_ends()).tolist()
    own, *shifts = w.ops("Split", [projected, w.ints(*widths)], "context_split", len(widths), axis=1)
    terms = w.op("ReduceSum", [w.op("Mul", [x, own], "context_products"), w.ints(1)], "context_terms", keepdims=0)
    return w.op("Add", [terms, w.const(np.array([weights.bias], np.float32), "bias")], "per_request"), shifts


def rows_of(w: GraphWriter, ids: ir.Value, spec, fields: tuple[int, ...]) -> ir.Value:
    """Field-local ids of ``fields`` -> their GEMM table rows 0..V (V: the copy of the unknown row)."""
    vocab = np.array([spec.vocab_sizes[f] for f in fields], np.int64)
    return clamp_rows(w, ids, np.zeros(len(fields), np.int64), vocab)


def cross_matrix(weights: FieldWeights, context: GemmTables, items: GemmTables) -> np.ndarray:
    """W_CI: X_C's columns of v_a to X_I's columns of v_b hold M_ab (context side projected, Eq. 10)."""
    rows, columns = context.vector_columns(weights.spec.dims), items.vector_columns(weights.spec.dims)
    matrix = np.zeros((context.group_ends()[-1], items.group_ends()[-1]), np.float64)
    for a in context.fields:
        for b in items.fields:
            matrix[rows[a], columns[b]] = weights.pair_matrix(a, b)
    return matrix.astype(np.float32)
