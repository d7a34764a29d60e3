"""The torch serving modules (the uncached graphs, before ONNX) equal the model on any configuration."""

import itertools

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from export.field_order import PairLayout, canonical_order
from export.folds import FieldWeights
from export.gemm_form import RANGE_COST, GemmGroup, GemmTables, gemm_tables, width_groups
from export.serving import serving_module
from models import ModelSpec
from .test_models import configurations, model_and_reference


@settings(max_examples=100, deadline=None)
@given(configurations())
def test_serving_module_matches_the_reference(config):
    model, ids, want = model_and_reference(config)
    with torch.no_grad():
        probability, logit = serving_module(model.eval())(torch.from_numpy(ids))
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


@settings(max_examples=100, deadline=None)
@given(configurations(kinds=["fmfm"]), st.integers(1, 8))
def test_gemm_tables_give_the_reference_logit(config, groups):
    """X gathered from the width groups' padded tables, Σ X ⊙ X·W + bias, in float64 numpy."""
    model, ids, want = model_and_reference(config)
    spec = model.spec
    tables = gemm_tables(FieldWeights.of_model(model), groups)
    rows = np.clip(ids, 0, np.array(spec.vocab_sizes))  # past the vocabulary: row V, a copy of row 0
    x = np.concatenate([g.table[rows[:, g.fields] + np.array(g.first_rows)].reshape(len(ids), -1)
                        for g in tables.groups], axis=1).astype(np.float64)
    got = (x * (x @ tables.matrix.astype(np.float64))).sum(axis=1) + model.bias.item()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 20), min_size=1, max_size=9), st.integers(1, 10))
def test_width_groups_pad_least_then_even_out(widths, count):
    """Fewest padding values, then the most even sizes, against every way of cutting the fields sorted
    by width into that many groups."""
    def score(sizes):
        return sum(sizes), sum(s * s for s in sizes)

    groups = width_groups(widths, count)
    assert sorted(f for g in groups for f in g) == list(range(len(widths)))
    assert len(groups) == min(count, len(widths))
    ordered = sorted(widths)
    best = min(score([(b - a) * ordered[b - 1] for a, b in zip((0,) + cuts, cuts + (len(widths),))])
               for cuts in itertools.combinations(range(1, len(widths)), len(groups) - 1))
    assert score([len(g) * max(widths[f] for f in g) for g in groups]) == best


def block_triangular_tables(widths: list[int]) -> GemmTables:
    """Tables of one field per group of these widths, W all ones on and above its diagonal blocks."""
    groups = [GemmGroup([f], w, np.zeros((1, w), np.float32), [0]) for f, w in enumerate(widths)]
    field = np.repeat(np.arange(len(widths)), widths)
    return GemmTables(groups, (field[:, None] <= field[None, :]).astype(np.float32), list(range(len(widths))))


def test_product_ranges_merge_the_narrow_first_groups_while_that_costs_less():
    """Hand-computed: a range (start, end) costs end·(end - start) multiply-adds per row and RANGE_COST."""
    assert RANGE_COST == 2_500
    # the item side of Criteo's Table 3 dims, 13 largest fields: groups 2, 18, 33, 39 and 56 columns wide;
    # one range per group: 13,989 + 5 x 2,500 = 26,489; the first four merged: 92·92 + 148·56 + 2 x 2,500 = 21,752
    narrow = block_triangular_tables([2, 18, 33, 39, 56])
    assert narrow.ranges_cost([(0, 2), (2, 20), (20, 53), (53, 92), (92, 148)]) == 26_489
    assert narrow.product_ranges() == [(0, 92), (92, 148)] and narrow.ranges_cost([(0, 92), (92, 148)]) == 21_752
    # wide groups: merging the first two (100·100 = 10,000) costs more than the range it saves (50·50 + 100·50)
    assert block_triangular_tables([50, 50, 200]).product_ranges() == [(0, 50), (50, 100), (100, 300)]
    # a range whose block is all zeros multiplies nothing: only its own passes count
    zero_first = block_triangular_tables([3, 4])
    zero_first.matrix[:, :3] = 0
    assert zero_first.ranges_cost([(0, 3), (3, 7)]) == 7 * 4 + 2 * RANGE_COST
