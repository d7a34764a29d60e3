"""Peak RSS and rows/s of ``fm2onnx train`` (one epoch) and ``fm2onnx evaluate`` for every model kind.

    python bench/train_memory.py --workdir /tmp/fm2onnx-mem                      # 50k rows, all kinds
    python bench/train_memory.py --baseline /other/venv/bin/fm2onnx ...          # against another install

Generates Criteo-shaped rows with ``fm2onnx synth`` once (kept in --workdir, so runs share the data),
encodes them once, then runs each measurement as a fresh process capped with ``prlimit --as=CAP``, so
a runaway model fails alone instead of exhausting the machine. With --baseline, each kind is measured
on the baseline installation right after this one, so load from other jobs hits both alike; both
evaluate this run's checkpoint.

Columns: peak RSS is the child's ru_maxrss (os.wait4); "idle" is the peak of ``fm2onnx info`` on the
same checkpoint (interpreter, torch and the model loaded, nothing scored), so peak minus idle is the
working memory the budget bounds. Train rows/s is the epoch's own figure from the epoch log (the
training loop alone, wall clock); train rows/CPU-s times one more epoch of the same loop in CPU seconds
(a separate process, same data and seed); evaluate rows/s is rows over the command's CPU seconds (start-up,
encoding through the checkpoint's vocabularies, scoring), which other jobs on the machine disturb less
than wall time. Prints a markdown table.

Only the standard library is used here, so the script measures whichever installation --fm2onnx names.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KINDS = ("lr", "fm", "ffm", "fwfm", "fvfm", "fmfm")


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=50_000, help="synthetic Criteo-shaped rows")
    ap.add_argument("--eval-rows", type=int, default=None, help="evaluate on the first N rows only")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--dim", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=2048)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cap", type=float, default=8e9, help="address-space cap per measured process, bytes")
    ap.add_argument("--memory-budget", default=None, help="passed to this installation's train and evaluate")
    ap.add_argument("--workdir", default=None, help="data and checkpoints (default: a new temporary directory)")
    ap.add_argument("--fm2onnx", default=str(Path(sys.executable).with_name("fm2onnx")),
                    help="the fm2onnx executable to measure (default: the one beside this Python)")
    ap.add_argument("--baseline", default=None, help="another fm2onnx executable, measured the same way")
    return ap.parse_args(argv)


def measure(cmd: list[str], cap: float) -> dict:
    """Run ``cmd`` under an address-space cap: exit status, wall and CPU seconds, peak RSS, last stderr line."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(["prlimit", f"--as={int(cap)}", "--", *cmd], stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        lines = err.read().decode(errors="replace").strip().splitlines()
    error = lines[-1] if lines else ""
    over_cap = proc.returncode < 0 or "allocate" in error or "MemoryError" in error
    return {"ok": proc.returncode == 0, "code": proc.returncode, "seconds": seconds, "over_cap": over_cap,
            "cpu_seconds": usage.ru_utime + usage.ru_stime, "peak_rss": usage.ru_maxrss * 1024, "error": error,
            "stdout": stdout}


def prepare_data(args, work: Path) -> tuple[Path, Path]:
    text = work / f"criteo_{args.rows}.txt"
    encoded = work / f"criteo_{args.rows}.enc"
    if not text.exists():
        subprocess.run([args.fm2onnx, "synth", "--rows", str(args.rows), "--format", "criteo", "-o", str(text),
                        "--quiet"], check=True, stdout=sys.stderr)
    if not encoded.exists():
        subprocess.run([args.fm2onnx, "encode", str(text), "-o", str(encoded), "--quiet"], check=True, stdout=sys.stderr)
    eval_text = text
    if args.eval_rows:
        eval_text = work / f"criteo_{args.rows}.head{args.eval_rows}.txt"
        with open(text) as src, open(eval_text, "w") as dst:
            for _, line in zip(range(args.eval_rows), src):
                dst.write(line)
    return encoded, eval_text


def train_once(args, exe: str, budget: list[str], kind: str, encoded: Path, ckpt: Path) -> dict:
    log = ckpt.with_name(ckpt.name + ".log.jsonl")
    cmd = [exe, "train", "--data", str(encoded), "--model", kind, "--dim", str(args.dim), "--epochs", "1",
           "--batch-size", str(args.batch_size), "--threads", str(args.threads), "-o", str(ckpt), "--log", str(log),
           "--force", "--quiet", *budget]
    result = measure(cmd, args.cap)
    if result["ok"]:
        result["rows_per_s"] = json.loads(log.read_text().splitlines()[-1])["rows_per_s"]
    return result


