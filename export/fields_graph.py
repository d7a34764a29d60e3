"""The cached graph of FwFM, FvFM and FmFM in the fields layout (export/fields_layout.py).

What is fastest differs by batch size, so ``If`` nodes on the batch dim pick a subgraph:

* small batches (per-node overhead dominates): one Gather per run of rows, the rows side by side in
  x, and one GatherElements that fetches, for every value of x, the value it multiplies (E's value
  from the own vectors in x itself, a 1 for the linear terms, a 0 for the rest); one Mul, one ReduceSum.
* one request: the same without repeating index rows per request;
* large batches (memory traffic dominates): fields from last to first, each gathered row added into
  one running sum U over Y right away, while it is in cache (Σ_p <row_p, Y_p> = <Σ_p row_p shifted,
  Y>), one product with Y at the end;
* or, with ``batched="gemm"``, every batch of 2 or more on the uncached GEMM form (export/gemm_form.py),
  which a CPU runs faster than it reads cached tables once a batch has a few requests.

Compact tables (``table_dtype``) keep the Gather first and convert only the gathered rows: float16
rows are Cast; int8 rows carry two scales per row (cached vectors + linear term, own vector),
gathered from one scales table, never applied to a whole table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir

from fm2onnx.errors import Fm2OnnxError

from .contract import INPUT_NAME, clamp_rows
from .fields_layout import FieldsLayout, FieldsLayoutConfig, run_tables
from .folds import FieldWeights
from .gemm_form import gemm_pairs
from .graph_writer import FLOAT, INT64, GraphWriter
from .plan import FIELDS_KINDS, CachePlan


@dataclass
class Shared:
    """What both subgraphs read from the outer graph."""

    clean: ir.Value  # [B, n] per field its row in its run's table (out-of-range ids mapped to a copy of row 0)
    batch: ir.Value  # [1]: the batch size
    tables: list[ir.Value]  # per run [Σ V, width] in the table dtype
    ordered: ir.Value | None  # int8: rows per position [B, n]
    scales: ir.Value | None  # int8: [B, n, 2] per position
    computed: dict[int, ir.Value]  # position -> [d, width] float32 matrices of its computed pairs


def build_fields_graph(weights: FieldWeights, plan: CachePlan, config: FieldsLayoutConfig = FieldsLayoutConfig(),
                       props: dict[str, str] | None = None) -> ir.Model:
    """The cached graph of a model's ``weights`` for a cache ``plan``: one request | batches
    (module docstring). ``props``: the uncached graph's metadata, which the cached graph keeps."""
    spec = weights.spec
    if spec.kind not in FIELDS_KINDS:
        raise Fm2OnnxError(f"the fields layout is for {', '.join(FIELDS_KINDS)} models, not {spec.kind}")
    if tuple(plan.dims) != tuple(spec.dims) or tuple(plan.vocab_sizes) != tuple(spec.vocab_sizes):
        raise Fm2OnnxError("the cache plan was made for another model shape")
    layout = FieldsLayout(plan, config)
    main = GraphWriter()
    ids = ir.val(INPUT_NAME, dtype=INT64, shape=ir.Shape(["batch", plan.num_fields]))
    shared = shared_values(main, weights, layout, ids)
    # anything but one request (an empty batch too) takes the batched branch, which handles 0 rows
    one = main.op("Equal", [shared.batch, main.ints(1)], "is_one_request")
    is_batched = main.op("Not", [one], "is_batched")
    logit = main.op("If", [is_batched], "interaction", then_branch=batched_graph(weights, layout, shared, main),
                    else_branch=small_batch_graph(layout, shared, one_request=True))  # the bias is in the tables
    props = (props or {}) | {"form": "cached"} | layout_metadata(layout)
    return main.serving_model(ids, logit, "fm2onnx_fields", props)


