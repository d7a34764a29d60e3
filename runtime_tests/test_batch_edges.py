"""Every exported file answers every batch size: empty (empty outputs), one request, the boundaries of
each batch-size branch and large batches, against the float64 reference."""

from __future__ import annotations

import numpy as np
import pytest

from export import CachedFormOptions, export_checkpoint
from export.fields_layout import FieldsLayoutConfig
from export.ort import session
from export.parity import TOLERANCES, compare, ort_outputs, parity_ids
from export.raw_input import RawContract
from export.raw_rows import graph_feeds, probe_rows
from fm2onnx.checkpoint import load_checkpoint
from runtime_tests.reference import reference_logits

from .conftest import CASES, case_id, randomized_model, write_checkpoint
from .raw_checkpoints import raw_models  # noqa: F401  (session fixture)

SMALL = FieldsLayoutConfig().small_batch_max
BATCHES = (0, 1, 2, SMALL, SMALL + 1, 300)


def assert_every_batch_matches(path, ckpt_path, tolerance=(1e-4, 1e-4)):
    ckpt, sess = load_checkpoint(ckpt_path), session(path)
    for batch in BATCHES:
        ids = parity_ids(ckpt.spec, batch, seed=batch)
        out = ort_outputs(sess, ids)
        assert out["logit"].shape == (batch,) and out["probability"].shape == (batch,), (path.name, batch)
        atol, rtol = tolerance
        parity = compare(reference_logits(ckpt.spec, ckpt.state_dict, ids), out["logit"], atol=atol, rtol=rtol)
        assert parity.ok, f"{path.name}, batch {batch}: {parity.describe()}"


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_every_kind_and_layout_answers_every_batch_size(exported, case):
    ckpt, *graphs = exported(case)
    for path in graphs:  # cached (default layout), uncached, pairs layout merged pair-major
        assert_every_batch_matches(path, ckpt)


QUICK = {("float32", "gemm"), ("int8", "cached")}  # the other combinations run in the full suite
FMFM_FILES = [pytest.param(dtype, batched, marks=() if (dtype, batched) in QUICK else pytest.mark.slow)
              for dtype in ("float32", "float16", "int8") for batched in ("gemm", "cached")]


@pytest.mark.parametrize("dtype, batched", FMFM_FILES)
def test_every_fmfm_table_dtype_and_batched_form_answers_every_batch_size(tmp_path, dtype, batched):
    ckpt = write_checkpoint(randomized_model("fmfm", (3, 5, 1, 4, 2, 5), seed=8), tmp_path / "ckpt.pt")
    path = tmp_path / "model.onnx"
    export_checkpoint(ckpt, path, cached=CachedFormOptions(table_dtype=dtype, batched=batched))
    assert_every_batch_matches(path, ckpt, TOLERANCES[dtype])


def test_raw_graphs_answer_every_batch_size(raw_models):  # noqa: F811
    models = raw_models("avazu")  # an FmFM model: its cached graph branches on the batch size
    contract = RawContract.of(models.preprocessor)
    rows = probe_rows(models.preprocessor, max(BATCHES), seed=1)
    for form, path in models.raw.items():
        raw, ids = session(path), session(models.ids[form])
        for batch in BATCHES:
            feeds = graph_feeds(contract, {k: v[:batch] for k, v in rows.items()})
            got = raw.run(None, feeds)
            assert got[1].shape == (batch,), (form, batch)
            want = ids.run(["logit"], {"feature_ids": got[2]})[0] if batch else got[1]
            np.testing.assert_allclose(got[1], want, rtol=1e-5, atol=1e-5)
