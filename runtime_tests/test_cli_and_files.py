"""The export/rewrite/check/flops commands, file naming, overwrite refusal, external data, metadata."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import onnx
import pytest

from export import check_graphs, export_checkpoint
from export.ort import session
from export.parity import ort_outputs, parity_ids
from export.to_onnx import MAX_OPSET
from fm2onnx.checkpoint import load_checkpoint
from fm2onnx.errors import Fm2OnnxError
from runtime_tests.reference import reference_logits

from .conftest import VARIABLE_DIMS, randomized_model, write_checkpoint

FMFMV = ("fmfm", (3, 5, 1, 4, 2, 5))
UNSUPPORTED_OPSET = "opset {} is not supported: the exporter writes opsets 18 to %d" % MAX_OPSET


@pytest.fixture
def fmfm_ckpt(tmp_path):
    return write_checkpoint(randomized_model(*FMFMV, seed=7), tmp_path / "ctr.pt")


def test_export_defaults_to_the_cached_form_beside_the_checkpoint(cli, fmfm_ckpt):
    code, out, err = cli("export", fmfm_ckpt)
    assert code == 0, err
    model = onnx.load(str(fmfm_ckpt.with_suffix(".onnx")))
    props = {p.key: p.value for p in model.metadata_props}
    assert props["form"] == "cached" and props["model_kind"] == "fmfm"
    assert json.loads(props["dims"]) == [3, 5, 1, 4, 2, 5]
    assert json.loads(props["field_order"]) == [1, 5, 3, 0, 4, 2]  # dim descending, then vocabulary ascending
    assert props["source_checkpoint_sha256"] and props["serving_schema_version"] == "1"
    assert "MatMul" not in {n.op_type for n in model.graph.node}
    assert "parity cached" in out and "cache plan unlimited" in out  # FmFM: the fields layout by default


def test_export_refuses_to_overwrite_without_force(cli, fmfm_ckpt, tmp_path):
    target = tmp_path / "m.onnx"
    target.write_text("keep me")
    code, out, err = cli("export", fmfm_ckpt, "-o", target)
    assert code == 2 and err.strip() == f"fm2onnx: error: {target}: already exists (pass --force to overwrite)"
    assert target.read_text() == "keep me"
    assert cli("export", fmfm_ckpt, "-o", target, "--force")[0] == 0
    onnx.checker.check_model(str(target), full_check=True)


@pytest.mark.parametrize("command", [("export", "{ckpt}"), ("export", "{ckpt}", "--context-fields", "site"),
                                     ("export", "{ckpt}", "--input", "raw"), ("rewrite", "{uncached}")])
def test_a_sidecar_beside_the_output_is_kept_without_force(cli, fmfm_ckpt, tmp_path, command):
    """Whether or not the new model needs a sidecar, the one beside its name would be replaced or removed."""
    uncached = tmp_path / "u.onnx"
    if "{uncached}" in command:
        assert cli("export", fmfm_ckpt, "--form", "uncached", "-o", uncached)[0] == 0
    sidecar = tmp_path / "m.onnx.data"
    sidecar.write_text("keep me")
    args = [str(a).format(ckpt=fmfm_ckpt, uncached=uncached) for a in command]
    code, out, err = cli(*args, "-o", tmp_path / "m.onnx")
    assert code == 2 and err.strip() == f"fm2onnx: error: {sidecar}: already exists (pass --force to overwrite)"
    assert sidecar.read_text() == "keep me" and not (tmp_path / "m.onnx").exists()


def test_batched_gemm_export_runs_batches_on_the_gemm_form(cli, fmfm_ckpt, tmp_path):
    target = tmp_path / "hybrid.onnx"
    code, out, err = cli("export", fmfm_ckpt, "-o", target, "--batched", "gemm")
    assert code == 0, err
    onnx.checker.check_model(str(target), full_check=True)
    props = {p.key: p.value for p in onnx.load(str(target)).metadata_props}
    assert props["form"] == "cached" and props["batched"] == "gemm"
    assert cli("check", fmfm_ckpt, target)[0] == 0
    code, _, err = cli("export", fmfm_ckpt, "-o", tmp_path / "p.onnx", "--batched", "gemm", "--layout", "pairs")
    assert code == 2 and "--batched gemm need the fields layout" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("export", fmfm_ckpt, "-o", tmp_path / "q.onnx", "--batched", "dense")
    assert code == 2 and "unknown batched form 'dense'" in err


@pytest.mark.parametrize("options", [("--table-dtype", "float16"), ("--cache-budget", "1MB"),
                                     ("--layout", "rows"), ("--batched", "dense")])
def test_options_that_do_not_fit_the_model_are_refused_before_the_trace(cli, tmp_path, options):
    ckpt = write_checkpoint(randomized_model("fm", seed=3), tmp_path / "fm.pt")
    code, out, err = cli("export", ckpt, *options)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "loaded" in out and "tracing" not in out and not ckpt.with_suffix(".onnx").exists()


@pytest.mark.parametrize("command", ["export", "rewrite"])
def test_a_negative_external_data_threshold_is_refused_before_any_work(cli, tmp_path, command):
    code, out, err = cli(command, tmp_path / "absent", "--external-data-threshold", "-1")
    assert code == 2 and err.strip() == "fm2onnx: error: --external-data-threshold -1: must be >= 0 (bytes; 0 puts " \
                                        "every large tensor in the sidecar)"
    assert out == "" and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("batch, hybrids", [(1, False), (16, True)])
def test_serve_batch_times_every_candidate_and_writes_the_fastest(cli, fmfm_ckpt, tmp_path, batch, hybrids):
    """Batches also time each plan's hybrid (one request never runs the GEMM branch); the written model is
    the candidate with the smallest recorded time and still agrees with torch."""
    target = tmp_path / "served.onnx"
    code, out, err = cli("export", fmfm_ckpt, "-o", target, "--serve-batch", batch)
    assert code == 0, err
    props = {p.key: p.value for p in onnx.load(str(target)).metadata_props}
    timings = json.loads(props["serve_timings_us"])
    cached = {"cached unlimited", "cached min"}
    expected = cached | {"uncached", "uncached gemm"} | ({f"{c} + gemm batches" for c in cached} if hybrids else set())
    assert set(timings) == expected and all(t > 0 for t in timings.values())
    assert props["serve_batch"] == str(batch) and props["serve_choice"] == min(timings, key=timings.get)
    assert f"serve batch {batch}: writing {props['serve_choice']}" in out
    assert cli("check", fmfm_ckpt, target)[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ctr.pt", "served.onnx"]  # no candidate left behind


def test_serve_batch_keeps_an_asked_batched_form_and_refuses_bad_sizes(cli, fmfm_ckpt, tmp_path):
    code, out, err = cli("export", fmfm_ckpt, "-o", tmp_path / "a.onnx", "--serve-batch", "16", "--batched", "cached")
    assert code == 0, err
    timings = json.loads({p.key: p.value for p in onnx.load(str(tmp_path / "a.onnx")).metadata_props}
                         ["serve_timings_us"])
    assert not any("gemm batches" in label for label in timings)
    for args in (("--serve-batch", "0"), ("--serve-batch", "4", "--form", "uncached")):
        code, _, err = cli("export", fmfm_ckpt, "-o", tmp_path / "b.onnx", *args)
        assert code == 2 and "--serve-batch needs a batch size >= 1" in err and len(err.strip().splitlines()) == 1


def test_form_both_writes_the_uncached_model_beside_the_cached_one(cli, fmfm_ckpt, tmp_path):
    code, _, err = cli("export", fmfm_ckpt, "-o", tmp_path / "out" / "model.onnx", "--form", "both")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model.onnx", "model.uncached.onnx"]
    forms = [{p.key: p.value for p in onnx.load(str(tmp_path / "out" / name)).metadata_props}["form"]
             for name in ("model.onnx", "model.uncached.onnx")]
    assert forms == ["cached", "uncached"]


def test_rewrite_command_reports_ops_bytes_and_flops(cli, exported, tmp_path):
    _, _, uncached, _ = exported(FMFMV)
    target = tmp_path / "rewritten.onnx"
    code, out, err = cli("rewrite", uncached, "-o", target, "--json", "--layout", "pairs")
    assert code == 0, err
    report = json.loads(out)
    changes = {p["name"]: p["changes"] for p in report["passes"] if p["name"] != "cleanup"}
    assert changes["fold_field_matrix"] == 21  # 6 linear columns + 15 (field a, partner dim d) blocks
    assert report["before"]["ops"]["MatMul"] == 21 and "MatMul" not in report["after"]["ops"]
    assert report["after"]["flops"]["one_request"] < report["before"]["flops"]["one_request"]
    assert report["after"]["table_bytes"] != report["before"]["table_bytes"]
    code, text, _ = cli("rewrite", uncached, "-o", target, "--force")  # the default: the fields layout
    for expected in ("fields_layout", "cache plan", "FLOPs, one request", "FLOPs per row, batches", "table bytes",
                     "If", "parity cached", "wrote"):
        assert expected in text
    code, _, err = cli("rewrite", target, "-o", tmp_path / "twice.onnx")
    assert code == 2 and err.startswith(f"fm2onnx: error: {target}: expected an uncached") and "form='cached'" in err


def test_check_command_json_and_exit_code(cli, exported, tmp_path):
    ckpt, cached, uncached, _ = exported(FMFMV)
    tables_only = tmp_path / "tables-only.onnx"
    assert cli("export", ckpt, "-o", tables_only, "--batched", "cached")[0] == 0
    code, out, _ = cli("check", ckpt, cached, tables_only, uncached, "--json", "--rows", "300")
    result = json.loads(out)
    assert code == 0 and result["ok"]
    assert [g["form"] for g in result["graphs"]] == ["cached", "cached", "uncached"]
    hybrid, tables, plain = result["graphs"]
    # one request reads the cached tables; the default runs batches on the GEMM form, more FLOPs than the pairs
    assert hybrid["flops_one_request"] == tables["flops_one_request"] < plain["flops_one_request"]
    assert tables["flops_batches"] < plain["flops_batches"] < hybrid["flops_batches"]
    code, out, _ = cli("check", ckpt, cached, "--tolerance", "0")
    assert code == 1 and "EXCEEDS TOLERANCE" in out


def test_check_refuses_a_graph_of_another_model(exported):
    ckpt, *_ = exported(FMFMV)
    _, other, *_ = exported(("fwfm", None))
    with pytest.raises(Fm2OnnxError, match="model_kind fwfm does not match"):
        check_graphs(ckpt, [other])


def test_flops_command(cli, exported):
    _, cached, uncached, _ = exported(FMFMV)
    code, out, _ = cli("flops", uncached, cached, "--by-op")
    assert code == 0 and "MatMul" in out and "FLOPs per row (fmfm, cached)" in out


def test_bad_inputs_are_one_line_errors(cli, tmp_path, fmfm_ckpt):
    code, _, err = cli("export", fmfm_ckpt, "--opset", "12")
    assert code == 2 and err.strip() == f"fm2onnx: error: {UNSUPPORTED_OPSET.format(12)}"
    code, _, err = cli("export", fmfm_ckpt, "--form", "fast")
    assert code == 2 and "unknown form 'fast'" in err
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    code, _, err = cli("export", junk)
    assert code == 2 and err.startswith(f"fm2onnx: error: {junk}") and len(err.strip().splitlines()) == 1
    code, _, err = cli("rewrite", junk, "-o", tmp_path / "x.onnx")
    assert code == 2 and "not a readable ONNX model" in err and len(err.strip().splitlines()) == 1
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")  # parses as a model with no graph
    code, _, err = cli("flops", empty)
    assert code == 2 and err.strip() == f"fm2onnx: error: {empty}: not an ONNX model (no graph outputs)"
    folder = tmp_path / "folder.onnx"
    folder.mkdir()
    for command in (["flops", folder], ["check", fmfm_ckpt, folder], ["check", "--golden", folder, empty]):
        code, _, err = cli(*command)
        assert code == 2 and err.strip() == f"fm2onnx: error: {folder}: is a directory, not " + \
            ("a golden file" if "--golden" in command else "an ONNX file")


@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_check_refuses_a_tolerance_that_decides_nothing(cli, fmfm_ckpt, tmp_path, value):
    code, _, err = cli("check", fmfm_ckpt, tmp_path / "never-read.onnx", "--tolerance", value)
    assert code == 2 and err.strip().startswith(f"fm2onnx: error: --tolerance {float(value)}: must be a finite")


def test_every_written_graph_declares_the_requested_opset(cli, fmfm_ckpt, tmp_path):
    target = tmp_path / "m.onnx"
    code, out, err = cli("export", fmfm_ckpt, "-o", target, "--form", "both", "--opset", "21")
    assert code == 0, err
    assert "(opset 21)" in out and "parity cached" in out and "parity uncached" in out
    code, out, err = cli("export", fmfm_ckpt, "-o", tmp_path / "r.onnx", "--context-fields", "site", "--opset", "21")
    assert code == 0, err
    for path in (target, tmp_path / "m.uncached.onnx", tmp_path / "r.onnx"):
        onnx.checker.check_model(str(path), full_check=True)
        assert {o.domain: o.version for o in onnx.load(str(path)).opset_import}[""] == 21, path


@pytest.mark.parametrize("args, message", [
    (("--opset", "99"), UNSUPPORTED_OPSET.format(99)),
    (("--opset", "99", "--context-fields", "site"), UNSUPPORTED_OPSET.format(99)),
    (("--opset", "19", "--input", "raw"), "opset 19 is not supported with --input raw: its RegexFullMatch needs "
                                          "opset 20 or newer"),
])
def test_an_unsupported_opset_is_refused_before_any_work(cli, fmfm_ckpt, tmp_path, args, message):
    code, out, err = cli("export", fmfm_ckpt, "-o", tmp_path / "m.onnx", *args)
    assert code == 2 and err.strip() == f"fm2onnx: error: {message}"
    assert out == "" and sorted(p.name for p in tmp_path.iterdir()) == ["ctr.pt"]


def test_external_data_loads_from_any_working_directory(tmp_path, monkeypatch):
    model = randomized_model(*FMFMV, seed=3, vocab=[100, 200, 50, 300, 80, 120])  # tables past 1 KB
    fmfm_ckpt = write_checkpoint(model, tmp_path / "ctr.pt")
    out = tmp_path / "big" / "model.onnx"
    written = export_checkpoint(fmfm_ckpt, out, form="both", external_data_threshold=64).written
    assert sorted(p.name for p in written) == ["model.onnx", "model.onnx.data", "model.uncached.onnx",
                                               "model.uncached.onnx.data"]
    moved = tmp_path / "elsewhere"
    shutil.move(str(out.parent), moved)
    monkeypatch.chdir(tmp_path)  # neither the model's directory nor its parent
    ckpt = load_checkpoint(fmfm_ckpt)
    ids = parity_ids(ckpt.spec, 64)
    for name in ("model.onnx", "model.uncached.onnx"):
        onnx.checker.check_model(str(moved / name), full_check=True)
        locations = {t.name: t.data_location for t in onnx.load(str(moved / name), load_external_data=False).graph.initializer}
        assert onnx.TensorProto.EXTERNAL in locations.values()  # tensors past 1 KB go to the sidecar
        logit = ort_outputs(session(moved / name), ids)["logit"]
        np.testing.assert_allclose(logit, reference_logits(ckpt.spec, ckpt.state_dict, ids), rtol=1e-4, atol=1e-4)
    assert os.path.getsize(moved / "model.onnx") < os.path.getsize(moved / "model.onnx.data")


def test_a_sidecar_takes_the_main_graphs_tensors_and_leaves_a_subgraphs(tmp_path):
    """onnxruntime-web cannot resolve external data inside subgraphs, so a branch's tensors stay inline."""
    import onnx_ir as ir
    from onnx import TensorProto, helper, numpy_helper

    from export.model_io import save_model

    big = np.arange(512, dtype=np.float32)  # 2 KB each
    branch = helper.make_graph([helper.make_node("Add", ["x", "inner"], ["y_then"])], "then", [],
                               [helper.make_tensor_value_info("y_then", TensorProto.FLOAT, [512])],
                               [numpy_helper.from_array(2 * big, "inner")])
    other = helper.make_graph([helper.make_node("Add", ["x", "outer"], ["y_else"])], "else", [],
                              [helper.make_tensor_value_info("y_else", TensorProto.FLOAT, [512])])
    graph = helper.make_graph([helper.make_node("If", ["flag"], ["y"], then_branch=branch, else_branch=other)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [512]),
                               helper.make_tensor_value_info("flag", TensorProto.BOOL, [])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [512])],
                              [numpy_helper.from_array(big, "outer")])
    model = ir.serde.deserialize_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))
    path = tmp_path / "m.onnx"
    assert [p.name for p in save_model(model, path, external_data_threshold=0)] == ["m.onnx", "m.onnx.data"]
    saved = onnx.load(str(path), load_external_data=False)
    assert saved.graph.initializer[0].data_location == onnx.TensorProto.EXTERNAL
    then = next(a.g for a in saved.graph.node[0].attribute if a.name == "then_branch")
    assert then.initializer[0].data_location != onnx.TensorProto.EXTERNAL
    assert model.graph.initializers["outer"].const_value.numpy()[3] == 3.0  # the caller's model is untouched
    sess = session(path)
    for flag, want in ((True, 3 * big), (False, 2 * big)):
        np.testing.assert_array_equal(sess.run(None, {"x": big, "flag": np.array(flag)})[0], want)


