"""Request graphs (one context, N candidates) against the float64 reference on the full rows they
stand for: every kind, random field splits, dims and N, every table dtype; what export writes."""

from __future__ import annotations

import json
import platform
import re
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from export.bench.request_forms import FLOOR, FULL, REQUEST
from export.bench.run import transparent_huge_pages
from export.contract import FieldRoles, describe, stamp
from export.flops import count_flops
from export.model_io import load_model
from export.ort import session
from export.parity import TOLERANCES, compare, parity_ids
from export.passes import rewrite
from export.passes.request_graph import RequestGraphPass
from export.request_export import export_request
from export.to_onnx import export_uncached
from fm2onnx.checkpoint import load_checkpoint
from fm2onnx.errors import Fm2OnnxError
from runtime_tests.reference import reference_logits

from .conftest import CASES, FIELDS, VARIABLE_DIMS, case_id, randomized_model, write_checkpoint

CANDIDATES = (0, 1, 2, 9, 70)


def score(sess, roles: FieldRoles, context: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    logit, probability = (sess.run([name], {"context_ids": context, "candidate_ids": candidates})[0]
                          for name in ("logit", "probability"))
    assert logit.shape == probability.shape == (len(candidates),)
    assert np.allclose(probability, 1 / (1 + np.exp(-logit.astype(np.float64))), atol=1e-6)
    return logit


def assert_requests_match(sess, roles, spec, state, sizes, tolerance, seed=0):
    for n in sizes:
        rows = parity_ids(spec, n + 1, seed=seed + n)  # unknown, negative and out-of-range ids included
        context, candidates = rows[:1, list(roles.context)], rows[1:, list(roles.items)]
        got = score(sess, roles, context, candidates)
        want = reference_logits(spec, state, roles.full_rows(context, candidates))
        parity = compare(want, got, atol=tolerance[0], rtol=tolerance[1])
        assert parity.ok, f"N = {n}: {parity.describe()}"


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_every_kind_scores_requests_of_every_size_as_full_rows(exported, case, tmp_path):
    """The context's products cached per feature (the default on a small model) and computed per request;
    FFM, FM and LR cache nothing."""
    ckpt_path = exported(case)[0]
    ckpt = load_checkpoint(ckpt_path)
    for budget in [None] if case[0] in ("ffm", "fm", "lr") else ["unlimited", "min"]:
        path = tmp_path / f"request-{budget}.onnx"
        export_request(ckpt_path, path, context=["site", "hour", "city"], items=None, cache_budget=budget)
        props = load_model(path).metadata_props
        roles = FieldRoles.of_props(props)
        assert [FIELDS[f] for f in roles.items] == ["app", "device", "banner"]
        assert props.get("context_cached", "false") == ("true" if budget == "unlimited" else "false")
        assert_requests_match(session(path), roles, ckpt.spec, ckpt.state_dict, CANDIDATES, TOLERANCES["float32"])


@pytest.mark.parametrize("case", [("fmfm", (3, 5, 1, 4, 2, 5)), ("fvfm", None), ("fm", None)], ids=case_id)
@pytest.mark.parametrize("dtype", ["float16", "int8"])
def test_compact_tables_score_requests_within_their_tolerance(exported, dtype, case, tmp_path):
    ckpt_path = exported(case)[0]
    ckpt = load_checkpoint(ckpt_path)
    export_request(ckpt_path, tmp_path / "r.onnx", context=None, items=["app", "city"], table_dtype=dtype)
    graph = load_model(tmp_path / "r.onnx")
    assert graph.metadata_props["table_dtype"] == dtype
    roles = FieldRoles.of_props(graph.metadata_props)
    assert_requests_match(session(tmp_path / "r.onnx"), roles, ckpt.spec, ckpt.state_dict, (1, 50),
                          TOLERANCES[dtype])


KINDS = ["lr", "fm", "ffm", "fwfm", "fvfm", "fmfm"]


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_splits_dims_and_sizes_match_the_reference(data):
    kind = data.draw(st.sampled_from(KINDS), "kind")
    n = data.draw(st.integers(2, 7), "fields")
    vocab = data.draw(st.lists(st.integers(1, 12), min_size=n, max_size=n), "vocab")
    dims = data.draw(st.lists(st.integers(1, 6), min_size=n, max_size=n), "dims") if kind == "fmfm" else None
    linear = data.draw(st.sampled_from(["feature", "field_vector"]), "linear") if kind in ("fwfm", "fvfm", "fmfm") else None
    context = data.draw(st.lists(st.booleans(), min_size=n, max_size=n).filter(lambda c: 0 < sum(c) < n), "roles")
    fields = [f"f{i}" for i in range(n)]
    model = randomized_model(kind, dims, seed=data.draw(st.integers(0, 99)), fields=fields, vocab=vocab, dim=3,
                             linear=linear)
    uncached = export_uncached(model)
    stamp(uncached, describe(model.spec, form="uncached", checkpoint_sha256="0"))
    roles = FieldRoles.of_names(model.spec, [f for f, c in zip(fields, context) if c], None)
    caches = kind not in ("ffm", "fm", "lr")  # FFM reads its tables as they are, FM and LR sum rows
    budget = data.draw(st.sampled_from([None, "min", "unlimited", 300]), "budget") if caches else None
    range_cost = data.draw(st.sampled_from([0, 2_500]), "product range cost")  # 0: one range per width group
    with mock.patch("export.gemm_form.RANGE_COST", range_cost):
        built, _ = rewrite(uncached, [RequestGraphPass(roles, cache_budget=budget)])
    sizes = data.draw(st.lists(st.integers(0, 40), min_size=1, max_size=3), "candidates")
    state = model.state_dict()
    assert_requests_match(session(built_bytes(built)), roles, model.spec, state, sizes, TOLERANCES["float32"])


@pytest.mark.parametrize("range_cost", [0, 2_500], ids=["a range per group", "ranges merged"])
def test_no_product_multiplies_by_a_block_of_zeros(range_cost, monkeypatch):
    """A lone first item field pairs with no item field before it: its share of s is all it meets, when it
    is a product range of its own, and its columns join the next groups' product when merged."""
    import export.gemm_form as gemm_form
    from export.folds import FieldWeights
    from export.request_graph import request_layout

    monkeypatch.setattr(gemm_form, "RANGE_COST", range_cost)
    model = randomized_model("fmfm", VARIABLE_DIMS)  # Eq. 12's linear term: item rows are v alone
    roles = FieldRoles.of_names(model.spec, ["site", "hour"], None)
    items = request_layout(FieldWeights.of_model(model), roles, None, "float32").items
    assert len(items.groups[0].fields) == 1
    assert len(items.product_ranges()) == (len(items.groups) if range_cost == 0 else 1)
    uncached = export_uncached(model)
    stamp(uncached, describe(model.spec, form="uncached", checkpoint_sha256="0"))
    built, _ = rewrite(uncached, [RequestGraphPass(roles)])
    weights = {v.name: v.const_value.numpy() for v in built.graph.initializers.values()}
    products = [node for node in built.graph if node.op_type == "MatMul"]
    assert products and all(weights[node.inputs[1].name].any() for node in products if node.inputs[1].name in weights)
    assert_requests_match(session(built_bytes(built)), roles, model.spec, model.state_dict(), (0, 1, 9),
                          TOLERANCES["float32"])


def built_bytes(model) -> bytes:
    import onnx_ir as ir

    return ir.serde.serialize_model(model).SerializeToString()


def test_export_records_roles_in_field_order_and_refuses_what_does_not_apply(cli, tmp_path):
    ckpt = write_checkpoint(randomized_model("fmfm"), tmp_path / "ckpt.pt")
    assert cli("export", ckpt, "--item-fields", "city,app")[0] == 0
    props = load_model(tmp_path / "ckpt.request.onnx").metadata_props
    assert props["form"] == "request"
    code, out, _ = cli("flops", tmp_path / "ckpt.request.onnx")
    assert code == 0 and re.search(r"[\d,]+ FLOPs per request \+ [\d,]+ per candidate \(fmfm, request\)", out), out
    assert json.loads(props["field_roles"]) == ["context", "item", "context", "context", "context", "item"]
    refusals = {("--context-fields", "site,nope"): "--context-fields: no field 'nope'",
                ("--context-fields", "site", "--item-fields", "site"): "named both context and item",
                ("--context-fields", "site,site"): "--context-fields: 'site' named more than once",
                ("--context-fields", "site", "--item-fields", "app"): "are neither context nor item",
                ("--item-fields", ",".join(FIELDS)): "at least one context field and one item field",
                ("--context-fields", "site", "--batched", "gemm"): "--batched: not an option of request",
                ("--context-fields", "site", "--parity-data", "d.csv"): "--parity-data: not an option of request",
                ("--item-fields", "app", "--parity-format", "csv"): "--parity-format: not an option of request",
                ("--context-fields", "site", "--cache-budget", "lots"): "cache budget 'lots'"}
    for args, message in refusals.items():
        code, _, err = cli("export", ckpt, *args, "-o", tmp_path / "other.onnx")
        assert code == 2 and message in err and "Traceback" not in err, (args, err)
    assert not (tmp_path / "other.onnx").exists()
    code, _, err = cli("export", ckpt, "--item-fields", "city")
    assert code == 2 and "already exists" in err


@pytest.mark.parametrize("option, pass_options", [(("--table-dtype", "float16"), {"table_dtype": "float16"}),
                                                   (("--cache-budget", "min"), {"cache_budget": "min"})])
def test_an_ffm_request_graph_refuses_compact_tables_and_caching_before_the_trace(cli, tmp_path, option,
                                                                                  pass_options):
    ckpt = write_checkpoint(randomized_model("ffm"), tmp_path / "ckpt.pt")
    code, out, err = cli("export", ckpt, "--context-fields", "site", *option)
    assert code == 2 and err.strip() == "fm2onnx: error: an FFM request graph keeps float32 embedding tables and " \
                                        "caches nothing; drop --table-dtype and --cache-budget"
    assert "tracing" not in out and sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]
    model = load_checkpoint(ckpt).model()
    roles = FieldRoles.of_names(model.spec, ["site"], None)
    uncached = export_uncached(model)
    stamp(uncached, describe(model.spec, form="uncached", checkpoint_sha256="0"))
    with pytest.raises(Fm2OnnxError, match="an FFM request graph keeps float32 embedding tables"):
        rewrite(uncached, [RequestGraphPass(roles, **pass_options)])


