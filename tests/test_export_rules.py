"""The cache-fold rules on hand-built graphs: what they fold, what they refuse, and exactness."""

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from export.passes import pairs_pipeline, rewrite

RNG = np.random.default_rng(0)


def projection_graph(table_shape, matrix_shape, block):
    """ids -> Reshape(MatMul(Gather(T, ids), W), [-1, c, block]) -> y."""
    t = RNG.standard_normal(table_shape).astype(np.float32)
    w = RNG.standard_normal(matrix_shape).astype(np.float32)
    c = matrix_shape[1] // block
    nodes = [helper.make_node("Gather", ["T", "ids"], ["rows"], axis=0),
             helper.make_node("MatMul", ["rows", "W"], ["projected"]),
             helper.make_node("Reshape", ["projected", "shape"], ["y"])]
    inits = [numpy_helper.from_array(t, "T"), numpy_helper.from_array(w, "W"),
             numpy_helper.from_array(np.array([-1, c, block], np.int64), "shape")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch"])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", c, block])], inits)
    model = ir.serde.deserialize_model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]))
    model.metadata_props["form"] = "uncached"
    return model


def rewrite_to_cached(model):
    return rewrite(model, pairs_pipeline())


def run(model, ids):
    proto = ir.serde.serialize_model(model).SerializeToString()
    return ort.InferenceSession(proto, providers=["CPUExecutionProvider"]).run(None, {"ids": ids})[0]


@pytest.mark.parametrize("d_a, d, c", [(4, 2, 3), (4, 4, 2), (3, 1, 1)])
def test_projection_into_a_smaller_or_equal_space_folds_exactly(d_a, d, c):
    model = projection_graph((9, d_a), (d_a, c * d), d)
    ids = np.array([0, 3, 8, 3], np.int64)
    want = run(model, ids)
    cached, report = rewrite_to_cached(model)
    assert report.folds == 1 and "MatMul" not in report.after.ops
    assert cached.metadata_props["form"] == "cached" and model.metadata_props["form"] == "uncached"
    assert list(cached.graph.initializers["T@W"].const_value.shape) == [9, c * d]
    np.testing.assert_allclose(run(cached, ids), want, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(run(model, ids), want)  # the input is left as it was


def test_projection_into_a_larger_space_is_not_folded():
    """Section 4.3: caching v_a·M_ab where d_b > d_a would grow the table and the dot product."""
    model = projection_graph((9, 2), (2, 2 * 5), 5)
    _, report = rewrite_to_cached(model)
    assert report.folds == 0 and report.after.ops["MatMul"] == 1


def test_matrix_fed_as_graph_input_is_not_folded():
    model = projection_graph((9, 4), (4, 2), 2)
    w = model.graph.initializers["W"]
    model.graph.inputs.append(w)  # overridable at run time: not a constant
    assert rewrite_to_cached(model)[1].folds == 0


def test_only_uncached_models_are_rewritten():
    from fm2onnx.errors import Fm2OnnxError

    model = projection_graph((9, 4), (4, 2), 2)
    model.metadata_props["form"] = "cached"
    with pytest.raises(Fm2OnnxError, match="expected an uncached fm2onnx model"):
        rewrite_to_cached(model)
