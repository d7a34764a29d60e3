"""Criteo-scale export benchmark (not a test): time, peak RSS and file sizes of ``fm2onnx export``.

    python bench/bench_export_scale.py [fmfm fmfm-table3 ffm] [--workdir DIR] [--latency]

Scenarios (39 fields, Table 3's cardinalities, 1.33M features, random weights):
    fmfm          K = 16, cached + uncached (--form both); target: < 3 min, peak RSS < 6 GB
    fmfm-table3   Table 3's per-field dims, cached
    ffm           K = 16, 1.33M x 38 x 16 floats (~3.2 GB): written through the external-data path

Each checkpoint is made in one child process and exported in another, so the reported peak RSS
(getrusage ru_maxrss) is the export's own: load checkpoint, torch.onnx, rewrite, save, parity.
``--latency`` then times onnxruntime (median of repeated runs, batch 1 and 1024) on each written
model and on a ``--pair-major`` rewrite of the uncached one, in a third child.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = {"fmfm": ("fmfm", False, "both"), "fmfm-table3": ("fmfm", True, "cached"), "ffm": ("ffm", False, "cached")}


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KB on Linux


def make_checkpoint(kind: str, table3_dims: bool, path: Path) -> dict:
    import torch

    from fm2onnx.checkpoint import Checkpoint, save_checkpoint
    from models import ModelSpec, build_model
    from models.paper_shapes import (CRITEO_FEATURES_PER_FIELD, CRITEO_FIELD_NAMES, CRITEO_TABLE3_DIMS,
                                     vocab_sizes)

    start = time.perf_counter()
    spec = ModelSpec.create(kind, CRITEO_FIELD_NAMES, vocab_sizes(CRITEO_FEATURES_PER_FIELD), dim=16,
                            dims=CRITEO_TABLE3_DIMS if table3_dims else None)
    model = build_model(spec, seed=0)
    with torch.no_grad():  # random, not the structured init: every weight matters to parity
        for p in model.parameters():
            if p.numel() < 50_000_000:
                p.normal_(0, 0.1)
    save_checkpoint(Checkpoint.from_model(model) if kind != "ffm" else lean_checkpoint(model), path, force=True)
    return {"parameters": model.num_parameters(), "seconds": time.perf_counter() - start,
            "checkpoint_bytes": path.stat().st_size}


def lean_checkpoint(model):
    """Checkpoint.from_model clones every tensor; at 3.2 GB share them instead."""
    from fm2onnx.checkpoint import Checkpoint

    return Checkpoint(model.spec, {k: v.detach() for k, v in model.state_dict().items()})


def export(checkpoint: Path, form: str) -> dict:
    from export import export_checkpoint

    start = time.perf_counter()
    result = export_checkpoint(checkpoint, checkpoint.with_suffix(".onnx"), form=form, force=True,
                               parity_rows=256)
    return {"seconds": time.perf_counter() - start, "log": result.log,
            "files": {p.name: p.stat().st_size for p in result.written}}


def latency(checkpoint: Path) -> dict:
    import numpy as np

    from export import CachedFormOptions, load_model, make_cached, save_model
    from export.ort import session
    from export.parity import parity_ids
    from fm2onnx.checkpoint import load_checkpoint

    models = sorted(checkpoint.parent.glob("*.onnx"))
    uncached = checkpoint.with_suffix(".uncached.onnx")
    if uncached.exists():
        graph = make_cached(load_model(uncached), CachedFormOptions(layout="pairs", pair_major=True)).model
        save_model(graph, checkpoint.with_suffix(".pair-major.onnx"))
        models.append(checkpoint.with_suffix(".pair-major.onnx"))
    spec = load_checkpoint(checkpoint).spec
    out = {}
    for path in models:
        sess = session(path)
        for batch, repeats in ((1, 300), (1024, 15)):
            ids = parity_ids(spec, batch)
            times = []
            for _ in range(repeats + 5):
                start = time.perf_counter()
                sess.run(None, {"feature_ids": ids})
                times.append(time.perf_counter() - start)
            out[f"{path.name} batch {batch}"] = float(np.median(times[5:]))
    return {"latency": out}


def child(args) -> None:
    if args.child == "make":
        out = make_checkpoint(args.kind, args.table3, Path(args.path))
    elif args.child == "latency":
        out = latency(Path(args.path))
    else:
        out = export(Path(args.path), args.form)
    out["peak_rss_gb"] = peak_rss_gb()
    print("RESULT " + json.dumps(out))


def run_child(*argv: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"child {argv} failed:\n{proc.stderr[-3000:]}")
    line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", default=list(SCENARIOS))
    parser.add_argument("--workdir", default=None, help="Where checkpoints and models go (default: a temp dir).")
    parser.add_argument("--latency", action="store_true", help="Also time onnxruntime at batch 1 and 1024.")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--kind", help=argparse.SUPPRESS)
    parser.add_argument("--table3", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--form", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        for name in args.scenarios:
            kind, table3, form = SCENARIOS[name]
            ckpt = Path(tmp) / f"{name}.pt"
            made = run_child("--child", "make", "--kind", kind, *(["--table3"] if table3 else []), "--path", str(ckpt))
            print(f"== {name}: {made['parameters']:,} parameters, checkpoint {made['checkpoint_bytes'] / 1e6:,.0f} MB "
                  f"(made in {made['seconds']:.0f} s)")
            exported = run_child("--child", "export", "--form", form, "--path", str(ckpt))
            for line in exported["log"]:
                if line.startswith(("exported", "parity", "  FLOPs", "  table bytes")):
                    print("   " + line.strip())
            for file, size in exported["files"].items():
                print(f"   {file:<28}{size / 1e6:>12,.1f} MB")
            print(f"   export: {exported['seconds']:.1f} s, peak RSS {exported['peak_rss_gb']:.2f} GB")
            if args.latency:
                for label, seconds in run_child("--child", "latency", "--path", str(ckpt))["latency"].items():
                    print(f"   onnxruntime {label:<36}{seconds * 1e6:>10,.0f} µs")
            for path in Path(tmp).iterdir():
                path.unlink()


if __name__ == "__main__":
    main()