@pytest.mark.parametrize("roles, words", [
    (["context", "item"], 'metadata field_roles must be "context" or "item" for each of its 6 field_names'),
    (["context", "item", "context", "context", "item", "item"],
     "metadata field_roles names 3 field(s) for context_ids, which takes 4"),
])
def test_roles_that_do_not_fit_the_inputs_are_named_by_check_and_golden(cli, tmp_path, roles, words):
    import onnx

    ckpt = write_checkpoint(randomized_model("fmfm"), tmp_path / "ckpt.pt")
    export_request(ckpt, tmp_path / "r.onnx", context=None, items=["city", "app"])
    model = onnx.load(str(tmp_path / "r.onnx"))
    next(p for p in model.metadata_props if p.key == "field_roles").value = json.dumps(roles)
    onnx.save(model, str(tmp_path / "r.onnx"))
    for args in (("check", ckpt, tmp_path / "r.onnx"), ("check", tmp_path / "r.onnx", "--golden", tmp_path / "g.npz",
                                                        "--write")):
        code, _, err = cli(*args)
        assert code == 2 and err.startswith(f"fm2onnx: error: {tmp_path / 'r.onnx'}: {words}"), err
        assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "g.npz").exists()


@pytest.mark.parametrize("kind", ["fm", "lr"])
def test_fm_and_lr_candidates_sum_their_rows_and_cost_less_than_a_full_row(cli, tmp_path, kind):
    """Rendle's identity: a candidate sums its item fields' rows, with no pair, MatMul or context field."""
    ckpt = write_checkpoint(randomized_model(kind), tmp_path / "ckpt.pt")
    export_request(ckpt, tmp_path / "r.onnx", context=["site", "hour"], items=None)
    model = load_model(tmp_path / "r.onnx")
    assert not {n.op_type for n in model.graph} & {"MatMul", "Gemm"}
    flops = count_flops(model)
    full = count_flops(export_uncached(load_checkpoint(ckpt).model()), infer_shapes=False).total
    assert flops.per_row < full, (flops.per_row, full)
    code, _, err = cli("export", ckpt, "--context-fields", "site", "--cache-budget", "min", "-o", tmp_path / "b.onnx")
    assert code == 2 and err.strip() == f"fm2onnx: error: an {kind.upper()} request graph sums each side's rows " \
                                        "and caches nothing; drop --cache-budget"


