"""Cache plans for FwFM, FvFM and FmFM: per field pair, cache v·M on the left field, on the right one,
or compute it.

A plan is a field order plus, per field, how many of the fields after it it caches vectors for. Every
pair (a, b), a before b in the order, is served from field a: when b is among the first ``cached[a]``
fields after a, field a's table holds v_a·M_ab (d_b floats per feature of a); otherwise serving
computes v_a·M_ab (2·d_a·d_b FLOPs). So a field's cached vectors line up with the part of the
concatenated embedding row that follows it (export/fields_layout.py).

FLOPs per row follow Table 4's conventions (models/cost.py): a cached pair costs 2·d_b + 1 (dot product,
then its sum), a computed one 2·d_a·d_b more, plus n for the linear terms (one cached value per feature).

Choosing a plan (Section 4.3 caches every pair on its smaller-dim side; that is ``unlimited``):

* Caching pair (a, b) on a rather than on b is cheaper in FLOPs + λ·floats exactly when
  g(a) < g(b) with g(x) = (λ·V_x + 2) / d_x, a total order: for every price λ of a float there is one
  field order, and caching every pair on its earlier field is optimal for that price.
* Within one order, caching pair (a, b) rather than computing it saves 2·d_a·d_b FLOPs for V_a·d_b
  floats, a ratio 2·d_a / V_a that depends on a only. Caching the fields' suffixes greedily by that
  ratio traces the best plans of that order (a convex curve).

The planner walks every order some λ produces (one per crossing of two g lines) and keeps the
plans no other plan beats in both FLOPs and floats: exact at the frontier's convex-hull vertices,
within one field's partial suffix of optimal between them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property, lru_cache

import numpy as np

from fm2onnx.errors import Fm2OnnxError
from models import ModelSpec
from models.cost import LINEAR_TERM_FLOPS, cached_pair_flops, computed_pair_flops

from .field_order import canonical_order

BUDGET_KEYWORDS = ("min", "unlimited")


@dataclass(frozen=True)
class CachePlan:
    order: tuple[int, ...]  # original field index per serving position
    cached: tuple[int, ...]  # per position: how many of the fields after it are cached for
    dims: tuple[int, ...]  # per original field
    vocab_sizes: tuple[int, ...]  # per original field
    name: str = ""  # "unlimited", "min", "budget 100000000 bytes", ...

    def __post_init__(self) -> None:
        n = len(self.dims)
        if sorted(self.order) != list(range(n)) or len(self.cached) != n:
            raise Fm2OnnxError(f"cache plan: the order must list each of the {n} fields once, with one count per field")
        for p, c in enumerate(self.cached):
            if not 0 <= c <= n - 1 - p:
                raise Fm2OnnxError(f"cache plan: position {p} caches {c} partners but has {n - 1 - p} after it")

    # -- per position ------------------------------------------------------------------------------

    @cached_property
    def position_dims(self) -> tuple[int, ...]:
        return tuple(self.dims[f] for f in self.order)

    @cached_property
    def position_vocab(self) -> tuple[int, ...]:
        return tuple(self.vocab_sizes[f] for f in self.order)

    @cached_property
    def offsets(self) -> tuple[int, ...]:
        """Start of each position's block in the concatenated embedding row; the last entry is its width."""
        return tuple(int(x) for x in np.concatenate([[0], np.cumsum(self.position_dims)]))

    def cached_partners(self, p: int) -> range:
        return range(p + 1, p + 1 + self.cached[p])

    def computed_partners(self, p: int) -> range:
        return range(p + 1 + self.cached[p], len(self.order))

    def cached_width(self, p: int) -> int:
        """Floats per feature of position p's cached vectors."""
        return self.offsets[p + 1 + self.cached[p]] - self.offsets[p + 1]

    # -- totals ------------------------------------------------------------------------------------

    @property
    def num_fields(self) -> int:
        return len(self.order)

    @cached_property
    def cached_floats(self) -> int:
        return sum(self.position_vocab[p] * self.cached_width(p) for p in range(self.num_fields))

    @cached_property
    def flops_per_row(self) -> int:
        """Table 4's conventions (module docstring)."""
        d, total = self.position_dims, LINEAR_TERM_FLOPS * self.num_fields
        for p in range(self.num_fields):
            total += sum(cached_pair_flops(d[q]) for q in self.cached_partners(p))
            total += sum(computed_pair_flops(d[p], d[q]) for q in self.computed_partners(p))
        return total

    @cached_property
    def pair_counts(self) -> dict[str, int]:
        """cache_left / cache_right: cached on the pair's lower / higher original field index."""
        counts = {"cache_left": 0, "cache_right": 0, "compute": 0}
        for p, f in enumerate(self.order):
            for q in self.cached_partners(p):
                counts["cache_left" if f < self.order[q] else "cache_right"] += 1
            counts["compute"] += len(self.computed_partners(p))
        return counts

    def describe(self, bytes_per_value: int = 4) -> str:
        c = self.pair_counts
        return (f"{self.name or 'plan'}: {self.cached_floats:,} cached floats "
                f"({self.cached_floats * bytes_per_value:,} bytes), {self.flops_per_row:,} FLOPs per row; pairs: "
                f"{c['cache_left']} cache-left, {c['cache_right']} cache-right, {c['compute']} computed")

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "order": list(self.order), "cached": list(self.cached),
                           "cached_floats": self.cached_floats, "flops_per_row": self.flops_per_row,
                           "pairs": self.pair_counts})