def shared_values(main: GraphWriter, weights: FieldWeights, layout: FieldsLayout, ids: ir.Value) -> Shared:
    """The tables and what every subgraph computes from the ids first."""
    plan, spec, n = layout.plan, weights.spec, layout.num_fields
    bases = layout.field_bases()
    clean = clamp_rows(main, ids, bases, bases + np.array(spec.vocab_sizes, np.int64))
    shared = Shared(clean, main.op("Shape", [ids], "batch", start=0, end=1), [], None, None, {})
    scale_tables = []
    for r, run in enumerate(layout.runs):
        tables = run_tables(weights, layout, run)
        shared.tables.append(main.const(tables.values, "table", name=f"table_run{r}"))
        scale_tables += tables.scales
        for p, matrices in tables.computed.items():
            shared.computed[p] = main.const(matrices, f"field_matrices_{spec.field_names[plan.order[p]]}")
    if scale_tables:
        shared.ordered = main.op("Gather", [clean, main.const(np.array(plan.order, np.int64), "order")], "rows_ordered",
                                 axis=1)
        # the scales are stacked by position, the rows by run: a per-position shift between the two
        scale_bases = np.cumsum([0] + [len(s) for s in scale_tables[:-1]])
        shift = np.array([scale_bases[p] - layout.base(p) for p in range(n)], np.int64)
        index = main.op("Add", [shared.ordered, main.const(shift, "scale_shift")], "scale_index")
        shared.scales = main.op("Gather", [main.const(np.concatenate(scale_tables), "row_scales"), index],
                                "scales", axis=0)
    return shared


def batched_graph(weights: FieldWeights, layout: FieldsLayout, g: Shared, main: GraphWriter) -> ir.Graph:
    """Batches of 2 or more: on the GEMM form, or up to small_batch_max on the small-batch subgraph and
    beyond on the large-batch one."""
    config = layout.config
    if config.batched == "gemm":
        return gemm_batch_graph(weights, layout, g, main)
    large = large_batch_graph(layout, g)
    if config.small_batch_max <= 1:
        return large
    w = GraphWriter("batched_")
    is_large = w.op("Or", [w.op("Greater", [g.batch, w.ints(config.small_batch_max)], "above_small"),
                           w.op("Less", [g.batch, w.ints(1)], "empty")], "is_large_batch")  # 0 rows: large
    pairs = w.op("If", [is_large], "interaction", then_branch=large,
                 else_branch=small_batch_graph(layout, g, one_request=False))
    return w.graph([pairs], "batched")


def layout_metadata(layout: FieldsLayout) -> dict[str, str]:
    config = layout.config
    return {"layout": "fields", "field_order": json.dumps(list(layout.plan.order)),
            "cache_plan": layout.plan.to_json(), "table_dtype": config.table_dtype,
            "runs": json.dumps(layout.to_json()), "small_batch_max": str(config.small_batch_max),
            "batched": config.batched}


def as_float(w: GraphWriter, values: ir.Value, dtype: str) -> ir.Value:
    """Compact rows become float32 after their Gather: only what a request reads is converted."""
    return values if dtype == "float32" else w.op("Cast", [values], "float", to=FLOAT)


def batch_shape(w: GraphWriter, batch: ir.Value, *dims: int) -> ir.Value:
    return w.op("Concat", [batch, w.ints(*dims)], "shape", axis=0)


def per_request(w: GraphWriter, batch: ir.Value | None, array: np.ndarray, hint: str) -> ir.Value:
    """A constant row repeated for each request of the batch: [B, len(array)]; no copies for one request."""
    row = w.const(np.asarray(array)[None], hint)
    return row if batch is None else w.op("Expand", [row, batch_shape(w, batch, row.const_value.shape[1])], hint)


def computed_dot(w: GraphWriter, layout: FieldsLayout, p: int, own: ir.Value, matrices: ir.Value,
                 e: ir.Value) -> ir.Value:
    """<v_p·[M_pq ...], E window> for the partners p computes: [B]. ``e`` holds E along its last axis."""
    plan = layout.plan
    start = plan.offsets[p + 1 + plan.cached[p]]
    projected = w.op("MatMul", [own, matrices], "projected")
    window = w.slice(e, start, plan.offsets[-1], -1, "partners")
    products = w.op("Mul", [projected, window], "products")
    return w.op("Reshape", [w.op("ReduceSum", [products, w.ints(-1)], "dot", keepdims=0), w.ints(-1)], "dot")


