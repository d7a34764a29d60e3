"""An uncached FmFM graph built for large batches: one GEMM over the whole embedding row.

    X = [lin_1 | v_1 | lin_2 | v_2 | ...]   (one Gather per field, concatenated)
    logit = bias + Σ X ⊙ (X·W + c)

W holds M_ab in the (a, b) block for a < b and zeros elsewhere (the linear slots too); c is 1 at the
linear slots. That is twice the FLOPs of the per-pair products (the zero blocks), but in one MatMul
over the batch, which is what a CPU does fastest: at large batches it beats tables of cached vectors
that have to be fetched from memory. ``fm2onnx export --serve-batch`` times it against the cached plans,
and the cached graph can run its batches on it (``--batched gemm``: cached tables for single requests).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir
import torch

from fm2onnx.errors import Fm2OnnxError
from models import FMFamilyModel

from . import metadata
from .fields_layout import linear_values, pair_matrix
from .graph_writer import INT64, GraphWriter
from .to_onnx import INPUT_NAME


@dataclass
class GemmTables:
    rows: list[np.ndarray]  # per field [V + 1, 1 + d] float32: [lin | v], row V a copy of the unknown row 0
    matrix: np.ndarray  # [width, width] float32: M_ab in the (a, b) block, a < b
    linear_slots: np.ndarray  # [width] float32: 1 where a linear term sits


def gemm_tables(model: FMFamilyModel) -> GemmTables:
    spec = model.spec
    starts = np.cumsum([0] + [1 + d for d in spec.dims])  # slot of field f's linear term; its vector follows
    width = int(starts[-1])
    matrix = np.zeros((width, width), np.float64)
    rows = []
    with torch.no_grad():
        for f in range(spec.num_fields):
            own = model.embeddings.tables[f].weight.detach().double().numpy()
            table = np.concatenate([linear_values(model, f, own)[:, None], own], axis=1).astype(np.float32)
            rows.append(np.concatenate([table, table[:1]]))
            for g in range(f + 1, spec.num_fields):
                matrix[starts[f] + 1:starts[f + 1], starts[g] + 1:starts[g + 1]] = pair_matrix(model, f, g)
    linear_slots = np.zeros(width, np.float32)
    linear_slots[starts[:-1]] = 1.0
    return GemmTables(rows, matrix.astype(np.float32), linear_slots)


def gemm_pairs(w: GraphWriter, model: FMFamilyModel, columns: list[ir.Value],
               weights: GraphWriter | None = None, segments: int = 4) -> ir.Value:
    """The logit without the bias, [B]: ``columns`` are per field its rows [B, 1] (0..V). ``weights``:
    where the tables go (the main graph's initializers, when ``w`` writes a subgraph)."""
    spec, tables, weights = model.spec, gemm_tables(model), weights or w
    rows = [w.op("Gather", [weights.const(table, f"gemm_table_{name}"), column], "row", axis=0)
            for table, name, column in zip(tables.rows, spec.field_names, columns)]
    width = len(tables.linear_slots)
    x = w.op("Reshape", [w.op("Concat", rows, "all_rows", axis=2), w.ints(-1, width)], "x")  # [B, width]
    # W is zero on and below its diagonal blocks, so column segment t of X·W needs only X's columns
    # before the segment's end: one MatMul per segment skips most of the zeros.
    bounds = np.unique(np.linspace(0, width, min(segments, width) + 1).round().astype(int))
    parts = []
    for t, (start, end) in enumerate(zip(bounds[:-1], bounds[1:])):
        prefix = x if end == width else w.slice(x, 0, int(end), 1, "prefix")
        block = weights.const(np.ascontiguousarray(tables.matrix[:end, start:end]), f"block_matrix_{t}")
        parts.append(w.op("MatMul", [prefix, block], "projected"))
    projected = w.op("Concat", parts, "projected", axis=1) if len(parts) > 1 else parts[0]
    projected = w.op("Add", [projected, weights.const(tables.linear_slots, "linear_slots")], "projected_plus_linear")
    return w.op("ReduceSum", [w.op("Mul", [x, projected], "products"), w.ints(1)], "terms", keepdims=0)


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
    columns = w.ops("Split", [clean], "column", n, axis=1, num_outputs=n)
    total = gemm_pairs(w, model, columns)
    logit = w.op("Add", [total, w.const(model.bias.detach().float().numpy().reshape(1), "bias")], "logit_sum")
    props = metadata.describe(spec, form="uncached", checkpoint_sha256=checkpoint_sha256)
    return w.serving_model(ids, logit, "fm2onnx_gemm", props | {"layout": "gemm", "field_order": str(list(range(n)))})