# One epoch of the training loop alone, timed in CPU seconds (with one thread, other jobs on the
# machine stretch wall time but hardly the CPU time a step takes); the same calls on either installation.
EPOCH_CPU = """
import json, sys, time
import numpy as np
from fm2onnx.data import EncodedDataset
from fm2onnx.train import TrainConfig, make_optimizers, run_epoch, set_threads
from models import ModelSpec, build_model
path, kind, dim, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
dataset = EncodedDataset.open(path)
spec = ModelSpec.create(kind, list(dataset.field_names), list(dataset.vocab_sizes), dim=dim)
config = TrainConfig(batch_size=batch, threads=1)
set_threads(1)
model = build_model(spec, sparse=True, seed=0)
optimizers = make_optimizers(model, config)
rows = dataset.indices("train")
cpu = time.process_time()
run_epoch(model, optimizers, dataset, rows, config, np.random.default_rng(0), "", False)
print(json.dumps({"rows": len(rows), "cpu_seconds": time.process_time() - cpu}))
"""


def epoch_cpu_once(args, exe: str, kind: str, encoded: Path) -> dict:
    python = str(Path(exe).with_name("python"))
    result = measure([python, "-c", EPOCH_CPU, str(encoded), kind, str(args.dim), str(args.batch_size)], args.cap)
    if result["ok"]:
        timing = json.loads(result["stdout"].strip().splitlines()[-1])
        result["rows_per_s"] = timing["rows"] / timing["cpu_seconds"]
    return result


def evaluate_once(args, exe: str, budget: list[str], ckpt: Path, eval_text: Path, rows: int) -> dict:
    cmd = [exe, "evaluate", str(ckpt), "--data", str(eval_text), "--quiet", "--json", *budget]
    result = measure(cmd, args.cap)
    if result["ok"]:
        result["rows_per_s"] = rows / result["cpu_seconds"]
    return result


def gib(size: float) -> str:
    return f"{size / 2**30:.2f}"


def cell(result: dict | None, what: str, cap: float) -> str:
    if result is None:
        return "–"
    if not result["ok"]:
        return f"over the {gib(cap)} GiB cap" if result["over_cap"] else f"failed (exit {result['code']})"
    if what == "rss":
        return gib(result["peak_rss"])
    return f"{result['rows_per_s']:,.0f}"


def measure_kind(args, kind: str, work: Path, encoded: Path, eval_text: Path, eval_rows: int) -> list[dict]:
    """This installation, then the baseline: train one epoch, then evaluate this run's checkpoint."""
    ckpt = work / f"{kind}.pt"
    runs = []
    installs = [("this", args.fm2onnx, ["--memory-budget", args.memory_budget] if args.memory_budget else [])]
    if args.baseline:
        installs.append(("baseline", args.baseline, []))
    for label, exe, budget in installs:
        own = ckpt if label == "this" else work / f"{kind}.{label}.pt"
        trained = train_once(args, exe, budget, kind, encoded, own)
        evaluated = evaluate_once(args, exe, budget, ckpt, eval_text, eval_rows) if ckpt.exists() else None
        idle = measure([exe, "info", str(ckpt)], args.cap) if ckpt.exists() else None
        epoch = epoch_cpu_once(args, exe, kind, encoded)
        for what, result in (("train", trained), ("evaluate", evaluated), ("epoch", epoch)):
            if result is not None and not result["ok"]:
                print(f"{kind} {label} {what}: exit {result['code']}: {result['error']}", file=sys.stderr)
        runs.append({"label": label, "train": trained, "evaluate": evaluated, "idle": idle, "epoch": epoch})
    return runs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("prlimit") is None:
        sys.exit("prlimit (util-linux) is needed to cap each measured process")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="fm2onnx-mem-"))
    work.mkdir(parents=True, exist_ok=True)
    encoded, eval_text = prepare_data(args, work)
    eval_rows = sum(1 for _ in open(eval_text))
    print(f"| kind | code | checkpoint MiB | idle GiB | train peak GiB | train rows/s | train rows/CPU-s | "
          f"evaluate peak GiB ({eval_rows:,} rows) | evaluate rows/CPU-s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for kind in args.kinds.split(","):
        ckpt = work / f"{kind}.pt"
        for run in measure_kind(args, kind, work, encoded, eval_text, eval_rows):
            size = f"{ckpt.stat().st_size / 2**20:.1f}" if ckpt.exists() else "–"
            cells = [cell(run[step], what, args.cap) for step, what in
                     (("idle", "rss"), ("train", "rss"), ("train", "speed"), ("epoch", "speed"),
                                   ("evaluate", "rss"), ("evaluate", "speed"))]
            print(f"| {kind} | {run['label']} | {size} | {' | '.join(cells)} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