def small_batch_graph(layout: FieldsLayout, g: Shared, one_request: bool) -> ir.Graph:
    """Few nodes: a Gather per run, the rows side by side in x, one GatherElements pairing each value
    of x with the value it multiplies. ``one_request``: the index rows are used as they are, not
    repeated per request of the batch."""
    w = GraphWriter("one_" if one_request else "small_")
    plan, dtype = layout.plan, layout.config.table_dtype
    batch = None if one_request else g.batch
    ordered = g.ordered if g.ordered is not None else \
        w.op("Gather", [g.clean, w.const(np.array(plan.order, np.int64), "order")], "ids_ordered", axis=1)
    index = ordered
    sizes = [len(run.positions) for run in layout.runs]
    parts = w.ops("Split", [index, w.ints(*sizes)], "run_index", len(sizes), axis=1) if len(sizes) > 1 else [index]
    flat = [w.op("Reshape", [w.op("Gather", [table, part], "rows", axis=0), w.ints(0, -1)], "rows_flat")
            for table, part in zip(g.tables, parts)]  # [B, n_r * width_r] each
    x = as_float(w, w.op("Concat", flat, "x", axis=1) if len(flat) > 1 else flat[0], dtype)  # [B, values]
    if g.scales is not None:
        scales = w.op("Reshape", [g.scales, w.ints(0, -1)], "scales_flat")  # [B, 2n]
        x = w.op("Mul", [x, w.op("GatherElements", [scales, per_request(w, batch, layout.scale_index(), "scale_index")],
                                 "value_scales", axis=1)], "x_scaled")
    if layout.units is not None:
        (one, zero), xu = layout.units, x
        partner_index = layout.partner_index(one, zero)
    else:  # int8: the 1 and the 0 are appended here, after the scales
        one, zero = layout.request_values, layout.request_values + 1
        units = per_request(w, batch, np.array([1.0, 0.0], np.float32), "one_zero")
        xu = w.op("Concat", [x, units], "x_units", axis=1)
        partner_index = np.concatenate([layout.partner_index(one, zero), [zero, zero]])  # the units meet 0 too
    partners = w.op("GatherElements", [xu, per_request(w, batch, partner_index, "partner_index")], "partners", axis=1)
    if one_request:  # x·partnersᵀ in one Gemm: one pass instead of a Mul and a ReduceSum
        total = w.op("Reshape", [w.op("Gemm", [xu, partners], "dot", transB=1), w.ints(1)], "cached_pairs")
    else:
        total = w.op("ReduceSum", [w.op("Mul", [xu, partners], "products"), w.ints(1)], "cached_pairs", keepdims=0)
    if g.computed:
        e = w.op("GatherElements", [xu, per_request(w, batch, layout.e_index(), "e_index")], "e", axis=1)
        for p, matrices in g.computed.items():
            own = w.slice(e, plan.offsets[p], plan.offsets[p + 1], 1, "own")
            total = w.op("Add", [total, computed_dot(w, layout, p, own, matrices, e)], "pairs")
    return w.graph([total], "small_batch")


def gemm_batch_graph(weights: FieldWeights, layout: FieldsLayout, g: Shared, main: GraphWriter) -> ir.Graph:
    """Batches on the GEMM form (export/gemm_form.py), from the same clipped rows: faster than reading
    cached tables once a batch has a few requests (``fm2onnx bench``)."""
    w = GraphWriter("gemm_")
    total = gemm_pairs(w, weights, g.clean, row_bases=layout.field_bases(), store=main)
    bias = w.const(np.array([weights.bias], np.float32), "bias")
    return w.graph([w.op("Add", [total, bias], "pairs")], "gemm_batch")


