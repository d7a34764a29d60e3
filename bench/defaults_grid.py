"""The learning-rate x L2 grid behind `fm2onnx train`'s defaults (not a test; docs/defaults.md).

    python bench/defaults_grid.py --threads 1 [--data-dir /path/to/samples] [--synth-rows 100000]
                                  [--datasets criteo,avazu,synth] [--work /tmp/fm2onnx-grid] [--json out.json]

Each data set is cut into explicit train / valid / test files (80/10/10, in file order) under
--work, and every grid point trains an FmFM (K = 16) once per model seed with the defaults' early
stopping, as `fm2onnx train --data train --valid valid --test test --lr LR --l2-* L2 --seed S` would.
The table lists mean validation and test AUC per point and marks the defaults' row and the best.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from fm2onnx import data as fdata
from fm2onnx.train import TrainConfig, train
from models import ModelSpec

LRS = (3e-4, 1e-3, 3e-3, 1e-2)
L2S = (0.0, 1e-6, 1e-5)
SEEDS = (0, 1)  # model seeds: on 10k-row samples one seed's AUC moves by more than the gaps sought
SAMPLES = {"criteo": ("criteo_sample_10k.txt", "criteo"), "avazu": ("avazu_sample_10k.csv", "avazu")}


def split_lines(source: Path, out_dir: Path, header: bool) -> dict[str, Path]:
    """train/valid/test files of the source's lines, 80/10/10 in file order (the header on each)."""
    lines = source.read_text().splitlines(keepends=True)
    head, body = (lines[:1], lines[1:]) if header else ([], lines)
    cut = [0, len(body) * 8 // 10, len(body) * 9 // 10, len(body)]
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for i, name in enumerate(("train", "valid", "test")):
        files[name] = out_dir / f"{name}{source.suffix}"
        files[name].write_text("".join(head + body[cut[i]:cut[i + 1]]))
    return files


def prepare(name: str, args) -> tuple[dict[str, Path], str]:
    """The three files of data set ``name`` and its format."""
    work = Path(args.work) / name
    if name == "synth":
        source = work / "synth.txt"
        if not source.exists():
            work.mkdir(parents=True, exist_ok=True)
            fdata.synthesize(source, rows=args.synth_rows, fmt="criteo", seed=0, progress=False)
        return split_lines(source, work, header=False), "criteo"
    file_name, fmt = SAMPLES[name]
    return split_lines(Path(args.data_dir) / file_name, work, header=fmt == "avazu"), fmt


def run_point(dataset, lr: float, l2: float, threads: int, seed: int) -> dict:
    pre = dataset.preprocessor
    spec = ModelSpec.create("fmfm", list(pre.field_names), list(pre.vocab_sizes), dim=16)
    config = TrainConfig(learning_rate=lr, l2_embeddings=l2, l2_field_matrices=l2, l2_linear=l2, threads=threads,
                         seed=seed)
    started = time.perf_counter()
    result = train(spec, dataset, config, progress=False)
    return {"lr": lr, "l2": l2, "seed": seed, "valid_auc": result.metrics["valid"]["auc"],
            "test_auc": result.metrics["test"]["auc"], "test_rows": result.metrics["test"]["rows"],
            "best_epoch": result.best_epoch, "epochs": len(result.history),
            "seconds": round(time.perf_counter() - started, 1)}


def averaged(runs: list[dict]) -> list[dict]:
    """One row per (lr, L2): mean AUCs over the seeds, the spread of test AUC, mean epochs."""
    points = {}
    for run in runs:
        points.setdefault((run["lr"], run["l2"]), []).append(run)
    rows = []
    for (lr, l2), group in points.items():
        test = np.array([r["test_auc"] for r in group])
        rows.append({"lr": lr, "l2": l2, "valid_auc": float(np.mean([r["valid_auc"] for r in group])),
                     "test_auc": float(test.mean()), "test_sd": float(test.std()), "test_rows": group[0]["test_rows"],
                     "best_epoch": float(np.mean([r["best_epoch"] for r in group])),
                     "epochs": float(np.mean([r["epochs"] for r in group])),
                     "seconds": float(np.mean([r["seconds"] for r in group])), "seeds": len(group)})
    return rows


def markdown(name: str, points: list[dict]) -> str:
    default = TrainConfig()
    best = max(p["test_auc"] for p in points)
    lines = [f"**{name}** ({points[0]['test_rows']:,} test rows; mean over {points[0]['seeds']} model seeds; "
             f"best mean test AUC {best:.4f})", "",
             "| lr | L2 | valid AUC | test AUC (sd) | vs best | best epoch / epochs run | s per run |",
             "|---|---|---|---|---|---|---|"]
    for p in points:
        mark = " **(default)**" if (p["lr"], p["l2"]) == (default.learning_rate, default.l2_embeddings) else ""
        lines.append(f"| {p['lr']:g}{mark} | {p['l2']:g} | {p['valid_auc']:.4f} | {p['test_auc']:.4f} "
                     f"({p['test_sd']:.4f}) | {p['test_auc'] - best:+.4f} | {p['best_epoch']:.1f} / {p['epochs']:.1f} "
                     f"| {p['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def render(paths: list[str]) -> int:
    """The tables of earlier runs, the current defaults marked."""
    runs: dict[str, dict] = {}
    for path in paths:
        for name, rows in json.loads(Path(path).read_text()).items():
            for row in rows:
                runs.setdefault(name, {})[row["lr"], row["l2"], row.setdefault("seed", 0)] = row
    for name, by_key in runs.items():
        print(markdown(name, averaged(sorted(by_key.values(), key=lambda r: (r["lr"], r["l2"], r["seed"])))))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="/work/shared/data")
    parser.add_argument("--datasets", default="criteo,avazu,synth")
    parser.add_argument("--synth-rows", type=int, default=100_000)
    parser.add_argument("--work", default="/tmp/fm2onnx-grid")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lrs", default=",".join(map(str, LRS)), help="Comma-separated learning rates.")
    parser.add_argument("--l2s", default=",".join(map(str, L2S)), help="Comma-separated L2 weights (all three terms).")
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)), help="Comma-separated model seeds.")
    parser.add_argument("--json", default=None, help="Also write the results here.")
    parser.add_argument("--render", default=None, help="Only print the tables of these comma-separated --json "
                                                       "files (a later file's run replaces an earlier one's).")
    args = parser.parse_args()
    if args.render:
        return render(args.render.split(","))
    results = {}
    for name in args.datasets.split(","):
        files, fmt = prepare(name, args)
        dataset = fdata.load_or_encode(files["train"], fmt, cache_dir=Path(args.work) / "cache",
                                       valid=files["valid"], test=files["test"], progress=False)
        results[name] = []
        for lr in map(float, args.lrs.split(",")):
            for l2 in map(float, args.l2s.split(",")):
                for seed in map(int, args.seeds.split(",")):
                    results[name].append(run_point(dataset, lr, l2, args.threads, seed))
                    print(name, json.dumps(results[name][-1]), file=sys.stderr, flush=True)
        print(markdown(name, averaged(results[name])), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
