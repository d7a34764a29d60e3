"""The FmFM files ``export`` ships, every table dtype and cache budget, against the float64
brute-force reference: one request, small batches and large ones."""

from __future__ import annotations

import json

import numpy as np
import pytest

from export import CachedFormOptions, export_checkpoint
from export.ort import session
from export.parity import TOLERANCES, compare, ort_outputs, parity_ids
from fm2onnx.checkpoint import load_checkpoint
from runtime_tests.reference import reference_logits

from .conftest import VARIABLE_DIMS, randomized_model, write_checkpoint

BUDGETS = ("unlimited", "min", "300")  # "300": bytes, so some pairs are computed when serving
BATCHES = (1, 5, 9, 700)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("shipped")
    model = randomized_model("fmfm", VARIABLE_DIMS, seed=21, vocab=[70, 30, 11, 240, 2, 90])
    return write_checkpoint(model, root / "ckpt.pt")


QUICK = {("float32", "unlimited"), ("int8", "300")}  # the rest run in the full suite
CASES = [pytest.param(dtype, budget, marks=() if (dtype, budget) in QUICK else pytest.mark.slow)
         for dtype in ("float32", "float16", "int8") for budget in BUDGETS]


@pytest.mark.parametrize("dtype, budget", CASES)
def test_shipped_file_matches_the_reference(checkpoint, tmp_path, dtype, budget):
    path = tmp_path / "model.onnx"
    export_checkpoint(checkpoint, path, cached=CachedFormOptions(table_dtype=dtype, cache_budget=budget))
    ckpt = load_checkpoint(checkpoint)
    sess = session(path)
    props = sess.get_modelmeta().custom_metadata_map
    assert props["table_dtype"] == dtype and props["batched"] == "gemm"
    if budget == "300":
        assert json.loads(props["cache_plan"])["pairs"]["compute"] > 0
    atol, rtol = TOLERANCES[dtype]
    for batch in BATCHES:
        ids = parity_ids(ckpt.spec, batch, seed=batch)
        want = reference_logits(ckpt.spec, ckpt.state_dict, ids)
        parity = compare(want, ort_outputs(sess, ids)["logit"], atol=atol, rtol=rtol)
        assert parity.ok, f"{dtype}, budget {budget}, batch {batch}: {parity.describe()}"
        assert np.isfinite(want).all()
