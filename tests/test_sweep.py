"""The variance sweep: Table 8's rows for retrain and compress, its files, and the command."""

import csv

import pytest
import torch
from typer.testing import CliRunner

from fm2onnx.checkpoint import Checkpoint, save_checkpoint
from fm2onnx.cli import dims_cmds  # noqa: F401  (registers the commands)
from fm2onnx.cli.app import app
from fm2onnx.compression import cached_flops
from fm2onnx.dims_file import read_dims
from fm2onnx.errors import Fm2OnnxError
from fm2onnx.sweep import parse_thresholds, run_sweep, write_sweep
from fm2onnx.train import TrainConfig
from .test_compress_planted import K, planted_run


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return planted_run(str(tmp_path_factory.getbasetemp()))


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_thresholds_are_parsed_and_checked():
    assert parse_thresholds("0.99, 0.95,0.8") == [0.99, 0.95, 0.8]
    for bad in ("", "0.9,x", "0.9,1.5", "0"):
        with pytest.raises(Fm2OnnxError, match="--variance"):
            parse_thresholds(bad)


def test_sweep_rows_and_files(planted, tmp_path, restore_threads):
    dataset, full = planted
    config = TrainConfig(epochs=1, learning_rate=0.01, batch_size=1024, threads=1)
    result = run_sweep(dataset, [0.99, 0.9], config, full_model=full.model, progress=False)
    assert result.full.flops == cached_flops([K] * 6)
    assert result.full_metrics["auc"] == pytest.approx(full.metrics["test"]["auc"])
    high, low = result.points
    assert all(a >= b for a, b in zip(high.dims, low.dims)) and low.mean_dim < high.mean_dim <= K
    assert low.flops == cached_flops(low.dims) < result.full.flops
    for point in result.points:
        assert 0.5 < point.retrain["auc"] < 1 and 0.5 < point.compress["auc"] < 1

    files = write_sweep(result, tmp_path, dataset.field_names, "test")
    with open(files["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["variance_kept", "avg_emb_dim", "estimated_flops", "auc_test", "logloss_test",
                             "auc_test_compress", "logloss_test_compress"]  # the paper's CSV, plus compress
    assert [r["variance_kept"] for r in rows] == ["full", "0.99", "0.90"]
    assert int(rows[2]["estimated_flops"]) == low.flops
    table = files["md"].read_text()
    assert table.startswith("| Variance % | Emb Dim (Average) | FLOPs Estimated #") and "| 90% |" in table
    assert files["png"].read_bytes()[:4] == b"\x89PNG"
    assert read_dims(tmp_path / "dims_0.9.csv", dataset.field_names) == low.dims


def test_sweep_command_trains_the_first_pass_itself(planted, tmp_path, restore_threads):
    dataset, _ = planted
    out = tmp_path / "sweep"
    args = ["sweep", "--data", str(dataset.path), "--variance", "0.95", "--dim", "4", "--epochs", "1",
            "--threads", "1", "--batch-size", "1024", "--lr", "0.01", "--no-retrain", "-o", str(out), "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "| 95% |" in result.output and "| Full | 4.00 (100%)" in result.output
    assert {p.name for p in out.iterdir()} >= {"sweep.csv", "sweep.md", "sweep.json", "auc_vs_flops.png",
                                               "dims_0.95.csv", "full.pt"}
    again = CliRunner().invoke(app, args)  # a non-empty output directory needs --force
    assert isinstance(again.exception, Fm2OnnxError) and "not empty" in str(again.exception)


def test_sweep_refuses_a_first_pass_from_other_data(planted, tmp_path):
    dataset, full = planted
    from models import ModelSpec, build_model

    other = build_model(ModelSpec.create("fmfm", dataset.field_names, [5] * 6, dim=4))
    save_checkpoint(Checkpoint.from_model(other), tmp_path / "other.pt")
    result = CliRunner().invoke(app, ["sweep", "--data", str(dataset.path), "--full", str(tmp_path / "other.pt"),
                                      "-o", str(tmp_path / "out"), "--quiet"])
    assert isinstance(result.exception, Fm2OnnxError) and "differ from those of" in str(result.exception)
    assert not (tmp_path / "out").exists()  # the folder made for the sweep goes when nothing was finished in it
