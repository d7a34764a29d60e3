"""The request graph's floor: the same graph without the candidates' item-pair products.

It reads what the request graph reads — the context's part as the request graph computes it, each
candidate's ids clamped and its rows gathered from the same width-group tables — and sums each
candidate's rows instead of multiplying them through W_II. The request graph's time over the floor's
is what the item pairs cost; the floor's own time is the reads, the nodes and onnxruntime's run.
"""

from __future__ import annotations

import onnx_ir as ir

from ..contract import FieldRoles
from ..folds import FieldWeights
from ..graph_writer import GraphWriter
from ..request_graph import CANDIDATES, group_rows, request_inputs_and_context, request_layout


def request_floor_graph(weights: FieldWeights, roles: FieldRoles, table_dtype: str = "float32") -> ir.Model:
    """The floor of the request graph ``export_request`` writes for ``weights`` and ``roles`` (default budget)."""
    w = GraphWriter()
    layout = request_layout(weights, roles, None, table_dtype)
    inputs, per_request, _ = request_inputs_and_context(w, weights, roles, layout, table_dtype)
    xs = group_rows(w, layout.items, inputs[1], weights.spec, table_dtype, "item")
    sums = [w.op("ReduceSum", [x, w.ints(1)], "row_sum", keepdims=0) for x in xs]
    logit = w.op("Sum", sums + [per_request], "floor")
    return w.serving_model(inputs, logit, "fm2onnx_request_floor", {"form": "request floor"}, rows=CANDIDATES)
