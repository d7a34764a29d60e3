"""Encoding throughput on a synthetic Criteo-format file.

    python bench/bench_encode.py                 # 2M rows, 3 runs, prints the median
    python bench/bench_encode.py --rows 500000 --runs 5 --min-rate 300000

Generates the file with the synth generator in a temporary directory (deleted afterwards unless
--keep), then times ``encode_file`` (count pass + encode pass) several times into fresh output
directories. Rates are rows / wall seconds; "total" covers the whole ``encode_file`` call. The CPU
column is process CPU seconds (all threads), useful when other jobs share the machine.
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
        fmt = get_format("criteo")
        results = []
        print(f"{'run':>3} {'count rows/s':>14} {'encode rows/s':>14} {'total rows/s':>14} {'wall s':>7} {'cpu s':>7}")
        for i in range(args.runs):
            out = os.path.join(work, f"encoded_{i}")
            shutil.rmtree(out, ignore_errors=True)
            c0, t0 = time.process_time(), time.perf_counter()
            ds = encode_file(src, fmt, out, progress=False, block_size=args.block_size, chunk_rows=args.chunk_rows)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            tm = ds.meta["timing"]
            rows = ds.rows
            r = (rows / tm["count_s"], rows / tm["encode_s"], rows / wall, wall, cpu)
            results.append(r)
            print(f"{i + 1:>3} {r[0]:>14,.0f} {r[1]:>14,.0f} {r[2]:>14,.0f} {r[3]:>7.2f} {r[4]:>7.2f}")
            del ds
            if not args.keep:
                shutil.rmtree(out, ignore_errors=True)
        med = [statistics.median(x[k] for x in results) for k in range(5)]
        print(f"med {med[0]:>14,.0f} {med[1]:>14,.0f} {med[2]:>14,.0f} {med[3]:>7.2f} {med[4]:>7.2f}")
        print(f"median total: {med[2]:,.0f} rows/s on {rows:,} rows ({os.cpu_count()} CPUs)")
        return 0 if med[2] >= args.min_rate else 1
    finally:
        if not args.keep and not args.dir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
