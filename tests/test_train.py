"""Training: determinism, early stopping restoring the best weights, and the quality check on planted data."""

import json

import numpy as np
import pytest

from fm2onnx import data as fdata
from fm2onnx.data.metrics import auc
from fm2onnx.errors import Fm2OnnxError
from fm2onnx.train import TrainConfig, train
from models import ModelSpec


PLANTED_DIMS = [2, 4, 6, 3, 5, 2]
PLANTED_FEATURES = [10, 20, 40, 60, 15, 30]


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """300k rows labelled by a planted FmFM with mixed per-field dims (encoded ids, 80/10/10 split)."""
    tmp = tmp_path_factory.mktemp("planted")
    fdata.synthesize(tmp / "ids", rows=300_000, fmt="ids", seed=7, field_dims=PLANTED_DIMS,
                     cardinalities=PLANTED_FEATURES, zipf=1.0, planted_out=tmp / "planted.npz", progress=False)
    return fdata.EncodedDataset.open(tmp / "ids"), np.load(tmp / "planted.npz")


def spec_for(dataset, kind, dim=6):
    return ModelSpec.create(kind, list(dataset.field_names), list(dataset.vocab_sizes), dim=dim)


@pytest.mark.slow
def test_fmfm_reaches_the_planted_models_auc_and_beats_fm(planted):
    dataset, info = planted
    test_rows = dataset.indices("test")
    planted_auc = auc(dataset.labels[test_rows], info["logits"][test_rows])
    config = TrainConfig(epochs=6, patience=2, learning_rate=1e-2, batch_size=2048, seed=0,
                         l2_embeddings=0.0, l2_field_matrices=0.0, l2_linear=0.0)
    fmfm = train(spec_for(dataset, "fmfm"), dataset, config, progress=False)
    fm = train(spec_for(dataset, "fm"), dataset, config, progress=False)
    print(f"planted {planted_auc:.4f}  fmfm {fmfm.metrics['test']['auc']:.4f}  fm {fm.metrics['test']['auc']:.4f}")
    assert fmfm.metrics["test"]["auc"] >= planted_auc - 0.01
    assert fmfm.metrics["test"]["auc"] > fm.metrics["test"]["auc"]


def test_same_seed_same_model(tmp_path):
    """Two runs with one seed end bit for bit equal; 30k rows show it as well as 300k (both fit one read block)."""
    fdata.synthesize(tmp_path / "ids", rows=30_000, fmt="ids", seed=7, field_dims=PLANTED_DIMS,
                     cardinalities=PLANTED_FEATURES, zipf=1.0, progress=False)
    dataset = fdata.EncodedDataset.open(tmp_path / "ids")
    config = TrainConfig(epochs=1, seed=3, batch_size=4096)
    spec = spec_for(dataset, "fwfm", dim=4)
    first = train(spec, dataset, config, progress=False, log_path=tmp_path / "log.jsonl")
    second = train(spec, dataset, config, progress=False)
    for name, tensor in first.model.state_dict().items():
        assert np.array_equal(tensor.numpy(), second.model.state_dict()[name].numpy()), name
    record = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[0])
    assert record["epoch"] == 1 and 0.5 < record["valid"]["auc"] <= 1.0


def test_early_stopping_restores_the_best_epoch(tmp_path):
    """4,000 rows, 400 features per field, a big model and a high learning rate: it overfits after a
    couple of epochs, and the result must be the best epoch's weights, not the last one's."""
    fdata.synthesize(tmp_path / "ids", rows=4000, fmt="ids", seed=7, field_dims=[4] * 6, cardinalities=[400] * 6,
                     zipf=0.5, progress=False)
    dataset = fdata.EncodedDataset.open(tmp_path / "ids")
    config = TrainConfig(epochs=8, patience=2, min_steps=0, learning_rate=0.05, batch_size=256, seed=0,
                         l2_embeddings=0.0, l2_field_matrices=0.0, l2_linear=0.0)
    result = train(spec_for(dataset, "fmfm", dim=16), dataset, config, progress=False)
    aucs = [r["valid"]["auc"] for r in result.history]
    assert result.best_epoch == 1 + int(np.argmax(aucs))
    assert len(aucs) == result.best_epoch + config.patience and max(aucs[result.best_epoch:]) < aucs[result.best_epoch - 1]
    assert result.metrics["valid"]["auc"] == pytest.approx(max(aucs), abs=1e-12)


def test_early_stopping_waits_for_min_steps(tmp_path):
    """A plateau on a small data set is not the end: no stop before min_steps optimizer steps."""
    fdata.synthesize(tmp_path / "ids", rows=4000, fmt="ids", seed=7, field_dims=[4] * 6, cardinalities=[400] * 6,
                     zipf=0.5, progress=False)
    dataset = fdata.EncodedDataset.open(tmp_path / "ids")
    config = TrainConfig(epochs=8, patience=1, min_steps=13 * 6, learning_rate=0.05, batch_size=256, seed=0)
    result = train(spec_for(dataset, "fm", dim=4), dataset, config, progress=False)
    assert len(result.history) >= 6  # 13 steps an epoch: six epochs before a stop may come


@pytest.mark.parametrize("changes, message", [
    ({"learning_rate": float("nan")}, "learning rate nan"), ({"learning_rate": float("inf")}, "learning rate inf"),
    ({"learning_rate": 1e6}, "expected a number in"), ({"l2_embeddings": float("nan")}, "L2 weights"),
    ({"l2_linear": -1e-3}, "L2 weights"), ({"threads": 0}, "--threads 0: must be >= 1"),
    ({"threads": -1}, "--threads -1: must be >= 1"),
])
def test_bad_numeric_options_are_refused(changes, message):
    from dataclasses import replace

    with pytest.raises(Fm2OnnxError, match=message):
        replace(TrainConfig(), **changes).validate()


def test_train_refuses_a_thread_count_below_one_before_reading_data(tmp_path, cli):
    code, _, err = cli("train", "--data", tmp_path / "absent.txt", "--threads", "-1", "-o", tmp_path / "x.pt")
    assert code == 2
    assert err.strip() == "fm2onnx: error: --threads -1: must be >= 1 (leave it out for one per physical core)"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("option, value", [("--threads", "-1"), ("--repeats", "0"), ("--steps", "-2")])
def test_bench_train_refuses_counts_below_one_before_any_work(cli, option, value):
    code, _, err = cli("bench-train", option, value)
    assert code == 2
    assert err.strip() == f"fm2onnx: error: {option} {value}: must be >= 1"