@pytest.mark.parametrize("kind", ["fwfm", "fvfm"])
@pytest.mark.parametrize("linear", ["feature", "field_vector"])
def test_diagonal_field_matrices_pair_candidates_one_coordinate_at_a_time(kind, linear, tmp_path):
    """One strictly upper-triangular [n_I, n_I] matrix per coordinate of the item rows, FwFM's the same for
    every coordinate of v; a per-feature linear value is one more coordinate, with a zero matrix."""
    model = randomized_model(kind, linear=linear)
    ckpt = write_checkpoint(model, tmp_path / "ckpt.pt")
    export_request(ckpt, tmp_path / "r.onnx", context=["site"], items=None)
    graph = load_model(tmp_path / "r.onnx").graph
    products = [node for node in graph if node.op_type == "MatMul" and node.inputs[1].name in graph.initializers]
    matrices = [graph.initializers[node.inputs[1].name].const_value.numpy() for node in products]
    lead = 1 if linear == "feature" else 0
    assert [m.shape for m in matrices] == [(lead + 4, 5, 5)]
    (per_coordinate,) = matrices
    assert not per_coordinate[:lead].any() and np.all(np.tril(per_coordinate) == 0)
    assert np.all(per_coordinate[lead:][:, *np.triu_indices(5, 1)] != 0)
    if kind == "fwfm":
        assert np.all(per_coordinate[lead:] == per_coordinate[lead])
    roles = FieldRoles.of_props(load_model(tmp_path / "r.onnx").metadata_props)
    assert_requests_match(session(tmp_path / "r.onnx"), roles, model.spec, model.state_dict(), (0, 1, 9, 70),
                          TOLERANCES["float32"])


