"""Where the cached values sit in the *fields* layout: one table row per field, rows grouped in runs.

For a cache plan (export/plan.py) with fields in serving order, a position p that caches all its
partners has the table row

    [ lead zeros | v_p | v_p·M_pq for its partners q > p | lin_p ]

lined up with Y = [E | 1], E the concatenated embedding row in serving order: v_p sits on its own
block of E and p's partners are the contiguous run of E after it (no index shuffles); the linear
term meets the 1. So the logit is bias + Σ_p <row_p, Y window of p> − Σ_p <v_p, v_p>. A position that
computes some partners (budget plans) has [v_p·M_pq for its cached partners | lin_p | v_p] instead.

Each field's rows are its V features plus a copy of the unknown row 0 at index V, so serving maps
out-of-range ids with a Min and a Max (negative ids to 0, ids past V to V). The bias is folded into
the first position's linear terms (every request reads exactly one row per field). With float
tables the last run's rows end with a 1 and a 0 that the small-batch graph pairs other values with.

Rows of consecutive fields that cache all their partners form a *run*: they get one start (the
first member's E block) and one width (to E's end), so the run's rows stack into one table and a
request reads them with one Gather. That costs leading zeros; ``group_runs`` picks the runs that
make a request cheapest, a run counting as ``values_per_run`` values read, with the zeros within a
share of the table. Fewer lookups is what small batches are bound by (export/fields_graph.py); the
zeros cost large batches some memory traffic.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from fm2onnx.errors import Fm2OnnxError

from .folds import FieldWeights, check_table_dtype, encode, project
from .plan import CachePlan

BATCHED_FORMS = ("cached", "gemm")


@dataclass(frozen=True)
class FieldsLayoutConfig:
    table_dtype: str = "float32"
    small_batch_max: int = 8  # batches up to this size take the few-node subgraph
    max_table_zeros: float = 0.1  # run padding, as a share of the table's values
    values_per_run: int = 500  # a run's Gather costs about as much as reading this many more values (fm2onnx bench)
    batched: str = "cached"  # what batches of 2 or more run on: the cached tables, or "gemm" (export/gemm_form.py)

    def __post_init__(self) -> None:
        check_table_dtype(self.table_dtype)
        if self.batched not in BATCHED_FORMS:
            raise Fm2OnnxError(f"unknown batched form {self.batched!r}; expected one of {', '.join(BATCHED_FORMS)}")
        if self.small_batch_max < 0 or self.max_table_zeros < 0 or self.values_per_run < 0:
            raise Fm2OnnxError("small_batch_max, max_table_zeros and values_per_run must be >= 0")


@dataclass(frozen=True)
class RowLayout:
    """Position p's table row; value c of it meets Y column ``start + c``.

    through (caches every partner): [lead zeros | v_p | cached vectors | lin | units], v_p on its own E
    block (so the row covers E from block p to the end, and lin meets the 1 after E);
    otherwise: [cached vectors | lin | v_p]."""

    through: bool
    start: int
    lead: int
    body_width: int
    dim: int
    width: int
    units: bool = False  # the row's last two values are a 1 and a 0 (the last run, float tables)

    @property
    def body_start(self) -> int:
        return self.lead + self.dim if self.through else self.lead

    @property
    def lin(self) -> int:
        return self.body_start + self.body_width

    @property
    def own(self) -> slice:
        first = self.lead if self.through else self.lin + 1
        return slice(first, first + self.dim)


@dataclass(frozen=True)
class Run:
    """Positions ``first`` .. ``end - 1``, stacked in one table: member p's rows start at ``bases[p - first]``."""

    first: int
    end: int
    width: int
    bases: tuple[int, ...]

    @property
    def positions(self) -> range:
        return range(self.first, self.end)


