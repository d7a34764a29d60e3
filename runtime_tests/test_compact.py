"""Compact tables: float16 and int8 rows, converted after their Gather, within each dtype's tolerance,
and within 0.0005 AUC / log loss of float32 tables on generated held-out data."""

from __future__ import annotations

import json

import onnx
import pytest

from export.parity import TOLERANCES

from .conftest import VARIABLE_DIMS, randomized_model, write_checkpoint


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """dtype -> model path, one export per table dtype of a model with tables of some size."""
    from export import export_checkpoint
    from export.cached_form import CachedFormOptions

    root = tmp_path_factory.mktemp("compact")
    ckpt = write_checkpoint(randomized_model("fmfm", VARIABLE_DIMS, seed=4, vocab=[70, 300, 11, 240, 2, 900]),
                            root / "ckpt.pt")
    paths = {}
    for dtype in ("float32", "float16", "int8"):
        paths[dtype] = root / f"{dtype}.onnx"
        export_checkpoint(ckpt, paths[dtype], cached=CachedFormOptions(table_dtype=dtype))
    return ckpt, paths


def nodes_and_producers(graph: onnx.GraphProto, outer: dict | None = None):
    """Every node of the graph and its subgraphs, with a map value name -> producing node."""
    producers = dict(outer or {})
    nodes = []
    for node in graph.node:
        for name in node.output:
            producers[name] = node
    for node in graph.node:
        nodes.append(node)
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                sub_nodes, sub_producers = nodes_and_producers(attr.g, producers)
                nodes += sub_nodes
                producers.update(sub_producers)
    return nodes, producers


@pytest.mark.parametrize("dtype", ["float16", "int8"])
def test_rows_are_converted_after_their_gather(exports, dtype):
    _, paths = exports
    model = onnx.load(str(paths[dtype]))
    tables = [t for t in model.graph.initializer if t.name.startswith("table_")]
    assert tables and {t.data_type for t in tables} == {onnx.TensorProto.FLOAT16 if dtype == "float16" else onnx.TensorProto.INT8}
    nodes, producers = nodes_and_producers(model.graph)
    initializers = {t.name for t in model.graph.initializer}
    casts = [n for n in nodes if n.op_type in ("Cast", "DequantizeLinear")]
    assert casts and {n.domain for n in nodes} == {""}
    for cast in casts:
        assert cast.input[0] not in initializers  # never a whole table
        assert producers[cast.input[0]].op_type in ("Gather", "Concat")  # the gathered rows


def test_file_sizes_and_parity_within_each_dtypes_tolerance(cli, exports):
    ckpt, paths = exports
    sizes = {dtype: sum(len(t.raw_data) for t in onnx.load(str(path)).graph.initializer
                        if t.name.startswith("table_") or t.name == "row_scales") for dtype, path in paths.items()}
    assert sizes["float16"] == sizes["float32"] / 2 and sizes["int8"] < 0.5 * sizes["float32"]  # int8: + 2 scales a row
    assert all(path.stat().st_size < paths["float32"].stat().st_size for path in paths.values() if path != paths["float32"])
    code, out, err = cli("check", ckpt, *paths.values(), "--json")
    assert code == 0, err
    checks = {c["table_dtype"]: c for c in json.loads(out)["graphs"]}
    for dtype, check in checks.items():
        assert check["within_tolerance"] and (check["atol"], check["rtol"]) == TOLERANCES[dtype]
    assert checks["int8"]["max_abs_logit_error"] > checks["float16"]["max_abs_logit_error"] > \
        checks["float32"]["max_abs_logit_error"]
    code, _, _ = cli("check", ckpt, paths["int8"], "--tolerance", "1e-7")
    assert code == 1


@pytest.mark.slow
def test_held_out_accuracy_against_float32(tmp_path):
    from export.bench.accuracy import compact_accuracy

    results = compact_accuracy(tmp_path, rows=60_000, epochs=3, max_features=100, learning_rate=1e-2)
    assert results[0].table_dtype == "float32" and results[0].auc > 0.65  # the model learned something
    for r in results:
        assert r.within_target, f"{r.table_dtype}: ΔAUC {r.delta_auc:+.5f}, Δlog loss {r.delta_log_loss:+.5f}"