# laid out by field: a field matrix per pair to fold into cached vectors (Table 1's scalar, diagonal and
# full); FM's identity is a sum of squares in the pairs layout, and FFM and LR have no field matrix
FIELDS_KINDS = ("fwfm", "fvfm", "fmfm")
# the kinds whose plans may compute pairs to save bytes: v_a·M_ab with FmFM's full matrices; a diagonal
# matrix cached costs as little as computed, and the fields graph's products (as the plan counts them)
# are dense, so FwFM and FvFM cache every pair
COMPUTING_KINDS = ("fmfm",)


# -- the planner -----------------------------------------------------------------------------------


def check_plannable(spec: ModelSpec) -> None:
    if spec.kind not in FIELDS_KINDS:
        raise Fm2OnnxError(f"cache plans are for {', '.join(FIELDS_KINDS)} models, not {spec.kind}")


def unlimited_plan(spec: ModelSpec) -> CachePlan:
    """Section 4.3: every pair cached on its smaller-dim side (fewer features on ties): fewest FLOPs."""
    check_plannable(spec)
    n = spec.num_fields
    return CachePlan(tuple(canonical_order(spec)), tuple(n - 1 - p for p in range(n)), spec.dims,
                     spec.vocab_sizes, "unlimited")


def min_plan(spec: ModelSpec) -> CachePlan:
    """Every pair cached on the side that needs fewer floats: V_a·d_b < V_b·d_a orders fields by V/d."""
    check_plannable(spec)
    n = spec.num_fields
    order = sorted(range(n), key=lambda f: (Fraction(spec.vocab_sizes[f], spec.dims[f]), -spec.dims[f], f))
    return CachePlan(tuple(order), tuple(n - 1 - p for p in range(n)), spec.dims, spec.vocab_sizes, "min")


def lagrangian_orders(spec: ModelSpec) -> list[tuple[int, ...]]:
    """Every distinct order of g(x) = (λ·V_x + 2)/d_x over λ >= 0, plus the λ -> ∞ order (by V/d)."""
    v = np.array(spec.vocab_sizes, np.float64)
    d = np.array(spec.dims, np.float64)
    n = len(v)
    crossings = set()
    for a in range(n):
        for b in range(a + 1, n):
            denominator = v[a] * d[b] - v[b] * d[a]
            if denominator:
                lam = 2 * (d[a] - d[b]) / denominator
                if lam > 0:
                    crossings.add(lam)
    points = sorted(crossings)
    # One λ inside each interval between crossings (and beyond the last).
    lambdas = [0.0] + [(lo + hi) / 2 for lo, hi in zip(points, points[1:])] + ([points[-1] * 2] if points else [])
    orders = {tuple(sorted(range(n), key=lambda f: ((lam * v[f] + 2) / d[f], v[f], f))) for lam in lambdas}
    orders.add(min_plan(spec).order)
    orders.add(unlimited_plan(spec).order)
    return sorted(orders)


@dataclass(frozen=True)
class OrderCurve:
    """The greedy caching sequence of one order: step i caches one more (position, partner)."""

    order: tuple[int, ...]
    ranked: tuple[int, ...]  # positions by FLOPs saved per cached float, best first
    positions: np.ndarray  # [steps] position that caches one more partner, in greedy order
    floats: np.ndarray  # [steps + 1] cumulative cached floats (0 first)
    flops: np.ndarray  # [steps + 1] FLOPs per row after each step

    @classmethod
    def of(cls, spec: ModelSpec, order: tuple[int, ...]) -> "OrderCurve":
        n = len(order)
        d = [spec.dims[f] for f in order]
        v = [spec.vocab_sizes[f] for f in order]
        ranked = tuple(sorted(range(n - 1), key=lambda p: (Fraction(v[p], 2 * d[p]), p)))
        positions, floats, saved = [], [0], [0]
        for p in ranked:
            for q in range(p + 1, n):  # a position's partners in order: its cached ones stay a prefix
                positions.append(p)
                floats.append(floats[-1] + v[p] * d[q])
                saved.append(saved[-1] + computed_pair_flops(d[p], d[q]) - cached_pair_flops(d[q]))
        start = CachePlan(order, (0,) * n, spec.dims, spec.vocab_sizes).flops_per_row
        return cls(order, ranked, np.array(positions, np.int64), np.array(floats, np.int64),
                   start - np.array(saved, np.int64))

    def plan(self, spec: ModelSpec, steps: int, name: str = "") -> CachePlan:
        cached = np.bincount(self.positions[:steps], minlength=len(self.order))
        return CachePlan(self.order, tuple(int(c) for c in cached), spec.dims, spec.vocab_sizes, name)

    def best_within(self, spec: ModelSpec, budget_floats: int, name: str = "") -> CachePlan:
        """Whole suffixes by ratio; a suffix that does not fit is cached as far as it fits."""
        n = len(self.order)
        d = [spec.dims[f] for f in self.order]
        cached, room = [0] * n, budget_floats
        for p in self.ranked:
            v = spec.vocab_sizes[self.order[p]]
            for q in range(p + 1, n):
                if v * d[q] > room:
                    break
                cached[p] += 1
                room -= v * d[q]
        return CachePlan(self.order, tuple(cached), spec.dims, spec.vocab_sizes, name)


