"""An uncached graph built for large batches: one GEMM over the whole embedding row (FmFM; FwFM and
FvFM one coordinate at a time, export/coordinate_form.py).

    X = [lin_1 | v_1 | lin_2 | v_2 | ...]   (rows gathered per group of fields, concatenated)
    logit = bias + Σ X ⊙ (X·W)

W holds M_ab in the (a, b) block when field a comes before b in X, zeros elsewhere, and a row of ones
from a constant-1 column of X to every linear slot (so X ⊙ X·W there is the linear term). That is more
FLOPs than the per-pair products (the zero blocks), but in a few MatMuls over the batch, which is what a
CPU does fastest: at large batches it beats tables of cached vectors that have to be fetched from
memory. ``fm2onnx export --serve-batch`` times it against the cached plans, and the cached graph
runs its batches on it by default (``--batched gemm``; single requests read the cached tables).

Fields are grouped by row width, each group's rows zero-padded to its widest and stacked in one table:
one Gather per group fetches [B, fields in group] rows. onnxruntime splits a Gather (and a Concat)
across threads only when it moves enough bytes; one-row Gathers per field never did (``fm2onnx
bench``, batch 1024: that layout got 1.38x from a second thread, the groups 1.68x).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import onnx_ir as ir

from .contract import INPUT_NAME, clamp_rows
from .coordinate_form import DIAGONAL_KINDS, coordinate_terms
from .folds import FieldWeights, encode
from .graph_writer import FLOAT, INT64, GraphWriter

GROUPS = 5  # on Table 3's fields: 8% padding values, and most Gathers large enough for two threads
# A product range's row-wise passes (its prefix Concat, its Mul and its ReduceSum, each with a cost per
# row whatever its width) take about as long as this many multiply-adds per row in its MatMul
# (bench/product_ranges.py times every option against the pick; docs/requests.md#speed)
RANGE_COST = 2_500


@dataclass
class GemmGroup:
    fields: list[int]  # in X order
    width: int  # every row padded to this many values
    table: np.ndarray  # [Σ (V_f + 1), width] float32: per field [lin | v | 0…], its row V a copy of row 0
    first_rows: list[int]  # where each field's rows start in the table


@dataclass
class GemmTables:
    groups: list[GemmGroup]
    matrix: np.ndarray  # [width of X, width of X] float32
    fields: list[int]  # the fields X is made of, in the order of the rows' columns
    lead: int = 1  # values before v in a field's row: its linear value, or none (``gemm_tables(linear=False)``)
    ones_column: int | None = None  # X's column that is always 1 (it carries the linear terms)

    def group_ends(self) -> list[int]:
        return np.cumsum([len(g.fields) * g.width for g in self.groups]).tolist()

    def product_ranges(self) -> list[tuple[int, int]]:
        """X·W's columns as (start, end) ranges, each one MatMul of X's columns up to its end. Its first
        groups share one range (their prefix is the range's own columns, so it needs no second Concat)
        and each later group has its own: as many first groups as give the fewest multiply-adds per row
        plus RANGE_COST per range. W is zero below its diagonal blocks, so a range of few, narrow columns
        spends less on the zeros its MatMul multiplies than its own passes would cost."""
        return min(self.range_options(), key=self.ranges_cost)

    def range_options(self) -> list[list[tuple[int, int]]]:
        """The cuts ``product_ranges`` chooses among: option k merges the first k + 1 groups."""
        ends = self.group_ends()
        cuts = [[ends[k]] + ends[k + 1:] for k in range(len(ends))]
        return [list(zip([0] + ranges[:-1], ranges)) for ranges in cuts]

    def ranges_cost(self, ranges: list[tuple[int, int]]) -> int:
        """Multiply-adds per row of ``ranges``' MatMuls (none for a block of zeros), plus RANGE_COST each."""
        return sum(end * (end - start) * bool(self.matrix[:end, start:end].any()) + RANGE_COST
                   for start, end in ranges)

    def vector_columns(self, dims) -> dict[int, slice]:
        """Field -> the columns of X that hold its embedding v (after its linear slot)."""
        columns, start = {}, 0
        for group in self.groups:
            for k, f in enumerate(group.fields):
                first = start + k * group.width + self.lead
                columns[f] = slice(first, first + dims[f])
            start += len(group.fields) * group.width
        return columns


def width_groups(widths: list[int], count: int) -> list[list[int]]:
    """Fields (by index) in ``count`` groups of similar width, narrowest first: a partition of the fields
    sorted by width with the fewest padding values and then, among those, groups of the most even
    sizes (Σ size², which the block-triangular MatMuls' FLOPs grow with), by dynamic programming."""
    order = sorted(range(len(widths)), key=lambda f: (widths[f], f))
    sorted_widths = [widths[f] for f in order]
    n, count = len(order), max(1, min(count, len(order)))

    def cost(start: int, end: int) -> tuple[int, int]:
        size = (end - start) * sorted_widths[end - 1]
        return size, size * size

    @lru_cache(maxsize=None)
    def best(start: int, groups: int) -> tuple[tuple[int, int], tuple[int, ...]]:
        """((padded width, Σ size²), group ends) for the fields from ``start`` on in ``groups`` groups."""
        if groups == 1:
            return cost(start, n), (n,)
        options = []
        for end in range(start + 1, n - groups + 2):
            (padded, squares), ends = best(end, groups - 1)
            here = cost(start, end)
            options.append(((here[0] + padded, here[1] + squares), (end,) + ends))
        return min(options)

    ends = best(0, count)[1]
    return [order[a:b] for a, b in zip((0,) + ends[:-1], ends)]


def gemm_tables(weights: FieldWeights, groups: int = GROUPS, fields: list[int] | None = None, *,
                linear: bool = True, ones: bool = True) -> GemmTables:
    """X and W for ``fields`` (default: all) of the model: their pairs and (``linear``) their linear
    terms, through a linear value in each row and (``ones``) a constant-1 column; without ``linear``, rows
    are v alone; without ``ones``, X ⊙ X·W leaves the linear values to whatever X·W is shifted by."""
    chosen = list(range(weights.spec.num_fields)) if fields is None else list(fields)
    lead = 1 if linear else 0
    widths = {f: lead + weights.spec.dims[f] for f in chosen}  # [lin | v]
    parts = [[chosen[i] for i in part] for part in width_groups([widths[f] for f in chosen], groups)]
    # X's constant 1: the spare last value of the narrowest field's rows (its group widened if it has none)
    ones_field = parts[0][0] if linear and ones else None
    out, slots, start = [], {}, 0
    for i, members in enumerate(parts):
        width = max(widths[f] for f in members)
        if i == 0 and ones_field is not None and widths[ones_field] == width:  # no spare value for the constant 1
            width += 1
        stacked = [field_rows(weights, f, width, f == ones_field, lead) for f in members]
        first_rows = np.cumsum([0] + [len(rows) for rows in stacked[:-1]]).tolist()
        slots.update({f: start + k * width for k, f in enumerate(members)})
        out.append(GemmGroup(members, width, np.concatenate(stacked).astype(np.float32), first_rows))
        start += len(members) * width
    matrix = np.zeros((start, start), np.float64)
    placed = [f for members in parts for f in members]
    for i, a in enumerate(placed):
        for b in placed[i + 1:]:
            matrix[slots[a] + lead:slots[a] + widths[a], slots[b] + lead:slots[b] + widths[b]] = \
                weights.pair_matrix(a, b)
    ones_column = None
    if ones_field is not None:
        ones_column = slots[ones_field] + out[0].width - 1
        matrix[ones_column, [slots[f] for f in placed]] = 1.0
    return GemmTables(out, matrix.astype(np.float32), chosen, lead, ones_column)


def field_rows(weights: FieldWeights, f: int, width: int, carries_one: bool, lead: int = 1) -> np.ndarray:
    """Field f's rows [lin | v | 0…] (``lead`` 0: [v | 0…]) in float64, row V a copy of the unknown
    row 0; the field that carries X's constant 1 has it in its last value."""
    own = weights.tables[f]
    rows = np.zeros((len(own) + 1, width), np.float64)
    if lead:
        rows[:-1, 0] = weights.linear_values(f)
    rows[:-1, lead:lead + own.shape[1]] = own
    rows[-1] = rows[0]
    if carries_one:
        rows[:, -1] = 1.0
    return rows


def gemm_pairs(w: GraphWriter, weights: FieldWeights, rows: ir.Value, row_bases: np.ndarray | None = None,
               store: GraphWriter | None = None, groups: int = GROUPS) -> ir.Value:
    """The logit without the bias, [B]. ``rows``: [B, n] int64, field f's row (0..V) plus ``row_bases[f]``
    (the cached graph's clipped ids). ``store``: where the tables and block matrices go (the main
    graph's initializers, when ``w`` writes a subgraph). onnxruntime prepacks a MatMul's weights only
    from its own graph's initializers, so a subgraph repacks them per call; kept in the main graph
    all the same, because as the branch's own initializers the 2-thread throughput at large batches
    became erratic (``fm2onnx bench``)."""
    store = store or w
    if weights.spec.kind in DIAGONAL_KINDS:
        return coordinate_pairs(w, weights, rows, row_bases, store)
    tables = gemm_tables(weights, groups)
    return gemm_terms(w, tables, gemm_rows(w, tables, rows, row_bases, store), store)


def coordinate_pairs(w: GraphWriter, weights: FieldWeights, rows: ir.Value, row_bases: np.ndarray | None,
                     store: GraphWriter) -> ir.Value:
    """``gemm_pairs`` of diagonal field matrices, one coordinate at a time (export/coordinate_form.py):
    rows [lin | v] in one table with no constant-1 column; the linear value's coordinate has a zero
    matrix and is shifted by 1 instead."""
    tables = gemm_tables(weights, 1, linear=True, ones=False)
    (x,) = gemm_rows(w, tables, rows, row_bases, store)
    n, width = len(tables.fields), tables.groups[0].width
    shift = np.zeros((width, 1, n), np.float32)
    shift[0] = 1.0
    return coordinate_terms(w, store, x, tables.matrix, store.const(shift, "linear_shift"), n, width)


def gemm_rows(w: GraphWriter, tables: GemmTables, rows: ir.Value, row_bases: np.ndarray | None,
              store: GraphWriter, table_dtype: str = "float32") -> list[ir.Value]:
    """X, one [B, fields in group · width] value per group: each group's rows in one Gather. ``rows``
    [B, len(tables.fields)]: column i holds field tables.fields[i]'s row (plus ``row_bases[i]``)."""
    n, column_of = len(tables.fields), {f: i for i, f in enumerate(tables.fields)}
    shift = np.zeros(n, np.int64) if row_bases is None else -np.asarray(row_bases, np.int64)
    for group in tables.groups:
        shift[[column_of[f] for f in group.fields]] += group.first_rows
    rows = w.op("Add", [rows, w.const(shift, "group_rows")], "rows") if shift.any() else rows
    in_order = tables.groups[0].fields == tables.fields  # one group, fields as they come
    columns = None if in_order else w.ops("Split", [rows], "column", n, axis=1, num_outputs=n)
    xs = []
    for i, group in enumerate(tables.groups):
        if columns is None:
            index = rows
        elif len(group.fields) == 1:
            index = columns[column_of[group.fields[0]]]
        else:  # [B, fields in group]
            index = w.op("Concat", [columns[column_of[f]] for f in group.fields], "group_index", axis=1)
        gathered = gather_rows(w, store, group.table, index, table_dtype, f"gemm_table_{i}")
        xs.append(w.op("Reshape", [gathered, w.ints(-1, len(group.fields) * group.width)], "x"))
    return xs


def gather_rows(w: GraphWriter, store: GraphWriter, table: np.ndarray, index: ir.Value, dtype: str,
                name: str) -> ir.Value:
    """Rows of ``table`` as float32, stored in ``dtype``: only the gathered rows are converted (int8
    rows times their own scale)."""
    if dtype == "float32":
        return w.op("Gather", [store.const(table, name), index], "group_rows", axis=0)
    values, scales = encode(table.astype(np.float64), np.zeros(table.shape[1], bool), dtype)
    gathered = w.op("Cast", [w.op("Gather", [store.const(values, name), index], "packed_rows", axis=0)],
                    "group_rows", to=FLOAT)
    if scales is None:
        return gathered
    scale = w.op("Gather", [store.const(scales[:, :1], f"{name}_scales"), index], "row_scales", axis=0)
    return w.op("Mul", [gathered, scale], "group_rows")


def gemm_terms(w: GraphWriter, tables: GemmTables, xs: list[ir.Value], store: GraphWriter,
               shifts: list[ir.Value] | None = None) -> ir.Value:
    """Σ X ⊙ (X·W + shift), [B], one term per product range (``GemmTables.product_ranges``). ``shifts``,
    per range [1, its width]: a row added to every X·W (a request's context products,
    export/request_graph.py), whose values meet X's own."""
    # W is zero below its diagonal blocks, so a range's columns of X·W need only X's columns up to its end
    terms, ends, prefix, joined = [], tables.group_ends(), xs[0], 1
    for h, (start, end) in enumerate(tables.product_ranges()):
        block, groups = tables.matrix[:end, start:end], ends.index(end) + 1
        if groups > joined:  # the last prefix and the groups after it: a Concat copies a row per input
            prefix, joined = w.op("Concat", [prefix, *xs[joined:groups]], "prefix", axis=1), groups
        own = prefix if start == 0 else xs[groups - 1]  # a range after the first is one group
        if shifts is not None and not block.any():  # e.g. a lone first field: it pairs only with the shift
            projected = shifts[h]
        else:
            projected = w.op("MatMul", [prefix, store.const(np.ascontiguousarray(block), f"block_matrix_{h}")],
                             "projected")
            if shifts is not None:
                projected = w.op("Add", [projected, shifts[h]], "shifted")
        terms.append(w.op("ReduceSum", [w.op("Mul", [own, projected], "products"), w.ints(1)], "terms", keepdims=0))
    return w.op("Sum", terms, "pairs") if len(terms) > 1 else terms[0]


def build_gemm_graph(weights: FieldWeights, props: dict[str, str]) -> ir.Model:
    """The GEMM form as a model of its own (``props``: the uncached graph's metadata)."""
    n, w = weights.spec.num_fields, GraphWriter()
    ids = ir.val(INPUT_NAME, dtype=INT64, shape=ir.Shape(["batch", n]))
    clean = clamp_rows(w, ids, np.zeros(n, np.int64), np.array(weights.spec.vocab_sizes, np.int64))
    total = gemm_pairs(w, weights, clean)
    logit = w.op("Add", [total, w.const(np.array([weights.bias], np.float32), "bias")], "logit_sum")
    return w.serving_model(ids, logit, "fm2onnx_gemm", props | {"layout": "gemm", "field_order": str(list(range(n)))})