def test_the_gate_keeps_a_wrong_request_graph_from_being_written(tmp_path, monkeypatch):
    import export.passes.request_graph as request_pass
    from export.request_graph import build_request_graph

    def biased(weights, *args, **kwargs):  # a graph off by 1e-3 on every candidate
        from dataclasses import replace

        return build_request_graph(replace(weights, bias=weights.bias + 1e-3), *args, **kwargs)

    monkeypatch.setattr(request_pass, "build_request_graph", biased)
    ckpt = write_checkpoint(randomized_model("fwfm"), tmp_path / "ckpt.pt")
    with pytest.raises(Fm2OnnxError, match="not written: the request graph disagrees with torch"):
        export_request(ckpt, tmp_path / "r.onnx", context=["site"], items=None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]


@pytest.mark.parametrize("kind, linear", [("fmfm", "field_vector"), ("fm", "feature")])
def test_the_request_floor_reads_the_rows_the_request_graph_reads(kind, linear):
    """Each candidate's clamped item rows summed, over the context's own terms (the same for every candidate)."""
    from export.bench.request_floor import request_floor_graph
    from export.folds import FieldWeights
    from export.request_graph import request_layout

    import onnx_ir as ir

    model = randomized_model(kind, (3, 5, 1, 4, 2, 5) if kind == "fmfm" else None, linear=linear)
    weights, spec = FieldWeights.of_model(model), model.spec
    roles = FieldRoles.of_names(spec, ["site", "hour"], None)
    sess = session(ir.to_proto(request_floor_graph(weights, roles)).SerializeToString())
    items = request_layout(weights, roles, None, "float32").items
    for n in (0, 1, 9):
        rows = parity_ids(spec, n + 1, seed=n)  # unknown, negative and out-of-range ids included
        context, candidates = rows[:1, list(roles.context)], rows[1:, list(roles.items)]
        got = sess.run(["logit"], {"context_ids": context, "candidate_ids": candidates})[0]
        row_sums = np.zeros(n)
        for group in items.groups:
            for f, first in zip(group.fields, group.first_rows):
                ids = np.clip(candidates[:, roles.items.index(f)], 0, spec.vocab_sizes[f]) + first
                row_sums += group.table[ids].astype(np.float64).sum(axis=1)
        assert got.shape == (n,)
        assert n == 0 or (np.ptp(got - row_sums) < 1e-4 and np.all(row_sums != 0))


