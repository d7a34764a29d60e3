"""The cached FmFM graph in the *fields* layout: one table row per field, fast at batch 1 and at 1024.

For a cache plan (export/plan.py) with fields in serving order, position p's table row holds

    [ lead zeros | v_p·M_pq for its cached partners q | lin_p | v_p | zeros ]

lined up with Y = [E | 1 | 0 ...], E the concatenated embedding row in serving order: p's partners
are the contiguous run of E after v_p (no index shuffles), the linear term meets the 1 and the own
vector zeros, so the logit is bias + Σ_p <row_p, Y window of p>. Rows are padded to whole chunks
of ``chunk`` values (``choose_chunk``). A field that computes some partners (budget plans) keeps
its cached run, then a head chunk [lin | v] that meets a unit chunk, and adds <v_p·[M_pq ...], E>.

One row per field means one Gather per field, like the floor. What follows differs by batch size,
so an ``If`` on the batch dim picks one of two subgraphs:

* small batches (per-node overhead dominates): the rows concatenated, E picked out with one
  Gather, Y's windows with one Gather of chunks, one Mul, one ReduceSum;
* large batches (memory traffic dominates): fields from last to first, each gathered row added
  into one running sum U laid over E (a Pad and an Add while the row is in cache), then one
  product <U, Y>: Σ_p <row_p, Y_p> = <Σ_p row_p shifted, Y>.

Compact tables (``table_dtype``) keep the Gather first and convert only the gathered rows: float16
rows are Cast; int8 rows carry two scales per row (cached vectors + linear term, own vector),
gathered from one scales table, never applied to a whole table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from math import ceil

import numpy as np
import onnx_ir as ir
import torch

from fm2onnx.errors import Fm2OnnxError
from models import FMFamilyModel

from . import metadata
from .plan import CachePlan
from .to_onnx import DEFAULT_OPSET, INPUT_NAME, OUTPUT_NAMES

TABLE_DTYPES = ("float32", "float16", "int8")
IR_DTYPES = {"float32": ir.DataType.FLOAT, "float16": ir.DataType.FLOAT16, "int8": ir.DataType.INT8}
FLOAT = ir.DataType.FLOAT
INT64 = ir.DataType.INT64


@dataclass(frozen=True)
class FieldsLayoutConfig:
    table_dtype: str = "float32"
    chunk: int | None = None  # values per chunk of the small-batch path's Y Gather; None: choose_chunk
    small_batch_max: int = 8  # batches up to this size take the few-node subgraph

    def __post_init__(self) -> None:
        if self.table_dtype not in TABLE_DTYPES:
            raise Fm2OnnxError(f"unknown table dtype {self.table_dtype!r}; expected one of {', '.join(TABLE_DTYPES)}")
        if (self.chunk is not None and self.chunk < 1) or self.small_batch_max < 0:
            raise Fm2OnnxError("chunk must be >= 1 and small_batch_max >= 0")


CHUNKS = (16, 8, 4, 2, 1)
MAX_EXTRA_WORK = 0.05  # zeros multiplied (chunk padding, own vectors) over the plan's FLOPs per row


@dataclass(frozen=True)
class RowLayout:
    """Where things sit in position p's table row (in values).

    through: p caches every partner, so its row runs on to E's end: [lead | cached | lin | own | pad],
    every chunk lined up with E's chunk first_e_chunk + j (lin meets the 1 after E, own the zeros).
    Otherwise [lead | cached | pad][lin | own | pad]: the head chunks meet a unit chunk and zero chunks.
    """

    through: bool
    first_e_chunk: int  # E chunk the row's first chunk lines up with
    lead: int  # zeros before the first cached value
    body_width: int  # cached values
    dim: int
    chunk: int

    @property
    def body_chunks(self) -> int:
        """Chunks before the head (split rows); through rows have no separate head."""
        return 0 if self.through or not self.body_width else ceil((self.lead + self.body_width) / self.chunk)

    @property
    def lin(self) -> int:
        return self.lead + self.body_width if self.through else self.body_chunks * self.chunk

    @property
    def own(self) -> slice:
        return slice(self.lin + 1, self.lin + 1 + self.dim)

    @property
    def width(self) -> int:
        return ceil((self.lin + 1 + self.dim) / self.chunk) * self.chunk

    @property
    def chunks(self) -> int:
        return self.width // self.chunk

    def y_chunks(self, unit_chunk: int) -> list[int]:
        """The Y-source chunk each of the row's chunks meets (small-batch path)."""
        if self.through:
            return [self.first_e_chunk + j for j in range(self.chunks)]
        return ([self.first_e_chunk + j for j in range(self.body_chunks)]
                + [unit_chunk + j for j in range(self.chunks - self.body_chunks)])


