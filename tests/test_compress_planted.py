"""Compression on data whose fields have planted low-rank embeddings: at 95% variance the dims shrink
well below K at almost no AUC cost, and at 100% the compressed model is the full model."""

from functools import lru_cache

import numpy as np
import pytest
import torch

from fm2onnx.compression import compress_model, select_dims
from fm2onnx.data import EncodedDataset, synthesize
from fm2onnx.train import TrainConfig, evaluate_rows, predict_logits, train
from models import ModelSpec

K = 8
PLANTED_DIMS = [2, 1, 2, 1, 2, 1]


@lru_cache(maxsize=1)
def planted_run(root: str):
    """A small planted-FmFM data set (6 fields, rank 1-2 each) and an FmFM with K = 8 trained on it."""
    path = f"{root}/planted"
    synthesize(path, rows=30_000, fmt="ids", seed=0, field_dims=PLANTED_DIMS, cardinalities=[30] * 6,
               progress=False)
    dataset = EncodedDataset.open(path)
    pre = dataset.preprocessor
    spec = ModelSpec.create("fmfm", pre.field_names, pre.vocab_sizes, dim=K)
    # One thread: tiny tensors, and far faster than two when the machine is busy. Restored afterwards.
    config = TrainConfig(epochs=4, learning_rate=0.01, batch_size=1024, l2_embeddings=1e-5, seed=0, threads=1)
    threads = torch.get_num_threads()
    try:
        return dataset, train(spec, dataset, config, progress=False)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    # The session's base temp dir is the cache key, so every test module shares one trained model.
    return planted_run(str(tmp_path_factory.getbasetemp()))


def test_the_full_model_learned_something(planted):
    _, result = planted
    assert result.metrics["test"]["auc"] > 0.7


def test_95_percent_variance_keeps_the_auc_with_at_most_60_percent_of_k(planted):
    dataset, result = planted
    selection = select_dims(result.model, 0.95)
    assert selection.mean_dim <= 0.6 * K
    small = compress_model(result.model, selection.dims, selection.pcas)
    test = dataset.indices("test")
    full_auc = result.metrics["test"]["auc"]
    small_auc = evaluate_rows(small, dataset.ids, dataset.labels, test)["auc"]
    assert abs(small_auc - full_auc) <= 0.002


def test_full_variance_reproduces_the_logits(planted):
    dataset, result = planted
    selection = select_dims(result.model, 1.0)
    small = compress_model(result.model, selection.dims, selection.pcas)
    rows = dataset.indices("all")
    np.testing.assert_allclose(predict_logits(small, dataset.ids, rows), predict_logits(result.model, dataset.ids, rows),
                               atol=1e-4, rtol=0)