@pytest.mark.slow  # exports three graphs and times four forms
def test_request_bench_times_every_form_and_writes_its_plot(cli, tmp_path):
    ckpt = write_checkpoint(randomized_model("fmfm", (3, 5, 1, 4, 2, 5)), tmp_path / "ckpt.pt")
    code, out, err = cli("bench", ckpt, "--request", "2:4", "--candidates", "3,20", "--threads", "1",
                         "--rounds", "1", "--seconds", "0.02", "--plot", tmp_path / "r.png", "--json")
    assert code == 0, err
    result = json.loads(out)
    forms = {(t["split"], t["form"], t["candidates"]) for t in result["timings"]}
    assert len(forms) == 2 * 4 * 2 and all(t["p50_us"] > 0 for t in result["timings"])  # the floor included
    assert set(result["items"]) == {"largest", "smallest"} and "parity request" in result["parity"]["largest"]
    assert (tmp_path / "r.png").stat().st_size > 10_000
    assert {(c["split"], c["form"]) for c in result["costs"]} == {(s, f) for s, f, _ in forms}
    code, _, err = cli("bench", ckpt, "--request", "2:3")
    assert code == 2 and "add up to the model's 6 fields" in err


GLIBC = tuple(int(x) for x in (platform.libc_ver()[1] or "0.0").split(".")[:2])


@pytest.mark.skipif(transparent_huge_pages() in (None, "never") or GLIBC < (2, 35),
                    reason="no transparent huge pages, or a glibc that cannot ask for them (before 2.35)")
def test_request_bench_times_every_form_again_on_huge_pages(cli, tmp_path):
    ckpt = write_checkpoint(randomized_model("fmfm", (3, 5, 1, 4, 2, 5)), tmp_path / "ckpt.pt")
    code, out, err = cli("bench", ckpt, "--request", "2:4", "--candidates", "100", "--item-split", "largest",
                         "--threads", "1", "--rounds", "1", "--seconds", "0.02", "--no-torch", "--huge-pages", "--json")
    assert code == 0, err
    result = json.loads(out)
    plain = {REQUEST, FULL, FLOOR}
    assert {t["form"] for t in result["timings"]} == plain | {f"huge pages: {f}" for f in plain}
    assert result["huge_pages_mb"] > 0  # the worker's malloc did put memory in huge pages: the setting reached it
    speed = {t["form"]: t["candidates_per_s"] for t in result["timings"]}
    [target] = result["targets"]  # N = 100 on the plain forms, whatever the huge-pages ones ran at
    assert target.startswith(f"target N = 100, 1 thread: {speed[REQUEST] / speed[FULL]:.2f}×")


def test_request_bench_on_huge_pages_needs_a_kernel_that_has_them(monkeypatch):
    import export.bench.request as request_bench
    import export.bench.run as run

    monkeypatch.setattr(run, "transparent_huge_pages", lambda: "never")
    spec = randomized_model("fm").spec
    config = request_bench.RequestBenchConfig(2, spec.num_fields - 2, huge_pages=True)
    with pytest.raises(Fm2OnnxError, match="--huge-pages needs Linux with transparent huge pages; .* says never"):
        config.check(spec)
    request_bench.RequestBenchConfig(2, spec.num_fields - 2).check(spec)  # without --huge-pages: no question


def test_a_failing_bench_worker_is_one_line(tmp_path):
    from export.bench.request_forms import FormsJob, WorkerForms

    ckpt = write_checkpoint(randomized_model("fm"), tmp_path / "ckpt.pt")
    missing = str(tmp_path / "missing.onnx")
    job = FormsJob(str(ckpt), missing, {"largest": missing}, {}, {"largest": ["device"]}, (3,), "zipf", False)
    with pytest.raises(Fm2OnnxError, match=r"the bench's huge pages worker stopped: .*missing\.onnx"):
        WorkerForms(job, 1, {}, "huge pages: ")