@lru_cache(maxsize=4)
def curves(spec: ModelSpec) -> tuple[OrderCurve, ...]:
    check_plannable(spec)
    return tuple(OrderCurve.of(spec, order) for order in lagrangian_orders(spec))


def plan_for_budget(spec: ModelSpec, budget: str | int, bytes_per_value: int = 4) -> CachePlan:
    """``budget``: "min", "unlimited", or bytes of cached vectors at ``bytes_per_value`` per value."""
    if budget == "unlimited":
        return unlimited_plan(spec)
    if budget == "min":
        return min_plan(spec)
    budget_bytes = parse_budget(budget)
    floats = int(budget_bytes) // bytes_per_value
    unlimited = unlimited_plan(spec)
    if floats >= unlimited.cached_floats:
        return unlimited
    check_budget(spec, budget, bytes_per_value)
    name = f"budget {int(budget_bytes):,} bytes"
    best = None
    for curve in curves(spec):
        plan = curve.best_within(spec, floats, name)
        if best is None or (plan.flops_per_row, plan.cached_floats) < (best.flops_per_row, best.cached_floats):
            best = plan
    return best


def check_budget(spec: ModelSpec, budget: str | int, bytes_per_value: int = 4) -> None:
    """A kind that computes no pair (``COMPUTING_KINDS``) takes no budget below caching every pair."""
    budget_bytes = parse_budget(budget)
    if spec.kind in COMPUTING_KINDS or budget_bytes in ("unlimited", "min"):
        return
    everything = unlimited_plan(spec).cached_floats * bytes_per_value
    if budget_bytes < everything:
        raise Fm2OnnxError(f"cache budget {int(budget_bytes):,} bytes: caching every pair takes {everything:,}, "
                           f"and a {spec.kind} graph computes no pair; for a smaller file use --table-dtype "
                           "float16|int8, or the GEMM form (--serve-batch N)")


def parse_budget(budget: str | int) -> int | str:
    if isinstance(budget, int):
        value = budget
    elif budget in BUDGET_KEYWORDS:
        return budget
    else:
        text = str(budget).strip().upper().replace("_", "").replace(",", "")
        scale = 1
        for suffix, factor in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3), ("G", 10**9), ("M", 10**6),
                               ("K", 10**3), ("B", 1)):
            if text.endswith(suffix):
                text, scale = text[: -len(suffix)], factor
                break
        try:
            value = int(float(text) * scale)
        except ValueError:
            raise Fm2OnnxError(f"cache budget {budget!r}: expected bytes (e.g. 100000000, 100MB), min or unlimited") from None
    if value < 0:
        raise Fm2OnnxError(f"cache budget {budget!r} is negative")
    return value


def frontier(spec: ModelSpec) -> list[CachePlan]:
    """The plans no other plan beats in both FLOPs per row and cached floats, by floats ascending (for a
    kind that computes no pair, those that cache every pair)."""
    if spec.kind not in COMPUTING_KINDS:
        cached = sorted([min_plan(spec), unlimited_plan(spec)], key=lambda p: (p.cached_floats, p.flops_per_row))
        return cached[:1] if cached[0].flops_per_row <= cached[1].flops_per_row else cached
    all_curves = curves(spec)
    floats = np.concatenate([c.floats for c in all_curves])
    flops = np.concatenate([c.flops for c in all_curves])
    which = np.concatenate([np.full(len(c.floats), i) for i, c in enumerate(all_curves)])
    steps = np.concatenate([np.arange(len(c.floats)) for c in all_curves])
    plans, best_flops = [], None
    for k in np.lexsort((flops, floats)):
        if best_flops is None or flops[k] < best_flops:
            plans.append(all_curves[which[k]].plan(spec, int(steps[k])))
            best_flops = flops[k]
    return plans
