"""The request graph: one context, N candidates, the context's products computed once per request.

With the fields split into context fields C (the user, the page, the time) and item fields I (the
ad, the product), a full row's logit (Eq. 6 with Table 1's field matrices) splits as

    logit(c, i) = bias + lin(c) + Σ_{a<b ∈ C} <v_a M_ab, v_b>        per request, once
                + Σ_{b ∈ I} <s_b, v_b>,   s_b = Σ_{a ∈ C} v_a M_ab     s once per request
                + lin(i) + Σ_{a<b ∈ I} <v_a M_ab, v_b>                per candidate, item fields only

Both halves are the GEMM form (export/gemm_form.py) over their own fields. The context row X_C
times M = [W_CC | W_CI] gives, in one product, the context's own terms and s laid out as the
candidates' X columns; with a cache budget that holds them, that product is precomputed per
context feature (x_a·M, the paper's cached vectors, Section 4.2) and a request sums its context's
rows. The candidates' rows X_I meet X_I·W_II + s, so a candidate costs its item fields' rows, their
pairs and one short dot product with s, and never touches a context field's table or pair.

Graph size is latency at this scale (every node costs about half a microsecond per run), so the
context half is one Gather, one sum and one Split when cached; the candidates' half keeps the GEMM
form's products, one per product range, each with its share of s added (fused into one Gemm by
onnxruntime): concatenating the products to add s once copied more than it saved at 1,000 candidates.

FwFM's and FvFM's field matrices are diagonal: their candidates' pairs go one coordinate at a time
(export/coordinate_form.py), from one table of the item fields' rows with no constant-1 column, so
that s brings the 1 a per-feature linear value meets.

Rows are stored in the table dtype and converted after the Gather (float16 Cast, int8 times the
row's scale); the field matrices stay float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from .contract import CANDIDATES_INPUT, CONTEXT_INPUT, FieldRoles, clamp_rows
from .coordinate_form import DIAGONAL_KINDS, coordinate_terms
from .folds import BYTES_PER_VALUE, FieldWeights
from .gemm_form import GROUPS, GemmTables, gather_rows, gemm_tables, gemm_terms
from .graph_writer import INT64, GraphWriter
from .plan import parse_budget

CANDIDATES = "candidates"  # the dynamic row count of a request graph's candidates and outputs


@dataclass(frozen=True)
class RequestLayout:
    """The GEMM tables of both sides and whether the context's products are cached per feature."""

    context: GemmTables
    items: GemmTables
    matrix: np.ndarray  # M = [W_CC | W_CI]: X_C's columns -> X_C's and X_I's, float64
    cached: bool
    per_coordinate: bool = False  # the candidates' pairs one coordinate at a time (diagonal field matrices)

    @property
    def widths(self) -> tuple[int, int]:
        return self.context.group_ends()[-1], self.items.group_ends()[-1]

    def cached_bytes(self, spec, table_dtype: str) -> int:
        rows = sum(spec.vocab_sizes[f] + 1 for f in self.context.fields)
        return rows * (self.widths[0] + self.matrix.shape[1]) * BYTES_PER_VALUE[table_dtype]

    def describe(self, spec, table_dtype: str) -> str:
        items = "; candidates' pairs per coordinate" if self.per_coordinate else ""
        if self.cached:
            return (f"context products cached per feature ({self.cached_bytes(spec, table_dtype):,} bytes), "
                    f"summed once per request{items}")
        return f"context products computed once per request (one [1, {self.widths[0]}] x M product){items}"


def request_layout(weights: FieldWeights, roles: FieldRoles, cache_budget, table_dtype: str,
                   item_groups: int = GROUPS) -> RequestLayout:
    """``cache_budget``: bytes of cached context rows, "unlimited", "min" (none), or None: as many
    bytes as the embedding tables the graph holds anyway."""
    context = gemm_tables(weights, fields=list(roles.context))
    # Eq. 12's lin(i) = <v_i, w_F(i)> joins s (w_b added once per request), so candidate rows are v alone
    per_feature, per_coordinate = weights.spec.linear == "feature", weights.spec.kind in DIAGONAL_KINDS
    if per_coordinate:  # one table of equal widths, no constant 1 to mix coordinates: s brings lin(i)'s 1
        items = gemm_tables(weights, 1, fields=list(roles.items), linear=per_feature, ones=False)
    else:
        items = gemm_tables(weights, item_groups, fields=list(roles.items), linear=per_feature)
    matrix = np.concatenate([context.matrix, cross_matrix(weights, context, items)], axis=1).astype(np.float64)
    layout = RequestLayout(context, items, matrix, cached=False, per_coordinate=per_coordinate)
    budget = parse_budget(cache_budget) if cache_budget is not None else sum(
        g.table.size for t in (context, items) for g in t.groups) * BYTES_PER_VALUE[table_dtype]
    if budget == "unlimited" or (budget != "min" and layout.cached_bytes(weights.spec, table_dtype) <= budget):
        layout = RequestLayout(context, items, matrix, cached=True, per_coordinate=per_coordinate)
    return layout