def group_runs(plan: CachePlan, config: FieldsLayoutConfig) -> list[tuple[int, int]]:
    """Runs of consecutive through positions (others stay alone) that minimize what a request costs,
    runs × values_per_run + values read, with the padding zeros within max_table_zeros of the table;
    ties: the fewest table zeros."""
    n, off, dims, vocab = plan.num_fields, plan.offsets, plan.position_dims, plan.position_vocab
    through = [not plan.computed_partners(p) for p in range(n)]
    exact = [plan.cached_width(p) + 1 + dims[p] for p in range(n)]
    table_room = config.max_table_zeros * sum(v * w for v, w in zip(vocab, exact))

    def zeros(i: int, j: int) -> tuple[int, int] | None:
        """(table, request) zeros of positions i..j-1 as one run; None if they cannot share one."""
        if j == i + 1:
            return 0, 0
        if not all(through[i:j]):
            return None
        pad = [off[p] - off[i] for p in range(i, j)]  # a member's lead zeros
        return sum(vocab[p] * z for p, z in zip(range(i, j), pad)), sum(pad)

    # best[j]: (request cost, table zeros, first position of the last run) for positions 0..j-1
    best: list[tuple[int, int, int] | None] = [(0, 0, 0)] + [None] * n
    for j in range(1, n + 1):
        for i in range(j):
            cost = zeros(i, j) if best[i] is not None else None
            if cost is None:
                continue
            candidate = (best[i][0] + config.values_per_run + cost[1], best[i][1] + cost[0], i)
            if candidate[1] <= table_room and (best[j] is None or candidate[:2] < best[j][:2]):
                best[j] = candidate
    out, j = [], n
    while j > 0:
        out.append((best[j][2], j))
        j = best[j][2]
    return out[::-1]


class FieldsLayout:
    """Rows and runs of a plan, and the index maps the graphs use."""

    def __init__(self, plan: CachePlan, config: FieldsLayoutConfig = FieldsLayoutConfig()):
        self.plan, self.config = plan, config
        n, off, dims = plan.num_fields, plan.offsets, plan.position_dims
        self.width_e = off[-1]
        self.rows: list[RowLayout] = [None] * n  # type: ignore[list-item]
        self.runs: list[Run] = []
        for first, end in group_runs(plan, config):
            through = not plan.computed_partners(first)  # runs of more than one are all through
            start = off[first] if through else off[first + 1]
            units = end == n and self.units_in_table
            width = (self.width_e - start + 1 if through else plan.cached_width(first) + 1 + dims[first]) + 2 * units
            for p in range(first, end):
                self.rows[p] = RowLayout(through, start, off[p] - start if through else 0, plan.cached_width(p),
                                         dims[p], width, units)
            bases = np.cumsum([0] + [plan.position_vocab[p] + 1 for p in range(first, end - 1)])
            self.runs.append(Run(first, end, width, tuple(int(b) for b in bases)))
        self.run_of = [r for r, run in enumerate(self.runs) for _ in run.positions]

    @property
    def num_fields(self) -> int:
        return self.plan.num_fields

    @property
    def units_in_table(self) -> bool:
        """int8 rows are scaled after the Gather, so their 1 and 0 come from the graph instead."""
        return self.config.table_dtype != "int8"

    @property
    def units(self) -> tuple[int, int] | None:
        """Where a 1 and a 0 sit in x (the last run's first row), when the tables hold them."""
        if not self.units_in_table:
            return None
        p = self.runs[-1].first
        return self.value_starts[p] + self.rows[p].width - 2, self.value_starts[p] + self.rows[p].width - 1

    def base(self, p: int) -> int:
        run = self.runs[self.run_of[p]]
        return run.bases[p - run.first]

    def field_bases(self) -> np.ndarray:
        """Per original field, where its rows start in its run's table: int64 [n]."""
        bases = np.zeros(self.num_fields, np.int64)
        bases[list(self.plan.order)] = [self.base(p) for p in range(self.num_fields)]
        return bases

    @cached_property
    def value_starts(self) -> list[int]:
        """Where position p's row starts in x, all rows a request reads side by side in run order."""
        return [int(s) for s in np.cumsum([0] + [r.width for r in self.rows])[:-1]]

    @property
    def request_values(self) -> int:
        return sum(r.width for r in self.rows)

    def own_value(self, column: int) -> int:
        """Where E's ``column`` sits in x: in its position's own vector."""
        p = int(np.searchsorted(self.plan.offsets, column, side="right")) - 1
        return self.value_starts[p] + self.rows[p].own.start + column - self.plan.offsets[p]

    def partner_index(self, one: int, zero: int) -> np.ndarray:
        """For each value of x, the x value it multiplies: E's value for a cached one, ``one`` for a
        linear term, ``zero`` for the rest (leads, own vectors, padding)."""
        index = np.full(self.request_values, zero, np.int64)
        for p, row in enumerate(self.rows):
            at = self.value_starts[p]
            for col in range(row.body_start, row.lin):
                index[at + col] = self.own_value(row.start + col)
            index[at + row.lin] = one
        return index

    def e_index(self) -> np.ndarray:
        return np.array([self.own_value(c) for c in range(self.width_e)], np.int64)

    def scale_index(self) -> np.ndarray:
        """int8: per value of x, its scale in the [n, 2] per-request scales (body and lin: 0, own: 1)."""
        index = np.empty(self.request_values, np.int64)
        for p, row in enumerate(self.rows):
            which = np.zeros(row.width, np.int64)
            which[row.own] = 1
            index[self.value_starts[p]:self.value_starts[p] + row.width] = 2 * p + which
        return index

    def graph_flops(self) -> int:
        """FLOPs per row of the graph: a multiply and an add per value a request reads, the computed
        partners' projections and dot products, and the output."""
        plan, total = self.plan, 2 * self.request_values + 2
        for p in range(plan.num_fields):
            width = sum(plan.position_dims[q] for q in plan.computed_partners(p))
            total += 2 * plan.position_dims[p] * width + 2 * width
        return total

    def describe(self) -> str:
        exact = sum(self.plan.cached_width(p) + 1 + self.plan.position_dims[p] for p in range(self.num_fields))
        return (f"{len(self.runs)} runs of rows ({self.num_fields} fields): a request reads "
                f"{self.request_values:,} values ({self.request_values / exact - 1:+.1%} padding)")

    def to_json(self) -> list[dict]:
        return [{"positions": [run.first, run.end], "width": run.width, "bases": list(run.bases)} for run in self.runs]


