"""Memory budgets: scoring chunks and training micro-batches sized from a model's bytes per row."""

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch

from fm2onnx import data as fdata
from fm2onnx.errors import Fm2OnnxError
from fm2onnx.train import TrainConfig, make_optimizers, train, train_step
from models import MODEL_KINDS, L2Config, ModelSpec, build_model
from models.memory import (DEFAULT_MEMORY_BUDGET, format_size, micro_batch_rows, parse_memory_budget, rows_within, scoring_bytes_per_row,
                           training_bytes_per_row)
from models.scoring import score_rows, scoring_chunk_rows
from tests.cli_runner import error_of, invoke


def small_spec(kind: str, fields: int = 6, dim: int = 4) -> ModelSpec:
    return ModelSpec.create(kind, [f"f{i}" for i in range(fields)], [7 + i for i in range(fields)], dim=dim)


def random_ids(spec: ModelSpec, rows: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(-1, v + 2, rows) for v in spec.vocab_sizes], axis=1).astype(np.int64)


def randomized(spec: ModelSpec, sparse: bool = False, seed: int = 1):
    """Random values in every parameter (the init's zero linear weights and identity matrices hide errors)."""
    model = build_model(spec, sparse=sparse, seed=seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape) * 0.3)
    return model


def test_chunk_rows_follow_the_budget_and_the_models_width():
    ffm, fmfm = small_spec("ffm", fields=20, dim=8), small_spec("fmfm", fields=20, dim=8)
    assert scoring_bytes_per_row(ffm) > 5 * scoring_bytes_per_row(fmfm)  # n(n-1)K against nK floats per row
    for spec in (ffm, fmfm):
        per_row = scoring_bytes_per_row(spec)
        assert rows_within(100 * per_row, per_row) == 100
        assert rows_within(100 * per_row - 1, per_row) == 99
        assert rows_within(per_row // 2, per_row) == 1  # a row is the smallest unit of work
        assert training_bytes_per_row(spec) > per_row


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_tiny_budget_scores_in_many_chunks_identically(kind):
    spec = small_spec(kind)
    model = randomized(spec)
    ids = random_ids(spec, 300)
    rows = np.random.default_rng(2).permutation(300)[:250]  # unsorted: the result keeps their order
    calls = []
    model.register_forward_hook(lambda module, args, out: calls.append(len(out)))
    budget = 7 * scoring_bytes_per_row(spec)
    assert scoring_chunk_rows(model, budget) == 7
    chunked = score_rows(model, ids, rows, memory_budget=budget)
    assert len(calls) == 36 and max(calls) == 7  # ceil(250 / 7) chunks
    whole = score_rows(model, ids, rows, memory_budget=1 << 40)
    assert calls[-1] == 250
    direct = model(torch.from_numpy(ids[rows])).detach().double().numpy()
    np.testing.assert_allclose(chunked, whole, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(whole, direct, rtol=1e-6, atol=1e-6)


def step_with_micro_batches(kind: str, micro_rows: int):
    spec = small_spec(kind)
    model = randomized(spec, sparse=True, seed=3)
    optimizers = make_optimizers(model, TrainConfig(learning_rate=0.01))
    ids = torch.from_numpy(random_ids(spec, 64, seed=4))
    labels = torch.from_numpy((np.random.default_rng(5).random(64) < 0.3).astype(np.float32))
    loss = train_step(model, optimizers, ids, labels, L2Config(1e-2, 1e-2, 1e-2), micro_rows)
    grads = {name: (p.grad.to_dense() if p.grad.is_sparse else p.grad).clone()
             for name, p in model.named_parameters() if p.grad is not None}
    return loss, grads, copy.deepcopy(model.state_dict())


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_micro_batches_accumulate_the_whole_batchs_gradients_and_step(kind):
    loss, grads, weights = step_with_micro_batches(kind, micro_rows=64)
    micro_loss, micro_grads, micro_weights = step_with_micro_batches(kind, micro_rows=9)  # 7 of 9, one of 1
    assert micro_loss == pytest.approx(loss, rel=1e-5)
    assert grads.keys() == micro_grads.keys() and grads
    for name, grad in grads.items():
        torch.testing.assert_close(micro_grads[name], grad, rtol=1e-5, atol=1e-7, msg=name)
    for name, tensor in weights.items():
        torch.testing.assert_close(micro_weights[name], tensor, rtol=1e-5, atol=1e-6, msg=name)


def test_micro_batch_rows_split_only_a_batch_over_the_budget():
    spec = small_spec("ffm", fields=20, dim=8)
    per_row = training_bytes_per_row(spec)
    assert micro_batch_rows(spec, 512, 512 * per_row) == 512
    split = micro_batch_rows(spec, 512, 100 * per_row)
    assert 1 <= split < 100  # the batch's accumulated sparse gradients take their share first
    with pytest.raises(Fm2OnnxError, match="a batch of 512 ffm rows accumulates"):
        micro_batch_rows(spec, 512, 1 << 20)  # the whole batch's sparse gradients alone do not fit


def test_training_under_a_tiny_budget_gives_the_same_model(tmp_path):
    fdata.synthesize(tmp_path / "ids", rows=3_000, fmt="ids", seed=7, field_dims=[2, 3, 2, 4],
                     cardinalities=[10, 20, 15, 30], progress=False)
    dataset = fdata.EncodedDataset.open(tmp_path / "ids")
    spec = ModelSpec.create("fvfm", list(dataset.field_names), list(dataset.vocab_sizes), dim=4)
    config = TrainConfig(epochs=2, batch_size=2048, seed=1, threads=1, learning_rate=0.01)
    tiny = parse_memory_budget("1M")
    # the smallest budget the CLI takes still splits these batches, and scores the training split in chunks
    assert 1 < micro_batch_rows(spec, 2048, tiny) < 2048 // 2
    assert rows_within(tiny, scoring_bytes_per_row(spec)) < len(dataset.indices("train"))
    whole = train(spec, dataset, config, progress=False)
    small = train(spec, dataset, replace(config, memory_budget=tiny), progress=False)
    for name, tensor in whole.model.state_dict().items():
        torch.testing.assert_close(small.model.state_dict()[name], tensor, rtol=1e-4, atol=1e-6, msg=name)
    assert small.metrics["test"]["auc"] == pytest.approx(whole.metrics["test"]["auc"], abs=1e-6)


@pytest.mark.parametrize("text,bytes_", [("512M", 512 << 20), ("2G", 2 << 30), ("1.5g", 3 << 29),
                                         ("2GiB", 2 << 30), ("3000000", 3_000_000), (" 64mb ", 64 << 20)])
def test_memory_budget_sizes(text, bytes_):
    assert parse_memory_budget(text) == bytes_


def test_the_cli_default_is_the_library_default():
    from fm2onnx.cli import train_cmds

    assert train_cmds.format_size(DEFAULT_MEMORY_BUDGET) == "2G"
    assert parse_memory_budget(format_size(DEFAULT_MEMORY_BUDGET)) == DEFAULT_MEMORY_BUDGET == TrainConfig().memory_budget
    assert format_size(3 << 29) == "1536M" and format_size(1000) == "1000"


@pytest.mark.parametrize("text", ["lots", "0", "-1G", "2X", "nanG", "1e400", "100K", ""])
def test_nonsense_memory_budget_is_refused(text):
    with pytest.raises(Fm2OnnxError, match="--memory-budget"):
        parse_memory_budget(text)


def test_bad_memory_budget_is_one_line_from_the_cli(tmp_path):
    commands = (["train", "--data", tmp_path / "x.txt", "-o", tmp_path / "out.pt"],
                ["evaluate", tmp_path / "ckpt.pt", "--data", tmp_path])
    for command in commands:
        message = error_of(invoke(*command, "--memory-budget", "two gigs"))
        assert message.startswith("--memory-budget 'two gigs'"), message
