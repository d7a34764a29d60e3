"""``fm2onnx bench`` and ``fm2onnx plan``: structure of the table, the JSON and the PNG on a tiny model.
Nothing here is timed: the figures come from `fm2onnx bench --shape criteo` (README)."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from export.bench.run import transparent_huge_pages

from .conftest import VARIABLE_DIMS, randomized_model, write_checkpoint


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    return write_checkpoint(randomized_model("fmfm", VARIABLE_DIMS, seed=5), tmp_path_factory.mktemp("bench") / "tiny.pt")


@pytest.mark.slow
def test_bench_json_has_every_form_batch_and_target(cli, tiny_ckpt, tmp_path):
    plot = tmp_path / "bench.png"
    code, out, err = cli("bench", tiny_ckpt, "--batches", "1,4", "--threads", "1", "--seconds", "0.01",
                         "--min-runs", "3", "--plot", plot, "--json", "--batched", "cached,gemm", "--rounds", "2")
    assert code == 0, err
    result = json.loads(out)
    forms = {m["form"] for m in result["measurements"]}
    assert forms == {"torch eager", "uncached", "uncached gemm", "cached", "floor concat", "floor per_field",
                     "cached + gemm batches"}
    for m in result["measurements"]:
        assert m["threads"] == 1 and set(m["p50_us"]) == {"1", "4"} and set(m["p99_us"]) == {"1", "4"}
        assert all(runs >= 2 * 3 for runs in m["runs"].values())  # two rounds of at least 3 runs
        assert all(v > 0 for v in m["p50_us"].values()) and m["peak_mb"] >= 0
    model = result["models"][0]
    assert model["name"] == "tiny" and set(model["file_bytes"]) == forms - {"torch eager"}
    assert {t["what"] for t in result["targets"]} >= {"cached time / floor time at batch 1",
                                                      "batch 1: cached speed-up over torch eager",
                                                      "batch 4: cached + gemm batches speed-up over torch eager"}
    assert result["machine"]["onnxruntime"] and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The same figures as the on-screen table.
    from export.bench.prepare import Prepared
    from export.bench.report import table_lines, target_lines, targets
    from export.bench.run import BenchConfig, BenchResult, Measurement

    bench = BenchResult(BenchConfig(batches=(1, 4), threads=(1,)), [Prepared("tiny", tiny_ckpt, [], {}, model["file_bytes"])],
                        [Measurement(**{**m, "p50_us": {int(b): v for b, v in m["p50_us"].items()},
                                        "p99_us": {int(b): v for b, v in m["p99_us"].items()},
                                        "runs": {int(b): v for b, v in m["runs"].items()}})
                         for m in result["measurements"]])
    lines = table_lines(bench)
    assert lines[0] == "tiny, 1 intra-op thread, zipf ids" and "b4 rows/s" in lines[1]
    assert [line.split()[0] for line in lines[2:7]] == ["torch", "uncached", "uncached", "cached", "floor"]
    assert target_lines(targets(bench))[0].startswith("targets (1 intra-op thread")


def test_bench_bad_input_is_one_line(cli, tmp_path, tiny_ckpt):
    code, _, err = cli("bench")
    assert code == 2 and "nothing to bench" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("bench", "--shape", "avazu", "--dims", "table3")
    assert code == 2 and "Criteo" in err
    code, _, err = cli("bench", tiny_ckpt, "--ids", "gaussian")
    assert code == 2 and "unknown --ids" in err
    existing = tmp_path / "x.png"
    existing.write_bytes(b"keep")
    code, _, err = cli("bench", tiny_ckpt, "--plot", existing)
    assert code == 2 and "already exists" in err and existing.read_bytes() == b"keep"
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "mine.txt").write_text("keep")
    code, _, err = cli("bench", tiny_ckpt, "--workdir", tmp_path / "work")
    assert code == 2 and "not empty" in err and (tmp_path / "work" / "mine.txt").read_text() == "keep"
    code, _, err = cli("bench", tiny_ckpt, "--batched", "sparse")
    assert code == 2 and "unknown --batched" in err
    code, _, err = cli("bench", "--shape", "criteo", "--kind", "fwfm")
    assert code == 2 and err.strip() == ("fm2onnx: error: --dims table3 are per-field dims, which only FmFM takes; "
                                         "use a K such as 16 for fwfm")
    code, _, err = cli("bench", tiny_ckpt, "--kind", "fwfm")
    assert code == 2 and "--kind is the kind of a --shape model" in err
    code, _, err = cli("bench", "--shape", "avazu", "--dims", "4", "--kind", "fmm")
    assert code == 2 and "unknown --kind 'fmm'" in err
    code, _, err = cli("bench", tiny_ckpt, "--layouts", "fields,rows")
    assert code == 2 and err.strip() == "fm2onnx: error: unknown --layouts 'rows'; expected one of fields, pairs"


def test_bench_times_an_fwfm_in_both_layouts(cli, tmp_path):
    """FwFM takes the fields layout by default (batches on its per-coordinate GEMM form); --layouts pairs
    adds the rule rewrite beside it."""
    ckpt = write_checkpoint(randomized_model("fwfm", seed=5), tmp_path / "fwfm.pt")
    code, out, err = cli("bench", ckpt, "--batches", "1,4", "--threads", "1", "--seconds", "0.01", "--min-runs", "3",
                         "--no-torch", "--json", "--layouts", "fields,pairs")
    assert code == 0, err
    forms = {m["form"] for m in json.loads(out)["measurements"]}
    assert {"uncached gemm", "cached", "cached pairs", "cached + gemm batches"} <= forms, forms


def test_plan_prints_the_frontier_and_the_named_plans(cli, tiny_ckpt, tmp_path):
    code, out, err = cli("plan", tiny_ckpt, "--cache-budget", "200", "--plot", tmp_path / "f.png")
    assert code == 0, err
    assert out.startswith("unlimited: ") and "\nmin: " in out and "budget 200 bytes" in out
    assert "Pareto frontier" in out and (tmp_path / "f.png").stat().st_size > 5_000


def test_plan_on_table3_fields_json(cli):
    code, out, err = cli("plan", "--shape", "criteo", "--dims", "table3", "--json")
    assert code == 0, err
    result = json.loads(out)
    unlimited, smallest = result["plans"]
    assert unlimited["flops_per_row"] == 8960 and unlimited["cached_floats"] == 154_880_560
    assert smallest["cached_floats"] <= 25_000_000 and smallest["flops_per_row"] <= 14_400
    floats = [p["cached_floats"] for p in result["frontier"]]
    assert floats == sorted(floats) and floats[0] == 0


def test_rounds_combine_to_medians():
    from export.bench.run import combine

    raws = [{"p50_us": {"1": p50, "8": 10 * p50}, "p99_us": {"1": 2 * p50, "8": 20 * p50}, "runs": {"1": 5, "8": 3},
             "load_mb": p50, "peak_mb": 2 * p50} for p50 in (30.0, 10.0, 20.0)]
    m = combine("tiny", "cached", 2, raws)
    assert m.p50_us == {1: 20.0, 8: 200.0} and m.p99_us == {1: 40.0, 8: 400.0}
    assert m.runs == {1: 15, 8: 9} and (m.load_mb, m.peak_mb) == (30.0, 60.0)


def test_targets_carry_the_floors_ratio_hand_computed():
    """Each large-batch target of the cached graph also reports the floor's ratio (the same rows gathered
    and summed, nothing else); the figures are hand-picked µs, so every ratio below is known exactly."""
    from export.bench.report import target_lines, targets
    from export.bench.run import BenchConfig, BenchResult, Measurement

    def m(model, form, threads, b1, b1024):
        return Measurement(model, form, threads, {1: b1, 1024: b1024}, {1: b1, 1024: b1024}, {1: 9, 1024: 9}, 0, 0)

    t3, k16 = "criteo Table 3 dims", "criteo K = 16"
    measurements = [m(t3, "torch eager", 1, 500.0, 4000.0), m(t3, "uncached", 1, 300.0, 14000.0),
                    m(t3, "cached", 1, 25.0, 5000.0), m(t3, "cached", 2, 25.0, 3125.0),
                    m(t3, "floor concat", 1, 40.0, 3600.0), m(t3, "floor per_field", 1, 60.0, 3000.0),
                    m(t3, "floor per_field", 2, 60.0, 2000.0),
                    m(k16, "cached", 1, 40.0, 8000.0), m(k16, "floor per_field", 1, 60.0, 4500.0),
                    m(t3, "cached + gemm batches", 1, 26.0, 2500.0), m(k16, "cached + gemm batches", 1, 40.0, 7500.0)]
    from export.bench.prepare import Prepared

    models = [Prepared(t3, Path("t3.pt"), []), Prepared(k16, Path("k16.pt"), [])]
    result = BenchResult(BenchConfig(batches=(1, 1024), threads=(1, 2)), models, measurements)
    by_what = {(t.model, t.what): t for t in targets(result)}
    torch_1024 = by_what[(t3, "batch 1024: cached speed-up over torch eager")]
    assert (torch_1024.value, torch_1024.floor, torch_1024.holds) == (0.8, 4000 / 3000, False)
    threads = by_what[(t3, "batch 1024: cached 2-thread / 1-thread throughput")]
    assert (threads.value, threads.floor) == (1.6, 1.5) and threads.holds
    versus_k16 = by_what[(t3, "batch 1024: cached Table 3 dims speed-up over cached K = 16")]
    assert (versus_k16.value, versus_k16.floor) == (1.6, 1.5)
    hybrid = by_what[(t3, "batch 1024: cached + gemm batches Table 3 dims speed-up over K = 16")]
    assert (hybrid.value, hybrid.floor, hybrid.holds) == (3.0, None, True)
    assert by_what[(t3, "cached time / floor time at batch 1")].value == 25 / 40  # the faster floor shape
    assert by_what[(t3, "cached + gemm batches time / floor time at batch 1024")].value == 2500 / 3000
    lines = "\n".join(target_lines(targets(result)))
    assert "K = 16 = 1.60 (>= 2); the floor: 1.50, short of it too" in lines
    assert by_what[(t3, "batch 1: cached speed-up over torch eager")].floor is None  # node count rules batch 1
    assert "torch eager = 0.80 (>= 1); the floor: 1.33\n" in lines + "\n"

    # a run without batch 1 checks no batch-1 target, and labels none of its batch's figures as one
    only_large = [Measurement(x.model, x.form, x.threads, {1024: x.p50_us[1024]}, {1024: x.p99_us[1024]}, {1024: 9},
                              0, 0) for x in measurements]
    large = BenchResult(BenchConfig(batches=(1024,), threads=(1, 2)), models, only_large)
    speed_ups = sorted((t.what, t.threshold) for t in targets(large) if t.what.endswith(("eager", "uncached")))
    assert speed_ups == sorted((f"batch 1024: {form} speed-up over {rival}", 1)
                               for form in ("cached", "cached + gemm batches")
                               for rival in ("torch eager", "onnxruntime uncached"))


def test_huge_pages_reach_every_measuring_process_or_fail_in_one_line(monkeypatch):
    import subprocess

    from export.bench import run
    from fm2onnx.errors import Fm2OnnxError

    seen = []

    def fake_run(cmd, **kwargs):
        seen.append(kwargs.get("env"))
        return subprocess.CompletedProcess(cmd, 0, 'RESULT {"p50_us": {}}\n', "")

    monkeypatch.setattr(run.subprocess, "run", fake_run)
    assert run.run_child({"path": "m.onnx"}, 10, huge_pages=True) == {"p50_us": {}}
    assert run.run_child({"path": "m.onnx"}, 10) == {"p50_us": {}}
    assert seen[0]["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1" and seen[0]["PATH"] == os.environ["PATH"]
    assert seen[1] is None  # the parent's environment, untouched
    monkeypatch.setattr(run, "transparent_huge_pages", lambda: "never")
    with pytest.raises(Fm2OnnxError, match="--huge-pages needs Linux with transparent huge pages"):
        run.BenchConfig(huge_pages=True)
    run.BenchConfig()  # without --huge-pages the kernel setting does not matter


def test_transparent_huge_pages_reads_the_kernels_mode(monkeypatch, tmp_path):
    from export.bench import run

    setting = tmp_path / "enabled"
    setting.write_text("always [madvise] never\n")
    monkeypatch.setattr(run, "THP_SETTING", setting)
    assert run.transparent_huge_pages() == "madvise"
    monkeypatch.setattr(run, "THP_SETTING", tmp_path / "missing")
    assert run.transparent_huge_pages() is None


@pytest.mark.slow
@pytest.mark.skipif(transparent_huge_pages() in (None, "never"), reason="the kernel offers no transparent huge pages")
def test_huge_pages_rows_beside_the_plain_ones(cli, tiny_ckpt):
    code, out, err = cli("bench", tiny_ckpt, "--batches", "1", "--threads", "1", "--seconds", "0.01", "--min-runs", "3",
                         "--no-torch", "--huge-pages", "--json")
    assert code == 0, err
    result = json.loads(out)
    forms = {m["form"] for m in result["measurements"]}
    plain = {"uncached", "uncached gemm", "cached", "cached + gemm batches", "floor concat", "floor per_field"}
    assert forms == plain | {f"huge pages: {f}" for f in plain}
    assert result["config"]["huge_pages"] and result["machine"]["transparent_huge_pages"] in ("always", "madvise")
    # the targets are the plain forms' own; the floor row is still the faster of its two shapes
    assert all("huge pages" not in t["what"] for t in result["targets"])


def test_output_paths_of_bench_and_plan_are_checked_before_the_work(cli, tiny_ckpt, tmp_path):
    folder, plain = tmp_path / "adir", tmp_path / "plain.txt"
    folder.mkdir()
    plain.write_text("keep")
    quick = ("--batches", "1", "--threads", "1", "--seconds", "0.01", "--min-runs", "1", "--no-torch")
    refused = {("plan", tiny_ckpt, "--plot", folder, "--force"): f"{folder}: is a directory, not a file",
               ("bench", tiny_ckpt, *quick, "--plot", folder, "--force"): f"{folder}: is a directory, not a file",
               ("bench", tiny_ckpt, *quick, "--workdir", plain):
                   f"{plain}: is a file, not a directory (--workdir names a folder to write into)",
               ("bench", tiny_ckpt, *quick, "--plot", tiny_ckpt, "--force"):
                   f"{tiny_ckpt}: is also this command's input; write the output to another file",
               ("plan", tiny_ckpt, "--plot", tmp_path / "f.txt"):
                   f"--plot {tmp_path / 'f.txt'}: matplotlib cannot write .txt files; name a .png, .svg or .pdf"}
    for args, message in refused.items():
        assert cli(*args) == (2, "", f"fm2onnx: error: {message}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "plain.txt"] and plain.read_text() == "keep"
    plot = tmp_path / "new" / "f.png"  # a missing folder is made, as export makes one
    code, out, err = cli("plan", tiny_ckpt, "--plot", plot)
    assert code == 0 and out.endswith(f"wrote {plot}\n"), err
    assert [p.name for p in plot.parent.iterdir()] == ["f.png"]


def test_a_plot_on_a_full_disk_is_named_and_leaves_nothing(cli, tiny_ckpt, tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    def full_disk(self, fname, **kwargs):
        Path(fname).write_bytes(b"half a PNG")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Figure, "savefig", full_disk)
    plot = tmp_path / "new" / "f.png"
    code, _, err = cli("plan", tiny_ckpt, "--plot", plot)
    assert (code, err) == (2, f"fm2onnx: error: {plot}: cannot write: No space left on device (nothing "
                              "half-written is left)\n")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, message", [((), "give a checkpoint or --shape"),
                                           (("ckpt.pt", "--shape", "criteo"), "give a checkpoint or --shape, not both")])
def test_plan_says_which_model_it_needs(cli, args, message):
    code, _, err = cli("plan", *args)
    assert code == 2 and err.strip() == f"fm2onnx: error: {message}"


def test_a_shape_takes_any_kind_at_a_uniform_k():
    from export.bench.shapes import shape_label, shape_spec

    spec = shape_spec("criteo", "10", "fvfm")
    assert (spec.kind, set(spec.dims), spec.num_fields) == ("fvfm", {10}, 39)
    assert shape_label("criteo", "10", "fvfm") == "criteo fvfm K = 10" and shape_label("criteo", "table3") == \
        "criteo Table 3 dims"
