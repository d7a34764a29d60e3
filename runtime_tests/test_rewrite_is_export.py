"""``fm2onnx rewrite`` of the uncached file builds what ``fm2onnx export`` ships, from one trace."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import onnx
import pytest

from export.passes import NotApplicable
from export.passes.read_weights import read_field_weights
from models.paper_shapes import CRITEO_TABLE3_DIMS

from .conftest import criteo_shaped_model, randomized_model, write_checkpoint

MODELS = {"fmfm-table3": ("fmfm", CRITEO_TABLE3_DIMS), "fwfm": ("fwfm", None)}
CASES = [pytest.param("fmfm-table3", marks=pytest.mark.slow), "fwfm"]


def op_histogram(proto: onnx.ModelProto) -> Counter:
    def nodes(graph):
        for node in graph.node:
            yield node.op_type
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    yield from nodes(attr.g)
    return Counter(nodes(proto.graph))


def tables(proto: onnx.ModelProto) -> dict[str, bytes]:
    def inits(graph):
        for t in graph.initializer:
            yield t.name, onnx.numpy_helper.to_array(t).tobytes()
        for node in graph.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    yield from inits(attr.g)
    return dict(inits(proto.graph))


@pytest.mark.parametrize("name", CASES)
def test_rewrite_of_the_uncached_file_equals_the_default_export(name, cli, tmp_path, monkeypatch):
    import export.pipeline

    kind, dims = MODELS[name]
    ckpt = write_checkpoint(criteo_shaped_model(kind, dims), tmp_path / "ckpt.pt")
    traced = []
    trace = export.pipeline.export_uncached
    monkeypatch.setattr(export.pipeline, "export_uncached", lambda *a, **k: traced.append(1) or trace(*a, **k))
    code, out, err = cli("export", ckpt, "--form", "both")
    assert code == 0, err
    assert len(traced) == 1  # one trace serves the uncached and the cached graph
    assert "rewrite of a" in out and "FLOPs, one request" in out
    code, out, err = cli("rewrite", tmp_path / "ckpt.uncached.onnx", "-o", tmp_path / "r.onnx")
    assert code == 0, err
    exported, rewritten = onnx.load(str(tmp_path / "ckpt.onnx")), onnx.load(str(tmp_path / "r.onnx"))
    assert op_histogram(rewritten) == op_histogram(exported)
    assert tables(rewritten) == tables(exported)  # same names, same bytes
    assert exported.SerializeToString() == rewritten.SerializeToString()


def test_rewrite_takes_the_export_options(cli, tmp_path):
    model = randomized_model("fmfm", (3, 5, 1, 4, 2, 5), seed=9)
    ckpt = write_checkpoint(model, tmp_path / "ckpt.pt")
    options = ["--cache-budget", "200", "--table-dtype", "int8", "--batched", "cached"]
    assert cli("export", ckpt, "--form", "both", *options)[0] == 0
    code, out, err = cli("rewrite", tmp_path / "ckpt.uncached.onnx", "-o", tmp_path / "r.onnx", *options, "--json")
    assert code == 0, err
    assert json.loads(out)["passes"][0]["name"] == "fields_layout"
    a, b = onnx.load(str(tmp_path / "ckpt.onnx")), onnx.load(str(tmp_path / "r.onnx"))
    assert a.SerializeToString() == b.SerializeToString()
    props = {p.key: p.value for p in b.metadata_props}
    assert props["table_dtype"] == "int8" and props["batched"] == "cached" and "budget" in props["cache_plan"]


def test_a_graph_the_fields_layout_cannot_read_says_which_node_and_why(exported):
    from export.model_io import load_model

    _, _, uncached, _ = exported(("fmfm", (3, 5, 1, 4, 2, 5)))
    graph = load_model(uncached)
    matmul = next(n for n in graph.graph if n.op_type == "MatMul" and n.outputs[0].uses()[0].node.op_type == "Reshape")
    matrix = matmul.inputs[1]
    graph.graph.inputs.append(matrix)  # overridable at run time: no longer a constant to fold
    with pytest.raises(NotApplicable, match=rf"node '{matmul.name}' \(MatMul\): the field matrices are not a constant"):
        read_field_weights(graph)
    with pytest.raises(NotApplicable, match="a fm model has no scalar, diagonal or full field matrices"):
        read_field_weights(load_model(exported(("fm", None))[2]))


@pytest.mark.slow  # exports a 39-field model
def test_flops_reports_one_request_and_batches_apart(cli, tmp_path):
    """Table 3's dims: the one-request branch within 25% of the plan's 8,960 FLOPs, batches apart."""
    ckpt = write_checkpoint(criteo_shaped_model("fmfm", CRITEO_TABLE3_DIMS), tmp_path / "ckpt.pt")
    assert cli("export", ckpt)[0] == 0
    code, out, _ = cli("flops", tmp_path / "ckpt.onnx", "--json")
    flops = json.loads(out)[str(tmp_path / "ckpt.onnx")]["flops"]
    assert code == 0 and abs(flops["one_request"] - 8960) <= 0.25 * 8960
    assert flops["batches"] > 10 * flops["one_request"]  # the GEMM form: more FLOPs, faster on a CPU
    code, text, _ = cli("flops", tmp_path / "ckpt.onnx")
    assert f"one request: {flops['one_request']:,} FLOPs; batches: {flops['batches']:,} FLOPs per row" in text
    assert np.isfinite(flops["one_request"])
