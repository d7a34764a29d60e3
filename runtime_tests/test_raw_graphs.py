"""Raw-feature graphs: the checkpoint's preprocessing inside the graph, equal to the Python preprocessing.

Parity is exact on the ids (every row, every field) and so the logits are the id graph's own. Rows:
the synthetic Criteo/Avazu rows the vocabularies were counted on (rare values included), probe rows
made from the vocabularies (bucket edges, unseen, missing, malformed values), every day of 2000-2099
for the hour rules, and a csv file with float columns for the non-integer numeric rules.
"""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper

from export.parity import outputs_in_serving_batches as outputs
from export.ort import session
from export.raw_export import raw_parity
from export.raw_input import CATEGORICAL_INPUT, NUMERIC_INPUT, RawContract, attach_raw_input
from export.raw_rows import graph_feeds, probe_rows, python_ids, read_rows
from export.raw_tables import bucket_edge
from fm2onnx.data.buckets import log2_buckets
from fm2onnx.data import encode_file, get_format

from .raw_checkpoints import raw_models  # noqa: F401  (session fixture)

FORMS = ("cached", "uncached")


@pytest.mark.parametrize("fmt", ["criteo", "avazu"])
def test_raw_graph_equals_the_id_graph_on_the_python_preprocessing(raw_models, fmt):
    models = raw_models(fmt)
    pre = models.preprocessor
    contract = RawContract.of(pre)
    row_sets = {"file": read_rows(models.data, pre, 100_000), "probe": probe_rows(pre, 3000, seed=1)}
    for form in FORMS:
        raw, ids = session(models.raw[form]), session(models.ids[form])
        for name, rows in row_sets.items():
            parity = raw_parity(raw, ids, pre, contract, rows)
            assert parity.ok and parity.max_abs_logit == 0.0, f"{fmt} {form} {name}: {parity.describe()}"
    unknown = python_ids(pre, row_sets["file"]) == 0
    assert 0.01 < unknown.mean() < 0.6  # missing and rare values really occur, and not only them


def test_raw_graph_contract_domains_and_metadata(raw_models):
    models = raw_models("criteo")
    proto = onnx.load(str(models.raw["cached"]))
    onnx.checker.check_model(proto, full_check=True)
    assert {o.domain for o in proto.opset_import} == {"", "ai.onnx.ml"}
    assert {n.domain for n in proto.graph.node} <= {"", "ai.onnx.ml"}
    inputs = {i.name: i.type.tensor_type for i in proto.graph.input}
    assert inputs[NUMERIC_INPUT].elem_type == TensorProto.DOUBLE
    assert inputs[CATEGORICAL_INPUT].elem_type == TensorProto.STRING
    assert [d.dim_value for d in inputs[NUMERIC_INPUT].shape.dim][1:] == [13]
    assert [o.name for o in proto.graph.output] == ["probability", "logit", "feature_ids"]
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["input"] == "raw" and props["raw_input_version"] == "1" and props["form"] == "cached"
    assert json.loads(props["numeric_columns"]) == [f"I{i}" for i in range(1, 14)]
    assert json.loads(props["categorical_columns"]) == [f"C{i}" for i in range(1, 27)]
    avazu = {p.key: p.value for p in onnx.load(str(raw_models("avazu").raw["cached"])).metadata_props}
    assert json.loads(avazu["categorical_columns"])[:2] == ["hour", "C1"]
    assert NUMERIC_INPUT not in {i.name for i in onnx.load(str(raw_models("avazu").raw["cached"])).graph.input}


def test_every_day_of_the_century_and_malformed_hours(raw_models):
    models = raw_models("avazu")
    pre = models.preprocessor
    days = [dt.date(2000, 1, 1) + dt.timedelta(days=d) for d in range(36525)]
    hours = [d.strftime("%y%m%d") + f"{i % 24:02d}" for i, d in enumerate(days)]
    hours += ["00022900", "00022929", "01022900", "14022900", "16022900", "14023000", "14043100", "14000100",
              "14130100", "14010024", "14010099", "14010000x", "1401010", "", "  14010100", "14010100\u2003"]
    base = read_rows(models.data, pre, 1)
    rows = {column: values * len(hours) for column, values in base.items()}
    rows["hour"] = hours
    raw, ids = session(models.raw["cached"]), session(models.ids["cached"])
    parity = raw_parity(raw, ids, pre, RawContract.of(pre), rows)
    assert parity.ok, parity.describe()


