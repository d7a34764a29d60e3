"""An uncached FmFM graph built for large batches: one GEMM over the whole embedding row.

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
import torch

from fm2onnx.errors import Fm2OnnxError
from models import FMFamilyModel

from . import metadata
from .fields_layout import linear_values, pair_matrix
from .graph_writer import INT64, GraphWriter
from .to_onnx import INPUT_NAME

GROUPS = 5  # on Table 3's fields: 8% padding values, and most Gathers large enough for two threads


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

    def group_ends(self) -> list[int]:
        return np.cumsum([len(g.fields) * g.width for g in self.groups]).tolist()


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


def gemm_tables(model: FMFamilyModel, groups: int = GROUPS) -> GemmTables:
    spec = model.spec
    widths = [1 + d for d in spec.dims]  # [lin | v]
    parts = width_groups(widths, groups)
    # X's constant 1: the spare last value of the narrowest field's rows (its group widened if it has none)
    ones_field = parts[0][0]
    out, slots, start = [], {}, 0
    with torch.no_grad():
        for i, fields in enumerate(parts):
            width = max(widths[f] for f in fields)
            if i == 0 and widths[ones_field] == width:  # no spare value for the constant 1
                width += 1
            stacked, first_rows, rows_so_far = [], [], 0
            for k, f in enumerate(fields):
                own = model.embeddings.tables[f].weight.detach().double().numpy()
                rows = np.zeros((len(own) + 1, width), np.float64)
                rows[:-1, 0], rows[:-1, 1:widths[f]] = linear_values(model, f, own), own
                rows[-1] = rows[0]
                if f == ones_field:
                    rows[:, -1] = 1.0
                first_rows.append(rows_so_far)
                stacked.append(rows)
                rows_so_far += len(rows)
                slots[f] = start + k * width
            out.append(GemmGroup(fields, width, np.concatenate(stacked).astype(np.float32), first_rows))
            start += len(fields) * width
    matrix = np.zeros((start, start), np.float64)
    placed = [f for fields in parts for f in fields]
    for i, a in enumerate(placed):
        for b in placed[i + 1:]:
            matrix[slots[a] + 1:slots[a] + widths[a], slots[b] + 1:slots[b] + widths[b]] = pair_matrix(model, a, b)
    matrix[slots[ones_field] + out[0].width - 1, [slots[f] for f in placed]] = 1.0
    return GemmTables(out, matrix.astype(np.float32))


def gemm_pairs(w: GraphWriter, model: FMFamilyModel, rows: ir.Value, row_bases: np.ndarray | None = None,
               weights: GraphWriter | None = None, groups: int = GROUPS) -> ir.Value:
    """The logit without the bias, [B]. ``rows``: [B, n] int64, field f's row (0..V) plus ``row_bases[f]``
    (the cached graph's clipped ids). ``weights``: where the tables go (the main graph's initializers,
    when ``w`` writes a subgraph). The block matrices go there too, though onnxruntime prepacks a
    MatMul's weights only from its own graph's initializers and so packs them on every call of the
    hybrid's branch. As the branch's own initializers, small batches ran faster, but in two
    ``fm2onnx bench`` runs the hybrid's 2-thread throughput at batch 1024 fell to 50-62% of the
    usual in 5 of 8 rounds (0 of 6 in the two runs before), and its median missed the target."""
    n, tables, weights = model.spec.num_fields, gemm_tables(model, groups), weights or w
    shift = np.zeros(n, np.int64) if row_bases is None else -np.asarray(row_bases, np.int64)
    for group in tables.groups:
        shift[group.fields] += group.first_rows
    rows = w.op("Add", [rows, w.const(shift, "group_rows")], "rows") if shift.any() else rows
    in_order = tables.groups[0].fields == list(range(n))  # one group, fields as they come
    columns = None if in_order else w.ops("Split", [rows], "column", n, axis=1, num_outputs=n)
    xs = []
    for i, group in enumerate(tables.groups):
        if columns is None:
            index = rows
        elif len(group.fields) == 1:
            index = columns[group.fields[0]]
        else:  # [B, fields in group]
            index = w.op("Concat", [columns[f] for f in group.fields], "group_index", axis=1)
        gathered = w.op("Gather", [weights.const(group.table, f"gemm_table_{i}"), index], "group_rows", axis=0)
        xs.append(w.op("Reshape", [gathered, w.ints(-1, len(group.fields) * group.width)], "x"))
    # W is zero below its diagonal blocks, so group h's columns of X·W need only X's columns up to h's end
    terms, ends = [], tables.group_ends()
    for h, (start, end) in enumerate(zip([0] + ends[:-1], ends)):
        prefix = w.op("Concat", xs[:h + 1], "prefix", axis=1) if h else xs[0]
        block = weights.const(np.ascontiguousarray(tables.matrix[:end, start:end]), f"block_matrix_{h}")
        projected = w.op("MatMul", [prefix, block], "projected")
        terms.append(w.op("ReduceSum", [w.op("Mul", [xs[h], projected], "products"), w.ints(1)], "terms", keepdims=0))
    return w.op("Sum", terms, "pairs") if len(terms) > 1 else terms[0]


def build_gemm_graph(model: FMFamilyModel, *, checkpoint_sha256: str = "") -> ir.Model:
    spec = model.spec
    if spec.kind != "fmfm":
        raise Fm2OnnxError(f"the GEMM form is for FmFM models, not {spec.kind}")
    n = spec.num_fields
    w = GraphWriter()
    ids = ir.val(INPUT_NAME, dtype=INT64, shape=ir.Shape(["batch", n]))
    vocab = w.const(np.array(spec.vocab_sizes, np.int64), "vocab_sizes")
    # negative ids -> row 0 (unknown), ids past the vocabulary -> row V (a copy of row 0)
    clean = w.op("Max", [w.op("Min", [ids, vocab], "ids_capped"), w.ints(0)], "ids")
    total = gemm_pairs(w, model, clean)
    logit = w.op("Add", [total, w.const(model.bias.detach().float().numpy().reshape(1), "bias")], "logit_sum")
    props = metadata.describe(spec, form="uncached", checkpoint_sha256=checkpoint_sha256)
    return w.serving_model(ids, logit, "fm2onnx_gemm", props | {"layout": "gemm", "field_order": str(list(range(n)))})
