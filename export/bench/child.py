"""One measurement in a fresh process: a model (onnxruntime session or torch eager) at one thread count,
every batch size, and the process's peak memory above what it held before loading the model.

    python -m export.bench.child '<json job>'   ->  last stdout line: RESULT <json>

A fresh process per job keeps one model's tables, arenas and thread pools from colouring the next
one's figures. Each batch size runs on a pool of different request batches (``export/traffic.py``),
so repeated runs do not read the same rows from cache.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np


def rss_mb(field: str = "VmRSS") -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def huge_pages_mb() -> float:
    """Anonymous memory in transparent huge pages (``bench --huge-pages``); 0 where the kernel does not say."""
    try:
        with open("/proc/self/smaps_rollup") as f:
            return next((int(line.split()[1]) / 1024 for line in f if line.startswith("AnonHugePages:")), 0.0)
    except OSError:
        return 0.0


def batches_of(vocab, batch: int, distribution: str, seed: int) -> list[np.ndarray]:
    from export.traffic import request_ids

    count = 4096 if batch == 1 else max(4, 8192 // batch)
    pool = request_ids(vocab, batch * count, distribution, seed)
    return [pool[i * batch:(i + 1) * batch] for i in range(count)]


def measure(run, batches: list[np.ndarray], seconds: float, min_runs: int, warmup: int) -> list[float]:
    for i in range(warmup):
        run(batches[i % len(batches)])
    times, spent, i = [], 0.0, 0
    while (spent < seconds or len(times) < min_runs) and len(times) < 100_000:
        ids = batches[i % len(batches)]
        start = time.perf_counter()
        run(ids)
        times.append(time.perf_counter() - start)
        spent += times[-1]
        i += 1
    return times


def onnx_runner(path: str, threads: int):
    from ..ort import session

    sess = session(path, threads)
    name = sess.get_inputs()[0].name
    return lambda ids: sess.run(None, {name: ids})


def torch_runner(path: str, threads: int):
    import torch

    from fm2onnx.checkpoint import load_checkpoint

    torch.set_num_threads(threads)
    model = load_checkpoint(path).model()

    def run(ids):
        with torch.inference_mode():
            return model(torch.from_numpy(ids))

    return run


def main(job: dict) -> dict:
    if job["kind"] == "torch":
        import torch  # noqa: F401  (imported before the baseline: the session's memory is what it adds)
    else:
        import onnxruntime  # noqa: F401
    before = rss_mb()
    run = (torch_runner if job["kind"] == "torch" else onnx_runner)(job["path"], job["threads"])
    loaded = rss_mb()
    out = {"p50_us": {}, "p99_us": {}, "runs": {}}
    for batch in job["batches"]:
        pool = batches_of(job["vocab"], batch, job["ids"], job.get("seed", 0))
        small = batch <= 16
        times = measure(run, pool, job["seconds"], job["min_runs"] if small else max(5, job["min_runs"] // 20),
                        warmup=20 if small else 3)
        micro = np.array(times) * 1e6
        out["p50_us"][str(batch)] = float(np.median(micro))
        out["p99_us"][str(batch)] = float(np.percentile(micro, 99))
        out["runs"][str(batch)] = len(times)
    out["load_mb"] = loaded - before
    out["peak_mb"] = rss_mb("VmHWM") - before
    out["huge_mb"] = huge_pages_mb()
    return out


if __name__ == "__main__":
    result = main(json.loads(sys.argv[1]))
    print("RESULT " + json.dumps(result))
