"""The dims report: mutual information that means what it says, and one HTML page that needs no network."""

import re

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from fm2onnx.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from fm2onnx.cli import dims_cmds  # noqa: F401  (registers the commands)
from fm2onnx.cli.app import app
from fm2onnx.compression.mutual_info import label_mutual_information, pair_mutual_information, spearman
from fm2onnx.errors import Fm2OnnxError
from fm2onnx.report import build_report, choose_dims
from models import ModelSpec, build_model


def test_a_label_that_is_the_xor_of_two_fields_lives_in_the_pair_only():
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 3, size=(20000, 3))
    labels = ((ids[:, 0] + ids[:, 1]) % 2).astype(np.float64)
    mi = pair_mutual_information(ids, labels, [3, 3, 3])
    assert mi[0, 1] == pytest.approx(1.0, abs=0.01) and mi[1, 0] == mi[0, 1]
    assert mi[0, 0] < 0.01 and mi[1, 1] < 0.01 and mi[0, 2] < 0.01 and mi[2, 2] < 0.01


def test_held_out_estimate_does_not_reward_rare_combinations():
    rng = np.random.default_rng(1)
    keys = rng.integers(0, 2000, size=20000)  # ~10 rows per key: the plug-in estimate would say ~0.5 bit
    labels = rng.integers(0, 2, size=20000).astype(np.float64)
    assert label_mutual_information(keys, labels) < 0.01
    # A label the key determines still shows, shrunk a little by the smoothing of ~5 rows per key.
    assert 0.8 < label_mutual_information(keys, (keys % 2).astype(np.float64)) <= 1.0
    assert label_mutual_information(keys, np.ones(20000)) == 0.0


def test_spearman_uses_ranks():
    assert spearman([1, 2, 3, 4], [10, 20, 300, 4000]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def make_checkpoint(kind="fmfm", dims=None, dim=6):
    names = ["site", "ad", "user", "hour"]
    spec = ModelSpec.create(kind, names, [30, 20, 40, 25], dim=dim, dims=dims)
    model = build_model(spec, seed=0)
    with torch.no_grad():
        for t in model.embeddings.tables if model.embeddings is not None else []:
            t.weight.normal_()
    return Checkpoint.from_model(model)


def test_dims_come_from_the_checkpoint_or_from_pca():
    assert choose_dims(make_checkpoint(dims=[2, 5, 3, 1]), None).dims == [2, 5, 3, 1]
    pca = choose_dims(make_checkpoint(), None)
    assert "95%" in pca.source and all(1 <= d <= 6 for d in pca.dims)
    assert choose_dims(make_checkpoint(), 1.0).dims == [6, 6, 6, 6]
    with pytest.raises(Fm2OnnxError, match="LR has no embeddings"):
        choose_dims(make_checkpoint("lr"), None)


def test_report_is_one_offline_page_with_both_heatmaps(tmp_path):
    ckpt = make_checkpoint(dims=[2, 5, 3, 1])
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 20, size=(3000, 4)).astype(np.int32)
    labels = (rng.random(3000) < 0.3).astype(np.float32)
    index = build_report(ckpt, tmp_path / "rep", dims=choose_dims(ckpt, None), ids=ids, labels=labels,
                         data_name="rows.txt")
    for name in ("cross_field_dims.png", "mutual_information.png", "field_dims.png"):
        assert (tmp_path / "rep" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = index.read_text()
    assert page.count('src="data:image/png;base64,') == 3
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing to fetch
    assert "Spearman" in page and "<td>site</td>" in page
    with pytest.raises(Fm2OnnxError, match="not empty"):
        build_report(ckpt, tmp_path / "rep", dims=choose_dims(ckpt, None))


def test_report_command_without_data(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(make_checkpoint(), path)
    result = CliRunner().invoke(app, ["report", str(path), "-o", str(tmp_path / "out"), "--variance", "0.9"])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "out" / "index.html").read_text()
    assert page.count("data:image/png") == 2 and "90% variance" in page
    assert not (tmp_path / "out" / "mutual_information.png").exists()


@pytest.mark.parametrize("max_rows", ["0", "-3"])
def test_report_refuses_max_rows_below_one_before_reading_anything(tmp_path, max_rows):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(make_checkpoint(), path)
    result = CliRunner().invoke(app, ["report", str(path), "--data", str(tmp_path / "unread.csv"),
                                      "--max-rows", max_rows, "-o", str(tmp_path / "out")])
    assert isinstance(result.exception, Fm2OnnxError)
    assert str(result.exception) == (f"--max-rows {max_rows}: must be >= 1 (the rows sampled for mutual "
                                     "information)")
    assert not (tmp_path / "out").exists()