def build_request_graph(weights: FieldWeights, roles: FieldRoles, props: dict[str, str],
                        table_dtype: str = "float32", layout: RequestLayout | None = None) -> ir.Model:
    """The request graph of a model's ``weights`` (``props``: the uncached graph's metadata) in
    ``layout`` (default: ``request_layout`` with the default budget)."""
    w, spec = GraphWriter(), weights.spec
    layout = layout or request_layout(weights, roles, None, table_dtype)
    inputs, per_request, shifts = request_inputs_and_context(w, weights, roles, layout, table_dtype)
    terms = request_coordinate_terms if layout.per_coordinate else candidate_terms
    per_candidate = terms(w, weights, layout.items, inputs[1], shifts, table_dtype)
    logit = w.op("Sum", [per_candidate, per_request, w.const(np.array([weights.bias], np.float32), "bias")],
                 "logit_sum")
    props = props | {"form": "request", "layout": "request", "table_dtype": table_dtype,
                     "context_cached": str(layout.cached).lower()} | roles.to_props(spec)
    return w.serving_model(inputs, logit, "fm2onnx_request", props, rows=CANDIDATES)


def request_inputs_and_context(w: GraphWriter, weights: FieldWeights, roles: FieldRoles, layout: RequestLayout,
                               table_dtype: str) -> tuple[list[ir.Value], ir.Value, list[ir.Value]]:
    """The inputs [context ids, candidate ids], the context's own terms [1] and each candidate group's
    share of s [1, its width]: all a request computes once."""
    context = ir.val(CONTEXT_INPUT, dtype=INT64, shape=ir.Shape([1, len(roles.context)]))
    candidates = ir.val(CANDIDATES_INPUT, dtype=INT64, shape=ir.Shape([CANDIDATES, len(roles.items)]))
    x, own, shifts = (cached_context if layout.cached else computed_context)(w, weights, layout, context,
                                                                             table_dtype)
    per_request = w.op("ReduceSum", [w.op("Mul", [x, own], "context_products"), w.ints(1)], "context_terms",
                       keepdims=0)
    return [context, candidates], per_request, shifts


def cached_context(w: GraphWriter, weights: FieldWeights, layout: RequestLayout, ids: ir.Value,
                   table_dtype: str) -> tuple[ir.Value, ir.Value, list[ir.Value]]:
    """X_C and X_C·M (split by ``product_widths``) as the sum of the context's rows [x_a in its columns | x_a·M]:
    one Gather, one sum, one Split."""
    spec, width_c = weights.spec, layout.widths[0]
    columns = field_columns(layout.context)
    rows, bases, start = [], [], 0
    for f in layout.context.fields:
        first, span, own = columns[f]
        x = np.zeros((own.shape[0], width_c))
        x[:, first:first + span] = own
        rows.append(np.concatenate([x, own @ layout.matrix[first:first + span]], axis=1))
        bases.append(start)
        start += own.shape[0]
    bases = np.array(bases, np.int64)
    vocab = np.array([spec.vocab_sizes[f] for f in layout.context.fields], np.int64)
    flat = w.op("Reshape", [ids, w.ints(-1)], "context_row_ids")  # [n_C]: a request has one context
    index = clamp_rows(w, flat, bases, bases + vocab)
    gathered = gather_rows(w, w, np.concatenate(rows).astype(np.float32), index, table_dtype, "context_rows")
    # the rows' sum as ones [1, n_C] x rows: onnxruntime's GEMV beats its ReduceSum over rows
    ones = w.const(np.ones((1, len(bases)), np.float32), "context_ones")
    summed = w.op("MatMul", [ones, gathered], "context_sum")
    sizes = [width_c] + product_widths(layout)
    x, own, *shifts = w.ops("Split", [summed, w.ints(*sizes)], "context_parts", len(sizes), axis=1)
    return x, own, shifts


def computed_context(w: GraphWriter, weights: FieldWeights, layout: RequestLayout, ids: ir.Value,
                     table_dtype: str) -> tuple[ir.Value, ir.Value, list[ir.Value]]:
    """X_C and X_C·M (split by ``product_widths``) from the context's GEMM rows and one product: one row, so one
    MatMul however much of M is zero."""
    xs = group_rows(w, layout.context, ids, weights.spec, table_dtype, "context")
    x = w.op("Concat", xs, "x_context", axis=1) if len(xs) > 1 else xs[0]
    projected = w.op("MatMul", [x, w.const(layout.matrix.astype(np.float32), "context_matrix")], "context_projected")
    sizes = product_widths(layout)
    own, *shifts = w.ops("Split", [projected, w.ints(*sizes)], "context_parts", len(sizes), axis=1)
    return x, own, shifts


