"""``fm2onnx bench | plan``: serving speed and memory side by side, and the cache plans' Pareto frontier."""

from __future__ import annotations

import contextlib
import json
import sys
import tempfile
from pathlib import Path
from typing import List, Optional

import typer

from fm2onnx.errors import Fm2OnnxError
from fm2onnx.files import check_output_folder

from .app import app


def csv_ints(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise Fm2OnnxError(f"{what} {text!r}: expected comma-separated integers") from None
    if not values:
        raise Fm2OnnxError(f"{what}: give at least one value")
    return values


def csv_words(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def bench_models(checkpoints: list[Path], shape: Optional[str], dims: str, workdir: Path,
                 kind: str = "fmfm") -> list[tuple[str, Path]]:
    from export.bench.shapes import make_checkpoint, shape_label, shape_spec

    if kind != "fmfm" and not shape:
        raise Fm2OnnxError("--kind is the kind of a --shape model; a checkpoint has its own")
    models = []
    for path in checkpoints:
        if not path.is_file():
            raise Fm2OnnxError(f"{path}: no such checkpoint file")
        models.append((path.stem, path))
    if shape:
        for d in csv_words(dims):
            spec = shape_spec(shape, d, kind)  # checks before any work
            stem = f"{shape}-{d}" if kind == "fmfm" else f"{shape}-{kind}-{d}"
            models.append((shape_label(shape, d, kind), make_checkpoint(spec, workdir / f"{stem}.pt")))
    if not models:
        raise Fm2OnnxError("nothing to bench: give checkpoints or --shape criteo|avazu")
    return models


# Each mode's own options: given to the other mode they are an error, not ignored
ROW_ONLY = ("batches", "table_dtypes", "cache_budgets", "batched", "layouts", "min_runs")
REQUEST_ONLY = ("candidates", "item_split")


def refuse_other_mode(ctx: typer.Context, request: Optional[str]) -> None:
    """A one-line error naming the options set off their defaults that the chosen mode does not take."""
    defaults = {param.name: param.default for param in ctx.command.params}
    given = [f"--{name.replace('_', '-')}" for name in (ROW_ONLY if request else REQUEST_ONLY)
             if ctx.params[name] != defaults[name]]
    if not given:
        return
    if request:
        raise Fm2OnnxError(f"{', '.join(given)}: not with --request, which times requests of --candidates N "
                           "on the request graph, the default export and torch (docs/requests.md)")
    raise Fm2OnnxError(f"{', '.join(given)}: only with --request C:I")


REQUEST_HELP = ("C:I, e.g. 26:13: time request graphs (C context fields once per request, I item fields per "
                "candidate; export --context-fields) against the same candidates as full rows on the default "
                "export and torch eager, and against the request graph's floor (its reads without the item "
                "products), at every --candidates N and --threads, and fit each form's p50 as a fixed cost per "
                "request plus a cost per candidate; --rounds, --seconds (per form and N in each round), --ids, "
                "--huge-pages, --plot and --json apply. docs/requests.md.")


@app.command()
def bench(
    ctx: typer.Context,
    checkpoints: Optional[List[Path]] = typer.Argument(None, help="Checkpoints to bench."),
    shape: Optional[str] = typer.Option(None, help="Also bench a built-in model shape with random weights: "
                                        "criteo (39 fields, Table 3's feature counts) | avazu (23 fields)."),
    dims: str = typer.Option("table3", help="With --shape: table3 (Criteo's per-field dims) or a uniform K; "
                             "comma-separated for several models, e.g. table3,16."),
    kind: str = typer.Option("fmfm", help="With --shape: the model kind, e.g. fwfm (a uniform K in --dims)."),
    batches: str = typer.Option("1,16,64,256,1024", help="Batch sizes (latency p50/p99 at 1, rows/s at all)."),
    threads: str = typer.Option("1,2", help="onnxruntime intra-op (and torch) thread counts."),
    ids: str = typer.Option("zipf", help="Request ids: zipf (heavy-tailed like CTR traffic) | uniform (worst case)."),
    table_dtypes: str = typer.Option("float32", help="Cached variants by table dtype, e.g. float32,float16,int8."),
    cache_budgets: str = typer.Option("unlimited", help="Cached variants by cache budget, e.g. unlimited,min."),
    batched: str = typer.Option("cached,gemm", help="Cached variants by what batches of 2 or more run on: cached "
                                "(the tables alone) | gemm (export's default, --batched), e.g. cached,gemm."),
    layouts: str = typer.Option("fields", help="Cached variants by layout: fields (export's default for FwFM, "
                                "FvFM, FmFM) | pairs (the rule rewrite, float32, unlimited), e.g. fields,pairs."),
    seconds: float = typer.Option(1.0, help="Timing per form, thread count and batch size, after warm-up."),
    min_runs: int = typer.Option(400, help="Runs at least this many times at small batches (1/20 at large ones)."),
    rounds: int = typer.Option(1, help="Measure every form this many times, interleaved, and report medians over "
                               "rounds (a slow spell of a shared machine then hits every form alike)."),
    no_torch: bool = typer.Option(False, "--no-torch", help="Skip torch eager."),
    huge_pages: bool = typer.Option(False, "--huge-pages", help="Also measure every form (torch too) with "
                                    "glibc's malloc on transparent huge pages (GLIBC_TUNABLES=glibc.malloc."
                                    "hugetlb=1, glibc 2.35+), as rows 'huge pages: <form>'."),
    plot: Optional[Path] = typer.Option(None, help="Write a PNG of latency and throughput against batch size."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON instead of the table."),
    workdir: Optional[Path] = typer.Option(None, help="Write the checkpoints and exported files here and keep them (default: a temporary directory)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --plot file or --workdir's files."),
    request: Optional[str] = typer.Option(None, help=REQUEST_HELP),
    candidates: str = typer.Option("10,100,1000", help="With --request: candidates per request (N)."),
    item_split: str = typer.Option("largest,smallest", help="With --request: the item fields are those with the "
                                   "most features (largest), the fewest (smallest), or both in turn."),
) -> None:
    """Serving latency, throughput and peak memory: torch eager, onnxruntime uncached and cached, and the floor.
    With --request: a request's candidates on the request graph against full rows."""
    from export.bench.figures import check_plot_file
    from export.bench.report import plot as draw, targets
    from export.bench.run import BenchConfig, run_bench
    from export.traffic import DISTRIBUTIONS

    refuse_other_mode(ctx, request)
    check_plot_file(plot, force=force, inputs=checkpoints or [])
    check_output_folder(workdir, "--workdir", force=force)
    if request is not None:
        return request_bench(list(checkpoints or []), shape, dims, kind, request,
                             csv_ints(candidates, "--candidates"), csv_words(item_split),
                             csv_ints(threads, "--threads"), ids, rounds, seconds, not no_torch, huge_pages, plot,
                             as_json, workdir)
    if ids not in DISTRIBUTIONS:
        raise Fm2OnnxError(f"unknown --ids {ids!r}; expected one of {', '.join(DISTRIBUTIONS)}")
    config = BenchConfig(tuple(sorted(set(csv_ints(batches, "--batches")))), csv_ints(threads, "--threads"), ids,
                         seconds, min_runs, torch=not no_torch, rounds=rounds, huge_pages=huge_pages)
    variants = cached_variants(csv_words(cache_budgets), csv_words(table_dtypes), csv_words(batched),
                               csv_words(layouts))
    log = (lambda line: typer.echo(line, err=True)) if as_json else typer.echo
    with contextlib.ExitStack() as stack:
        root = bench_workdir(workdir, stack)
        models = bench_models(list(checkpoints or []), shape, dims, root, kind)
        result = run_bench(models, variants, config, root, echo=log)
    if plot is not None:
        draw(result, plot)
    print_bench(result, targets(result), plot, as_json)


def request_bench(checkpoints: list[Path], shape: Optional[str], dims: str, kind: str, request: str, candidates, splits,
                  threads, ids: str, rounds: int, seconds: float, torch: bool, huge_pages: bool,
                  plot: Optional[Path], as_json: bool, workdir: Optional[Path]) -> None:
    """``bench --request C:I``: export/bench/request.py on one model."""
    from export.bench.request import RequestBenchConfig, run_request_bench
    from export.bench.request_report import cost_lines, costs_json, plot as draw, table_lines, target_lines

    counts = request.split(":")
    if len(counts) != 2:
        raise Fm2OnnxError(f"--request {request!r}: expected CONTEXT:ITEM field counts, e.g. 26:13")
    context_count, item_count = csv_ints(",".join(counts), "--request")
    config = RequestBenchConfig(context_count, item_count, tuple(sorted(set(candidates))), tuple(splits),
                                tuple(threads), seconds, rounds, torch, ids, huge_pages)
    config.check_options()  # before a built-in shape's checkpoint is written to --workdir
    log = (lambda line: typer.echo(line, err=True)) if as_json else typer.echo
    with contextlib.ExitStack() as stack:
        root = bench_workdir(workdir, stack)
        models = bench_models(checkpoints, shape, dims, root, kind)
        if len(models) != 1:
            raise Fm2OnnxError("--request benches one model: give one checkpoint or one --shape with one --dims")
        result = run_request_bench(*models[0], config, root, log)
    if plot is not None:
        draw(result, plot)
    if as_json:
        typer.echo(json.dumps(result.to_dict() | {"costs": costs_json(result), "targets": target_lines(result),
                                                  "command": sys.argv[1:]}, indent=2))
        return
    costs = cost_lines(result)  # none when a single N was measured
    lines = ["", *table_lines(result), *(["", "p50 per request, a line fitted over N:", *costs] if costs else []),
             "", *target_lines(result)]
    for line in lines + ([f"wrote {plot}"] if plot else []):
        typer.echo(line)


def cached_variants(budgets: list[str], dtypes: list[str], batched: list[str], layouts: list[str]) -> list:
    """The default cached export first, then every budget x table dtype x batched form asked for, once each,
    and the pairs layout if asked for."""
    from export.bench.prepare import CachedVariant
    from export.cached_form import LAYOUTS
    from export.fields_layout import BATCHED_FORMS
    from export.folds import check_table_dtype
    from export.plan import parse_budget

    for dtype in dtypes:
        check_table_dtype(dtype)
    for form in batched:
        if form not in BATCHED_FORMS:
            raise Fm2OnnxError(f"unknown --batched {form!r}; expected one of {', '.join(BATCHED_FORMS)}")
    for layout in layouts:
        if layout not in LAYOUTS:
            raise Fm2OnnxError(f"unknown --layouts {layout!r}; expected one of {', '.join(LAYOUTS)}")
    variants = [CachedVariant()] + ([CachedVariant(layout="pairs")] if "pairs" in layouts else [])
    for budget in budgets:
        parse_budget(budget)
        for dtype in dtypes:
            for form in batched:
                if CachedVariant(dtype, budget, batched=form) not in variants:
                    variants.append(CachedVariant(dtype, budget, batched=form))
    return variants


def bench_workdir(workdir: Optional[Path], stack: contextlib.ExitStack) -> Path:
    """``workdir`` (kept; checked by ``bench``) or a temporary directory closed with ``stack``."""
    if workdir is None:
        return Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fm2onnx-bench-")))
    workdir.mkdir(parents=True, exist_ok=True)
    return workdir


def print_bench(result, found, plot: Optional[Path], as_json: bool) -> None:
    """The results as JSON (with the targets and the command line) or as tables and target lines."""
    from export.bench.report import table_lines, target_lines, targets_dict
    from export.bench.run import to_dict

    if as_json:
        typer.echo(json.dumps(to_dict(result) | {"targets": targets_dict(found), "command": sys.argv[1:]}, indent=2))
        return
    typer.echo("")
    for line in table_lines(result) + target_lines(found):
        typer.echo(line)
    if plot is not None:
        typer.echo(f"wrote {plot}")


@app.command()
def plan(
    checkpoint: Optional[Path] = typer.Argument(None, help="An FwFM, FvFM or FmFM checkpoint (only its shape matters)."),
    shape: Optional[str] = typer.Option(None, help="Instead of a checkpoint: criteo | avazu."),
    dims: str = typer.Option("table3", help="With --shape: table3 or a uniform K."),
    cache_budget: Optional[str] = typer.Option(None, help="Also show the plan export picks for this budget."),
    table_dtype: str = typer.Option("float32", help="Bytes per cached value: float32 4, float16 2, int8 1."),
    points: int = typer.Option(20, help="Frontier rows to print (the PNG shows all)."),
    plot: Optional[Path] = typer.Option(None, help="Write a PNG of the frontier."),
    as_json: bool = typer.Option(False, "--json", help="Print the frontier as JSON."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --plot file."),
) -> None:
    """The FLOPs-versus-memory Pareto frontier of cache plans (per pair: cache left, cache right or compute)."""
    from export.bench.figures import check_plot_file
    from export.folds import BYTES_PER_VALUE, check_table_dtype
    from export.plan import frontier, min_plan, plan_for_budget, unlimited_plan

    check_plot_file(plot, force=force, inputs=[checkpoint])
    check_table_dtype(table_dtype)
    spec = plan_spec(checkpoint, shape, dims)
    per_value = BYTES_PER_VALUE[table_dtype]
    named = [unlimited_plan(spec), min_plan(spec)]
    if cache_budget is not None:
        named.append(plan_for_budget(spec, cache_budget, per_value))
    plans = frontier(spec)
    if as_json:
        typer.echo(json.dumps({"bytes_per_value": per_value, "plans": [json.loads(p.to_json()) for p in named],
                               "frontier": [{"cached_floats": p.cached_floats, "flops_per_row": p.flops_per_row,
                                             "pairs": p.pair_counts} for p in plans]}, indent=2))
    else:
        for p in named:
            typer.echo(p.describe(per_value))
        typer.echo(f"\nPareto frontier: {len(plans):,} plans, {min(points, len(plans))} shown "
                   f"({table_dtype}, {per_value} byte{'s' if per_value > 1 else ''} per cached value)")
        typer.echo(f"  {'cached floats':>14}{'bytes':>16}{'FLOPs/row':>11}{'cache-left':>12}{'cache-right':>13}"
                   f"{'computed':>10}")
        for p in sample(plans, points):
            c = p.pair_counts
            typer.echo(f"  {p.cached_floats:>14,}{p.cached_floats * per_value:>16,}{p.flops_per_row:>11,}"
                       f"{c['cache_left']:>12}{c['cache_right']:>13}{c['compute']:>10}")
    if plot is not None:
        draw_frontier(plans, named, per_value, plot)
        if not as_json:
            typer.echo(f"wrote {plot}")


def plan_spec(checkpoint: Optional[Path], shape: Optional[str], dims: str):
    from export.bench.shapes import shape_spec
    from fm2onnx.checkpoint import load_checkpoint

    if (checkpoint is None) == (shape is None):
        raise Fm2OnnxError("give a checkpoint or --shape, not both" if checkpoint else "give a checkpoint or --shape")
    return load_checkpoint(checkpoint).spec if checkpoint is not None else shape_spec(shape, dims)


def sample(plans: list, count: int) -> list:
    """About ``count`` plans spread evenly in log(cached floats), ends included."""
    import math

    if len(plans) <= count:
        return plans
    logs = [math.log1p(p.cached_floats) for p in plans]
    picks = {0, len(plans) - 1}
    for i in range(1, count - 1):
        target = logs[0] + (logs[-1] - logs[0]) * i / (count - 1)
        picks.add(min(range(len(plans)), key=lambda j: abs(logs[j] - target)))
    return [plans[i] for i in sorted(picks)]


def draw_frontier(plans: list, named: list, per_value: int, path: Path) -> None:
    from export.bench import figures

    fig, axes = figures.panels(1, 1, (7.5, 4.5))
    ax = axes[0][0]
    ax.step([max(p.cached_floats * per_value, 1) for p in plans], [p.flops_per_row for p in plans], where="post",
            label="Pareto frontier")
    for p, marker in zip(named, ("o", "s", "D")):
        label = f"{p.name}: {p.cached_floats * per_value / 1e6:,.1f} MB, {p.flops_per_row:,} FLOPs/row"
        ax.plot([max(p.cached_floats * per_value, 1)], [p.flops_per_row], marker, label=label)
    figures.log_axes(ax, "cached table bytes", "FLOPs per row")
    ax.legend(fontsize=7)
    figures.save(fig, path)
