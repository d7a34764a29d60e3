"""Data-parallel training throughput, and the cost of each way to all-reduce sparse embedding gradients.

    python bench/train_workers.py --data ENCODED_DIR                      # 1x1, 1x2, 2x1; 3 repeats
    python bench/train_workers.py --data ENCODED_DIR --configs 1x1,2x1 --repeats 5 --sparse-steps 0

Throughput: each configuration PxT (P worker processes x T torch threads each) runs the real command,
``fm2onnx train --data ENCODED_DIR --workers P --threads T --epochs E``, interleaved with the others
``--repeats`` times, so a slow spell of a shared machine hits each alike. Its rows/s is what the epoch
log records (training rows of all workers / the epoch's seconds, validation excluded); the table gives
the median over every epoch of every repeat and its ratio to the first configuration.

Sparse gradients (``--sparse-steps`` > 0): two gloo processes on this machine take the same batches of
the data (each half of a ``--batch-size`` global batch, the data's FmFM at ``--dim``), and each step
time every method of fm2onnx.distributed.reduce_sparse on the same gradients, interleaved; the median
milliseconds per step of each method, with the forward+backward it follows for scale.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from fm2onnx.data import EncodedDataset
from fm2onnx.distributed import (SPARSE_METHODS, World, local_sparse_grad, reduce_sparse, shard_batches,
                                 sparse_parameters)
from models import L2Config, ModelSpec, build_model


def parse_configs(text: str) -> list[tuple[int, int]]:
    try:
        configs = [tuple(int(v) for v in item.lower().split("x")) for item in text.split(",") if item.strip()]
    except ValueError:
        configs = []
    if not configs or any(len(c) != 2 or min(c) < 1 for c in configs):
        sys.exit(f"--configs {text!r}: expected PROCESSESxTHREADS, comma-separated, e.g. 1x1,1x2,2x1")
    return configs


def run_config(data: str, processes: int, threads: int, args, work: Path) -> tuple[list[float], float]:
    """One ``fm2onnx train`` run -> the rows/s of each epoch and the command's wall seconds."""
    out = work / f"{processes}x{threads}.pt"
    cmd = [sys.executable, "-m", "fm2onnx", "train", "--data", data, "--model", args.model, "--dim", str(args.dim),
           "--batch-size", str(args.batch_size), "--epochs", str(args.epochs), "--threads", str(threads),
           "--workers", str(processes), "-o", str(out), "--force", "--quiet"]
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    log = [json.loads(line) for line in out.with_name(out.name + ".log.jsonl").read_text().splitlines()]
    return [record["rows_per_s"] for record in log], wall


def throughput(args) -> list[dict]:
    configs = parse_configs(args.configs)
    rates = {c: [] for c in configs}
    walls = {c: [] for c in configs}
    with tempfile.TemporaryDirectory(prefix="fm2onnx-bench-workers-") as tmp:
        for repeat in range(args.repeats):
            for c in configs:
                epoch_rates, wall = run_config(args.data, *c, args, Path(tmp))
                rates[c] += epoch_rates
                walls[c].append(wall)
                print(f"repeat {repeat + 1}: {c[0]}x{c[1]} {statistics.median(epoch_rates):,.0f} rows/s "
                      f"({wall:.1f}s wall)", file=sys.stderr)
    base = statistics.median(rates[configs[0]])
    return [{"processes": p, "threads": t, "median_rows_per_s": statistics.median(rates[(p, t)]),
             "min": min(rates[(p, t)]), "max": max(rates[(p, t)]), "epochs_timed": len(rates[(p, t)]),
             "median_wall_s": statistics.median(walls[(p, t)]),
             "ratio": statistics.median(rates[(p, t)]) / base} for p, t in configs]


DUPLICATES_SENT = "gather, uncoalesced"


def sparse_worker(rank: int, init_file: str, args, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    torch.set_num_threads(1)
    dataset = EncodedDataset.open(args.data)
    pre = dataset.preprocessor
    spec = ModelSpec.create("fmfm", list(pre.field_names), list(pre.vocab_sizes), dim=args.dim)
    model = build_model(spec, sparse=True, seed=0)
    batches = shard_batches(dataset.ids, dataset.labels, dataset.indices("train"), args.batch_size,
                            np.random.default_rng(0), World(rank, 2))
    methods = [*SPARSE_METHODS, DUPLICATES_SENT]
    times = {m: [] for m in ("forward+backward", "local coalesce", *methods)}
    for step, (x, y) in zip(range(args.sparse_steps), batches):
        model.zero_grad(set_to_none=True)
        dist.barrier()
        t = time.perf_counter()
        logits, penalty = model.forward_with_penalty(x, L2Config(1e-6, 1e-6, 1e-6))
        (F.binary_cross_entropy_with_logits(logits, y) + penalty).backward()
        times["forward+backward"].append(time.perf_counter() - t)
        t = time.perf_counter()
        for p in sparse_parameters(model):  # what the optimizer does to a single process's gradient
            p.grad.coalesce()
        times["local coalesce"].append(time.perf_counter() - t)
        for method in methods[step % len(methods):] + methods[:step % len(methods)]:
            dist.barrier()
            t = time.perf_counter()
            if method == DUPLICATES_SENT:  # each row once per lookup, as backward leaves it
                reduced = reduce_sparse([p.grad for p in sparse_parameters(model)], 0.5, "gather")
            else:
                reduced = reduce_sparse([local_sparse_grad(p) for p in sparse_parameters(model)], 0.5, method)
            reduced = [g.coalesce() for g in reduced]  # as the optimizer will
            times[method].append(time.perf_counter() - t)
    if rank == 0:
        Path(out).write_text(json.dumps({m: 1000 * statistics.median(v) for m, v in times.items()}))
    dist.destroy_process_group()


def sparse_methods(args) -> dict:
    with tempfile.TemporaryDirectory(prefix="fm2onnx-bench-sparse-") as tmp:
        out = os.path.join(tmp, "times.json")
        mp.spawn(sparse_worker, args=(os.path.join(tmp, "init"), args, out), nprocs=2)
        return json.loads(Path(out).read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="an encoded data directory (fm2onnx encode)")
    ap.add_argument("--configs", default="1x1,1x2,2x1", help="PROCESSESxTHREADS, the first is the baseline")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--model", default="fmfm")
    ap.add_argument("--dim", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=2048)
    ap.add_argument("--sparse-steps", type=int, default=60, help="steps timed per sparse method (0: skip)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    report = {"command": sys.argv, "sparse_ms_per_step": sparse_methods(args) if args.sparse_steps else None,
              "throughput": throughput(args) if args.repeats else None}
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    if report["sparse_ms_per_step"]:
        print(f"2 processes, global batch {args.batch_size}: median ms per step")
        for method, ms in report["sparse_ms_per_step"].items():
            print(f"  {method:>17} {ms:8.2f}")
    for row in report["throughput"] or []:
        print(f"{row['processes']} process(es) x {row['threads']} thread(s): {row['median_rows_per_s']:>9,.0f} rows/s "
              f"(min {row['min']:,.0f}, max {row['max']:,.0f}, {row['epochs_timed']} epochs)  "
              f"{row['ratio']:.2f}x  wall {row['median_wall_s']:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