def test_a_model_failing_parity_is_not_written(fmfm_ckpt, tmp_path, monkeypatch):
    import export.pipeline as pipeline

    real = pipeline.make_cached

    def corrupting(*args, **options):
        made = real(*args, **options)
        table = next(v for k, v in made.model.graph.initializers.items() if k.startswith("table_"))
        table.const_value = type(table.const_value)(table.const_value.numpy() + 1.0)
        return made

    monkeypatch.setattr(pipeline, "make_cached", corrupting)
    with pytest.raises(Fm2OnnxError, match="not written: the cached graph disagrees with torch"):
        export_checkpoint(fmfm_ckpt, tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == [fmfm_ckpt]


def test_check_names_a_model_exported_from_another_checkpoint(cli, exported, tmp_path):
    """Same fields, other weights: the digest mismatch is named before any number is compared."""
    _, cached, _, _ = exported(FMFMV)
    other = write_checkpoint(randomized_model("fmfm", VARIABLE_DIMS, seed=99), tmp_path / "other.pt")
    code, _, err = cli("check", other, cached)
    assert code == 2 and "exported from another checkpoint" in err and "source_checkpoint_sha256" in err


def test_export_refuses_to_write_over_its_own_checkpoint(cli, fmfm_ckpt, tmp_path):
    ckpt = tmp_path / "x.pt"
    ckpt.write_bytes(fmfm_ckpt.read_bytes())
    code, _, err = cli("export", ckpt, "-o", ckpt, "--force")
    assert code == 2 and err.strip() == f"fm2onnx: error: {ckpt}: is also this command's input; write the output to another file"
    assert ckpt.read_bytes() == fmfm_ckpt.read_bytes()


def test_a_full_disk_is_one_line_and_leaves_nothing_behind(cli, fmfm_ckpt, tmp_path, monkeypatch):
    import errno

    import export.staging as staging

    def full_disk(model, path, **_):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(staging, "save_model", full_disk)
    out_dir = tmp_path / "out"
    code, _, err = cli("export", fmfm_ckpt, "-o", out_dir / "model.onnx")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "No space left on device" in err and "model.onnx" in err
    assert list(out_dir.iterdir()) == []  # no scratch folder, no half-written file


def test_an_export_path_that_cannot_take_a_file_is_refused_before_any_work(cli, fmfm_ckpt, tmp_path):
    folder, plain = tmp_path / "adir", tmp_path / "plain.txt"
    folder.mkdir()
    plain.write_text("a user's file")
    for output, message in ((folder, f"{folder}: is a directory, not a file"),
                            (plain / "m.onnx", f"{plain / 'm.onnx'}: cannot be written: {plain} is not a directory")):
        code, out, err = cli("export", fmfm_ckpt, "-o", output, "--force")
        assert (code, out, err) == (2, "", f"fm2onnx: error: {message}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "ctr.pt", "plain.txt"]
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("rows", ["-5", "0"])
def test_check_refuses_rows_below_one(cli, exported, rows):
    ckpt, cached, *_ = exported(FMFMV)
    code, out, err = cli("check", ckpt, cached, "--rows", rows)
    assert (code, out, err) == (2, "", f"fm2onnx: error: --rows {rows}: a parity check needs at least one row\n")


def test_a_missing_or_truncated_sidecar_is_one_line_naming_it(cli, tmp_path):
    model = randomized_model(*FMFMV, seed=3, vocab=[100, 200, 50, 300, 80, 120])  # tables past 1 KB
    ckpt = write_checkpoint(model, tmp_path / "ctr.pt")
    export_checkpoint(ckpt, tmp_path / "big" / "model.onnx", external_data_threshold=64)
    moved = tmp_path / "moved" / "model.onnx"
    moved.parent.mkdir()
    shutil.copy(tmp_path / "big" / "model.onnx", moved)
    sidecar = tmp_path / "moved" / "model.onnx.data"
    for args in (("check", ckpt, moved), ("check", moved, "--golden", tmp_path / "g.npz", "--write")):
        code, _, err = cli(*args)
        assert (code, err) == (2, f"fm2onnx: error: {moved}: its external data file {sidecar} is missing\n")
    sidecar.write_bytes((tmp_path / "big" / "model.onnx.data").read_bytes()[:100])
    code, _, err = cli("check", ckpt, moved)
    assert code == 2 and err.startswith(f"fm2onnx: error: {moved}: its external data file {sidecar} is "
                                        "truncated: 100 bytes, but tensor ") and len(err.splitlines()) == 1
    with pytest.raises(Fm2OnnxError, match="is truncated: 100 bytes"):
        session(moved)


def test_an_fwfm_budget_that_would_compute_pairs_is_refused_before_the_trace(cli, tmp_path, monkeypatch):
    import export.pipeline as pipeline

    def no_trace(*args, **kwargs):
        raise AssertionError("traced before the budget was checked")

    ckpt = write_checkpoint(randomized_model("fwfm"), tmp_path / "ckpt.pt")
    monkeypatch.setattr(pipeline, "export_uncached", no_trace)
    code, _, err = cli("export", ckpt, "--cache-budget", "10", "-o", tmp_path / "m.onnx")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "cache budget 10 bytes: caching every pair takes" in err and "a fwfm graph computes no pair" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]
