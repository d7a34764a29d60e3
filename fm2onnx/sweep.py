"""The variance-kept sweep of Section 5.4 (Table 8, Figure 8), for the paper's 2-pass retrain and for
compression without retraining, from one full model and one PCA."""

from __future__ import annotations

import csv
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from models import FMFamilyModel, ModelSpec

from .compression import DimsCost, DimsSelection, compress_model, feature_counts, fit_pcas, select_dims, write_dims_csv
from .compression.plots import auc_against_flops
from .errors import Fm2OnnxError
from .train import TrainConfig, evaluate_rows, train

PAPER_THRESHOLDS = (0.99, 0.97, 0.95, 0.90, 0.85, 0.80)
METHODS = ("retrain", "compress")


@dataclass
class SweepPoint(DimsCost):
    threshold: float | None  # None: the full model
    dims: list[int]
    retrain: dict | None = None  # test {"auc", "logloss", "rows"} of the 2-pass model
    compress: dict | None = None  # test metrics of the compressed (and maybe fine-tuned) model
    seconds: dict = field(default_factory=dict)
    selection: DimsSelection | None = None


@dataclass
class SweepResult:
    full: SweepPoint
    points: list[SweepPoint]
    weighting: str
    full_metrics: dict  # the full model's test metrics


def parse_thresholds(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise Fm2OnnxError(f"--variance {text!r}: expected comma-separated numbers like 0.99,0.95") from None
    if not values or any(not 0 < v <= 1 for v in values):
        raise Fm2OnnxError(f"--variance {text!r}: every threshold must be in (0, 1]")
    return values


def log(message: str, enabled: bool) -> None:
    if enabled:
        print(message, file=sys.stderr, flush=True)


def run_sweep(dataset, thresholds, config: TrainConfig, *, full_model: FMFamilyModel | None = None, dim: int = 16,
              retrain: bool = True, compress: bool = True, frequency_weighted: bool = False,
              finetune_epochs: int = 0, progress: bool = True, on_model=None) -> SweepResult:
    """``full_model``: the first pass, or None to train an FmFM with K = ``dim`` on ``dataset``.
    ``on_model(name, model)`` is called for each model made (to save checkpoints)."""
    test_rows = dataset.indices("test")
    if not len(test_rows):
        raise Fm2OnnxError("no test rows: the sweep scores every model on them (pass --test with --valid, "
                           "or one --data file to split)")
    names, vocab = list(dataset.preprocessor.field_names), list(dataset.preprocessor.vocab_sizes)

    def score(model):
        return evaluate_rows(model, dataset.ids, dataset.labels, test_rows)

    started = time.perf_counter()
    if full_model is None:
        log(f"first pass: FmFM, K = {dim}", progress)
        full_model = train(ModelSpec.create("fmfm", names, vocab, dim=dim), dataset, config, progress=progress).model
        if on_model:
            on_model("full", full_model)
    full_metrics = score(full_model)
    full = SweepPoint(None, list(full_model.spec.dims), seconds={"train": time.perf_counter() - started})
    counts = feature_counts(dataset.ids, vocab, dataset.indices("train")) if frequency_weighted else None
    pcas = fit_pcas(full_model, counts)
    points = []
    for threshold in thresholds:
        selection = select_dims(full_model, threshold, counts, pcas=pcas)
        point = SweepPoint(threshold, selection.dims, selection=selection)
        log(f"{100 * threshold:g}% variance: mean dim {point.mean_dim:.2f}, {point.flops:,} FLOPs", progress)
        if compress:
            t0 = time.perf_counter()
            small = compress_model(full_model, selection.dims, selection.pcas)
            if finetune_epochs:
                from .compression.finetune import finetune
                tune_config = TrainConfig(**{**asdict(config), "epochs": finetune_epochs})
                small = finetune(small, dataset, tune_config, progress=progress).model
            point.compress = score(small)
            point.seconds["compress"] = time.perf_counter() - t0
            if on_model:
                on_model(f"compress_{threshold:g}", small)
        if retrain:
            t0 = time.perf_counter()
            spec = ModelSpec.create("fmfm", names, vocab, dims=selection.dims)
            second = train(spec, dataset, config, progress=progress).model
            point.retrain = score(second)
            point.seconds["retrain"] = time.perf_counter() - t0
            if on_model:
                on_model(f"retrain_{threshold:g}", second)
        points.append(point)
    return SweepResult(full, points, "frequency" if frequency_weighted else "uniform", full_metrics)


def _metric(m: dict | None, key: str) -> str:
    return "" if m is None else f"{m[key]:.4f}"


def table_rows(result: SweepResult) -> list[dict]:
    """CSV rows in the columns of the paper's table8_pca_criteo.csv, plus the compressed model's scores."""
    rows = [{"variance_kept": "full", "avg_emb_dim": f"{result.full.mean_dim:.2f}",
             "estimated_flops": result.full.flops, "auc_test": _metric(result.full_metrics, "auc"),
             "logloss_test": _metric(result.full_metrics, "logloss"), "auc_test_compress": "",
             "logloss_test_compress": ""}]
    for p in result.points:
        rows.append({"variance_kept": f"{p.threshold:.2f}", "avg_emb_dim": f"{p.mean_dim:.2f}",
                     "estimated_flops": p.flops, "auc_test": _metric(p.retrain, "auc"),
                     "logloss_test": _metric(p.retrain, "logloss"), "auc_test_compress": _metric(p.compress, "auc"),
                     "logloss_test_compress": _metric(p.compress, "logloss")})
    return rows


def markdown_table(result: SweepResult) -> str:
    """Table 8's layout: dims and FLOPs with their share of the full model, test AUC and log loss."""
    full = result.full
    lines = ["| Variance % | Emb Dim (Average) | FLOPs Estimated # | AUC 2-pass | Log Loss 2-pass "
             "| AUC compress | Log Loss compress |",
             "|---|---|---|---|---|---|---|",
             f"| Full | {full.mean_dim:.2f} (100%) | {full.flops:,} (100%) | {result.full_metrics['auc']:.4f} "
             f"| {result.full_metrics['logloss']:.4f} | | |"]
    for p in result.points:
        cells = [f"{100 * p.threshold:g}%", f"{p.mean_dim:.2f} ({100 * p.mean_dim / full.mean_dim:.1f}%)",
                 f"{p.flops:,} ({100 * p.flops / full.flops:.1f}%)"]
        for m in (p.retrain, p.compress):
            cells += ["—", "—"] if m is None else [f"{m['auc']:.4f}", f"{m['logloss']:.4f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_sweep(result: SweepResult, out_dir: Path, field_names, title: str) -> dict[str, Path]:
    """sweep.csv, sweep.md, sweep.json, auc_vs_flops.png and the dims of each threshold (dims_<v>.csv)."""
    out = {"csv": out_dir / "sweep.csv", "md": out_dir / "sweep.md", "json": out_dir / "sweep.json",
           "png": out_dir / "auc_vs_flops.png"}
    rows = table_rows(result)
    with open(out["csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out["md"].write_text(markdown_table(result))
    out["json"].write_text(json.dumps({
        "weighting": result.weighting, "field_names": list(field_names),
        "full": {"dims": result.full.dims, "flops": result.full.flops, "test": result.full_metrics},
        "points": [{"threshold": p.threshold, "dims": p.dims, "mean_dim": p.mean_dim, "flops": p.flops,
                    "retrain": p.retrain, "compress": p.compress, "seconds": p.seconds} for p in result.points],
    }, indent=1))
    for p in result.points:
        write_dims_csv(p.selection, out_dir / f"dims_{p.threshold:g}.csv", force=True)
    series = {}
    for method, label in (("retrain", "2-pass retrain"), ("compress", "compress (no retrain)")):
        series[label] = [{"flops": p.flops, "threshold": p.threshold, "auc": (getattr(p, method) or {}).get("auc")}
                         for p in result.points]
    auc_against_flops({"flops": result.full.flops, "auc": result.full_metrics["auc"]}, series, out["png"], title)
    return out
