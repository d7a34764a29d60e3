"""The request bench's table, target lines and plot (candidates per second against N)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import figures
from .request import RequestBenchResult, RequestTiming
from .request_forms import FLOOR, FULL, REQUEST, TORCH
from .run import HUGE, HUGE_PAGES_ENV

# What a ranking service asks of a request graph (1 thread): this many times the full-row default
# export's candidates per second at these N, and this p99 per request of the largest N.
TARGET_SPEEDUP, TARGET_AT = 3.0, (100, 1000)
TARGET_P99_US, TARGET_P99_AT = 2000.0, 1000


def table_lines(result: RequestBenchResult) -> list[str]:
    """The table of every form; with --huge-pages, the table again for the forms on huge pages."""
    lines = [f"{result.model}, {result.config.context_count} context : {result.config.item_count} item fields"]
    lines += form_table(result, "")
    if result.config.huge_pages:
        lines += ["", f"On huge pages ({' '.join(f'{k}={v}' for k, v in HUGE_PAGES_ENV.items())}):"]
        lines += form_table(result, HUGE)
        if not result.huge_pages_mb:
            lines.append("warning: the huge-pages worker held no memory in huge pages (glibc older than 2.35?)")
    return lines


def form_table(result: RequestBenchResult, prefix: str) -> list[str]:
    """One row per split, thread count and N; every form's name after ``prefix`` ("" or HUGE)."""
    forms = [REQUEST, FULL] + ([TORCH] if result.config.torch else [])
    head = ("| items | threads | N | " + " | ".join(f"{f}: p50 / p99 µs, cand/s" for f in forms)
            + f" | {FLOOR}: p50 µs (share of the request's) | request ÷ default export | request ÷ torch |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for split in result.config.splits:
        for threads in result.config.threads:
            for n in result.config.candidates:
                found = {f: result.find(split, prefix + f, threads, n) for f in forms}
                cells = [f"{t.p50_us:,.0f} / {t.p99_us:,.0f}, {t.candidates_per_s:,.0f}" for t in found.values()]
                floor = floor_cell(found[REQUEST], result.find(split, prefix + FLOOR, threads, n))
                ratios = [ratio(found[REQUEST], found.get(other)) for other in (FULL, TORCH)]
                lines.append(f"| {split} | {threads} | {n:,} | " + " | ".join(cells + [floor] + ratios) + " |")
    return lines


def floor_cell(request, floor) -> str:
    return "—" if floor is None else f"{floor.p50_us:,.0f} ({floor.p50_us / request.p50_us:.0%})"


def ratio(request, other) -> str:
    return "—" if other is None else f"{request.candidates_per_s / other.candidates_per_s:.2f}×"


def target_lines(result: RequestBenchResult) -> list[str]:
    """The targets, on the largest-fields split at 1 thread (where they are set), when measured."""
    split, lines = "largest", []
    for n in TARGET_AT:
        request, full = result.find(split, REQUEST, 1, n), result.find(split, FULL, 1, n)
        if request is None or full is None:
            continue
        speedup = request.candidates_per_s / full.candidates_per_s
        verdict = "met" if speedup >= TARGET_SPEEDUP else "NOT met"
        lines.append(f"target N = {n:,}, 1 thread: {speedup:.2f}× the default export's candidates/s "
                     f"(≥ {TARGET_SPEEDUP:g}×: {verdict})")
    request = result.find(split, REQUEST, 1, TARGET_P99_AT)
    if request is not None:
        verdict = "met" if request.p99_us < TARGET_P99_US else "NOT met"
        lines.append(f"target p99 per request of {TARGET_P99_AT:,} candidates, 1 thread: {request.p99_us:,.0f} µs "
                     f"(< {TARGET_P99_US:,.0f} µs: {verdict})")
    return lines


@dataclass(frozen=True)
class RequestCost:
    """A form's p50 per request as a line in N: what a request costs whatever its size, plus each candidate."""

    fixed_us: float
    per_candidate_us: float

    @classmethod
    def fit(cls, timings: list[RequestTiming]) -> RequestCost | None:
        """Least squares over the measured N, each point weighted by 1/p50 so that the small requests'
        few microseconds count as much as the large ones' milliseconds; None below two distinct N. A
        request cannot cost less than nothing: a line that would start below 0 µs goes through 0."""
        ns = np.array([t.candidates for t in timings], np.float64)
        p50 = np.array([t.p50_us for t in timings], np.float64)
        if len(set(ns.tolist())) < 2:
            return None
        per_candidate, fixed = np.polyfit(ns, p50, 1, w=1 / p50)
        if fixed < 0:  # the minimum of Σ ((b·N - p50) / p50)²
            per_candidate, fixed = np.sum(ns / p50) / np.sum((ns / p50) ** 2), 0.0
        return cls(float(fixed), float(per_candidate))

    def describe(self) -> str:
        return f"{self.fixed_us:,.0f} µs + {self.per_candidate_us:,.2f} µs per candidate"


def fitted_costs(result: RequestBenchResult) -> list[tuple[str, int, str, RequestCost]]:
    """(split, threads, form, its cost) for every form measured at two N or more."""
    out = []
    for split in result.config.splits:
        for threads in result.config.threads:
            for form in result.forms((REQUEST, FLOOR, FULL, TORCH)):
                measured = [result.find(split, form, threads, n) for n in result.config.candidates]
                cost = RequestCost.fit([t for t in measured if t is not None])
                if cost is not None:
                    out.append((split, threads, form, cost))
    return out


def cost_lines(result: RequestBenchResult) -> list[str]:
    return [f"{split}, {threads} thread{'s' * (threads > 1)}, {form}: {cost.describe()}"
            for split, threads, form, cost in fitted_costs(result)]


def costs_json(result: RequestBenchResult) -> list[dict]:
    return [{"split": split, "threads": threads, "form": form} | asdict(cost)
            for split, threads, form, cost in fitted_costs(result)]


def plot(result: RequestBenchResult, path: Path) -> Path:
    splits, ns = result.config.splits, list(result.config.candidates)
    fig, axes = figures.panels(1, len(splits), (6.5, 4.5))
    for ax, split in zip(axes[0], splits):
        for k, form in enumerate((REQUEST, FULL, TORCH, FLOOR)):
            for threads, style in zip(result.config.threads, ("-", "--", ":")):
                points = [result.find(split, form, threads, n) for n in ns]
                if None in points:
                    continue
                ax.plot(ns, [t.candidates_per_s for t in points], color=f"C{k}", linestyle=style, marker="o",
                        markersize=3, label=f"{form} ({threads} thr)")
        ax.set_title(f"{result.model}: the {result.config.item_count} {split} fields as items", fontsize=9)
        figures.log_axes(ax, "candidates per request (N)", "candidates/s (median)")
        ax.legend(fontsize=7, loc="best")
    return figures.save(fig, path)
