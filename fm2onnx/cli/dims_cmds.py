"""``fm2onnx dims | compress | sweep | report``: variable embedding dims (Section 4.1 and 5.4 of the paper)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from fm2onnx.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from fm2onnx.errors import Fm2OnnxError
from fm2onnx.files import (check_output_file, made_folders_removed_if_unused, removed_unless_complete,
                           require_file)

from .app import app
from .train_cmds import (CACHE_HELP, DATA_HELP, DEFAULT_EPOCHS, DEFAULT_L2, DEFAULT_LR, DEFAULT_PATIENCE, THREADS_HELP,
                         VALID_HELP, open_dataset)

# soft_wrap: a line piped to a log keeps its length instead of being folded at rich's default 80 columns
console = Console(soft_wrap=True)

WEIGHTING_HELP = "uniform: every known feature counts once; frequency: weighted by occurrences in --data."


def checkpoint_dataset(ckpt: Checkpoint, data: Path, fmt_name: Optional[str], schema: Optional[Path], *,
                       cache_dir: Optional[Path], skip_bad_rows: bool, progress: bool, split: str = "whole",
                       valid: Optional[Path] = None, test: Optional[Path] = None, split_seed: Optional[int] = None):
    """Rows encoded with the checkpoint's own vocabularies and format (its csv/tsv schema included).

    ``split``: "whole" makes every row of ``data`` a test row (scoring a file scores all of it); "train"
    splits ``data`` as the checkpoint's training run did (its split seed, unless ``split_seed``), or, with
    ``valid``/``test``,
    takes each file as its split. Encodings go to the user's cache (``cache_dir`` to choose another).
    """
    from fm2onnx import data as fdata
    from fm2onnx.data.encode import format_for

    where = ckpt.path or "checkpoint"
    if data.is_dir():
        dataset = fdata.EncodedDataset.open(data)
    else:
        if ckpt.preprocessor is None:
            raise Fm2OnnxError(f"{where}: has no vocabularies, so {data} cannot be encoded for it")
        pre = fdata.Preprocessor.from_dict(ckpt.preprocessor, where=str(where))
        for path in (data, valid, test):
            if path is not None:
                require_file(path, "data")
        fmt = format_for(pre, fmt_name, schema, where=str(where))
        if split == "whole":
            options = {"split": (0.0, 0.0, 1.0)}
        elif valid is not None or test is not None:
            options = {"valid": valid, "test": test}
        else:
            options = {"seed": training_split_seed(ckpt) if split_seed is None else split_seed}
        dataset = fdata.load_or_encode(data, fmt, cache_dir=cache_dir, preprocessor=pre,
                                       skip_bad_rows=skip_bad_rows, progress=progress, **options)
    if list(dataset.field_names) != list(ckpt.spec.field_names) or \
            list(dataset.vocab_sizes) != list(ckpt.spec.vocab_sizes):
        raise Fm2OnnxError(f"{data}: its fields or vocabularies differ from those of {where}")
    return dataset


def training_split_seed(ckpt: Checkpoint) -> int:
    """The seed that split the checkpoint's training file (its model seed, for checkpoints that
    predate a separate split seed)."""
    training = ckpt.training or {}
    return int(training.get("split_seed", (training.get("config") or {}).get("seed", 0)))


def check_weighting(weighting: str) -> None:
    from fm2onnx.compression.dims import WEIGHTINGS

    if weighting not in WEIGHTINGS:
        raise Fm2OnnxError(f"--weighting {weighting!r}: expected one of {', '.join(WEIGHTINGS)}")


def feature_counts_for(ckpt: Checkpoint, weighting: str, data: Optional[Path], fmt, schema, cache_dir,
                       skip_bad_rows, quiet):
    from fm2onnx.compression import feature_counts

    check_weighting(weighting)
    if weighting == "uniform":
        return None
    if data is None:
        raise Fm2OnnxError("--weighting frequency needs --data to count how often each feature occurs")
    dataset = checkpoint_dataset(ckpt, data, fmt, schema, cache_dir=cache_dir, skip_bad_rows=skip_bad_rows,
                                 progress=not quiet)
    rows = dataset.indices("train")
    return feature_counts(dataset.ids, ckpt.spec.vocab_sizes, rows if len(rows) else None)


def dims_table(selection) -> Table:
    table = Table(title=f"Per-field dims, {100 * selection.threshold:g}% variance kept "
                        f"({selection.weighting} weighting)")
    for column in ("#", "field", "dim", "features in field", "variance kept"):
        table.add_column(column, justify="left" if column == "field" else "right")
    for i, row in enumerate(selection.fields, start=1):
        table.add_row(str(i), row.field, str(row.dim), f"{row.features:,}", f"{100 * row.explained:.1f}%")
    return table


def comparison_table(title: str, scores: dict) -> Table:
    table = Table(title=title)
    for column in ("model", "rows", "AUC", "log loss"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for name, m in scores.items():
        table.add_row(name, f"{m['rows']:,}", f"{m['auc']:.4f}", f"{m['logloss']:.4f}")
    return table


def summary_line(selection) -> str:
    return (f"mean dim {selection.mean_dim:.2f} (trained {sum(f.original for f in selection.fields) / len(selection.fields):.2f}); "
            f"cached FLOPs per row {selection.flops:,} ({100 * selection.flops / selection.original_flops:.1f}% "
            f"of the trained model's {selection.original_flops:,}); weighting: {selection.weighting}")


@app.command()
def dims(
    checkpoint: Path = typer.Argument(..., help="A trained FM/FwFM/FvFM/FmFM checkpoint (the first pass)."),
    variance: float = typer.Option(0.95, help="Variance each field's PCA must keep, in (0, 1]."),
    weighting: str = typer.Option("uniform", help=WEIGHTING_HELP),
    data: Optional[Path] = typer.Option(None, help="Data to count feature frequencies (for --weighting frequency)."),
    format: Optional[str] = typer.Option(None, "--format", help="Defaults to the checkpoint's format."),
    schema: Optional[Path] = typer.Option(None),
    cache_dir: Optional[Path] = typer.Option(None),
    skip_bad_rows: bool = typer.Option(False),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="dims CSV for `fm2onnx train --dims`."),
    force: bool = typer.Option(False, help="Overwrite an existing output."),
    as_json: bool = typer.Option(False, "--json"),
    quiet: bool = typer.Option(False),
):
    """Per-field embedding dims by PCA of the trained tables (the paper's 2-pass method, Table 3)."""
    from fm2onnx.compression import require_field_matrices, select_dims, write_dims_csv

    check_output_file(output, force=force, inputs=[checkpoint, data, schema])
    ckpt = load_checkpoint(checkpoint)
    require_field_matrices(ckpt.spec, str(checkpoint))
    counts = feature_counts_for(ckpt, weighting, data, format, schema, cache_dir, skip_bad_rows, quiet)
    selection = select_dims(ckpt.model(), variance, counts)
    if output is not None:
        write_dims_csv(selection, output, force=force)
    if as_json:
        typer.echo(json.dumps({"threshold": variance, "weighting": selection.weighting, "dims": selection.dims,
                               "mean_dim": selection.mean_dim, "cached_flops": selection.flops,
                               "fields": [f.field for f in selection.fields]}))
        return
    console.print(dims_table(selection))
    console.print(summary_line(selection))
    if output is not None:
        console.print(f"wrote {output}  (train the second pass with `fm2onnx train --dims {output} ...`)")


@app.command()
def compress(
    checkpoint: Path = typer.Argument(..., help="A trained FM/FwFM/FvFM/FmFM checkpoint."),
    variance: Optional[float] = typer.Option(None, help="Variance each field keeps, in (0, 1] (default 0.95)."),
    dims_file: Optional[Path] = typer.Option(None, "--dims", help="Target dims CSV instead of --variance."),
    weighting: str = typer.Option("uniform", help=WEIGHTING_HELP),
    data: Optional[Path] = typer.Option(None, help="Rows to score the compressed model on (all of them) and to "
                                        "count features in; with --finetune-epochs, the training rows."),
    valid: Optional[Path] = typer.Option(None, help="With --finetune-epochs: validation rows for early stopping "
                                         "(default: --data split as in the checkpoint's training run)."),
    test: Optional[Path] = typer.Option(None, help="With --finetune-epochs: the rows scored after fine-tuning."),
    format: Optional[str] = typer.Option(None, "--format", help="Defaults to the checkpoint's format."),
    schema: Optional[Path] = typer.Option(None, help="Defaults to the checkpoint's csv/tsv schema."),
    cache_dir: Optional[Path] = typer.Option(None, help="Where encodings are kept (default: the user's cache)."),
    skip_bad_rows: bool = typer.Option(False),
    finetune_epochs: int = typer.Option(0, help="Epochs of training from the compressed weights (needs --data)."),
    lr: float = typer.Option(1e-3, help="Fine-tuning learning rate."),
    batch_size: int = typer.Option(2048),
    output: Path = typer.Option(..., "-o", "--output", help="The compressed FmFM checkpoint."),
    force: bool = typer.Option(False, help="Overwrite an existing output."),
    quiet: bool = typer.Option(False),
):
    """An FmFM with smaller dims without retraining: PCA bases folded into the field matrices (linear form kept)."""
    from fm2onnx.compression import compress_model, require_field_matrices, select_dims
    from fm2onnx.dims_file import read_dims
    from fm2onnx.train import TrainConfig

    check_output_file(output, force=force, inputs=[checkpoint, dims_file, data, valid, test, schema])
    check_compress_options(variance, dims_file, finetune_epochs, data, valid, test)
    tuning = TrainConfig(learning_rate=lr, batch_size=batch_size, epochs=finetune_epochs) if finetune_epochs else None
    if tuning is not None:
        tuning.validate()  # before the PCA and the data pass
    ckpt = load_checkpoint(checkpoint)
    require_field_matrices(ckpt.spec, str(checkpoint))
    counts = feature_counts_for(ckpt, weighting, data, format, schema, cache_dir, skip_bad_rows, quiet)
    model = ckpt.model()
    threshold = 0.95 if variance is None else variance
    # The PCA always runs: its bases are what gets folded, whichever way the dims are chosen.
    selection = select_dims(model, 1.0 if dims_file else threshold, counts)
    target = read_dims(dims_file, list(ckpt.spec.field_names)) if dims_file else selection.dims
    small = compress_model(model, target, selection.pcas)
    training = {"compressed_from": str(checkpoint), "variance": None if dims_file else threshold,
                "dims_file": str(dims_file) if dims_file else None, "weighting": selection.weighting,
                "source_metrics": ckpt.training.get("metrics", {}), "config": ckpt.training.get("config", {})}
    if data is not None:
        dataset = checkpoint_dataset(ckpt, data, format, schema, cache_dir=cache_dir, skip_bad_rows=skip_bad_rows,
                                     progress=not quiet, split="train" if finetune_epochs else "whole",
                                     valid=valid, test=test)
        if tuning is not None:  # fine-tuning continues with the seed the checkpoint was trained with
            tuning = replace(tuning, seed=int((ckpt.training.get("config") or {}).get("seed", 0)))
        small, scored = finetune_and_score(model, small, dataset, test or data, tuning, quiet=quiet)
        training.update(scored)
    save_checkpoint(Checkpoint.from_model(small, ckpt.preprocessor, training), output, force=force)
    console.print(compression_line(ckpt.spec, target, small.spec))
    console.print(f"wrote {output}")


def check_compress_options(variance: Optional[float], dims_file: Optional[Path], finetune_epochs: int,
                           data: Optional[Path], valid: Optional[Path] = None, test: Optional[Path] = None) -> None:
    if variance is not None and dims_file is not None:
        raise Fm2OnnxError("give --variance or --dims, not both")
    if finetune_epochs < 0:
        raise Fm2OnnxError("--finetune-epochs must be >= 0")
    if finetune_epochs and data is None:
        raise Fm2OnnxError("--finetune-epochs needs --data")
    if (valid is not None or test is not None) and not finetune_epochs:
        raise Fm2OnnxError("--valid and --test go with --finetune-epochs; without it every row of --data is scored")
    if test is not None and valid is None:
        raise Fm2OnnxError(f"--test {test} needs --valid too: fine-tuning stops early on the validation rows")


def finetune_and_score(model, small, dataset, data: Path, tuning, *, quiet: bool):
    """Fine-tune the compressed ``small`` (with the TrainConfig ``tuning``, unless None), then print it against
    the full ``model`` on the test split (all rows if there is none) -> (``small``, what the checkpoint records
    about both)."""
    from fm2onnx.compression.finetune import finetune
    from fm2onnx.train import evaluate_rows

    notes = {}
    if tuning is not None:
        result = finetune(small, dataset, tuning, progress=not quiet)
        small = result.model
        notes.update(finetune_epochs=tuning.epochs, best_epoch=result.best_epoch, history=result.history)
        console.print(finetune_line(result))
    test = dataset.indices("test")
    rows = test if len(test) else dataset.indices("all")
    scores = {"full": evaluate_rows(model, dataset.ids, dataset.labels, rows),
              "compressed": evaluate_rows(small, dataset.ids, dataset.labels, rows)}
    notes["metrics"] = {"test": scores["compressed"]}
    whole = len(rows) == dataset.rows
    console.print(comparison_table(f"{'all rows' if whole else 'test rows'} of {data}", scores))
    return small, notes


def finetune_line(result) -> str:
    """What fine-tuning kept: an epoch that beat the folded weights on validation AUC, or those weights."""
    first = next((h["valid"]["auc"] for h in result.history if h["epoch"] == 0 and "valid" in h), None)
    if result.best_epoch == 0:
        return (f"fine-tuning: no epoch beat the folded weights' validation AUC {first:.4f}; kept them"
                if first is not None else "fine-tuning: kept the folded weights")
    best = next(h for h in result.history if h["epoch"] == result.best_epoch)
    gain = "" if first is None else f" (validation AUC {first:.4f} -> {best['valid']['auc']:.4f})"
    return f"fine-tuning: kept epoch {result.best_epoch}{gain}"


def compression_line(spec, target, small_spec) -> str:
    """Kind and dims before -> after, and the cached FLOPs per row they cost."""
    from fm2onnx.compression import cached_flops

    k = spec.dims
    return (f"{spec.kind} {list(k) if len(set(k)) > 1 else f'K={k[0]}'} -> fmfm, mean dim "
            f"{sum(target) / len(target):.2f}, cached FLOPs per row {cached_flops(target):,} "
            f"(was {cached_flops(k):,}); linear: {small_spec.linear}")


@app.command()
def sweep(
    data: Path = typer.Option(..., help=DATA_HELP),
    valid: Optional[Path] = typer.Option(None, help=VALID_HELP),
    test: Optional[Path] = typer.Option(None, help="Test rows every model of the sweep is scored on (all of them)."),
    format: Optional[str] = typer.Option(None, "--format", help="Default: the --full checkpoint's, else criteo."),
    schema: Optional[Path] = typer.Option(None, help="Schema JSON for csv/tsv (default: the --full checkpoint's)."),
    variance: str = typer.Option("0.99,0.97,0.95,0.90,0.85,0.80", help="Comma-separated thresholds."),
    full: Optional[Path] = typer.Option(None, help="The first-pass checkpoint, trained on this data (default: train one)."),
    dim: int = typer.Option(16, help="K of the first-pass FmFM when it is trained here."),
    retrain: bool = typer.Option(True, help="Train the paper's second pass from scratch for each threshold."),
    compress: bool = typer.Option(True, "--compress/--no-compress", help="Also score compression without retraining."),
    finetune_epochs: int = typer.Option(0, help="Fine-tune each compressed model this many epochs."),
    weighting: str = typer.Option("uniform", help="uniform | frequency (counts from the training split)."),
    epochs: int = typer.Option(DEFAULT_EPOCHS, help="At most this many epochs per model (early stopping)."),
    patience: int = typer.Option(DEFAULT_PATIENCE),
    lr: float = typer.Option(DEFAULT_LR),
    l2_embeddings: float = typer.Option(DEFAULT_L2, help="L2 on the embedding rows a batch uses."),
    l2_field_matrices: float = typer.Option(DEFAULT_L2, help="L2 on the field matrices."),
    l2_linear: float = typer.Option(DEFAULT_L2, help="L2 on linear weights."),
    batch_size: int = typer.Option(2048),
    seed: int = typer.Option(0, help="Seeds the models' init and the shuffling."),
    split_seed: Optional[int] = typer.Option(None, help="Seeds the 80/10/10 split of a single --data file "
                                             "(default 0, or the --full checkpoint's)."),
    threads: Optional[int] = typer.Option(None, help=THREADS_HELP),
    min_count: Optional[int] = typer.Option(None),
    skip_bad_rows: bool = typer.Option(False),
    cache_dir: Optional[Path] = typer.Option(None, help=CACHE_HELP),
    save_models: bool = typer.Option(False, help="Also write every model of the sweep as a checkpoint."),
    output: Path = typer.Option(Path("sweep"), "-o", "--output", help="Output directory."),
    force: bool = typer.Option(False, help="Write into a non-empty output directory."),
    quiet: bool = typer.Option(False),
):
    """Table 8 and Figure 8: dims, cached FLOPs, test AUC / log loss per variance, for retrain and compress."""
    from fm2onnx.report import prepare_out_dir
    from fm2onnx.sweep import markdown_table, parse_thresholds, run_sweep, write_sweep
    from fm2onnx.train import TrainConfig, config_dict

    thresholds = parse_thresholds(variance)
    check_weighting(weighting)
    config = TrainConfig(learning_rate=lr, l2_embeddings=l2_embeddings, l2_field_matrices=l2_field_matrices,
                         l2_linear=l2_linear, batch_size=batch_size, epochs=epochs, patience=patience, seed=seed,
                         threads=threads)
    config.validate()
    with made_folders_removed_if_unused(output):  # the models a failed sweep finished are kept
        prepare_out_dir(output, force)
        dataset, full_model = sweep_data(data, full, format, schema, min_count=min_count, split_seed=split_seed,
                                         skip_bad_rows=skip_bad_rows, cache_dir=cache_dir, progress=not quiet,
                                         valid=valid, test=test)
        pre = dataset.preprocessor

        def keep(name, model):
            if save_models or name == "full":
                training = {"sweep": name, "data": str(data), "config": config_dict(config)}
                save_checkpoint(Checkpoint.from_model(model, pre.to_dict(), training), output / f"{name}.pt",
                                force=True)

        result = run_sweep(dataset, thresholds, config, full_model=full_model, dim=dim, retrain=retrain,
                           compress=compress, frequency_weighted=weighting == "frequency",
                           finetune_epochs=finetune_epochs, progress=not quiet, on_model=keep)
        files = write_sweep(result, output, pre.field_names, f"Test AUC against cached FLOPs ({data.name})")
    typer.echo(markdown_table(result))
    console.print(f"wrote {', '.join(str(p) for p in files.values())}")


def sweep_data(data: Path, full: Optional[Path], fmt_name: Optional[str], schema: Optional[Path], *, min_count,
               split_seed: Optional[int], skip_bad_rows, cache_dir, progress, valid=None, test=None):
    """-> (dataset, first-pass model or None): with ``full``, its rows are encoded with the checkpoint's own
    vocabularies and format, and split as in its training run (or by the given files), so its test scores
    compare with the sweep's."""
    if full is None:
        return open_dataset(data, fmt_name or "criteo", schema, min_count=min_count, seed=split_seed or 0,
                            skip_bad_rows=skip_bad_rows, cache_dir=cache_dir, progress=progress, valid=valid,
                            test=test), None
    ckpt = load_checkpoint(full)
    dataset = checkpoint_dataset(ckpt, data, fmt_name, schema, cache_dir=cache_dir, skip_bad_rows=skip_bad_rows,
                                 progress=progress, split="train", valid=valid, test=test, split_seed=split_seed)
    return dataset, ckpt.model()


@app.command()
def report(
    checkpoint: Path = typer.Argument(..., help="A trained FM/FwFM/FvFM/FmFM checkpoint."),
    data: Optional[Path] = typer.Option(None, help="Rows for the mutual-information heatmap (Figure 6)."),
    format: Optional[str] = typer.Option(None, "--format", help="Defaults to the checkpoint's format."),
    schema: Optional[Path] = typer.Option(None, help="Defaults to the checkpoint's csv/tsv schema."),
    variance: Optional[float] = typer.Option(
        None, help="Show PCA dims at this variance (default: the checkpoint's dims if they vary by field, "
                   "else PCA at 0.95)."),
    max_rows: int = typer.Option(200_000, help="Rows sampled for mutual information."),
    cache_dir: Optional[Path] = typer.Option(None),
    skip_bad_rows: bool = typer.Option(False),
    output: Path = typer.Option(Path("report"), "-o", "--output", help="Output directory (index.html + PNGs)."),
    force: bool = typer.Option(False, help="Write into a non-empty output directory."),
    quiet: bool = typer.Option(False),
):
    """Heatmaps of cross-field dims (Figure 7) and field-pair mutual information (Figure 6) in one offline page."""
    from fm2onnx.report import build_report, check_max_rows, choose_dims, prepare_out_dir

    check_max_rows(max_rows)
    ckpt = load_checkpoint(checkpoint)
    chosen = choose_dims(ckpt, variance)
    with removed_unless_complete(output):  # an interrupted report leaves no half-filled folder
        prepare_out_dir(output, force)  # fail before the (slower) data pass
        ids = labels = None
        if data is not None:
            dataset = checkpoint_dataset(ckpt, data, format, schema, cache_dir=cache_dir,
                                         skip_bad_rows=skip_bad_rows, progress=not quiet)
            ids, labels = dataset.ids, dataset.labels
        index = build_report(ckpt, output, dims=chosen, ids=ids, labels=labels,
                             data_name=data.name if data else "", max_rows=max_rows, force=True)
    console.print(f"wrote {index}  (dims: {chosen.source}; mean {sum(chosen.dims) / len(chosen.dims):.2f})")
