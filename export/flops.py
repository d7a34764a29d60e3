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
* If: fm2onnx's branches compute the same values two ways, by batch size (``Greater(batch, k)``).
  ``count_flops(model, batch=(lo, hi))`` counts the branches batches of lo..hi requests can take,
  ``flops_by_batch`` one request and batches of 2 or more apart; an If whose branches are all
  reachable counts its larger branch (``branch=min``: its smaller).

Shapes are per row: the symbolic batch dim (and any other dim shape inference leaves unknown)
counts as 1. Ops outside these lists are reported as uncounted rather than guessed.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
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
    # of ``total``, the ops whose output has a symbolic dim: per row of the batch (a request graph: per
    # candidate); the rest is computed once per run (a request graph: per request)
    per_row: int = 0


@dataclass(frozen=True)
class BatchFlops:
    """FLOPs per row for a single request and for batches of 2 or more (equal for an If-free graph)."""

    one_request: int
    batches: int

    @property
    def branched(self) -> bool:
        return self.one_request != self.batches

    def describe(self) -> str:
        if not self.branched:
            return f"{self.one_request:,} FLOPs per row"
        return f"one request: {self.one_request:,} FLOPs; batches: {self.batches:,} FLOPs per row"

    def to_dict(self) -> dict:
        return {"one_request": self.one_request, "batches": self.batches}


def flops_by_batch(model: ir.Model, *, infer_shapes: bool = True) -> BatchFlops:
    if infer_shapes:
        ShapeInferencePass()(model)
    return BatchFlops(count_flops(model, infer_shapes=False, batch=(1, 1)).total,
                      count_flops(model, infer_shapes=False, batch=(2, math.inf)).total)


def count_flops(model: ir.Model, *, infer_shapes: bool = True, branch=max,
                batch: tuple[float, float] | None = None) -> FlopsCount:
    """FLOPs per row of ``model``'s main graph (shape inference first unless told it was done); ``batch``
    (lo, hi) keeps the If branches such batches take, ``branch`` picks among those left."""
    if infer_shapes:
        ShapeInferencePass()(model)
    result = FlopsCount()
    choose = branch if batch is None else BatchChooser(batch, branch)
    for node in model.graph:
        flops = node_flops(node, choose)
        if flops is None:
            result.uncounted.append(f"{node.op_type} {node.name}")
            continue
        result.total += flops
        result.by_op_type[node.op_type] += flops
        if node.op_type == "If" or any(not all(isinstance(d, int) for d in (o.shape or [])) for o in node.outputs):
            result.per_row += flops
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


@dataclass(frozen=True)
class BatchChooser:
    """Picks an If's count among the branches a batch of ``batch`` = (lo, hi) requests can take."""

    batch: tuple[float, float]
    among: object = max

    def __call__(self, counts: list[int], node: ir.Node | None = None) -> int:
        taken = {branch_taken(node, b) for b in self.samples()} if node is not None else {None}
        if None in taken or len(counts) != 2:
            return self.among(counts)
        reachable = [c for c, branch in zip(counts, (True, False)) if branch in taken]
        return self.among(reachable)

    def samples(self) -> list[int]:
        """Batch sizes standing for the range: each size up to 1,024 in it, and a huge one if open."""
        lo, hi = int(self.batch[0]), self.batch[1]
        return list(range(lo, int(min(hi, 1024)) + 1)) + ([1 << 30] if hi > 1024 else [])


def branch_taken(node: ir.Node, batch: int) -> bool | None:
    """Whether an If takes its then-branch for ``batch`` rows, when its condition is a function of the
    batch size (a Shape's first dim) and constants; None when it is not."""
    cond = node.inputs[0] if node.inputs else None
    value = evaluate_on_batch(cond, batch)
    return None if value is None else bool(np.asarray(value).reshape(-1)[0])


CONDITION_OPS = {"Greater": np.greater, "Less": np.less, "Equal": np.equal, "GreaterOrEqual": np.greater_equal,
                 "LessOrEqual": np.less_equal, "And": np.logical_and, "Or": np.logical_or, "Not": np.logical_not}


def evaluate_on_batch(value: ir.Value | None, batch: int) -> np.ndarray | None:
    if value is None:
        return None
    if value.const_value is not None:
        return value.const_value.numpy()
    node = value.producer()
    if node is None:
        return None
    if node.op_type == "Shape":
        starts_at_batch = node.attributes.get_int("start", 0) == 0 and node.attributes.get_int("end", 1) == 1
        return np.array([batch], np.int64) if starts_at_batch else None
    args = [evaluate_on_batch(x, batch) for x in node.inputs]
    if node.op_type not in CONDITION_OPS or any(a is None for a in args):
        return None
    return CONDITION_OPS[node.op_type](*args)


def if_flops(node: ir.Node, branch=max) -> int | None:
    branches = [node.attributes[name].as_graph() for name in ("then_branch", "else_branch") if name in node.attributes]
    counts = [graph_flops(g, branch) for g in branches]
    if not counts or any(c is None for c in counts):
        return None
    return branch(counts, node) if isinstance(branch, BatchChooser) else branch(counts)


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
