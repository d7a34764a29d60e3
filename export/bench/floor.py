"""The floor: a graph that gathers exactly the table bytes a cached model reads per sample, one
contiguous row per field, and sums them. At large batches, where the time is memory traffic, the
cached model's time over the floor's is what its arithmetic costs; at small ones the time is node
count, and the cached model's run Gathers beat the floor's one Gather per field.

Built on the cached model's own tables (same rows, run padding included, same dtype, same scale
lookups), in two shapes, and the bench keeps the faster at each batch size: ``concat`` (one Concat,
one ReduceSum: fewest nodes, best for small batches) and ``per_field`` (a ReduceSum per gathered row
while it is in cache, then one Sum: best for large batches).
"""

from __future__ import annotations

import json

import onnx_ir as ir

from fm2onnx.errors import Fm2OnnxError

from ..graph_writer import FLOAT, INT64, GraphWriter
from ..contract import INPUT_NAME

FLOOR_SHAPES = ("concat", "per_field")


def floor_graph(cached: ir.Model, shape: str) -> ir.Model:
    """The floor of a fields-layout model: each field's row of its run table, as the cached model reads it."""
    if shape not in FLOOR_SHAPES:
        raise Fm2OnnxError(f"unknown floor shape {shape!r}")
    props = cached.metadata_props
    if props.get("layout") != "fields":
        raise Fm2OnnxError("the floor is defined for fields-layout models")
    order = json.loads(props["field_order"])
    runs = json.loads(props["runs"])
    inits = cached.graph.initializers
    w = GraphWriter()
    n = len(order)
    ids = ir.val(INPUT_NAME, dtype=INT64, shape=ir.Shape(["batch", n]))
    columns = w.ops("Split", [ids], "column", n, axis=1, num_outputs=n)
    rows = []
    for r, run in enumerate(runs):
        table = inits[f"table_run{r}"]
        shared = w.tape.initializer(table.const_value, name=table.name)  # the cached model's tensor, not a copy
        for p, base in zip(range(*run["positions"]), run["bases"]):
            index = columns[order[p]] if not base else w.op("Add", [columns[order[p]], w.ints(base)], "row_index")
            rows.append(w.op("Gather", [shared, index], "row", axis=0))
    table_dtype = inits["table_run0"].dtype
    extra = []
    scales = inits.get("row_scales")
    if scales is not None:  # int8: the per-row scales, one lookup per field as in the cached model
        shared = w.tape.initializer(scales.const_value, name=scales.name)
        index = w.op("Gather", [ids, w.ints(*order, hint="order")], "ids_ordered", axis=1)
        extra.append(w.op("ReduceSum", [w.op("Gather", [shared, index], "scales", axis=0), w.ints(1, 2)],
                          "scale_sum", keepdims=0))

    def as_float(x: ir.Value) -> ir.Value:
        return x if table_dtype == FLOAT else w.op("Cast", [x], "float", to=FLOAT)

    if shape == "concat":
        total = w.op("ReduceSum", [as_float(w.op("Concat", rows, "all_rows", axis=2)), w.ints(1, 2)], "sum",
                     keepdims=0)
        parts = [total] + extra
    else:
        parts = [w.op("ReduceSum", [as_float(r), w.ints(1, 2)], "row_sum", keepdims=0) for r in rows] + extra
    total = w.op("Sum", parts, "floor") if len(parts) > 1 else parts[0]
    total.name = "logit"
    total.dtype, total.shape = FLOAT, ir.Shape(["batch"])
    graph = w.graph([total], f"floor_{shape}", inputs=[ids])
    model = ir.Model(graph, ir_version=10)
    model.metadata_props.update({"form": f"floor ({shape})", "table_dtype": props.get("table_dtype", "float32")})
    return model