def large_batch_graph(layout: FieldsLayout, g: Shared) -> ir.Graph:
    """Large batches: fields from last to first, each row added into U, the running sum over Y, right
    after its Gather, while it is in cache (U is padded only where a run starts); one product with Y
    at the end. Rows that compute partners take their own dot products.

    A through row carries v_p on its own E block, which no row added before it covers: right after
    row p is added, U's block p is v_p, sliced out for Y. U's own blocks then also meet E in <U, Y>,
    so <v_p, v_p> (body-scaled for int8 rows) is taken off once at the end. onnxruntime orders nodes
    depth-first from the outputs, visiting the inputs written last first: with the slices written
    last, it runs Gather, Add and Slice back to back, while the row is in cache."""
    w = GraphWriter("large_")
    acc = accumulate_rows(w, layout, g)
    own_in_u = own_blocks_of_u(w, layout, g, acc)
    y = unit_row(w, layout, g, acc.owns)
    dots = [] if acc.total is None else u_dot(w, layout, g, acc, own_in_u, y)
    dots += [split_row_dot(w, layout, g, p, value, acc.owns, y) for p, value in acc.split_rows.items()]
    out = w.op("Sum", dots, "pairs") if len(dots) > 1 else dots[0]
    return w.graph([out], "large_batch")


@dataclass
class Accumulated:
    """The large-batch graph's rows after their Gathers: U and what stays outside it."""

    owns: dict[int, ir.Value] = field(default_factory=dict)  # position -> its own vector v_p for Y
    split_rows: dict[int, ir.Value] = field(default_factory=dict)  # rows that compute partners, kept apart
    in_u: dict[int, tuple[ir.Value, tuple[int, int]]] = field(default_factory=dict)  # U after p, U's span
    total: ir.Value | None = None  # U
    span: tuple[int, int] | None = None  # the Y columns U covers


def accumulate_rows(w: GraphWriter, layout: FieldsLayout, g: Shared) -> Accumulated:
    plan, dtype, n = layout.plan, layout.config.table_dtype, layout.num_fields
    columns = w.ops("Split", [g.clean], "column", n, axis=1, num_outputs=n)
    acc = Accumulated()
    for r in reversed(range(len(layout.runs))):
        for p in reversed(layout.runs[r].positions):
            row = layout.rows[p]
            value = as_float(w, w.op("Gather", [g.tables[r], columns[plan.order[p]]], "row", axis=0), dtype)
            if g.scales is not None:
                if not row.through:  # U takes body-scaled rows; the own vector's true scale is applied after
                    acc.owns[p] = w.op("Mul", [w.slice(value, row.own.start, row.own.stop, 2, "own"),
                                               scale_of(w, g.scales, p, 1)], "own_scaled")
                value = w.op("Mul", [value, scale_of(w, g.scales, p, 0)], "row_scaled")
            if row.through:
                width = row.width - 2 * row.units  # the small-batch graph's 1 and 0 stay out of U
                if row.units:
                    value = w.slice(value, 0, width, 2, "row_without_units")
                acc.total, acc.span = lay_over(w, acc.total, acc.span, value, (row.start, row.start + width))
                acc.in_u[p] = acc.total, acc.span
            else:
                acc.owns.setdefault(p, w.slice(value, row.own.start, row.own.stop, 2, "own"))
                acc.split_rows[p] = value
    return acc


def own_blocks_of_u(w: GraphWriter, layout: FieldsLayout, g: Shared, acc: Accumulated) -> dict[int, ir.Value]:
    """Each through position's v_p, sliced from U right after its row was added (its true scale for int8)."""
    off, own_in_u = layout.plan.offsets, {}
    for p in sorted(acc.in_u):  # written last, position 0 first: onnxruntime visits the last position's first
        u, (first, _) = acc.in_u[p]
        own_in_u[p] = w.slice(u, off[p] - first, off[p + 1] - first, 2, "own_in_u")
        acc.owns[p] = own_in_u[p] if g.scales is None else \
            w.op("Mul", [own_in_u[p], w.op("Div", [scale_of(w, g.scales, p, 1), scale_of(w, g.scales, p, 0)],
                                            "own_over_body")], "own")
    return own_in_u


