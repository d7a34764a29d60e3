"""Cache plans: the paper's rule, the min plan on Table 3's fields, budgets, and the frontier against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from export.plan import (CachePlan, frontier, min_plan, parse_budget, plan_for_budget, unlimited_plan)
from fm2onnx.errors import Fm2OnnxError
from models import ModelSpec
from models.paper_shapes import CRITEO_FEATURES_PER_FIELD, CRITEO_FIELD_NAMES, CRITEO_TABLE3_DIMS, vocab_sizes

TABLE3 = ModelSpec.create("fmfm", CRITEO_FIELD_NAMES, vocab_sizes(CRITEO_FEATURES_PER_FIELD), dims=CRITEO_TABLE3_DIMS)


def test_unlimited_is_the_papers_rule_with_table4_flops():
    plan = unlimited_plan(TABLE3)
    assert plan.flops_per_row == 8960  # Table 4, "FmFM (cached & 95% variance)"
    assert plan.cached_floats == 154_880_560
    assert sum(plan.pair_counts.values()) == 741 and plan.pair_counts["compute"] == 0


def test_min_plan_on_table3_fields():
    plan = min_plan(TABLE3)
    assert plan.cached_floats <= 25_000_000 and plan.flops_per_row <= 14_400
    assert plan.pair_counts["compute"] == 0 and plan.pair_counts["cache_left"] and plan.pair_counts["cache_right"]


def test_budgets_are_respected_and_buy_flops():
    previous = None
    for budget in (0, 10_000_000, 50_000_000, 100_000_000, 300_000_000, 10**10):
        plan = plan_for_budget(TABLE3, budget)
        assert plan.cached_floats * 4 <= budget
        assert previous is None or plan.flops_per_row <= previous
        previous = plan.flops_per_row
    assert plan_for_budget(TABLE3, 0).pair_counts["compute"] == 741
    assert plan_for_budget(TABLE3, 10**10) == unlimited_plan(TABLE3)
    # At the min plan's bytes, computing a few pairs beats caching all of them.
    at_min = plan_for_budget(TABLE3, min_plan(TABLE3).cached_floats * 4)
    assert at_min.flops_per_row < min_plan(TABLE3).flops_per_row
    assert plan_for_budget(TABLE3, 50_000_000, bytes_per_value=1).cached_floats <= 50_000_000


def test_frontier_is_pareto_from_nothing_cached_to_unlimited():
    plans = frontier(TABLE3)
    floats = [p.cached_floats for p in plans]
    flops = [p.flops_per_row for p in plans]
    assert floats == sorted(floats) and all(a > b for a, b in zip(flops, flops[1:]))
    assert floats[0] == 0 and flops[-1] == 8960


def brute_force(spec: ModelSpec) -> list[tuple[int, int]]:
    """(floats, FLOPs) of every per-pair choice: cache on the lower index, the higher, or compute."""
    v, d, n = spec.vocab_sizes, spec.dims, spec.num_fields
    pairs = spec.field_pairs
    points = []
    for choice in itertools.product(range(3), repeat=len(pairs)):
        floats, flops = 0, n
        for (a, b), c in zip(pairs, choice):
            if c == 0:
                floats, flops = floats + v[a] * d[b], flops + 2 * d[b] + 1
            elif c == 1:
                floats, flops = floats + v[b] * d[a], flops + 2 * d[a] + 1
            else:
                flops += 2 * d[a] * d[b] + 2 * min(d[a], d[b]) + 1
        points.append((floats, flops))
    return points


def lower_hull(points):
    """Vertices of the lower-left convex hull of (floats, FLOPs)."""
    best = {}
    for x, y in points:
        best[x] = min(y, best.get(x, y))
    hull = []
    for x, y in sorted(best.items()):
        while len(hull) >= 2 and (hull[-1][1] - hull[-2][1]) * (x - hull[-1][0]) >= (y - hull[-1][1]) * (hull[-1][0] - hull[-2][0]):
            hull.pop()
        if not hull or y < hull[-1][1]:
            hull.append((x, y))
    return hull


@pytest.mark.parametrize("seed", range(4))
def test_frontier_reaches_every_hull_vertex_of_all_per_pair_choices(seed):
    """Computed pairs are charged 2·d_a·d_b + 2·min(d) + 1 in the brute force, the cheaper projection; the
    plan projects the earlier field, so allow the difference on computed pairs."""
    rng = np.random.default_rng(seed)
    spec = ModelSpec.create("fmfm", list("abcd"), rng.integers(2, 60, 4).tolist(), dims=rng.integers(1, 6, 4).tolist())
    ours = [(p.cached_floats, p.flops_per_row) for p in frontier(spec)]
    slack = 2 * max(spec.dims) * len(spec.field_pairs)
    for floats, flops in lower_hull(brute_force(spec)):
        reachable = [f for x, f in ours if x <= floats]
        assert reachable and min(reachable) <= flops + slack


def test_parse_budget():
    assert parse_budget("100MB") == 100_000_000 and parse_budget("1.5G") == 1_500_000_000
    assert parse_budget("2_000") == 2000 and parse_budget("min") == "min"
    with pytest.raises(Fm2OnnxError, match="expected bytes"):
        parse_budget("lots")


def test_plans_reject_impossible_counts_and_other_kinds():
    with pytest.raises(Fm2OnnxError, match="caches 3 partners"):
        CachePlan((0, 1, 2), (3, 0, 0), (2, 2, 2), (5, 5, 5))
    with pytest.raises(Fm2OnnxError, match="for fwfm, fvfm, fmfm models, not fm"):
        unlimited_plan(ModelSpec.create("fm", list("ab"), [3, 3], dim=2))


def test_fwfm_and_fvfm_plans_cache_every_pair():
    """A diagonal field matrix cached costs as little as computed: no plan of FwFM or FvFM computes a pair,
    and a budget that would make one is refused, naming the bytes caching every pair takes."""
    from export.plan import frontier, plan_for_budget

    for kind in ("fwfm", "fvfm"):
        spec = ModelSpec.create(kind, list("abcd"), [30, 5, 200, 7], dim=3)
        plans = frontier(spec)
        assert plans and all(p.pair_counts["compute"] == 0 for p in plans)
        everything = unlimited_plan(spec).cached_floats * 4
        assert plan_for_budget(spec, everything) == unlimited_plan(spec)
        with pytest.raises(Fm2OnnxError, match=rf"cache budget 10 bytes: caching every pair takes {everything:,}, "
                                               rf"and a {kind} graph computes no pair"):
            plan_for_budget(spec, 10)
