"""Every model equals the brute-force float64 reference over random configurations."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from fm2onnx.errors import Fm2OnnxError
from models import MODEL_KINDS, L2Config, ModelSpec, build_model
from runtime_tests.reference import reference_logits


def randomize(model, seed):
    """Replace the structured init (identity matrices, zero linear) so every parameter matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)


@st.composite
def configurations(draw, kinds=MODEL_KINDS):
    kind = draw(st.sampled_from(kinds))
    n = draw(st.integers(2, 7))
    vocab = draw(st.lists(st.integers(1, 9), min_size=n, max_size=n))
    variable = kind == "fmfm" and draw(st.booleans())
    dims = draw(st.lists(st.integers(1, 6), min_size=n, max_size=n)) if variable else None
    linear = "feature" if kind in ("lr", "ffm") else draw(st.sampled_from(["feature", "field_vector"]))
    spec = ModelSpec.create(kind, [f"f{i}" for i in range(n)], vocab, dim=draw(st.integers(1, 6)), dims=dims,
                            linear=linear)
    batch = draw(st.integers(1, 5))
    # Ids include in-range, unknown (0), negative and past-the-vocabulary values.
    ids = draw(st.lists(st.lists(st.integers(-3, 12), min_size=n, max_size=n), min_size=batch, max_size=batch))
    return spec, np.array(ids, dtype=np.int64), draw(st.integers(0, 2**16))


def model_and_reference(config):
    """A randomized model of a drawn configuration, its ids and the float64 reference logits."""
    spec, ids, seed = config
    model = build_model(spec, seed=seed)
    randomize(model, seed)
    return model, ids, reference_logits(spec, model.state_dict(), ids)


@settings(max_examples=150, deadline=None)
@given(configurations())
def test_model_matches_bruteforce_reference(config):
    model, ids, want = model_and_reference(config)
    got = model(torch.from_numpy(ids)).detach().double().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["fm", "fwfm", "fvfm", "fmfm"])
def test_fast_interaction_equals_pairwise_form(kind):
    """The training forms (sum of squares, pair products, block matrix) equal the pair-by-pair M_ab form."""
    dims = [3, 1, 4, 2, 5] if kind == "fmfm" else [4] * 5
    spec = ModelSpec.create(kind, list("abcde"), [6] * 5, dims=dims)
    model = build_model(spec, seed=1)
    randomize(model, 1)
    row = torch.randn(8, sum(dims), dtype=torch.float64)
    model.double()
    torch.testing.assert_close(model.interaction(row), model.interaction.grouped_forward(row))


@pytest.mark.parametrize("kind", ["fwfm", "fvfm"])
def test_fast_interaction_gradients_equal_pairwise_forms(kind):
    """The [n, n] matrix-product forms train the same weights as the pair-by-pair sum."""
    spec = ModelSpec.create(kind, list("abcdef"), [6] * 6, dim=3)
    model = build_model(spec, seed=2).double()
    randomize(model, 2)
    row = torch.randn(7, 18, dtype=torch.float64)
    weights = model.interaction.field_matrices.weights
    grads = []
    for form in (model.interaction, model.interaction.grouped_forward):
        x = row.clone().requires_grad_(True)
        weights.grad = None
        (form(x) * torch.arange(1.0, 8.0, dtype=torch.float64)).sum().backward()
        grads.append((x.grad, weights.grad.clone()))
    for fast, pairwise in zip(*grads):
        torch.testing.assert_close(fast, pairwise)


def test_fm_hand_computed_value():
    """Two fields, K=2: logit = b + w_a + w_b + <v_a, v_b>, computed by hand."""
    spec = ModelSpec.create("fm", ["a", "b"], [2, 2], dim=2)
    model = build_model(spec)
    with torch.no_grad():
        model.bias.fill_(0.5)
        model.linear.weights[0].weight[1] = 0.25
        model.linear.weights[1].weight[1] = -1.0
        model.embeddings.tables[0].weight[1] = torch.tensor([1.0, 2.0])
        model.embeddings.tables[1].weight[1] = torch.tensor([3.0, -4.0])
    assert model(torch.tensor([[1, 1]])).item() == pytest.approx(0.5 + 0.25 - 1.0 + (3.0 - 8.0))


def test_out_of_range_ids_read_the_unknown_row():
    spec = ModelSpec.create("fmfm", ["a", "b", "c"], [4, 5, 6], dims=[2, 3, 1])
    model = build_model(spec, seed=0)
    randomize(model, 0)
    unknown = model(torch.tensor([[0, 0, 0]]))
    assert torch.equal(model(torch.tensor([[-1, 5, 6]])), unknown)
    assert torch.equal(model(torch.tensor([[4, -7, 1000]])), unknown)


def test_penalty_is_zero_without_l2_and_positive_with_it():
    spec = ModelSpec.create("fmfm", ["a", "b"], [4, 4], dim=3)
    model = build_model(spec, seed=0)
    ids = torch.tensor([[1, 2], [3, 0]])
    assert model.forward_with_penalty(ids)[1].item() == 0.0
    assert model.forward_with_penalty(ids, L2Config(1e-3, 1e-3, 1e-3))[1].item() > 0.0


@pytest.mark.parametrize("bad, message", [
    (dict(kind="deepfm"), "unknown model kind"),
    (dict(kind="fm", dims=[2, 3]), "only FmFM supports"),
    (dict(kind="fm", vocab_sizes=[0, 3]), "vocabulary size 0"),
    (dict(kind="fm", linear="sparse"), "unknown linear form"),
    (dict(kind="fm", field_names=["a", "a"]), "field names must be unique: 'a' named twice"),
    (dict(kind="fm", field_names=["a", "b,c"]), "field name 'b,c': a name must be non-empty text without commas"),
])
def test_bad_specs_are_refused(bad, message):
    args = dict(kind="fm", field_names=["a", "b"], vocab_sizes=[3, 3], dims=[2, 2], linear="feature") | bad
    with pytest.raises(Fm2OnnxError, match=message):
        ModelSpec(**args)
