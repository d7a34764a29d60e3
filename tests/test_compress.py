"""Compression folds PCA bases into the field matrices exactly: it equals the full model evaluated at the
projected embeddings, and the full model itself when every component is kept."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from fm2onnx.compression import compress_model, select_dims
from fm2onnx.errors import Fm2OnnxError
from models import ModelSpec, build_model
from runtime_tests.reference import reference_logits
from .test_models import randomize


@st.composite
def compressible_models(draw):
    kind = draw(st.sampled_from(["fm", "fwfm", "fvfm", "fmfm"]))
    n = draw(st.integers(2, 6))
    vocab = draw(st.lists(st.integers(1, 12), min_size=n, max_size=n))
    dims = draw(st.lists(st.integers(1, 6), min_size=n, max_size=n)) if kind == "fmfm" else None
    linear = draw(st.sampled_from(["feature", "field_vector"]))
    spec = ModelSpec.create(kind, [f"f{i}" for i in range(n)], vocab, dim=draw(st.integers(1, 6)), dims=dims,
                            linear=linear)
    seed = draw(st.integers(0, 2**16))
    model = build_model(spec, seed=seed)
    randomize(model, seed)
    ids = np.random.default_rng(seed).integers(-2, 14, size=(16, n))
    return model, ids


@settings(max_examples=60, deadline=None)
@given(compressible_models())
def test_variance_one_reproduces_the_full_model(case):
    model, ids = case
    selection = select_dims(model, 1.0)
    small = compress_model(model, selection.dims, selection.pcas)
    assert small.spec.kind == "fmfm" and small.spec.linear == model.spec.linear
    assert small.spec.dims == model.spec.dims
    want = reference_logits(model.spec, model.state_dict(), ids)
    got = reference_logits(small.spec, small.state_dict(), ids)  # the brute-force loop, not the fast forward
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(small(torch.from_numpy(ids)).detach().numpy(), want, rtol=1e-4, atol=1e-4)


def projected(model, selection):
    """The same model with each embedding row replaced by its projection μ + u Pᵀ."""
    copy = build_model(model.spec)
    copy.load_state_dict(model.state_dict())
    copy.double()
    with torch.no_grad():
        for table, pca, d in zip(copy.embeddings.tables, selection.pcas, selection.dims):
            u = pca.coordinates(table.weight.numpy(), d)
            table.weight.copy_(torch.from_numpy(pca.mean + u @ pca.components[:, :d].T))
    return copy


@settings(max_examples=40, deadline=None)
@given(compressible_models(), st.sampled_from([0.5, 0.8, 0.95]))
def test_fold_is_exact_for_projected_embeddings(case, threshold):
    model, ids = case
    selection = select_dims(model, threshold)
    small = compress_model(model, selection.dims, selection.pcas).double()
    ids = torch.from_numpy(ids)
    torch.testing.assert_close(small(ids), projected(model, selection)(ids), rtol=1e-5, atol=1e-5)


def test_dims_larger_than_the_model_are_refused():
    model = build_model(ModelSpec.create("fmfm", ["a", "b"], [5, 5], dims=[2, 3]), seed=0)
    selection = select_dims(model, 1.0)
    with pytest.raises(Fm2OnnxError, match="field 'b'.*between 1 and its current dim 3"):
        compress_model(model, [2, 4], selection.pcas)


@pytest.mark.parametrize("kind", ["lr", "ffm"])
def test_lr_and_ffm_cannot_be_compressed(kind):
    model = build_model(ModelSpec.create(kind, ["a", "b"], [3, 3], dim=2))
    with pytest.raises(Fm2OnnxError, match=kind.upper()):
        compress_model(model, [1, 1], [])