def unit_row(w: GraphWriter, layout: FieldsLayout, g: Shared, owns: dict[int, ir.Value]) -> ir.Value:
    """Y = [E | 1 | 0 ...]: [B, 1, as wide as the widest row reaches]."""
    off = layout.plan.offsets
    tail = np.zeros(max(r.start + r.width for r in layout.rows) - off[-1], np.float32)  # the 1, then zeros
    tail[0] = 1.0
    tail_value = w.op("Expand", [w.const(tail[None, None], "unit_tail"), batch_shape(w, g.batch, 1, len(tail))], "tail")
    return w.op("Concat", [owns[p] for p in range(layout.num_fields)] + [tail_value], "y", axis=2)


def u_dot(w: GraphWriter, layout: FieldsLayout, g: Shared, acc: Accumulated, own_in_u: dict[int, ir.Value],
          y: ir.Value) -> list[ir.Value]:
    """<U, Y window> less what U's own blocks met there, Σ <v_p as it sat in U, v_p>: terms to sum."""
    span, y_end = acc.span, max(r.start + r.width for r in layout.rows)
    window = y if span == (0, y_end) else w.slice(y, span[0], span[1], 2, "window")
    dot = w.op("ReduceSum", [w.op("Mul", [acc.total, window], "products"), w.ints(1, 2)], "dot", keepdims=0)
    if g.scales is None and len(acc.in_u) == layout.num_fields:  # v_p sat in U as in y: Σ <v_p, v_p> = <y, y> - 1
        square = w.op("ReduceSum", [w.op("Mul", [y, y], "own_products"), w.ints(1, 2)], "own_dot", keepdims=0)
        unit = w.const(np.ones(1, np.float32), "unit_square")
        return [w.op("Sub", [dot, square], "dot"), unit]
    in_u_own = w.op("Concat", [own_in_u[p] for p in sorted(acc.in_u)], "own_blocks", axis=2)
    own_e = w.op("Concat", [acc.owns[p] for p in sorted(acc.in_u)], "own_vectors", axis=2)
    square = w.op("ReduceSum", [w.op("Mul", [in_u_own, own_e], "own_products"), w.ints(1, 2)], "own_dot", keepdims=0)
    return [w.op("Sub", [dot, square], "dot")]


def split_row_dot(w: GraphWriter, layout: FieldsLayout, g: Shared, p: int, value: ir.Value,
                  owns: dict[int, ir.Value], y: ir.Value) -> ir.Value:
    """A row outside U (it computes partners): its linear term, its cached vectors' dot with their Y
    window, and the partners it computes."""
    row, plan = layout.rows[p], layout.plan
    dot = w.op("ReduceSum", [w.slice(value, row.lin, row.lin + 1, 2, "lin"), w.ints(1, 2)], "lin_dot", keepdims=0)
    if row.body_width:
        body = w.slice(value, row.body_start, row.lin, 2, "body")
        window = w.slice(y, row.start + row.body_start, row.start + row.lin, 2, "window")
        cached = w.op("ReduceSum", [w.op("Mul", [body, window], "products"), w.ints(1, 2)], "dot", keepdims=0)
        dot = w.op("Add", [dot, cached], "dot")
    if p in g.computed:
        e = w.slice(y, 0, plan.offsets[-1], 2, "e")
        dot = w.op("Add", [dot, computed_dot(w, layout, p, owns[p], g.computed[p], e)], "dot")
    return dot


def scale_of(w: GraphWriter, scales: ir.Value, p: int, which: int) -> ir.Value:
    """[B, 1, 1] scale ``which`` (0 body, 1 own) of position p."""
    return w.op("Slice", [scales, w.ints(p, which), w.ints(p + 1, which + 1), w.ints(1, 2)], "scale")


def lay_over(w: GraphWriter, total: ir.Value | None, span, rows: ir.Value, rows_span):
    """U + rows, both padded with zeros to the union of their Y spans."""
    if total is None:
        return rows, rows_span
    union = (min(span[0], rows_span[0]), max(span[1], rows_span[1]))

    def widen(x: ir.Value, s) -> ir.Value:
        before, after = s[0] - union[0], union[1] - s[1]
        return x if not (before or after) else w.op("Pad", [x, w.ints(0, 0, before, 0, 0, after)], "shifted")

    return w.op("Add", [widen(rows, rows_span), widen(total, span)], "laid_over"), union