def row_layouts(plan: CachePlan, chunk: int, aligned: bool = True) -> list[RowLayout]:
    """``aligned``: rows of a run of same-dim fields start at one chunk (``align_runs``), so the
    large-batch path sums them before laying them over E."""
    starts = align_runs(plan, chunk) if aligned else [plan.offsets[p + 1] // chunk for p in range(plan.num_fields)]
    out = []
    for p in range(plan.num_fields):
        through = not plan.computed_partners(p)
        out.append(RowLayout(through, starts[p], plan.offsets[p + 1] - starts[p] * chunk, plan.cached_width(p),
                             plan.position_dims[p], chunk))
    return out


MAX_ALIGN_ZEROS = 0.05  # leading zeros aligning rows, as a share of the table values and of a request's


def align_runs(plan: CachePlan, chunk: int) -> list[int]:
    """First chunk of each position's row. Consecutive fields of one dim that cache all their partners
    may share their first member's start (their rows then end together too): the fewest runs whose
    extra leading zeros stay under 5% of the table values and of the values a request reads, and
    keep the graph's FLOPs within MAX_EXTRA_WORK of the plan's."""
    n, off = plan.num_fields, plan.offsets
    natural = [off[p + 1] // chunk for p in range(n)]
    through = [not plan.computed_partners(p) for p in range(n)]
    vocab, dims = plan.position_vocab, plan.position_dims
    table_room = MAX_ALIGN_ZEROS * sum(v * (plan.cached_width(p) + 1 + dims[p]) for p, v in enumerate(vocab))
    # What a request multiplies stays within MAX_EXTRA_WORK of the plan's FLOPs, chunk padding included.
    padded = layout_flops(row_layouts(plan, chunk, aligned=False))
    request_room = max(0.0, min(MAX_ALIGN_ZEROS * exact_values(plan),
                                ((1 + MAX_EXTRA_WORK) * plan.flops_per_row - padded) / 2))

    def zeros(i: int, j: int) -> tuple[int, int] | None:
        """Extra (table, request) zeros when positions i..j-1 start at i's chunk; None if they cannot."""
        if j == i + 1:
            return 0, 0
        if not all(through[i:j]) or len(set(dims[i:j])) > 1:
            return None
        extra = [(natural[q] - natural[i]) * chunk for q in range(i, j)]
        return sum(v * e for v, e in zip(vocab[i:j], extra)), sum(extra)

    # best[j]: (runs, table zeros, request zeros, start of the last run) for positions 0..j-1
    best = [(0, 0, 0, 0)] + [None] * n
    for j in range(1, n + 1):
        for i in range(j):
            cost = zeros(i, j)
            if cost is None or best[i] is None:
                continue
            runs, table, request = best[i][0] + 1, best[i][1] + cost[0], best[i][2] + cost[1]
            if table <= table_room and request <= request_room and (best[j] is None or (runs, table) < best[j][:2]):
                best[j] = (runs, table, request, i)
    starts, j = list(natural), n
    while j > 0:
        i = best[j][3]
        for q in range(i, j):
            starts[q] = natural[i]
        j = i
    return starts


def exact_values(plan: CachePlan) -> int:
    """Values a request reads without padding: cached vectors, linear terms, own vectors."""
    return sum(plan.cached_width(p) + 1 + plan.position_dims[p] for p in range(plan.num_fields))


def layout_flops(rows: list[RowLayout]) -> int:
    """FLOPs per row of the graph: a multiply and an add per row value, plus the sums and the output."""
    return 2 * sum(r.width for r in rows) + len(rows) + 2


def choose_chunk(plan: CachePlan) -> int:
    """The widest chunk (fewest Gather indices on the small-batch path) whose padding keeps the graph's
    FLOPs within 5% of the plan's (Table 4's count for the unlimited plan)."""
    for chunk in CHUNKS:
        if layout_flops(row_layouts(plan, chunk, aligned=False)) <= (1 + MAX_EXTRA_WORK) * plan.flops_per_row:
            return chunk
    return 1


@dataclass(frozen=True)
class YSource:
    """The small path's Y source in chunks: [E | 1 | zeros] up to ``unit_chunk``, then a unit chunk
    [1, 0, ...] and zero chunks for split rows' heads."""

    width_e: int
    chunk: int
    unit_chunk: int
    chunks: int

    @classmethod
    def of(cls, rows: list[RowLayout], width_e: int, chunk: int) -> "YSource":
        through_end = max([r.first_e_chunk + r.chunks for r in rows if r.through], default=0)
        unit = max(ceil((width_e + 1) / chunk), through_end)
        heads = max([r.chunks - r.body_chunks for r in rows if not r.through], default=0)
        return cls(width_e, chunk, unit, unit + max(heads, 1))

    def tail(self) -> np.ndarray:
        """What follows E: [1, 0, ..., 0 | unit chunk | zero chunks], shape [1, 1, width]."""
        tail = np.zeros((1, 1, self.chunks * self.chunk - self.width_e), np.float32)
        tail[0, 0, 0] = 1.0
        tail[0, 0, self.unit_chunk * self.chunk - self.width_e] = 1.0
        return tail


# -- table values ------------------------------------------------------------------------------------


def pair_matrix(model: FMFamilyModel, fa: int, fb: int) -> np.ndarray:
    """M between original fields fa (left, projected) and fb, as float64 [d_fa, d_fb] (Eq. 10 when fa > fb)."""
    fm = model.interaction.field_matrices
    m = fm.pair_matrix(fa, fb) if fa < fb else fm.pair_matrix(fb, fa).T
    return m.detach().double().numpy()


def linear_values(model: FMFamilyModel, f: int, own: np.ndarray) -> np.ndarray:
    """Per-feature linear term of field f, [V]: the weight (Eq. 2) or <v, w_f> (Eq. 12) folded."""
    spec = model.spec
    if spec.linear == "feature":
        return model.linear.weights[f].weight.detach().double().numpy()[:, 0]
    o = spec.offsets[f]
    return own @ model.linear.field_vectors.detach().double().numpy()[o:o + spec.dims[f]]


@dataclass
class PositionTables:
    values: np.ndarray  # [V, width] in the table dtype
    scales: np.ndarray | None  # int8: [V, 2] float32 (body + lin, own embedding)
    computed: np.ndarray | None  # float32 [d, width of computed partners], or None


def position_tables(model: FMFamilyModel, plan: CachePlan, p: int, row: RowLayout, dtype: str) -> PositionTables:
    f = plan.order[p]
    own = model.embeddings.tables[f].weight.detach().double().numpy()
    values = np.zeros((len(own), row.width), np.float64)
    cached = [pair_matrix(model, f, plan.order[q]) for q in plan.cached_partners(p)]
    if cached:
        values[:, row.lead:row.lead + row.body_width] = own @ np.concatenate(cached, axis=1)
    values[:, row.lin] = linear_values(model, f, own)
    values[:, row.own] = own
    computed = [pair_matrix(model, f, plan.order[q]) for q in plan.computed_partners(p)]
    computed = np.concatenate(computed, axis=1).astype(np.float32) if computed else None
    encoded, scales = encode(values, row, dtype)
    return PositionTables(encoded, scales, computed)


def encode(values: np.ndarray, row: RowLayout, dtype: str) -> tuple[np.ndarray, np.ndarray | None]:
    if dtype == "float32":
        return values.astype(np.float32), None
    if dtype == "float16":
        if np.abs(values).max(initial=0) > np.finfo(np.float16).max:
            raise Fm2OnnxError("a table value exceeds the float16 range; use --table-dtype float32 or int8")
        return values.astype(np.float16), None
    # int8: the cached vectors and the linear term share a scale (they are summed together into the
    # dot product); the own vector has its own.
    own = np.zeros(values.shape[1], bool)
    own[row.own] = True
    scale_dot = np.maximum(np.abs(values[:, ~own]).max(axis=1), 1e-30) / 127
    scale_own = np.maximum(np.abs(values[:, own]).max(axis=1), 1e-30) / 127
    scaled = values / np.where(own, scale_own[:, None], scale_dot[:, None])
    return np.clip(np.rint(scaled), -127, 127).astype(np.int8), np.stack([scale_dot, scale_own], axis=1).astype(np.float32)


# -- graph building ----------------------------------------------------------------------------------


class GraphWriter:
    """A tape with named values and small-constant helpers."""

    def __init__(self, prefix: str = ""):
        self.tape = ir.tape.Tape()
        self.prefix = prefix
        self.count = 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{self.prefix}{hint}_{self.count}"

    def op(self, op_type: str, inputs, hint: str, **attributes) -> ir.Value:
        value = self.tape.op(op_type, inputs, attributes or None)
        value.name = self.name(hint)
        return value

    def ops(self, op_type: str, inputs, hint: str, count: int, **attributes) -> list[ir.Value]:
        values = self.tape.op_multi_out(op_type, inputs, attributes or None, num_outputs=count)
        for i, value in enumerate(values):
            value.name = self.name(f"{hint}{i}")
        return list(values)

    def const(self, array, hint: str) -> ir.Value:
        array = np.asarray(array)
        name = self.name(hint)
        return self.tape.initializer(ir.tensor(array, name=name), name=name)

    def ints(self, *values, hint: str = "ints") -> ir.Value:
        return self.const(np.array(values, np.int64), hint)

    def slice(self, x: ir.Value, start: int, end: int, axis: int, hint: str) -> ir.Value:
        return self.op("Slice", [x, self.ints(start), self.ints(end), self.ints(axis)], hint)

    def graph(self, outputs: list[ir.Value], name: str, inputs=()) -> ir.Graph:
        return ir.Graph(list(inputs), outputs, nodes=self.tape.nodes, initializers=self.tape.initializers,
                        name=name, opset_imports={"": DEFAULT_OPSET})


@dataclass
class Shared:
    """What both subgraphs read from the outer graph."""

    tables: list[ir.Value]  # per position [V, width] in the table dtype
    columns: list[ir.Value]  # per position its ids [B, 1]
    ordered: ir.Value  # ids per position [B, n]
    scales: ir.Value | None  # int8: [B, n, 2] per position
    tail: ir.Value  # [B, 1, tail width]: what follows E in the Y source (YSource.tail)
    computed: dict[int, ir.Value]  # position -> [d, width] float32 matrices of its computed pairs


def build_fields_graph(model: FMFamilyModel, plan: CachePlan, config: FieldsLayoutConfig = FieldsLayoutConfig(),
                       *, checkpoint_sha256: str = "") -> ir.Model:
    spec = model.spec
    if spec.kind != "fmfm":
        raise Fm2OnnxError(f"the fields layout is for FmFM models, not {spec.kind}")
    if tuple(plan.dims) != tuple(spec.dims) or tuple(plan.vocab_sizes) != tuple(spec.vocab_sizes):
        raise Fm2OnnxError("the cache plan was made for another model shape")
    chunk = config.chunk or choose_chunk(plan)
    config = replace(config, chunk=chunk)
    rows = row_layouts(plan, chunk)
    n, width_e = plan.num_fields, plan.offsets[-1]
    y_source = YSource.of(rows, width_e, chunk)

    main = GraphWriter()
    ids = ir.val(INPUT_NAME, dtype=INT64, shape=ir.Shape(["batch", n]))
    vocab = main.const(np.array(spec.vocab_sizes, np.int64), "vocab_sizes")
    zero = main.const(np.array(0, np.int64), "zero")
    bad = main.op("Or", [main.op("Less", [ids, zero], "negative"),
                         main.op("GreaterOrEqual", [ids, vocab], "past_vocabulary")], "bad_id")
    clean = main.op("Where", [bad, zero, ids], "ids")  # unknown, negative, out-of-range -> row 0
    columns = main.ops("Split", [clean], "column", n, axis=1, num_outputs=n)
    ordered = main.op("Gather", [clean, main.const(np.array(plan.order, np.int64), "order")], "ids_ordered", axis=1)

    shared = Shared([], [columns[f] for f in plan.order], ordered, None, None, {})
    scale_tables = []
    with torch.no_grad():
        for p, row in enumerate(rows):
            tables = position_tables(model, plan, p, row, config.table_dtype)
            name = spec.field_names[plan.order[p]]
            shared.tables.append(main.const(tables.values, f"table_{name}"))
            if tables.scales is not None:
                scale_tables.append(tables.scales)
            if tables.computed is not None:
                shared.computed[p] = main.const(tables.computed, f"field_matrices_{name}")
    if scale_tables:
        bases = np.cumsum([0] + [len(s) for s in scale_tables[:-1]]).astype(np.int64)
        index = main.op("Add", [ordered, main.const(bases, "scale_bases")], "scale_index")
        shared.scales = main.op("Gather", [main.const(np.concatenate(scale_tables), "row_scales"), index],
                                "scales", axis=0)
    batch = main.op("Shape", [ids], "batch", start=0, end=1)
    tail = y_source.tail()
    tail_shape = main.op("Concat", [batch, main.ints(1, tail.shape[2])], "tail_shape", axis=0)
    shared.tail = main.op("Expand", [main.const(tail, "unit_tail"), tail_shape], "tail")

    large = large_batch_graph(plan, rows, shared, config)
    small = small_batch_graph(plan, rows, shared, config, y_source)
    is_large = main.op("Greater", [batch, main.ints(config.small_batch_max)], "is_large_batch")
    pairs = main.op("If", [is_large], "interaction", then_branch=large, else_branch=small)
    bias = main.const(model.bias.detach().float().numpy().reshape(1), "bias")
    logit = main.op("Add", [pairs, bias], "logit_sum")
    probability = main.op("Sigmoid", [logit], "probability_sum")
    probability.name, logit.name = OUTPUT_NAMES
    for value in (probability, logit):
        value.dtype, value.shape = FLOAT, ir.Shape(["batch"])
    graph = main.graph([probability, logit], "fm2onnx_fields", inputs=[ids])
    out = ir.Model(graph, ir_version=10)
    props = metadata.describe(spec, form="cached", checkpoint_sha256=checkpoint_sha256)
    props.update(layout_metadata(plan, config))
    metadata.stamp(out, props)
    return out


def layout_metadata(plan: CachePlan, config: FieldsLayoutConfig) -> dict[str, str]:
    return {"layout": "fields", "field_order": json.dumps(list(plan.order)), "cache_plan": plan.to_json(),
            "table_dtype": config.table_dtype, "chunk": str(config.chunk),
            "small_batch_max": str(config.small_batch_max)}


def as_float(w: GraphWriter, values: ir.Value, dtype: str) -> ir.Value:
    """Compact rows become float32 after their Gather: only what a request reads is converted."""
    return values if dtype == "float32" else w.op("Cast", [values], "float", to=FLOAT)


def scale_of(w: GraphWriter, scales: ir.Value, p: int, which: int) -> ir.Value:
    """[B, 1, 1] scale ``which`` (0 body, 1 own) of position p."""
    return w.op("Slice", [scales, w.ints(p, which), w.ints(p + 1, which + 1), w.ints(1, 2)], "scale")


def computed_dot(w: GraphWriter, plan: CachePlan, p: int, own: ir.Value, matrices: ir.Value,
                 y_source: ir.Value) -> ir.Value:
    """<v_p·[M_pq ...], E window> for the partners p computes: [B]."""
    start = plan.offsets[p + 1 + plan.cached[p]]
    projected = w.op("MatMul", [own, matrices], "projected")
    window = w.slice(y_source, start, plan.offsets[-1], 2, "partners")
    return w.op("ReduceSum", [w.op("Mul", [projected, window], "products"), w.ints(1, 2)], "dot", keepdims=0)


def large_batch_graph(plan: CachePlan, rows: list[RowLayout], g: Shared, config: FieldsLayoutConfig) -> ir.Graph:
    """Large batches: fields from last to first, each row added into U, the sum of the rows laid over E
    (U_{>=p} = row_p + U_{>p} shifted to p's start) right after its Gather, while it is in cache; one
    product with E's window at the end. Rows that compute partners take the per-field dot instead."""
    w = GraphWriter("large_")
    dtype, chunk = config.table_dtype, config.chunk
    owns: dict[int, ir.Value] = {}
    values: dict[int, ir.Value] = {}
    total, span, run, run_span = None, None, [], None  # U over span; rows of one span not yet added
    for p in reversed(range(plan.num_fields)):
        row = rows[p]
        value = as_float(w, w.op("Gather", [g.tables[p], g.columns[p]], "row", axis=0), dtype)  # [B, 1, width]
        own = w.slice(value, row.own.start, row.own.stop, 2, "own")
        if g.scales is not None:
            own = w.op("Mul", [own, scale_of(w, g.scales, p, 1)], "own_scaled")
            value = w.op("Mul", [value, scale_of(w, g.scales, p, 0)], "row_scaled")
        owns[p] = own
        if not row.through:
            values[p] = value
            continue
        start = row.first_e_chunk * chunk
        if (start, start + row.width) != run_span:
            total, span = lay_over(w, total, span, run, run_span)
            run, run_span = [], (start, start + row.width)
        run.append(value)  # rows aligned by align_runs share a span
    total, span = lay_over(w, total, span, run, run_span)
    y_source = w.op("Concat", [owns[p] for p in range(plan.num_fields)] + [g.tail], "y_source", axis=2)
    dots = []
    if total is not None:
        window = w.slice(y_source, span[0], span[1], 2, "window")
        dots.append(w.op("ReduceSum", [w.op("Mul", [total, window], "products"), w.ints(1, 2)], "dot", keepdims=0))
    for p, value in values.items():
        row = rows[p]
        dot = w.op("ReduceSum", [w.slice(value, row.lin, row.lin + 1, 2, "lin"), w.ints(1, 2)], "lin_dot", keepdims=0)
        if row.body_chunks:
            start = row.first_e_chunk * chunk
            body = w.slice(value, 0, row.lin, 2, "body")
            window = w.slice(y_source, start, start + row.lin, 2, "window")
            cached = w.op("ReduceSum", [w.op("Mul", [body, window], "products"), w.ints(1, 2)], "dot", keepdims=0)
            dot = w.op("Add", [dot, cached], "dot")
        if p in g.computed:
            dot = w.op("Add", [dot, computed_dot(w, plan, p, owns[p], g.computed[p], y_source)], "dot")
        dots.append(dot)
    out = w.op("Sum", dots, "pairs") if len(dots) > 1 else dots[0]
    return w.graph([out], "large_batch")


def lay_over(w: GraphWriter, total: ir.Value | None, span, run: list[ir.Value], run_span):
    """U + the run's rows (one span, summed in one op), over the run's span: U starts at or after it."""
    if not run:
        return total, span
    rows = w.op("Sum", run, "run") if len(run) > 1 else run[0]
    if total is None:
        return rows, run_span
    shifted = w.op("Pad", [total, w.ints(0, 0, span[0] - run_span[0], 0, 0, run_span[1] - span[1])], "shifted")
    return w.op("Add", [rows, shifted], "laid_over"), run_span


def small_batch_graph(plan: CachePlan, rows: list[RowLayout], g: Shared, config: FieldsLayoutConfig,
                      source: YSource) -> ir.Graph:
    """Few nodes: all rows side by side, E picked out with one Gather, Y with one chunk Gather."""
    w = GraphWriter("small_")
    chunk = config.chunk
    starts = np.cumsum([0] + [r.width for r in rows])
    chunks = int(starts[-1]) // chunk
    gathered = [w.op("Gather", [table, column], "row", axis=0) for table, column in zip(g.tables, g.columns)]
    x = as_float(w, w.op("Concat", gathered, "all_rows", axis=2), config.table_dtype)  # [B, 1, values]
    own_index = np.concatenate([starts[p] + np.arange(r.own.start, r.own.stop) for p, r in enumerate(rows)])
    e = w.op("Gather", [x, w.const(own_index.astype(np.int64), "own_index")], "e", axis=2)  # [B, 1, width of E]
    if g.scales is not None:
        own_scales = w.op("Gather", [g.scales, w.ints(1)], "own_scales", axis=2)  # [B, n, 1]
        field_of = np.repeat(np.arange(plan.num_fields), plan.position_dims).astype(np.int64)
        per_value = w.op("Gather", [w.op("Reshape", [own_scales, w.ints(0, 1, -1)], "own_scales_row"),
                                    w.const(field_of, "field_of_e")], "e_scales", axis=2)
        e = w.op("Mul", [e, per_value], "e_scaled")
    y_source = w.op("Concat", [e, g.tail], "y_source", axis=2)
    y_chunks = w.op("Reshape", [y_source, w.ints(0, source.chunks, chunk)], "y_chunks")
    y_index = [j for row in rows for j in row.y_chunks(source.unit_chunk)]
    y = w.op("Gather", [y_chunks, w.const(np.array(y_index, np.int64), "y_index")], "y", axis=1)  # [B, chunks, C]
    products = w.op("Mul", [w.op("Reshape", [x, w.ints(0, chunks, chunk)], "x_chunks"), y], "products")
    if g.scales is None:
        total = w.op("ReduceSum", [products, w.ints(1, 2)], "cached_pairs", keepdims=0)
    else:
        per_chunk = w.op("ReduceSum", [products, w.ints(2)], "chunk_dots", keepdims=0)  # [B, chunks]
        body_scales = w.op("Reshape", [w.op("Gather", [g.scales, w.ints(0)], "body_scales", axis=2), w.ints(0, -1)],
                           "body_scales_row")
        chunk_field = np.repeat(np.arange(plan.num_fields), [r.chunks for r in rows])
        scales = w.op("Gather", [body_scales, w.const(chunk_field.astype(np.int64), "field_of_chunk")], "chunk_scales",
                      axis=1)
        total = w.op("ReduceSum", [w.op("Mul", [per_chunk, scales], "chunk_dots_scaled"), w.ints(1)], "cached_pairs",
                     keepdims=0)
    for p, matrices in g.computed.items():
        own = w.slice(e, plan.offsets[p], plan.offsets[p + 1], 2, "own")
        total = w.op("Add", [total, computed_dot(w, plan, p, own, matrices, y_source)], "pairs")
    return w.graph([total], "small_batch")
