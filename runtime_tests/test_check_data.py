"""``fm2onnx check --data``: real rows through the checkpoint's vocabularies, AUC and log loss per graph."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fm2onnx.checkpoint import Checkpoint, save_checkpoint

from .conftest import randomized_model

pytest.importorskip("fm2onnx.data.metrics")


def write_criteo_rows(path, rows=300, seed=0):
    """label, I1..I13, C1..C26, tab-separated; few distinct values so the vocabularies stay small."""
    rng = np.random.default_rng(seed)
    with open(path, "w") as f:
        for _ in range(rows):
            ints = [str(rng.integers(0, 20)) if rng.random() > 0.1 else "" for _ in range(13)]
            cats = [f"{rng.integers(0, 12):08x}" if rng.random() > 0.1 else "" for _ in range(26)]
            f.write("\t".join([str(int(rng.random() < 0.3)), *ints, *cats]) + "\n")


def test_check_scores_real_rows(cli, tmp_path):
    from fm2onnx import data as fdata

    rows = tmp_path / "train.txt"
    write_criteo_rows(rows)
    dataset = fdata.encode_file(rows, fdata.get_format("criteo"), tmp_path / "enc", min_count=1, progress=False)
    pre = dataset.preprocessor
    model = randomized_model("fmfm", None, fields=list(pre.field_names), vocab=list(pre.vocab_sizes), dim=3)
    ckpt = save_checkpoint(Checkpoint.from_model(model, preprocessor=pre.to_dict()), tmp_path / "ckpt.pt")
    assert cli("export", ckpt, "--form", "both")[0] == 0
    code, out, err = cli("check", ckpt, tmp_path / "ckpt.onnx", tmp_path / "ckpt.uncached.onnx",
                         "--data", rows, "--json")
    assert code == 0, err
    graphs = json.loads(out)["graphs"]
    for g in graphs:
        assert 0.0 <= g["auc"] <= 1.0 and g["log_loss"] > 0
        assert g["auc"] == pytest.approx(g["torch_auc"], abs=1e-6)
        assert g["log_loss"] == pytest.approx(g["torch_log_loss"], rel=1e-5)


def test_rows_of_one_class_give_a_null_auc_in_strict_json(cli, tmp_path):
    from fm2onnx import data as fdata

    rows, ones = tmp_path / "train.txt", tmp_path / "ones.txt"
    write_criteo_rows(rows, rows=100)
    ones.write_text("".join("1\t" + line.split("\t", 1)[1] for line in rows.read_text().splitlines(True)))
    dataset = fdata.encode_file(rows, fdata.get_format("criteo"), tmp_path / "enc", min_count=1, progress=False)
    pre = dataset.preprocessor
    model = randomized_model("fm", None, fields=list(pre.field_names), vocab=list(pre.vocab_sizes), dim=3)
    ckpt = save_checkpoint(Checkpoint.from_model(model, preprocessor=pre.to_dict()), tmp_path / "ckpt.pt")
    assert cli("export", ckpt)[0] == 0

    def strict(text):
        return json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))

    code, out, err = cli("check", ckpt, tmp_path / "ckpt.onnx", "--data", ones, "--json")
    graph = strict(out)["graphs"][0]
    assert code == 0 and graph["auc"] is None and graph["torch_auc"] is None and graph["log_loss"] > 0, err
    code, out, _ = cli("check", ckpt, tmp_path / "ckpt.onnx", "--data", ones)
    assert code == 0 and "AUC n/a (one class) (torch n/a (one class))" in out
    code, out, err = cli("evaluate", ckpt, "--data", ones, "--json", "--quiet")
    scores = strict(out)
    assert code == 0 and scores["auc"] is None and scores["rows"] == 100 and scores["logloss"] > 0, err
