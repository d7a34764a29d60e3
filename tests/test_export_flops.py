"""FLOPs conventions on hand-built graphs (no torch export involved)."""

import numpy as np
import onnx_ir as ir
from onnx import TensorProto, helper, numpy_helper

from export.flops import BatchFlops, count_flops, flops_by_batch


def graph(nodes, inputs, outputs, initializers=()):
    g = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(a, n) for n, a in initializers])
    return ir.serde.deserialize_model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]))


def tensor(name, dtype, shape):
    return helper.make_tensor_value_info(name, dtype, shape)


def test_matmul_is_two_per_multiply_add_and_batch_counts_as_one():
    model = graph([helper.make_node("MatMul", ["x", "w"], ["y"])],
                  [tensor("x", TensorProto.FLOAT, ["batch", 16])], [tensor("y", TensorProto.FLOAT, ["batch", 8])],
                  [("w", np.zeros((16, 8), np.float32))])
    assert count_flops(model).total == 2 * 16 * 8


def test_elementwise_per_output_and_reduction_per_input():
    nodes = [helper.make_node("Mul", ["x", "x"], ["sq"]),  # 741 * 16
             helper.make_node("ReduceSum", ["sq", "last"], ["dots"], keepdims=0),  # 741 * 16
             helper.make_node("ReduceSum", ["dots", "last"], ["y"], keepdims=0)]  # 741: "+1 per pair"
    model = graph(nodes, [tensor("x", TensorProto.FLOAT, ["batch", 741, 16])], [tensor("y", TensorProto.FLOAT, ["batch"])],
                  [("last", np.array([-1], np.int64))])
    count = count_flops(model)
    assert count.total == 741 * (2 * 16 + 1)
    assert count.by_op_type == {"Mul": 741 * 16, "ReduceSum": 741 * 17}


def test_data_movement_and_integer_index_arithmetic_are_free():
    nodes = [helper.make_node("Less", ["ids", "zero"], ["neg"]),
             helper.make_node("GreaterOrEqual", ["ids", "vocab"], ["past"]),
             helper.make_node("Or", ["neg", "past"], ["bad"]),
             helper.make_node("Where", ["bad", "zero", "ids"], ["clean"]),
             helper.make_node("Add", ["clean", "clean"], ["twice"]),  # int64: bookkeeping, not floating point
             helper.make_node("Gather", ["table", "twice"], ["rows"]),
             helper.make_node("Reshape", ["rows", "shape"], ["y"])]
    model = graph(nodes, [tensor("ids", TensorProto.INT64, ["batch", 3])], [tensor("y", TensorProto.FLOAT, ["batch", 12])],
                  [("zero", np.array(0, np.int64)), ("vocab", np.array([5, 5, 5], np.int64)),
                   ("table", np.zeros((5, 4), np.float32)), ("shape", np.array([-1, 12], np.int64))])
    count = count_flops(model)
    assert count.total == 0 and not count.uncounted


def test_unknown_ops_are_reported_not_guessed():
    model = graph([helper.make_node("Softmax", ["x"], ["y"], name="soft")],
                  [tensor("x", TensorProto.FLOAT, [1, 4])], [tensor("y", TensorProto.FLOAT, [1, 4])])
    assert count_flops(model).uncounted == ["Softmax soft"]


def test_gemm_and_einsum():
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["g"]),  # 2*1*3*4 + bias 3
             helper.make_node("Einsum", ["x", "w"], ["e"], equation="bk,kn->bn")]  # 2 * b*k*n
    model = graph(nodes, [tensor("x", TensorProto.FLOAT, [1, 4])],
                  [tensor("g", TensorProto.FLOAT, [1, 3]), tensor("e", TensorProto.FLOAT, [1, 3])],
                  [("w", np.zeros((4, 3), np.float32)), ("b", np.zeros(3, np.float32))])
    count = count_flops(model)
    assert count.by_op_type == {"Gemm": 27, "Einsum": 24}
    assert count.total == 51 and not count.uncounted


def batch_branched_model(condition: list, cond: str):
    """x -> If(cond) with a MatMul for batches (then) and an elementwise Mul for one request (else);
    ``condition``: the nodes computing ``cond`` from the batch size ``batch`` and the constant ``one``."""
    then = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y_big"])], "batches", [],
                             [tensor("y_big", TensorProto.FLOAT, ["batch", 8])])
    other = helper.make_graph([helper.make_node("Mul", ["x", "x"], ["y_small"])], "one", [],
                              [tensor("y_small", TensorProto.FLOAT, ["batch", 8])])
    nodes = [helper.make_node("Shape", ["x"], ["batch"], start=0, end=1), *condition,
             helper.make_node("If", [cond], ["y"], then_branch=then, else_branch=other)]
    return graph(nodes, [tensor("x", TensorProto.FLOAT, ["batch", 8])], [tensor("y", TensorProto.FLOAT, ["batch", 8])],
                 [("w", np.zeros((8, 8), np.float32)), ("one", np.array([1], np.int64)),
                  ("eight", np.array([8], np.int64))])


def test_an_if_counts_as_its_larger_branch_or_on_request_its_smaller():
    """fm2onnx's If on batch size: a MatMul for batches, an elementwise Mul for one request."""
    model = batch_branched_model([helper.make_node("Greater", ["batch", "one"], ["is_batched"])], "is_batched")
    assert count_flops(model).total == 2 * 8 * 8
    assert count_flops(model, branch=min).total == 8
    assert flops_by_batch(model) == BatchFlops(one_request=8, batches=2 * 8 * 8)


def test_flops_by_batch_evaluates_the_condition_on_the_batch_size():
    """Not(Equal(batch, 1)) and Or(Greater(batch, 8), Less(batch, 1)) send batch 1 to the else branch."""
    model = batch_branched_model([helper.make_node("Equal", ["batch", "one"], ["single"]),
                                  helper.make_node("Not", ["single"], ["many"])], "many")
    assert flops_by_batch(model) == BatchFlops(one_request=8, batches=128)
    assert flops_by_batch(model).describe() == "one request: 8 FLOPs; batches: 128 FLOPs per row"
    large = batch_branched_model([helper.make_node("Greater", ["batch", "eight"], ["above"]),
                                  helper.make_node("Less", ["batch", "one"], ["empty"]),
                                  helper.make_node("Or", ["above", "empty"], ["large"])], "large")
    assert flops_by_batch(large) == BatchFlops(one_request=8, batches=128)  # 2..8 Mul, 9 and up MatMul: the larger
