"""An uncached FmFM graph built for large batches: one GEMM over the whole embedding row.

    X = [lin_1 | v_1 | lin_2 | v_2 | ...]   (one Gather per field, concatenated)
    logit = bias + Σ X ⊙ (X·W + c)

W holds M_ab in the (a, b) block for a < b and zeros elsewhere (the linear slots too); c is 1 at the
linear slots. That is twice the FLOPs of the per-pair products (the zero blocks), but in one MatMul
over the batch, which is what a CPU does fastest: at large batches it beats tables of cached vectors
that have to be fetched from memory. ``fm2onnx export --serve-batch`` times it against the cached plans.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
import torch

from fm2onnx.errors import Fm2OnnxError
from models import FMFamilyModel

from . import metadata
from .fields_layout import linear_values, pair_matrix
from .graph_writer import FLOAT, INT64, GraphWriter
from .to_onnx import INPUT_NAME, OUTPUT_NAMES


def build_gemm_graph(model: FMFamilyModel, *, checkpoint_sha256: str = "") -> ir.Model:
    spec = model.spec
    if spec.kind != "fmfm":
        raise Fm2OnnxError(f"the GEMM form is for FmFM models, not {spec.kind}")
    n = spec.num_fields
    starts = np.cumsum([0] + [1 + d for d in spec.dims])  # slot of field f's linear term; its vector follows
    width = int(starts[-1])
    w = GraphWriter()
    ids = ir.val(INPUT_NAME, dtype=INT64, shape=ir.Shape(["batch", n]))
    vocab = w.const(np.array(spec.vocab_sizes, np.int64), "vocab_sizes")
    zero = w.const(np.array(0, np.int64), "zero")
    bad = w.op("Or", [w.op("Less", [ids, zero], "negative"), w.op("GreaterOrEqual", [ids, vocab], "past_vocabulary")],
               "bad_id")
    columns = w.ops("Split", [w.op("Where", [bad, zero, ids], "ids")], "column", n, axis=1, num_outputs=n)
    matrix = np.zeros((width, width), np.float64)
    rows = []
    with torch.no_grad():
        for f in range(n):
            own = model.embeddings.tables[f].weight.detach().double().numpy()
            table = np.concatenate([linear_values(model, f, own)[:, None], own], axis=1).astype(np.float32)
            rows.append(w.op("Gather", [w.const(table, f"table_{spec.field_names[f]}"), columns[f]], "row", axis=0))
            for g in range(f + 1, n):
                matrix[starts[f] + 1:starts[f + 1], starts[g] + 1:starts[g + 1]] = pair_matrix(model, f, g)
    x = w.op("Reshape", [w.op("Concat", rows, "all_rows", axis=2), w.ints(-1, width)], "x")  # [B, width]
    linear_slots = np.zeros(width, np.float32)
    linear_slots[starts[:-1]] = 1.0
    projected = w.op("Add", [w.op("MatMul", [x, w.const(matrix.astype(np.float32), "block_matrix")], "projected"),
                             w.const(linear_slots, "linear_slots")], "projected_plus_linear")
    total = w.op("ReduceSum", [w.op("Mul", [x, projected], "products"), w.ints(1)], "terms", keepdims=0)
    logit = w.op("Add", [total, w.const(model.bias.detach().float().numpy().reshape(1), "bias")], "logit_sum")
    probability = w.op("Sigmoid", [logit], "probability_sum")
    probability.name, logit.name = OUTPUT_NAMES
    for value in (probability, logit):
        value.dtype, value.shape = FLOAT, ir.Shape(["batch"])
    out = ir.Model(w.graph([probability, logit], "fm2onnx_gemm", inputs=[ids]), ir_version=10)
    props = metadata.describe(spec, form="uncached", checkpoint_sha256=checkpoint_sha256)
    props.update({"layout": "gemm", "field_order": str(list(range(n)))})
    metadata.stamp(out, props)
    return out