def product_widths(layout: RequestLayout) -> list[int]:
    """How X_C·M splits: the context's own columns, then each candidate product range's share of s."""
    return [layout.widths[0]] + [end - start for start, end in layout.items.product_ranges()]


def candidate_terms(w: GraphWriter, weights: FieldWeights, items: GemmTables, ids: ir.Value,
                    shifts: list[ir.Value], table_dtype: str) -> ir.Value:
    """Σ X_I ⊙ (X_I·W_II + s) per candidate, [N]: the GEMM form's block-triangular MatMuls, each
    product range's share of s added to its product (onnxruntime fuses the two into one Gemm)."""
    xs = group_rows(w, items, ids, weights.spec, table_dtype, "item")
    return gemm_terms(w, items, xs, w, shifts=shifts)


def request_coordinate_terms(w: GraphWriter, weights: FieldWeights, items: GemmTables, ids: ir.Value,
                             shifts: list[ir.Value], table_dtype: str) -> ir.Value:
    """Σ X_I ⊙ (X_I·W_II + s) per candidate, [N], one coordinate at a time (export/coordinate_form.py),
    s [1, n·width] turned to [width, 1, n]."""
    (x,) = group_rows(w, items, ids, weights.spec, table_dtype, "item")
    n, width = len(items.fields), items.groups[0].width
    (s,) = shifts
    s = w.op("Transpose", [w.op("Reshape", [s, w.ints(n, 1, width)], "s_rows")], "s_by_coordinate", perm=[2, 1, 0])
    return coordinate_terms(w, w, x, items.matrix, s, n, width)


def group_rows(w: GraphWriter, tables: GemmTables, ids: ir.Value, spec, table_dtype: str,
               side: str) -> list[ir.Value]:
    """X, one [B, fields in group · width] value per group, from the field-local ids [B, n] of
    ``tables.fields`` (out of range: the copy of the unknown row after the field's rows).

    The ids are put in group order and clamped field-major, [n, B]: there the reorder is one Gather of
    n blocks and the clamp three elementwise ops over long runs, where row-major they cost a Gather of
    n·B elements and three broadcasts over B short rows. Then one Split into groups and one Gather of
    rows per group."""
    order = [tables.fields.index(f) for group in tables.groups for f in group.fields]
    first = np.concatenate([group.first_rows for group in tables.groups]).astype(np.int64)[:, None]
    vocab = np.array([spec.vocab_sizes[tables.fields[i]] for i in order], np.int64)[:, None]
    by_field = w.op("Transpose", [ids], "ids_by_field", perm=[1, 0])
    if order != list(range(len(order))):
        by_field = w.op("Gather", [by_field, w.const(np.array(order, np.int64), "group_order")], "ids_in_groups",
                        axis=0)
    rows = w.op("Transpose", [clamp_rows(w, by_field, first, first + vocab)], "rows_in_groups", perm=[1, 0])
    sizes = [len(group.fields) for group in tables.groups]
    parts = w.ops("Split", [rows, w.ints(*sizes)], "group_index", len(sizes), axis=1) if len(sizes) > 1 else [rows]
    xs = []
    for i, (group, index) in enumerate(zip(tables.groups, parts)):
        gathered = gather_rows(w, w, group.table, index, table_dtype, f"{side}_table_{i}")
        xs.append(w.op("Reshape", [gathered, w.ints(-1, len(group.fields) * group.width)], "x"))
    return xs


def field_columns(tables: GemmTables) -> dict[int, tuple[int, int, np.ndarray]]:
    """Field -> (its first column in X, its row width, its rows [V + 1, width] float64)."""
    out, start = {}, 0
    for group in tables.groups:
        ends = group.first_rows[1:] + [len(group.table)]
        for k, (f, first, end) in enumerate(zip(group.fields, group.first_rows, ends)):
            out[f] = (start + k * group.width, group.width, group.table[first:end].astype(np.float64))
        start += len(group.fields) * group.width
    return out


def cross_matrix(weights: FieldWeights, context: GemmTables, items: GemmTables) -> np.ndarray:
    """W_CI: X_C's columns of v_a to X_I's columns of v_b hold M_ab (context side projected, Eq. 10);
    X_C's constant 1 to them w_b when the candidates' rows leave their linear term to s (Eq. 12)."""
    rows, columns = context.vector_columns(weights.spec.dims), items.vector_columns(weights.spec.dims)
    matrix = np.zeros((context.group_ends()[-1], items.group_ends()[-1]), np.float64)
    for a in context.fields:
        for b in items.fields:
            matrix[rows[a], columns[b]] = weights.pair_matrix(a, b)
    if items.ones_column is None:  # no constant 1 among the candidates' columns: s brings their linear terms
        for b in items.fields:
            if items.lead:  # their rows' own linear values, times s's 1
                matrix[context.ones_column, columns[b].start - items.lead] = 1.0
            else:  # w_b, so that <s_b, v_b> holds <w_b, v_b>
                matrix[context.ones_column, columns[b]] = weights.linear[b]
    return matrix
