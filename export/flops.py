"""Static floating-point operation count per prediction (one row, batch = 1).

Counted from the graph's value shapes after ONNX shape inference, with these conventions:

* data movement is free: Gather, Slice, Reshape, Concat, Transpose, Cast, Shape, Where, Expand,
  Tile, (Un)Squeeze, Identity, Constant ... count 0;
* integer and boolean arithmetic is index bookkeeping, not floating point: 0 (the in-graph id
  clamping with Less/GreaterOrEqual/Or is free);
* floating-point elementwise ops (Add, Sub, Mul, Div, Sigmoid, Neg, Exp, ...): 1 per output element;
* reductions (ReduceSum, ReduceMean, ...): 1 per input element (n inputs -> n operations, the
  paper's "+1 per pair" when P dot products are summed);
* MatMul, Gemm, Einsum: 2 per multiply-add (Gemm's bias adds 1 per output element);
* If: the larger of its two branches (fm2onnx's branches compute the same values two ways, by batch
  size); ``count_flops(..., branch=min)`` counts the smaller instead.

Shapes are per row: the symbolic batch dim (and any other dim shape inference leaves unknown)
counts as 1. Ops outside these lists are reported as uncounted rather than guessed.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import onnx_ir as ir
from onnx_ir.passes.common import ShapeInferencePass

FREE_OPS = frozenset({
    "Gather", "GatherElements", "GatherND", "Slice", "Reshape", "Concat", "Transpose", "Cast", "CastLike",
    "Shape", "Size", "Where", "Expand", "Tile", "Unsqueeze", "Squeeze", "Identity", "Constant",
    "ConstantOfShape", "Flatten", "Split", "Range", "Pad",
})
ELEMENTWISE_OPS = frozenset({
    "Add", "Sub", "Mul", "Div", "Neg", "Abs", "Sigmoid", "Tanh", "Relu", "Exp", "Log", "Sqrt", "Pow",
    "Reciprocal", "Max", "Min", "Sum", "Mean", "Clip", "Softplus", "Erf", "LeakyRelu", "HardSigmoid",
    "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "Equal", "And", "Or", "Not", "Xor", "Mod",
})
REDUCTION_OPS = frozenset({
    "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceSumSquare", "ReduceL1",
    "ReduceL2", "ReduceLogSumExp",
})
MATRIX_OPS = frozenset({"MatMul", "Gemm", "Einsum"})
FLOAT_TYPES = frozenset({ir.DataType.FLOAT, ir.DataType.DOUBLE, ir.DataType.FLOAT16, ir.DataType.BFLOAT16})


@dataclass
class FlopsCount:
    total: int = 0
    by_op_type: Counter = field(default_factory=Counter)
    uncounted: list[str] = field(default_factory=list)  # "OpType node-name" of ops with no rule or no shape


def count_flops(model: ir.Model, *, infer_shapes: bool = True, branch=max) -> FlopsCount:
    """FLOPs per row of ``model``'s main graph (shape inference first unless told it was done); ``branch``
    picks an If's count from its branches'."""
    if infer_shapes:
        ShapeInferencePass()(model)
    result = FlopsCount()
    for node in model.graph:
        flops = node_flops(node, branch)
        if flops is None:
            result.uncounted.append(f"{node.op_type} {node.name}")
            continue
        result.total += flops
        result.by_op_type[node.op_type] += flops
    return result


def node_flops(node: ir.Node, branch=max) -> int | None:
    op = node.op_type
    if node.domain not in ("", "ai.onnx"):
        return None
    if op in FREE_OPS:
        return 0
    if op in ELEMENTWISE_OPS:
        if not any(is_float(v) for v in node.inputs):
            return 0  # index arithmetic
        return numel(node.outputs[0])
    if op in REDUCTION_OPS:
        return numel(node.inputs[0])
    if op == "MatMul":
        out, inner = numel(node.outputs[0]), last_dim(node.inputs[0])
        return None if out is None or inner is None else 2 * out * inner
    if op == "Gemm":
        return gemm_flops(node)
    if op == "Einsum":
        return einsum_flops(node)
    if op == "If":
        return if_flops(node, branch)
    return None


def if_flops(node: ir.Node, branch=max) -> int | None:
    branches = [node.attributes[name].as_graph() for name in ("then_branch", "else_branch") if name in node.attributes]
    counts = [graph_flops(g, branch) for g in branches]
    return None if not counts or any(c is None for c in counts) else branch(counts)


def graph_flops(graph: ir.Graph, branch=max) -> int | None:
    total = 0
    for node in graph:
        flops = node_flops(node, branch)
        if flops is None:
            return None
        total += flops
    return total


def is_float(value: ir.Value | None) -> bool:
    return value is not None and value.dtype in FLOAT_TYPES


def dims_per_row(value: ir.Value | None) -> list[int] | None:
    """Static dims, with symbolic/unknown dims (the batch) as 1."""
    if value is None or value.shape is None:
        return None
    return [d if isinstance(d, int) else 1 for d in value.shape.dims]


def numel(value: ir.Value | None) -> int | None:
    dims = dims_per_row(value)
    return None if dims is None else math.prod(dims)


def last_dim(value: ir.Value | None) -> int | None:
    dims = dims_per_row(value)
    return dims[-1] if dims else None


def gemm_flops(node: ir.Node) -> int | None:
    a, out = dims_per_row(node.inputs[0]), numel(node.outputs[0])
    if a is None or out is None:
        return None
    inner = a[0] if node.attributes.get_int("transA", 0) else a[-1]
    bias = out if len(node.inputs) > 2 and node.inputs[2] is not None else 0
    return 2 * out * inner + bias


def einsum_flops(node: ir.Node) -> int | None:
    """2 × the product of every distinct index's size (one multiply-add per point of the loop nest)."""
    equation = node.attributes.get_string("equation", "").replace(" ", "")
    operands = equation.split("->")[0].split(",")
    sizes: dict[str, int] = {}
    for letters, value in zip(operands, node.inputs):
        dims = dims_per_row(value)
        if dims is None or "..." in letters or len(letters) != len(dims):
            return None
        sizes.update(zip(letters, dims))
    return 2 * math.prod(sizes.values())