def test_bench_refuses_the_other_modes_options(cli, tmp_path):
    """Given to the mode that does not take them, options fail in one line naming them, before any work."""
    ckpt = write_checkpoint(randomized_model("fm"), tmp_path / "ckpt.pt")
    code, _, err = cli("bench", ckpt, "--request", "2:4", "--batches", "1,8", "--table-dtypes", "float16")
    assert code == 2 and "--batches, --table-dtypes: not with --request" in err and "Traceback" not in err
    code, _, err = cli("bench", ckpt, "--item-split", "largest")
    assert code == 2 and "--item-split: only with --request C:I" in err and "Traceback" not in err


def test_request_bench_options_are_refused_before_a_shape_is_written(cli, tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    code, _, err = cli("bench", "--shape", "criteo", "--dims", "table3", "--request", "26:13", "--candidates", "0,10",
                       "--workdir", workdir)
    assert code == 2 and "--candidates must be >= 1" in err and "Traceback" not in err
    assert not any(workdir.iterdir())  # the shape's checkpoint was not made


def test_request_cost_is_the_line_through_the_p50s():
    from export.bench.request import RequestTiming
    from export.bench.request_report import RequestCost

    def timing(n, p50):
        return RequestTiming("largest", REQUEST, 1, n, p50_us=p50, p99_us=2 * p50)

    cost = RequestCost.fit([timing(n, 90 + 2.5 * n) for n in (10, 100, 1000)])
    assert cost.fixed_us == pytest.approx(90) and cost.per_candidate_us == pytest.approx(2.5)
    assert cost.describe() == "90 µs + 2.50 µs per candidate"
    # off the line, each p50 counts by its relative error: the normal equations of Σ ((a + b·N - p50) / p50)²
    ns, p50 = np.array([10, 100, 1000]), np.array([126.5, 340, 2590])
    skewed = RequestCost.fit([timing(n, p) for n, p in zip(ns, p50)])
    relative = (skewed.fixed_us + skewed.per_candidate_us * ns - p50) / p50
    assert abs(np.sum(relative / p50)) < 1e-9 and abs(np.sum(relative * ns / p50)) < 1e-9
    assert RequestCost.fit([timing(100, 340)]) is None
    # two points whose line starts below 0 µs: through the origin, b = Σ (N / p50) / Σ (N / p50)²
    through_zero = RequestCost.fit([timing(100, 97), timing(1000, 977)])
    ratios = np.array([100 / 97, 1000 / 977])
    assert through_zero.fixed_us == 0 and through_zero.per_candidate_us == pytest.approx(ratios.sum() / (ratios ** 2).sum())


@pytest.mark.slow  # three exports, a golden file and the ORT converter
def test_check_golden_and_package_take_request_graphs(cli, tmp_path):
    """The commands that run a graph on full rows score a request graph on the requests they stand for."""
    ckpt = write_checkpoint(randomized_model("fvfm"), tmp_path / "ckpt.pt")
    assert cli("export", ckpt, "--context-fields", "device,hour")[0] == 0
    model = tmp_path / "ckpt.request.onnx"
    code, out, err = cli("check", ckpt, model, "--json")
    assert code == 0, err
    graph = json.loads(out)["graphs"][0]
    assert graph["form"] == "request" and graph["within_tolerance"]
    golden = tmp_path / "golden.npz"
    assert cli("check", model, "--golden", golden, "--write")[0] == 0
    code, out, err = cli("check", model, "--golden", golden)
    assert code == 0 and "matches" in out, err
    assert cli("export", ckpt, "--context-fields", "site", "-o", tmp_path / "other.onnx")[0] == 0
    code, _, err = cli("check", tmp_path / "other.onnx", "--golden", golden)
    assert code == 2 and "recorded with field roles" in err
    small = write_checkpoint(randomized_model("fm", fields=["a", "b", "c"], vocab=[3, 4, 5]), tmp_path / "small.pt")
    assert cli("export", small, "--context-fields", "a", "-o", tmp_path / "small.onnx")[0] == 0
    code, _, err = cli("check", tmp_path / "small.onnx", "--golden", golden)
    assert err == f"fm2onnx: error: {golden}: feed.feature_ids is [batch, 6], the request graph's full rows take " \
                  "[batch, 3]\n"
    code, out, err = cli("package", model, "-o", tmp_path / "edge")
    assert code == 0 and (tmp_path / "edge" / "ckpt.request.ort").is_file(), err