def test_documented_divergence_leading_non_ascii_space_in_an_hour(raw_models):
    """Python strips any Unicode space; the graph reads an hour with one in front as unknown."""
    models = raw_models("avazu")
    pre = models.preprocessor
    base = read_rows(models.data, pre, 1)
    rows = {**base, "hour": ["\u00a014102100"]}
    got = outputs(session(models.raw["cached"]), graph_feeds(RawContract.of(pre), rows))["feature_ids"]
    assert got[0, :2].tolist() == [0, 0]
    assert python_ids(pre, {**base, "hour": ["14102100"]})[0, :2].tolist() == \
        python_ids(pre, rows)[0, :2].tolist()


def test_bucket_edges_are_where_numpy_changes_bucket():
    ks = np.arange(1, 2500)
    edges = bucket_edge(ks)
    assert (log2_buckets(edges) >= ks).all()
    assert (log2_buckets(np.nextafter(edges, 0)) < ks).all()
    assert edges[0] == pytest.approx(math.e) and bucket_edge([10**6])[0] == math.inf


# ----------------------------------------------------------------------------- float columns (csv)


def _ids_only_graph(n_fields: int) -> ir.Model:
    """A stand-in id graph (logit = sum of ids): the preprocessing alone, without a torch export."""
    ids = helper.make_tensor_value_info("feature_ids", TensorProto.INT64, ["batch", n_fields])
    nodes = [helper.make_node("Cast", ["feature_ids"], ["ids_f"], to=TensorProto.FLOAT),
             helper.make_node("ReduceSum", ["ids_f", "axes"], ["logit"], keepdims=0),
             helper.make_node("Sigmoid", ["logit"], ["probability"])]
    graph = helper.make_graph(nodes, "ids", [ids],
                              [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["batch"]),
                               helper.make_tensor_value_info("logit", TensorProto.FLOAT, ["batch"])],
                              initializer=[helper.make_tensor("axes", TensorProto.INT64, [1], [1])])
    return ir.from_proto(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))


def test_float_columns_follow_the_vocabulary_rules(tmp_path):
    rng = np.random.default_rng(3)
    n = 3000
    small = np.round(rng.uniform(-1.5, 2.0, n), 1)  # few distinct values <= 2, each seen often
    big = np.exp(rng.uniform(0.7, 9, n))  # every bucket from L0 up
    price = np.where(rng.random(n) < 0.5, small, big)
    lines = ["label,price,ratio,site"]
    for i in range(n):
        ratio = "" if i % 7 == 0 else ("1e3" if i % 11 == 0 else repr(float(rng.choice([0.25, 1e-7, -0.0, 2.0, 3.5]))))
        lines.append(f"{i % 2},{float(price[i])!r},{ratio},s{int(rng.integers(0, 40))}")
    data = tmp_path / "rows.csv"
    data.write_text("\n".join(lines) + "\n")
    schema = {"label": "label", "numeric": ["price", "ratio"], "categorical": ["site"]}
    fmt = get_format("csv", schema)
    pre = encode_file(data, fmt, tmp_path / "enc", min_count=2, progress=False).preprocessor
    assert any(t.startswith("L0") for t in pre.tokens("price")) and "1e-7" in pre.tokens("ratio")

    graph = _ids_only_graph(pre.n_fields)
    contract = attach_raw_input(graph, pre)
    path = tmp_path / "raw.onnx"
    ir.save(graph, path)
    raw = session(path)
    for rows in (read_rows(data, pre, n), probe_rows(pre, 4000, seed=2)):
        got = outputs(raw, graph_feeds(contract, rows))["feature_ids"]
        want = python_ids(pre, rows)
        bad = np.flatnonzero((got != want).any(axis=1))
        assert not len(bad), f"row {bad[0]}: {[rows[c][bad[0]] for c in ('price', 'ratio', 'site')]} " \
                             f"graph {got[bad[0]]} Python {want[bad[0]]}"
