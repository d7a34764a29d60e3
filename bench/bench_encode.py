"""Encoding throughput on a synthetic Criteo-format file, serial against worker processes.

    python bench/bench_encode.py                 # 2M rows, --jobs 1 and 2, 3 runs each, medians
    python bench/bench_encode.py --rows 500000 --runs 5 --jobs 1 --min-rate 300000

Generates the file with the synth generator in a temporary directory (deleted afterwards unless
--keep), then times ``encode_file`` (count pass + encode pass) for each --jobs value in turn, run
after run (so a change in the machine's load touches every setting alike), into fresh output
directories. Rates are rows / wall seconds; "total" covers the whole ``encode_file`` call, and the
closing lines give each setting's median and its ratio to the first --jobs value's. The CPU column
is CPU seconds of this process (all threads) plus its encoding workers: on a machine other jobs
share, it shows what the processes cost when wall time cannot; peak MB is the larger of this
process's peak RSS during the run and the largest worker's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

from fm2onnx.data import encode_file, get_format
from fm2onnx.data.synth import synthesize


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dir", help="work directory (default: a new temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep the generated file and outputs")
    ap.add_argument("--min-rate", type=float, default=0.0, help="exit 1 if the median total rate is lower")
    ap.add_argument("--block-size", type=int, default=None, help="CSV reader block size in bytes")
    ap.add_argument("--chunk-rows", type=int, default=None, help="rows per processing chunk")
    ap.add_argument("--jobs", default="1,2", help="comma-separated --jobs values to compare (the first is the "
                    "baseline)")
    args = ap.parse_args(argv)

    work = args.dir or tempfile.mkdtemp(prefix="fm2onnx-bench-")
    os.makedirs(work, exist_ok=True)
    src = os.path.join(work, f"criteo_synth_{args.rows}.txt")
    try:
        if not os.path.exists(src):
            t = time.perf_counter()
            synthesize(src, rows=args.rows, fmt="criteo", seed=args.seed, progress=True)
            print(f"generated {src} ({os.path.getsize(src) / 1e6:.0f} MB) in {time.perf_counter() - t:.1f}s",
                  file=sys.stderr)
        jobs = [int(j) for j in args.jobs.split(",")]
        results: dict[int, list[tuple]] = {j: [] for j in jobs}
        print(f"{'jobs':>4} {'run':>3} {'count rows/s':>13} {'encode rows/s':>14} {'total rows/s':>13} "
              f"{'wall s':>7} {'cpu s':>6} {'peak MB':>8}")
        for i in range(args.runs):
            for j in jobs:
                r = timed_encode(src, os.path.join(work, f"encoded_{j}_{i}"), j, args)
                results[j].append(r)
                print(f"{j:>4} {i + 1:>3} {r[0]:>13,.0f} {r[1]:>14,.0f} {r[2]:>13,.0f} {r[3]:>7.2f} {r[4]:>6.2f} "
                      f"{r[5]:>8,.0f}")
        base = statistics.median(x[2] for x in results[jobs[0]])
        for j in jobs:
            med = [statistics.median(x[k] for x in results[j]) for k in range(6)]
            print(f"median --jobs {j}: count {med[0]:,.0f}, encode {med[1]:,.0f}, total {med[2]:,.0f} rows/s "
                  f"({med[2] / base:.2f}x --jobs {jobs[0]}), wall {med[3]:.2f}s, cpu {med[4]:.2f}s, "
                  f"peak {med[5]:,.0f} MB")
        print(f"{args.rows:,} rows, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end")
        return 0 if statistics.median(x[2] for x in results[jobs[-1]]) >= args.min_rate else 1
    finally:
        if not args.keep and not args.dir:
            shutil.rmtree(work, ignore_errors=True)


def timed_encode(src: str, out: str, jobs: int, args) -> tuple:
    """(count, encode, total rows/s, wall s, cpu s, peak MB) of one ``encode_file`` into ``out`` (then deleted
    unless --keep)."""
    shutil.rmtree(out, ignore_errors=True)
    reset_peak_rss()
    c0, t0 = time.process_time(), time.perf_counter()
    ds = encode_file(src, get_format("criteo"), out, progress=False, block_size=args.block_size,
                     chunk_rows=args.chunk_rows, jobs=jobs)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    tm, rows = ds.meta["timing"], ds.rows
    peak = max(tm["worker_peak_rss_mb"] or 0, peak_rss_since_reset())
    del ds
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
    return rows / tm["count_s"], rows / tm["encode_s"], rows / wall, wall, cpu + tm["worker_cpu_s"], peak


def reset_peak_rss() -> None:
    """Start this process's peak-RSS count afresh (Linux), so each run reports its own."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_since_reset() -> float:
    """MB: VmHWM of /proc/self/status (what :func:`reset_peak_rss` reset)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


if __name__ == "__main__":
    sys.exit(main())
