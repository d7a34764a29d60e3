"""``fm2onnx export | rewrite | check | flops``: the ONNX side of the CLI (logic lives in export/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from fm2onnx.errors import Fm2OnnxError

from .app import app

DEFAULT_THRESHOLD = 1_500_000_000  # export.model_io.DEFAULT_EXTERNAL_DATA_THRESHOLD, kept import-free
PAIR_MAJOR_HELP = ("Cached form: one Gather per dim group from a pair-major table instead of one per field "
                   "(about 3x faster at batch 1, 10-20% slower at large batches).")
LAYOUT_HELP = ("Cached FwFM, FvFM or FmFM graph: fields (one table row per field, fast at every batch size; "
               "cache plans, compact tables) | pairs (the per-pair rule rewrite, Table 4's shape; the other "
               "kinds use it).")
BUDGET_HELP = ("Bytes of cached vectors (e.g. 100MB), min (every pair cached on the side needing fewer floats) "
               "or unlimited (every pair on its smaller-dim side: fewest FLOPs). Per pair the plan caches left, "
               "right or computes v·M when serving; see `fm2onnx plan`.")
DTYPE_HELP = ("Cached table values: float32 | float16 | int8 (per-row scales); rows are converted after the "
              "Gather, never the whole table. Parity tolerances: `fm2onnx check --help`.")
BATCHED_HELP = ("What the cached graph runs batches of 2 or more on: gemm (MatMuls over the embedding rows, the "
                "uncached GEMM form, which CPUs run faster once a batch has a few requests; the default) | cached "
                "(its tables alone: the smallest file). Single requests always read the cached tables. "
                "--serve-batch N > 1 times both.")
SERVE_BATCH_HELP = ("Time the uncached graph, the GEMM form and the cached plans (and, for batches, their "
                    "hybrids) at this batch size on this machine and write the fastest; the choice and the "
                    "timings go into the model's metadata.")

CONTEXT_HELP = ("Write a request graph (default name <checkpoint stem>.request.onnx): these fields (comma-separated "
                "names) come once per request as context_ids [1, n], the others per candidate as candidate_ids "
                "[N, m]; the context's products are computed once per request. docs/requests.md.")
ITEM_HELP = "Request graph: these fields are the candidates' (the others the context's); see --context-fields."


def check_external_data_threshold(value: int) -> None:
    if value < 0:
        raise Fm2OnnxError(f"--external-data-threshold {value}: must be >= 0 (bytes; 0 puts every large tensor "
                           "in the sidecar)")


def names(text: Optional[str]) -> Optional[list[str]]:
    return None if text is None else [name.strip() for name in text.split(",") if name.strip()]


@app.command()
def export(
    checkpoint: Path = typer.Argument(..., help="fm2onnx checkpoint (ckpt.pt)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output",
                                          help="The model to write (the cached one with --form both); "
                                               "default <checkpoint stem>.onnx beside the checkpoint."),
    form: str = typer.Option("cached", help="cached | uncached | both (uncached as <name>.uncached.onnx)."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing files."),
    external_data_threshold: int = typer.Option(DEFAULT_THRESHOLD, help="Tensor bytes past which the weights "
                                                "go to one sidecar <model>.onnx.data (protobuf stops at 2 GB)."),
    opset: Optional[int] = typer.Option(None, help="ONNX opset of the exported graphs. Default: the lowest "
                                        "they can have (higher with --input raw)."),
    pair_major: bool = typer.Option(False, "--pair-major", help=PAIR_MAJOR_HELP),
    input: str = typer.Option("ids", "--input", help="ids: the graph takes field ids | raw: it takes the original "
                              "columns and applies the checkpoint's preprocessing itself (default name "
                              "<checkpoint stem>.raw.onnx)."),
    parity_data: Optional[Path] = typer.Option(None, help="--input raw: also check parity on the first 10,000 "
                                               "rows of this data file."),
    parity_format: Optional[str] = typer.Option(None, help="Format of --parity-data (default: the checkpoint's)."),
    layout: Optional[str] = typer.Option(None, help=LAYOUT_HELP + " Default: fields (pairs with --pair-major)."),
    cache_budget: Optional[str] = typer.Option(None, help=BUDGET_HELP + " Default: unlimited. Request graphs: "
                                               "bytes of the context's cached products, min caching none (they "
                                               "are computed once per request); default the bytes of their "
                                               "embedding tables (docs/requests.md)."),
    table_dtype: str = typer.Option("float32", help=DTYPE_HELP),
    batched: Optional[str] = typer.Option(None, help=BATCHED_HELP),
    serve_batch: Optional[int] = typer.Option(None, help=SERVE_BATCH_HELP),
    context_fields: Optional[str] = typer.Option(None, help=CONTEXT_HELP),
    item_fields: Optional[str] = typer.Option(None, help=ITEM_HELP),
) -> None:
    """Export a checkpoint to ONNX: uncached graph, cache rewrite, parity check against torch."""
    from export.cached_form import CachedFormOptions
    from export.pipeline import export_checkpoint
    from export.raw_export import raw_exporter

    check_external_data_threshold(external_data_threshold)
    chosen_opset = {} if opset is None else {"opset": opset}  # each kind of graph has its own default
    if context_fields is not None or item_fields is not None:
        defaults = {"--form": (form, "cached"), "--input": (input, "ids"), "--layout": (layout, None),
                    "--batched": (batched, None), "--serve-batch": (serve_batch, None),
                    "--pair-major": (pair_major, False), "--parity-data": (parity_data, None),
                    "--parity-format": (parity_format, None)}
        given = [option for option, (value, default) in defaults.items() if value != default]
        if given:
            raise Fm2OnnxError(f"{', '.join(given)}: not an option of request graphs (--context-fields, "
                               "--item-fields); see docs/requests.md")
        from export.request_export import export_request

        export_request(checkpoint, output, context=names(context_fields), items=names(item_fields),
                       table_dtype=table_dtype, cache_budget=cache_budget, force=force,
                       external_data_threshold=external_data_threshold, echo=typer.echo, **chosen_opset)
        return
    cached = CachedFormOptions.of_cli(layout, pair_major, cache_budget or "unlimited", table_dtype, batched)
    export_graphs = raw_exporter(input, parity_data, parity_format) or export_checkpoint
    export_graphs(checkpoint, output, form=form, force=force, external_data_threshold=external_data_threshold,
                  pair_major=pair_major, cached=cached, serve_batch=serve_batch, echo=typer.echo, **chosen_opset)


@app.command()
def rewrite(
    model: Path = typer.Argument(..., help="An uncached fm2onnx ONNX model (export --form uncached|both)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Default: <model>.cached.onnx beside it."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output."),
    external_data_threshold: int = typer.Option(DEFAULT_THRESHOLD, help="Sidecar past this many tensor bytes."),
    layout: Optional[str] = typer.Option(None, help=LAYOUT_HELP + " Default: fields (pairs with --pair-major)."),
    cache_budget: str = typer.Option("unlimited", help=BUDGET_HELP),
    table_dtype: str = typer.Option("float32", help=DTYPE_HELP),
    batched: Optional[str] = typer.Option(None, help=BATCHED_HELP),
    pair_major: bool = typer.Option(False, "--pair-major", help=PAIR_MAJOR_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Build the cached graph from an uncached one by the passes `export` runs, hold it to parity with
    the uncached graph, and print each pass and what changed."""
    from export.cached_form import CachedFormOptions
    from export.pipeline import rewrite_file

    check_external_data_threshold(external_data_threshold)
    options = CachedFormOptions.of_cli(layout, pair_major, cache_budget, table_dtype, batched)
    parity: list[str] = []
    result = rewrite_file(model, output, options=options, force=force,
                          external_data_threshold=external_data_threshold, echo=parity.append)
    if as_json:
        typer.echo(json.dumps({**result.rewrite.to_dict(), "written": [str(p) for p in result.written]}, indent=2))
        return
    for line in result.log + parity:
        typer.echo(line)
    for path in result.written:
        typer.echo(f"wrote {path} ({path.stat().st_size:,} bytes)")


