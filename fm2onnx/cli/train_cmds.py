"""``fm2onnx train | evaluate | info | demo | bench-train``."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Optional

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from fm2onnx.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from fm2onnx.errors import Fm2OnnxError, WriteError
from fm2onnx.files import (check_distinct_outputs, check_output_file, check_output_folder,
                           made_folders_removed_if_unused, remove_stale_temporaries, require_file)
from models import MODEL_KINDS, ModelSpec, check_field_count
from models.memory import DEFAULT_MEMORY_BUDGET, format_size, parse_memory_budget

from .app import app
from .data_cmds import JOBS_HELP

# soft_wrap: a line piped to a log keeps its length instead of being folded at rich's default 80 columns
console = Console(stderr=False, soft_wrap=True)

# TrainConfig's defaults (fm2onnx.train imports torch, which --help should not wait for); the grid
# behind them is in docs/defaults.md, and a test holds the two in step.
DEFAULT_LR = 3e-4
DEFAULT_L2 = 1e-6
DEFAULT_EPOCHS = 100
DEFAULT_PATIENCE = 3
DEFAULT_MIN_STEPS = 200

DATA_HELP = ("Training rows (or an encoded directory). Without --valid it is split 80/10/10 into train, "
             "validation and test rows by --split-seed.")
VALID_HELP = "Validation rows for early stopping, in the same format; --data is then all training rows."
TEST_HELP = "Test rows, scored once with the best epoch's weights (every row of the file)."
CACHE_HELP = ("Where encoded copies of the data are kept for reuse (default: $XDG_CACHE_HOME/fm2onnx or "
              "~/.cache/fm2onnx); nothing is written beside the data.")
MEMORY_BUDGET_HELP = ("Working memory for one training step or one scoring chunk, e.g. 512M or 2G: chunks are sized "
                      "from the model's bytes per row, and a batch that needs more is split into micro-batches "
                      "with the same gradients. Peak memory is about the model (with its optimizer state) plus this.")
THREADS_HELP = ("torch threads (default: one per physical core, shared among the --workers). On a machine "
                "shared with other jobs, --threads 1 per run is faster in total.")
WORKERS_HELP = ("Data-parallel training processes on this machine (torch.distributed, gloo); each global batch "
                "of --batch-size rows is split among them. Under torchrun the launcher sets this instead.")
NNODES_HELP = "Machines taking part (with --workers processes each), e.g. 2; each runs the same command."
RDZV_HELP = "HOST:PORT where the machines meet (any free port on the first machine), needed with --nnodes > 1."
# Options of the launching process alone: its workers get every other option as given.
LAUNCH_OPTIONS = ("workers", "nnodes", "rdzv_endpoint", "rdzv_id")


def open_dataset(data: Path, fmt_name: str, schema: Optional[Path], *, min_count, seed, skip_bad_rows,
                 cache_dir, progress, valid: Optional[Path] = None, test: Optional[Path] = None,
                 jobs: Optional[int] = 1):
    """An encoded directory is used as is; text files are encoded (and cached) first: ``data`` split by
    ``seed``, or, with ``valid``/``test``, each file its own split with the vocabulary of ``data`` alone."""
    from fm2onnx import data as fdata

    if data.is_dir():
        if valid is not None or test is not None:
            raise Fm2OnnxError(f"{data}: an encoded directory carries its own split; --valid and --test "
                               "go with a text --data file")
        return fdata.EncodedDataset.open(data)
    if test is not None and valid is None:
        raise Fm2OnnxError(f"--test {test} needs --valid too: early stopping reads the validation rows")
    for path in (data, valid, test):
        if path is not None:
            require_file(path, "data")
    fmt = fdata.get_format(fmt_name, str(schema) if schema else None)
    check_field_count(len(fmt.fields), str(schema or data))  # before the encoding pass
    return fdata.load_or_encode(data, fmt, cache_dir=cache_dir, min_count=min_count, seed=seed,
                                skip_bad_rows=skip_bad_rows, progress=progress, valid=valid, test=test, jobs=jobs)


def metrics_table(title: str, metrics: dict) -> Table:
    from fm2onnx.data.metrics import auc_text

    table = Table(title=title)
    for column in ("split", "rows", "AUC", "log loss"):
        table.add_column(column, justify="right" if column != "split" else "left")
    for split, m in metrics.items():
        table.add_row(split, f"{m['rows']:,}", auc_text(m["auc"]), f"{m['logloss']:.4f}")
    return table


@app.command()
def train(
    ctx: typer.Context,
    data: Path = typer.Option(..., help=DATA_HELP),
    valid: Optional[Path] = typer.Option(None, help=VALID_HELP),
    test: Optional[Path] = typer.Option(None, help=TEST_HELP),
    format: str = typer.Option("criteo", "--format", help="criteo | avazu | csv | tsv."),
    schema: Optional[Path] = typer.Option(None, help="Schema JSON for the generic csv/tsv format."),
    model: str = typer.Option("fmfm", help=f"One of: {', '.join(MODEL_KINDS)}."),
    dim: int = typer.Option(16, help="Embedding dim K for every field."),
    dims: Optional[Path] = typer.Option(None, help="Per-field dims CSV (field,dim) for FmFM, e.g. from `fm2onnx dims`."),
    linear: Optional[str] = typer.Option(None, help="feature | field_vector (default: the paper's per model)."),
    optimizer: str = typer.Option("adam", help="adam | adagrad."),
    lr: float = typer.Option(DEFAULT_LR, help="Learning rate."),
    l2_embeddings: float = typer.Option(DEFAULT_L2, help="L2 on the embedding rows a batch uses."),
    l2_field_matrices: float = typer.Option(DEFAULT_L2, help="L2 on field matrices / weights."),
    l2_linear: float = typer.Option(DEFAULT_L2, help="L2 on linear weights."),
    batch_size: int = typer.Option(2048),
    epochs: int = typer.Option(DEFAULT_EPOCHS, help="At most this many epochs; early stopping usually ends "
                               "the run well before."),
    patience: int = typer.Option(DEFAULT_PATIENCE, help="Stop after this many epochs in a row without a "
                                 "better validation AUC."),
    min_steps: int = typer.Option(DEFAULT_MIN_STEPS, help="No early stop before this many optimizer steps (a small "
                                  "data set can sit on a plateau for tens of epochs)."),
    seed: int = typer.Option(0, help="Seeds the model's init and the shuffling."),
    split_seed: int = typer.Option(0, help="Seeds the 80/10/10 split of a single --data file."),
    min_count: Optional[int] = typer.Option(None, help="Features seen fewer times in the training rows map to "
                                            "unknown (criteo 8, avazu 5, csv/tsv 1)."),
    skip_bad_rows: bool = typer.Option(False, help="Count and skip malformed rows instead of failing."),
    cache_dir: Optional[Path] = typer.Option(None, help=CACHE_HELP),
    threads: Optional[int] = typer.Option(None, help=THREADS_HELP),
    memory_budget: str = typer.Option(format_size(DEFAULT_MEMORY_BUDGET), help=MEMORY_BUDGET_HELP),
    jobs: Optional[int] = typer.Option(None, help=JOBS_HELP),
    log: Optional[Path] = typer.Option(None, help="JSON-lines log of each epoch (default: OUTPUT.log.jsonl)."),
    output: Path = typer.Option(Path("ckpt.pt"), "-o", "--output"),
    force: bool = typer.Option(False, help="Overwrite an existing output / log (and start over, discarding an "
                               "interrupted run's OUTPUT.resume.pt)."),
    resume: bool = typer.Option(False, help="Continue an interrupted run from OUTPUT.resume.pt (written at every "
                                "epoch's end); the other options must be the run's own."),
    quiet: bool = typer.Option(False, help="No progress output."),
    workers: int = typer.Option(1, help=WORKERS_HELP),
    nnodes: str = typer.Option("1", help=NNODES_HELP),
    rdzv_endpoint: Optional[str] = typer.Option(None, help=RDZV_HELP),
    rdzv_id: str = typer.Option("fm2onnx", help="Names the run at --rdzv-endpoint; the same on every machine."),
):
    """Train an FM-family model and write a checkpoint."""
    from fm2onnx import distributed
    from fm2onnx.resume import ResumeFile
    from fm2onnx.train import TrainConfig, config_dict

    check_model_and_jobs(model, jobs)
    config = TrainConfig(optimizer, lr, l2_embeddings, l2_field_matrices, l2_linear, batch_size, epochs,
                         patience, min_steps, seed, threads, memory_budget=parse_memory_budget(memory_budget))
    config.validate()
    if (workers != 1 or nnodes != "1") and not distributed.launched():
        distributed.launch(forwarded_args(ctx), workers, nnodes, rdzv_endpoint, rdzv_id)
        return
    options = run_options(locals())
    resume_file = ResumeFile.beside(output, options)
    log = log or output.with_name(output.name + ".log.jsonl")
    world = distributed.start()
    with distributed.session(world):  # several workers: rank 0 checks and loads, the others get what it loaded
        config = worker_threads(config, world)
        inputs = [data, valid, test, schema, dims]
        saved = world.on_main(lambda: start_or_resume(resume_file, output, log, inputs, resume=resume, force=force),
                              share=resume)
        dataset = distributed.encode_once(world, lambda shown: open_dataset(
            data, format, schema, min_count=min_count, seed=split_seed, skip_bad_rows=skip_bad_rows,
            cache_dir=cache_dir, progress=shown and not quiet, valid=valid, test=test, jobs=jobs))
        pre = dataset.preprocessor
        world.check_same("encoded data (rows, vocabulary sizes)", [dataset.rows, *pre.vocab_sizes])
        spec = model_spec(model, pre, dim, dims, linear)
        training = {"config": config_dict(config), "data": str(data), "split_seed": split_seed,
                    "files": {"valid": str(valid) if valid else None, "test": str(test) if test else None}}
        result = train_resumably(spec, dataset, config, resume_file, saved, log=log, output=output,
                                 training=training, quiet=quiet, force=force, world=world)
    if not world.is_main:
        return
    console.print(metrics_table(f"{spec.kind} (best epoch {result.best_epoch})", result.metrics))
    console.print(f"wrote {output}  (epoch log: {log})")


def check_model_and_jobs(model: str, jobs: Optional[int]) -> None:
    """Before the (possibly long) encoding pass, which a cached encoding skips, --jobs check included."""
    from fm2onnx.data.parallel import resolve_jobs

    if model not in MODEL_KINDS:
        raise Fm2OnnxError(f"unknown model kind {model!r}; expected one of {', '.join(MODEL_KINDS)}")
    resolve_jobs(jobs)


# Options that change what a run computes: a resumed run must have them all as the interrupted run had.
# --threads may differ (the result is bit for bit the same only with the same thread count).
RESULT_OPTIONS = ("format", "model", "dim", "linear", "optimizer", "lr", "l2_embeddings", "l2_field_matrices",
                  "l2_linear", "batch_size", "epochs", "patience", "min_steps", "seed", "split_seed", "min_count",
                  "skip_bad_rows")
FILE_OPTIONS = ("data", "valid", "test", "schema", "dims")


def run_options(given: dict) -> dict:
    """The options of ``train`` that identify a run, data files by path, size and modification time."""
    from fm2onnx.resume import file_stamp

    return {name: given[name] for name in RESULT_OPTIONS} | {name: file_stamp(given[name]) for name in FILE_OPTIONS}


def start_or_resume(resume_file, output: Path, log: Path, inputs: list[Path | None], *, resume: bool, force: bool):
    """Before any work: the interrupted run's state to continue from (``resume``), or a clean start; neither
    output may be one of the run's ``inputs``.

    An interrupted run's epoch log is part of its resumable state, so it never blocks ``--resume``; a
    fresh start over an interrupted run needs --force, so finished epochs are never dropped unasked."""
    check_distinct_outputs({"-o": output, "--log": log, "the resume file": resume_file.path})
    check_output_file(output, force=force, inputs=inputs)
    for path in (output, resume_file.path):
        remove_stale_temporaries(path)
    if resume:
        return resume_file.load()
    if resume_file.path.exists() and not force:
        raise Fm2OnnxError(f"{resume_file.path}: holds the finished epochs of an interrupted run of {output}: "
                           "pass --resume to continue it, or --force to start over")
    check_output_file(log, force=force, inputs=inputs)
    resume_file.remove()
    return None


def train_resumably(spec, dataset, config, resume_file, saved, *, log: Path, output: Path, training: dict,
                    quiet: bool, force: bool, world=None):
    """Train, saving the resumable state at every epoch's end; write ``output``, and only then drop that
    state. A loss that is no longer finite ends the run with the best epoch before it written."""
    from fm2onnx.distributed import World
    from fm2onnx.train import TrainingDiverged
    from fm2onnx.train import train as run_training

    world = world or World()
    if not world.is_main:  # the other workers train alongside rank 0, which writes every file
        return run_training(spec, dataset, config, progress=False, resume=saved, world=world)
    if world.size > 1:
        training = training | {"workers": world.size}
    pre = dataset.preprocessor.to_dict()
    with saying_what_is_kept(resume_file):
        try:
            result = run_training(spec, dataset, config, progress=not quiet, log_path=log,
                                  resume_file=resume_file, resume=saved, world=world)
        except TrainingDiverged as exc:
            if exc.result is not None:
                save_result(exc.result, pre, training | {"stopped": str(exc)}, output, force)
            resume_file.remove()  # resuming would only diverge again
            kept = (f"the best epoch before it ({exc.result.best_epoch}) is written to {output}" if exc.result
                    else "no epoch had finished, so nothing is written")
            raise Fm2OnnxError(f"{exc}; {kept}") from None
        save_result(result, pre, training, output, force)
    resume_file.remove()
    return result


@contextlib.contextmanager
def saying_what_is_kept(resume_file):
    """A stop by signal or a failed write ends in one line that says what is kept to resume from."""
    from fm2onnx.interrupt import Interrupted

    try:
        yield
    except Interrupted as exc:
        raise Interrupted(exc.signum, f"{exc}; {resume_file.kept()}") from None
    except WriteError as exc:
        raise WriteError(f"{exc}; {resume_file.kept()}") from None


def save_result(result, pre: dict, training: dict, output: Path, force: bool) -> None:
    record = training | {"best_epoch": result.best_epoch, "metrics": result.metrics, "history": result.history}
    save_checkpoint(Checkpoint.from_model(result.model, pre, record), output, force=force)


@app.command()
def evaluate(
    checkpoint: Path = typer.Argument(..., help="ckpt.pt"),
    data: Path = typer.Option(..., help="Rows to score, in the checkpoint's format."),
    format: Optional[str] = typer.Option(None, "--format", help="Defaults to the checkpoint's format."),
    schema: Optional[Path] = typer.Option(None, help="Defaults to the checkpoint's csv/tsv schema."),
    skip_bad_rows: bool = typer.Option(False),
    as_json: bool = typer.Option(False, "--json"),
    memory_budget: str = typer.Option(format_size(DEFAULT_MEMORY_BUDGET), help=MEMORY_BUDGET_HELP),
    quiet: bool = typer.Option(False),
):
    """AUC and log loss of a checkpoint on every row of a data file, through the checkpoint's own
    vocabularies and format (its csv/tsv schema included). The encoding is temporary."""
    from export.data_rows import encoded_through
    from fm2onnx.train import evaluate_rows

    budget = parse_memory_budget(memory_budget)
    with encoded_through(checkpoint, data, format, schema, skip_bad_rows=skip_bad_rows,
                         progress=not quiet) as (ckpt, dataset):
        metrics = {"data": evaluate_rows(ckpt.model(), dataset.ids, dataset.labels, dataset.indices("all"), budget)}
    if as_json:
        from fm2onnx.data.metrics import metrics_json

        typer.echo(metrics_json(metrics["data"]))  # strict JSON: the AUC of rows of one class is null
    else:
        console.print(metrics_table(f"{ckpt.spec.kind} on {data}", metrics))


@app.command()
def info(checkpoint: Path = typer.Argument(..., help="ckpt.pt"), as_json: bool = typer.Option(False, "--json")):
    """Fields, dims, parameter count and training metrics of a checkpoint."""
    ckpt = load_checkpoint(checkpoint)
    spec = ckpt.spec
    params = sum(t.numel() for t in ckpt.state_dict.values())
    metrics = ckpt.training.get("metrics", {})
    if as_json:
        from fm2onnx.data.metrics import metrics_json

        # strict JSON: the AUC of a split of one class (a --test file, say) is null
        typer.echo(metrics_json({"model": spec.to_dict(), "parameters": params, "metrics": metrics}))
        return
    console.print(f"[bold]{spec.kind}[/bold]  linear: {spec.linear}  fields: {spec.num_fields}  "
                  f"features: {sum(spec.vocab_sizes):,}  parameters: {params:,}")
    table = Table()
    for column in ("#", "field", "vocabulary", "dim"):
        table.add_column(column, justify="left" if column == "field" else "right")
    for i, (name, vocab, d) in enumerate(zip(spec.field_names, spec.vocab_sizes, spec.dims), start=1):
        table.add_row(str(i), name, f"{vocab:,}", str(d))
    console.print(table)
    if metrics:
        console.print(metrics_table("training metrics (best epoch)", metrics))


@app.command()
def demo(
    out: Path = typer.Option(Path("demo"), help="Directory for the demo's data, checkpoint and models."),
    rows: int = typer.Option(300_000, help="Synthetic Criteo-format rows."),
    epochs: int = typer.Option(DEFAULT_EPOCHS, help="At most this many epochs (early stopping, as in train)."),
    seed: int = typer.Option(0),
    force: bool = typer.Option(False, help="Reuse a non-empty OUT directory."),
):
    """The Quick start: synthetic Criteo-shaped data -> FmFM -> ckpt.pt -> cached ONNX model, parity-checked."""
    from fm2onnx.data.splits import rows_filling_every_split
    from fm2onnx.train import TrainConfig

    TrainConfig(epochs=epochs, seed=seed).validate()  # before any of the demo's steps
    minimum = rows_filling_every_split(seed)  # the demo's data is split by the default rule
    if rows < minimum:
        raise Fm2OnnxError(f"--rows {rows}: the demo needs at least {minimum:,} rows with --seed {seed} "
                           "(fewer leave its train, valid or test split empty)")
    check_output_folder(out, "--out", force=force)
    with made_folders_removed_if_unused(out):  # the steps' finished files (data, checkpoint, graphs) are kept
        run_demo(out, rows, epochs, seed)


def run_demo(out: Path, rows: int, epochs: int, seed: int) -> None:
    from export import check_graphs, export_checkpoint
    from fm2onnx import data as fdata
    from fm2onnx.train import TrainConfig, config_dict
    from fm2onnx.train import train as run_training

    data_path = out / "criteo_synth.txt"
    console.print(f"[bold]1/4[/bold] generating {rows:,} synthetic Criteo-format rows -> {data_path}")
    planted_path = out / "planted.npz"
    # decay: rarer features carry less of the planted signal, as in real click logs; with every feature
    # equally strong, 300k rows leave most of the 34k planted features too rare to learn (test AUC 0.68
    # against the planted 0.79, docs/defaults.md).
    fdata.synthesize(data_path, rows=rows, fmt="criteo", seed=seed, planted_out=planted_path, force=True, decay=1.0)
    dataset = fdata.load_or_encode(data_path, fdata.get_format("criteo"), cache_dir=out / "encoded", seed=seed)
    pre = dataset.preprocessor
    spec = ModelSpec.create("fmfm", list(pre.field_names), list(pre.vocab_sizes), dim=16)
    console.print(f"[bold]2/4[/bold] training FmFM (K=16) on {len(dataset.indices('train')):,} rows")
    config = TrainConfig(epochs=epochs, seed=seed)
    result = run_training(spec, dataset, config, log_path=out / "train.log.jsonl")
    ckpt_path = out / "ckpt.pt"
    training = {"config": config_dict(config), "data": str(data_path), "best_epoch": result.best_epoch,
                "metrics": result.metrics, "history": result.history}
    save_checkpoint(Checkpoint.from_model(result.model, pre.to_dict(), training), ckpt_path, force=True)
    console.print(metrics_table("FmFM on synthetic Criteo-shaped data", result.metrics))
    test_rows = dataset.indices("test")
    planted_auc = fdata.auc(dataset.labels[test_rows], np.load(planted_path)["logits"][test_rows])
    console.print(planted_line(result.metrics["test"]["auc"], planted_auc))
    console.print(f"wrote {ckpt_path}")
    console.print("[bold]3/4[/bold] exporting to ONNX: uncached graph, cache rewrite, parity gate")
    model_path = out / "model.onnx"
    export_checkpoint(ckpt_path, model_path, form="both", force=True, echo=console.print)
    console.print("[bold]4/4[/bold] checking both graphs against torch on onnxruntime")
    uncached = model_path.with_name("model.uncached.onnx")
    for check in check_graphs(ckpt_path, [uncached, model_path]):
        console.print(f"  {Path(check.path).name}: {check.form}, max |dlogit| {check.max_abs_logit_error:.2e}, "
                      f"{check.flops_text()} FLOPs/row, {check.table_bytes:,} table bytes, "
                      f"{'ok' if check.within_tolerance else 'FAILED'}")


def planted_line(test_auc: float, planted_auc: float) -> str:
    """The trained model's test AUC against the planted model's on the same rows: the labels were drawn
    from the planted model's probabilities, so no model can expect a higher AUC (only sampling noise can
    put one above it)."""
    return (f"test AUC {test_auc:.4f}; the planted model that labelled the data scores {planted_auc:.4f} on the "
            f"same rows, the ceiling (its probabilities drew the labels): {planted_auc - test_auc:.4f} above")


@app.command("bench-train")
def bench_train(
    model: str = typer.Option("fmfm"),
    shape: str = typer.Option("criteo", help="criteo: 39 fields with Table 3's cardinalities."),
    dim: int = typer.Option(16),
    batch_size: int = typer.Option(2048),
    steps: int = typer.Option(30, help="Timed steps per repeat (after warm-up)."),
    repeats: int = typer.Option(5),
    threads: Optional[int] = typer.Option(None),
    as_json: bool = typer.Option(False, "--json"),
):
    """Training throughput (rows/s, median of repeats) against the naive pair-gather + einsum FmFM."""
    from fm2onnx.bench_train import run_train_bench

    report = run_train_bench(model, shape, dim, batch_size, steps, repeats, threads)
    if as_json:
        typer.echo(json.dumps(report))
        return
    table = Table(title=f"training {model}, {shape} shape, K={dim}, batch {batch_size}, "
                        f"{report['threads']} threads ({report['repeats']} repeats x {steps} steps)")
    for column in ("implementation", "median rows/s", "min", "max", "vs naive"):
        table.add_column(column, justify="right" if column != "implementation" else "left")
    for row in report["results"]:
        table.add_row(row["name"], f"{row['median']:,.0f}", f"{row['min']:,.0f}", f"{row['max']:,.0f}",
                      f"{row['ratio_vs_naive']:.2f}x")
    console.print(table)


def model_spec(model: str, pre, dim: int, dims: Optional[Path], linear: Optional[str]) -> ModelSpec:
    from fm2onnx.dims_file import read_dims

    field_dims = read_dims(dims, list(pre.field_names)) if dims else None
    return ModelSpec.create(model, list(pre.field_names), list(pre.vocab_sizes), dim=dim, dims=field_dims,
                            linear=linear)


def forwarded_args(ctx: typer.Context) -> list[str]:
    """The command line a worker runs: this command with every option given, less the launcher's own."""
    args = [ctx.info_name]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if param.name in LAUNCH_OPTIONS or value is None or value == param.default:
            continue
        if getattr(param, "is_flag", False):
            args.append(param.opts[0] if value else param.secondary_opts[0])
        else:
            args += [param.opts[0], str(value)]
    return args


def worker_threads(config, world):
    """Without --threads, the workers on a machine share its cores instead of each taking all of them."""
    from dataclasses import replace

    from fm2onnx.train import physical_cores

    if world.size == 1 or config.threads:
        return config
    return replace(config, threads=max(1, physical_cores() // world.local_size))
