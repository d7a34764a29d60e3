"""The torch serving modules (the uncached graphs, before ONNX) equal the model on any configuration."""

import numpy as np
import torch
from hypothesis import given, settings

from export.field_order import PairLayout, canonical_order
from export.serving import serving_module
from models import ModelSpec, build_model
from reference import reference_logits
from test_models import configurations, randomize


@settings(max_examples=100, deadline=None)
@given(configurations())
def test_serving_module_matches_the_reference(config):
    spec, ids, seed = config
    model = build_model(spec, seed=seed)
    randomize(model, seed)
    with torch.no_grad():
        probability, logit = serving_module(model.eval())(torch.from_numpy(ids))
    want = reference_logits(spec, model.state_dict(), ids)
    np.testing.assert_allclose(logit.double().numpy(), want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(probability.double().numpy(), 1 / (1 + np.exp(-want)), rtol=1e-4, atol=1e-5)


def test_canonical_order_puts_the_cached_side_first():
    """For every pair a < b in the order: d_a >= d_b, and on equal dims a has fewer features."""
    spec = ModelSpec.create("fmfm", list("abcdef"), [50, 3, 9, 3, 700, 9], dims=[2, 5, 5, 2, 5, 1])
    order = canonical_order(spec)
    assert order == [1, 2, 4, 3, 0, 5]
    for i, a in enumerate(order):
        for b in order[i + 1:]:
            assert spec.dims[a] > spec.dims[b] or (spec.dims[a] == spec.dims[b] and spec.vocab_sizes[a] <= spec.vocab_sizes[b])


def test_pair_layout_covers_every_pair_once_grouped_by_the_smaller_dim():
    spec = ModelSpec.create("fmfm", list("abcdef"), [5] * 6, dims=[2, 5, 5, 2, 5, 1])
    layout = PairLayout.of(spec)
    pairs = [p for d in layout.group_dims for p in layout.pairs(d)]
    assert sorted(pairs) == [(a, b) for a in range(6) for b in range(a + 1, 6)]
    for d in layout.group_dims:
        assert all(min(layout.dims[a], layout.dims[b]) == d for a, b in layout.pairs(d))