@app.command()
def check(
    paths: List[Path] = typer.Argument(..., metavar="PATHS",
                                       help="CHECKPOINT MODEL [MODEL ...]: the checkpoint the graphs were exported "
                                            "from and one or more ONNX models; with --golden, MODEL alone."),
    data: Optional[Path] = typer.Option(None, help="Score real rows (encoded with the checkpoint's "
                                        "preprocessor) and report AUC and log loss per graph; with --golden "
                                        "--write, record them too (needs --checkpoint)."),
    format: Optional[str] = typer.Option(None, "--format", help="Format of --data (default: the checkpoint's)."),
    rows: Optional[int] = typer.Option(None, help="Rows to compare (random ids, or the first rows of --data); "
                                       "default 4096, 512 with --golden --write."),
    tolerance: Optional[float] = typer.Option(None, help="Pass when |Δlogit| ≤ tol + tol·|logit| on every row. "
                                              "Default by the graph's table dtype: float32 1e-4, float16 5e-3, "
                                              "int8 5e-2; with --golden, the golden file's (1e-4 unless "
                                              "recorded with another)."),
    seed: int = typer.Option(0, help="Seed of the random ids."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output for CI."),
    golden: Optional[Path] = typer.Option(None, help="Golden outputs (npz): re-run the rows recorded in it on "
                                          "MODEL, exit 1 if an output moved past its tolerance (docs/golden.md)."),
    write: bool = typer.Option(False, "--write", help="With --golden: record MODEL's outputs on seeded random "
                               "rows (and --data rows) in the golden file instead."),
    force: bool = typer.Option(False, "--force", help="With --golden --write: overwrite an existing golden file."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", help="With --golden --write --data: the "
                                              "checkpoint whose vocabularies encode the rows."),
) -> None:
    """Compare the torch model with each graph on onnxruntime; exit 1 if any exceeds the tolerance.
    With --golden: compare MODEL with the outputs it gave when the golden file was written."""
    from export.parity import require_tolerance

    tolerance = require_tolerance(tolerance)
    if golden is not None:
        return _check_golden(paths, golden, write=write, force=force, checkpoint=checkpoint, data=data,
                             fmt=format, rows=rows, tolerance=tolerance, seed=seed, as_json=as_json)
    if write or force or checkpoint is not None:
        raise Fm2OnnxError("--write, --force and --checkpoint go with --golden FILE")
    if len(paths) < 2:
        raise Fm2OnnxError(f"check takes CHECKPOINT MODELS... (or MODEL --golden FILE); got only {paths[0]}")
    from export.check import as_json as to_json, as_table, check_graphs
    from export.parity import require_rows

    ckpt, models = paths[0], paths[1:]
    rows = require_rows(4096 if rows is None else rows, "a parity check")  # before --data is encoded
    ids = labels = None
    if data is not None:
        from export.data_rows import encoded_rows

        ids, labels = encoded_rows(ckpt, data, format, rows)
    checks = check_graphs(ckpt, models, rows=rows, seed=seed, atol=tolerance, rtol=tolerance,
                          ids=ids, labels=labels)
    if as_json:
        typer.echo(to_json(checks))
    else:
        for line in as_table(checks):
            typer.echo(line)
    if not all(c.within_tolerance for c in checks):
        raise typer.Exit(1)


def _check_golden(paths: List[Path], golden: Path, *, write: bool, force: bool, checkpoint: Optional[Path],
                  data: Optional[Path], fmt: Optional[str], rows: Optional[int], tolerance: Optional[float],
                  seed: int, as_json: bool) -> None:
    """``check MODEL --golden FILE [--write]``: options checked here, the work in export/golden.py."""
    from export import golden as gold

    if len(paths) != 1:
        raise Fm2OnnxError(f"--golden takes one model (fm2onnx check MODEL --golden {golden}), got {len(paths)} "
                           "paths; a checkpoint for --data goes in --checkpoint")
    if write:
        meta = gold.write_golden(paths[0], golden, rows=gold.DEFAULT_ROWS if rows is None else rows, seed=seed,
                                 data=data, data_format=fmt, checkpoint=checkpoint, tolerance=tolerance,
                                 force=force)
        typer.echo(json.dumps(meta, indent=2) if as_json else gold.describe_written(golden, meta))
        return
    if data is not None or checkpoint is not None or rows is not None or force or fmt is not None:
        raise Fm2OnnxError("--data, --format, --checkpoint, --rows and --force go with --golden FILE --write; "
                           "a check re-runs the rows recorded in the golden file")
    result = gold.check_golden(paths[0], golden, tolerance=tolerance)
    if as_json:
        from fm2onnx.data.metrics import metrics_json

        typer.echo(metrics_json(result.to_dict(), indent=2))  # an output that became NaN: null
    else:
        typer.echo(result.describe())
    if not result.ok:
        raise typer.Exit(1)


@app.command()
def flops(
    models: List[Path] = typer.Argument(..., help="ONNX models."),
    by_op: bool = typer.Option(False, "--by-op", help="Break the count down by op type."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Static floating-point operations per prediction; a graph that branches on the batch size is
    counted per branch (one request, batches). Conventions in export/flops.py."""
    from export.flops import count_flops, flops_by_batch
    from export.model_io import load_model

    results = {}
    for path in models:
        graph = load_model(path)
        by_batch, count = flops_by_batch(graph), count_flops(graph, infer_shapes=False, batch=(1, 1))
        form = graph.metadata_props.get("form", "?")
        describe = by_batch.describe()
        if form == "request":  # what runs once per request, and per candidate (export/flops.py per_row)
            describe = f"{count.total - count.per_row:,} FLOPs per request + {count.per_row:,} per candidate"
        results[str(path)] = {"form": form, "kind": graph.metadata_props.get("model_kind", "?"),
                              "flops": by_batch.to_dict() | {"per_run": count.total - count.per_row,
                                                              "per_row": count.per_row},
                              "by_op_type": dict(count.by_op_type), "uncounted": count.uncounted,
                              "describe": describe}
    if as_json:
        typer.echo(json.dumps(results, indent=2))
        return
    for path, r in results.items():
        typer.echo(f"{path}: {r['describe']} ({r['kind']}, {r['form']})")
        if by_op:
            for op, n in sorted(r["by_op_type"].items(), key=lambda kv: -kv[1]):
                if n:
                    typer.echo(f"  {op:<12}{n:>12,}")
        if r["uncounted"]:
            typer.echo(f"  uncounted ops: {', '.join(r['uncounted'])}")
