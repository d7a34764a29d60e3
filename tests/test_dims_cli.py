"""`fm2onnx dims`, `train --dims` and `compress` on a small planted data set, by the command line."""

import re

import numpy as np
import pytest
import torch

from fm2onnx.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from tests.cli_runner import error_of, invoke
from fm2onnx.dims_file import read_dims
from fm2onnx.errors import Fm2OnnxError
from fm2onnx.train import predict_logits
from models import ModelSpec, build_model
from .test_compress_planted import K, planted_run


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    dataset, result = planted_run(str(tmp_path_factory.getbasetemp()))
    path = tmp_path_factory.mktemp("ckpt") / "full.pt"
    training = {"config": {"seed": 0}, "metrics": result.metrics}
    save_checkpoint(Checkpoint.from_model(result.model, dataset.preprocessor.to_dict(), training), path)
    return dataset, path


@pytest.fixture(autouse=True)
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)




def test_dims_writes_table3_and_the_second_pass_trains_with_it(planted, tmp_path):
    dataset, ckpt = planted
    out = tmp_path / "dims.csv"
    result = invoke("dims", ckpt, "--variance", "0.95", "-o", out)
    assert result.exit_code == 0, result.output
    assert "mean dim" in result.output and "cached FLOPs per row" in result.output and "uniform" in result.output
    dims = read_dims(out, dataset.field_names)
    assert all(1 <= d <= K for d in dims) and sum(dims) < 0.6 * K * len(dims)
    assert "already exists" in error_of(invoke("dims", ckpt, "-o", out))

    second = tmp_path / "second.pt"
    result = invoke("train", "--data", dataset.path, "--dims", out, "--epochs", "1", "--threads", "1",
                    "--batch-size", "1024", "-o", second, "--quiet")
    assert result.exit_code == 0, result.output
    assert list(load_checkpoint(second).spec.dims) == dims


def test_frequency_weighting_counts_the_data(planted, tmp_path):
    dataset, ckpt = planted
    assert "needs --data" in error_of(invoke("dims", ckpt, "--weighting", "frequency"))
    out = tmp_path / "dims.csv"
    result = invoke("dims", ckpt, "--weighting", "frequency", "--data", dataset.path, "-o", out, "--quiet")
    assert result.exit_code == 0, result.output
    assert out.read_text().splitlines()[1].endswith(",frequency")


def test_compress_at_full_variance_is_the_same_model(planted, tmp_path):
    dataset, ckpt = planted
    out = tmp_path / "small.pt"
    result = invoke("compress", ckpt, "--variance", "1.0", "-o", out)
    assert result.exit_code == 0, result.output
    full, small = load_checkpoint(ckpt), load_checkpoint(out)
    assert small.spec.kind == "fmfm" and small.preprocessor == full.preprocessor
    rows = dataset.indices("test")
    np.testing.assert_allclose(predict_logits(small.model(), dataset.ids, rows),
                               predict_logits(full.model(), dataset.ids, rows), atol=1e-4, rtol=0)


def test_compress_with_data_scores_and_finetunes(planted, tmp_path):
    dataset, ckpt = planted
    out = tmp_path / "small.pt"
    result = invoke("compress", ckpt, "--variance", "0.9", "--data", dataset.path, "--finetune-epochs", "1",
                    "-o", out, "--quiet")
    assert result.exit_code == 0, result.output
    assert "compressed" in result.output and "full" in result.output
    small = load_checkpoint(out)
    assert max(small.spec.dims) < K and small.training["finetune_epochs"] == 1
    assert small.training["metrics"]["test"]["auc"] > 0.7
    kept = small.training["best_epoch"]
    assert ("fine-tuning: kept epoch 1 (validation AUC " if kept else "fine-tuning: no epoch beat") in result.output


def test_fine_tuning_that_does_not_help_keeps_the_folded_weights_and_says_so(planted, tmp_path):
    dataset, ckpt = planted
    common = ("--variance", "0.9", "--data", dataset.path, "--quiet")
    assert invoke("compress", ckpt, *common, "-o", tmp_path / "folded.pt").exit_code == 0
    result = invoke("compress", ckpt, *common, "--finetune-epochs", "1", "--lr", "1e-30", "-o", tmp_path / "tuned.pt")
    assert result.exit_code == 0, result.output
    assert re.search(r"fine-tuning: no epoch beat the folded weights' validation AUC 0\.\d{4}; kept them", result.output)
    folded, tuned = (load_checkpoint(tmp_path / name).model().state_dict() for name in ("folded.pt", "tuned.pt"))
    assert all(torch.equal(folded[k], tuned[k]) for k in folded)


def test_compress_to_dims_from_a_file(planted, tmp_path):
    dataset, ckpt = planted
    dims_csv = tmp_path / "dims.csv"
    dims_csv.write_text("field,dim\n" + "".join(f"{name},{i % 3 + 1}\n" for i, name in enumerate(dataset.field_names)))
    result = invoke("compress", ckpt, "--dims", dims_csv, "-o", tmp_path / "small.pt")
    assert result.exit_code == 0, result.output
    assert list(load_checkpoint(tmp_path / "small.pt").spec.dims) == [1, 2, 3, 1, 2, 3]
    assert "not both" in error_of(invoke("compress", ckpt, "--dims", dims_csv, "--variance", "0.9", "-o",
                                         tmp_path / "other.pt"))


@pytest.mark.parametrize("kind", ["lr", "ffm"])
def test_lr_and_ffm_checkpoints_are_refused_by_name(tmp_path, kind):
    path = tmp_path / f"{kind}.pt"
    save_checkpoint(Checkpoint.from_model(build_model(ModelSpec.create(kind, ["a", "b"], [3, 3], dim=2))), path)
    for command in ("dims", "compress"):
        message = error_of(invoke(command, path, "-o", tmp_path / "out"))
        assert message.startswith(str(path)) and kind.upper() in message
