"""torch vs ORT uncached vs ORT cached vs the float64 brute-force reference, every kind and batch size."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx.reference import ReferenceEvaluator

from export.ort import session
from export.parity import ort_outputs, parity_ids
from fm2onnx.checkpoint import load_checkpoint
from runtime_tests.reference import reference_logits

from .conftest import CASES, case_id

TOLERANCE = dict(rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", CASES, ids=case_id)
@pytest.mark.parametrize("batch", [1, 7, 1024])
def test_every_form_matches_torch_and_the_reference(exported, case, batch):
    ckpt_path, *graphs = exported(case)
    ckpt = load_checkpoint(ckpt_path)
    ids = parity_ids(ckpt.spec, batch, seed=batch)
    want = reference_logits(ckpt.spec, ckpt.state_dict, ids)
    with torch.no_grad():
        np.testing.assert_allclose(ckpt.model()(torch.from_numpy(ids)).numpy(), want, **TOLERANCE)
    for path in graphs:
        out = ort_outputs(session(path), ids)
        assert out["logit"].shape == (batch,) and out["logit"].dtype == np.float32
        np.testing.assert_allclose(out["logit"], want, **TOLERANCE)
        np.testing.assert_allclose(out["probability"], 1 / (1 + np.exp(-want)), **TOLERANCE)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_bad_ids_read_the_unknown_row(exported, case):
    """Negative, past-the-vocabulary and extreme ids neither fail nor wrap around: they read row 0."""
    ckpt_path, *graphs = exported(case)
    n = len(load_checkpoint(ckpt_path).spec.vocab_sizes)
    bad = np.array([[-1] * n, [10**6] * n, [np.iinfo(np.int64).min] * n, [np.iinfo(np.int64).max] * n,
                    [24] * n], dtype=np.int64)  # 24 >= every vocabulary size here
    for path in graphs:
        sess = session(path)
        unknown = ort_outputs(sess, np.zeros((1, n), np.int64))["logit"]
        # Equal up to float summation order (batched kernels may split rows differently).
        np.testing.assert_allclose(ort_outputs(sess, bad)["logit"], np.repeat(unknown, len(bad)), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_graphs_pass_the_full_checker_with_standard_ops_only(exported, case):
    for path in exported(case)[1:]:
        onnx.checker.check_model(str(path), full_check=True)
        model = onnx.load(str(path))
        assert {n.domain for n in model.graph.node} <= {""}
        assert not model.functions
        assert [i.name for i in model.graph.input] == ["feature_ids"]
        assert [o.name for o in model.graph.output] == ["probability", "logit"]


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_onnx_reference_evaluator_agrees(exported, case):
    """A second runtime: onnx's own reference evaluator."""
    ckpt_path, *graphs = exported(case)
    ckpt = load_checkpoint(ckpt_path)
    ids = parity_ids(ckpt.spec, 16, seed=3)
    want = reference_logits(ckpt.spec, ckpt.state_dict, ids)
    for path in graphs:
        logit = ReferenceEvaluator(str(path)).run(["logit"], {"feature_ids": ids})[0]
        np.testing.assert_allclose(logit, want, **TOLERANCE)
