"""The bench's table, the serving targets (checked on every model measured) and its plot."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from ..cached_form import batched_label
from . import figures
from .run import HUGE, BenchResult, Measurement, shown_form

MAIN_FORMS = ("torch eager", "uncached", "uncached gemm", "cached", "floor")
HYBRID = "cached" + batched_label("gemm")  # bench --batched gemm: cached tables for one request, the GEMM for batches


def forms_of(result: BenchResult, model: str) -> list[str]:
    """Main forms first, then cached variants; the two floor shapes show as one floor row."""
    seen = []
    for m in result.measurements:
        form = shown_form(m.form)
        if m.model == model and form not in seen:
            seen.append(form)
    main = [f for f in MAIN_FORMS if f in seen] + [f for f in seen if f not in MAIN_FORMS and not f.startswith(HUGE)]
    return main + [HUGE + f for f in main if HUGE + f in seen]


def table_lines(result: BenchResult) -> list[str]:
    batches = result.config.batches
    lines = []
    width = max([22] + [len(shown_form(m.form)) + 2 for m in result.measurements])
    for prepared in result.models:
        for threads in result.config.threads:
            lines.append(f"{prepared.name}, {threads} intra-op thread{'s' if threads > 1 else ''}, "
                         f"{result.config.ids} ids")
            head = (f"  {'form':<{width}}{'b1 p50 µs':>11}{'b1 p99 µs':>11}"
                    + "".join(f"{f'b{b} rows/s':>14}" for b in batches if b != 1) + f"{'peak MB':>9}{'file MB':>9}")
            lines.append(head)
            for form in forms_of(result, prepared.name):
                m = result.find(prepared.name, form, threads)
                if m is None:
                    continue
                base = form.removeprefix(HUGE)
                size = prepared.file_bytes.get(base) or prepared.file_bytes.get("floor concat" if base == "floor" else "")
                first = (f"{m.p50_us[1]:>11,.1f}{m.p99_us[1]:>11,.1f}" if 1 in m.p50_us else f"{'':>22}")
                lines.append(f"  {form:<{width}}{first}" + "".join(f"{m.rows_per_s(b):>14,.0f}" for b in batches if b != 1)
                             + f"{m.peak_mb:>9,.0f}" + (f"{size / 1e6:>9,.1f}" if size else f"{'':>9}"))
            lines.append("")
    if result.config.huge_pages:
        without = sorted({m.form for m in result.measurements if m.form.startswith(HUGE) and m.huge_mb == 0})
        if without:
            lines.append(f"warning: no memory in huge pages for {', '.join(without)} (glibc older than 2.35?)")
    return lines


@dataclass
class Target:
    model: str
    what: str
    value: float  # the measured ratio
    threshold: float
    holds: bool
    floor: float | None = None  # large batches: the same ratio for the floor, which only gathers and sums the rows


def ratio(a: Measurement | None, b: Measurement | None, batch: int) -> float | None:
    """How many times faster b is than a at ``batch`` (a's time over b's)."""
    if a is None or b is None or batch not in a.p50_us or batch not in b.p50_us:
        return None
    return a.p50_us[batch] / b.p50_us[batch]


def targets(result: BenchResult) -> list[Target]:
    out = []
    small, large = min(result.config.batches), max(result.config.batches)

    def add(model, what, value, threshold, at_most=False, floor=None):
        if value is not None:
            out.append(Target(model, what, value, threshold, value <= threshold if at_most else value >= threshold,
                              floor))

    for prepared in result.models:
        name = prepared.name
        one = {form: result.find(name, form, 1) for form in MAIN_FORMS}
        if one["cached"] is None:
            continue
        # the serving targets for the cached graph, and the same for its hybrid (batches on the GEMM form)
        floor_two = result.find(name, "floor", 2)
        for form in ("cached", HYBRID):
            mine = result.find(name, form, 1)
            for batch in sorted({small, large}):
                add(name, f"{form} time / floor time at batch {batch}", ratio(mine, one["floor"], batch), 2.0,
                    at_most=True)
            reads_tables = form == "cached"  # the hybrid's batches do not read the cached rows: no floor for them
            single = ((1, "torch eager", "torch eager", 20), (1, "uncached", "onnxruntime uncached", 4))
            batched = ((large, "torch eager", "torch eager", 1), (large, "uncached", "onnxruntime uncached", 1))
            for batch, rival, label, threshold in (single if small == 1 else ()) + (batched if large > 1 else ()):
                # at large batches the time is the rows' memory traffic, which the floor measures; at small
                # ones it is node count, where fewer lookups (runs) beat the floor's one Gather per field
                floor = ratio(one[rival], one["floor"], batch) if reads_tables and batch > 1 else None
                add(name, f"batch {batch}: {form} speed-up over {label}", ratio(one[rival], mine, batch), threshold,
                    floor=floor)
            add(name, f"batch {large}: {form} 2-thread / 1-thread throughput",
                ratio(mine, result.find(name, form, 2), large), 1.6,
                floor=ratio(one["floor"], floor_two, large) if reads_tables else None)
    # Table 3 dims against K = 16 on the same shape (the FLOPs ratio is 2.7x).
    for a in result.models:
        for b in result.models:
            if a.name.endswith("Table 3 dims") and b.name == a.name.replace("Table 3 dims", "K = 16"):
                add(a.name, f"batch {large}: cached Table 3 dims speed-up over cached K = 16",
                    ratio(result.find(b.name, "cached", 1), result.find(a.name, "cached", 1), large), 2,
                    floor=ratio(result.find(b.name, "floor", 1), result.find(a.name, "floor", 1), large))
                add(a.name, f"batch {large}: {HYBRID} Table 3 dims speed-up over K = 16",
                    ratio(result.find(b.name, HYBRID, 1), result.find(a.name, HYBRID, 1), large), 2)
    return out


def target_lines(items: list[Target]) -> list[str]:
    lines = ["targets (1 intra-op thread unless said otherwise):"]
    for t in items:
        sign = "<=" if "floor time" in t.what else ">="
        line = f"  {'holds' if t.holds else 'FAILS':<6} {t.model}: {t.what} = {t.value:,.2f} ({sign} {t.threshold:g})"
        if t.floor is not None:
            line += f"; the floor: {t.floor:,.2f}" + ("" if t.floor >= t.threshold else ", short of it too")
        lines.append(line)
    return lines


def crossover(cached: Measurement, uncached: Measurement, batches) -> float | None:
    """Batch size where the two µs-per-row curves cross (log-log interpolation), if they do."""
    diffs = [(b, math.log(cached.us_per_row(b)) - math.log(uncached.us_per_row(b))) for b in batches]
    for (b0, d0), (b1, d1) in zip(diffs, diffs[1:]):
        if d0 == 0:
            return float(b0)
        if d0 * d1 < 0:
            t = d0 / (d0 - d1)
            return math.exp(math.log(b0) + t * (math.log(b1) - math.log(b0)))
    return None


def plot(result: BenchResult, path: Path) -> Path:
    batches = list(result.config.batches)
    fig, axes = figures.panels(len(result.models), 2, (6, 4.2))
    for row, prepared in enumerate(result.models):
        latency, throughput = axes[row]
        for k, form in enumerate(forms_of(result, prepared.name)):
            for threads, style in zip(result.config.threads, ("-", "--", ":", "-.")):
                m = result.find(prepared.name, form, threads)
                if m is None:
                    continue
                look = dict(color=f"C{k}", linestyle=style, marker="o", markersize=3, label=f"{form} ({threads} thr)")
                latency.plot(batches, [m.us_per_row(b) for b in batches], **look)
                throughput.plot(batches, [m.rows_per_s(b) for b in batches], **look)
        cached = result.find(prepared.name, "cached", result.config.threads[0])
        notes = []
        for k, other in enumerate(("uncached", "uncached gemm", "torch eager")):
            rival = result.find(prepared.name, other, result.config.threads[0])
            if cached is None or rival is None or len(batches) < 2:
                continue
            cross = crossover(cached, rival, batches)
            if cross:
                notes.append(f"= {other} at ≈{cross:,.0f}")
                for ax in (latency, throughput):
                    ax.axvline(cross, color="grey", linestyle=(0, (1 + k, 2)), linewidth=1)
            else:
                faster = cached.us_per_row(batches[-1]) < rival.us_per_row(batches[-1])
                notes.append(f"{'<' if faster else '>'} {other} throughout")
        latency.set_title(f"{prepared.name}: µs per row\ncached " + ", ".join(notes), fontsize=8)
        throughput.set_title(f"{prepared.name}: throughput", fontsize=9)
        figures.log_axes(latency, "batch size", "µs per row (median)", xbase=2)
        figures.log_axes(throughput, "batch size", "rows/s", xbase=2)
        throughput.legend(fontsize=7, loc="best")
    return figures.save(fig, path)


def targets_dict(items: list[Target]) -> list[dict]:
    return [asdict(t) for t in items]