# -- table values ------------------------------------------------------------------------------------


@dataclass
class RunTables:
    values: np.ndarray  # [Σ V of the run, width] in the table dtype
    scales: list[np.ndarray]  # int8: per member [V, 2] float32 (body + lin, own vector)
    computed: dict[int, np.ndarray]  # position -> float32 [d, width of its computed partners]


def row_values(weights: FieldWeights, layout: FieldsLayout, p: int) -> np.ndarray:
    """Position p's float64 table rows, [V + 1, width]: row V, a copy of the unknown row 0, is where
    ids past the vocabulary land."""
    row, f, plan = layout.rows[p], layout.plan.order[p], layout.plan
    own = weights.tables[f]
    values = np.zeros((len(own), row.width), np.float64)
    cached = [weights.pair_matrix(f, plan.order[q]) for q in plan.cached_partners(p)]
    if cached:
        values[:, row.body_start:row.lin] = project(own, np.concatenate(cached, axis=1))
    values[:, row.lin] = weights.linear_values(f)
    if p == 0:
        values[:, row.lin] += weights.bias
    values[:, row.own] = own
    if row.units:
        values[:, -2] = 1.0
    return np.concatenate([values, values[:1]])


def run_tables(weights: FieldWeights, layout: FieldsLayout, run: Run) -> RunTables:
    plan, dtype = layout.plan, layout.config.table_dtype
    blocks, scales, computed = [], [], {}
    for p in run.positions:
        own = np.zeros(layout.rows[p].width, bool)
        own[layout.rows[p].own] = True
        encoded, row_scales = encode(row_values(weights, layout, p), own, dtype)
        blocks.append(encoded)
        if row_scales is not None:
            scales.append(row_scales)
        if plan.computed_partners(p):
            f = plan.order[p]
            matrices = [weights.pair_matrix(f, plan.order[q]) for q in plan.computed_partners(p)]
            computed[p] = np.concatenate(matrices, axis=1).astype(np.float32)
    return RunTables(np.concatenate(blocks) if len(blocks) > 1 else blocks[0], scales, computed)
