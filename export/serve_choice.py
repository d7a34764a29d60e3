"""``fm2onnx export --serve-batch N``: time the candidate graphs on this machine at batch N, keep the fastest.

Candidates: the uncached graph and the cached graph as asked for, plus, in the fields layout, the
``unlimited`` and ``min`` cache plans (fewest FLOPs vs. smallest tables: at large batches smaller
tables can win by staying in cache). The written model records the choice and every candidate's
median latency in its metadata (``serve_*`` keys).
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable


from models import ModelSpec

from .cached_form import CachedFormOptions, batched_label
from .model_io import load_model, save_model
from .contract import INPUT_NAME
from .ort import session
from .traffic import request_ids

SERVE_THREADS = 1
TIMING_SECONDS = 0.5  # per candidate, after warm-up


def serve_candidates(options: CachedFormOptions, batch: int) -> dict[str, CachedFormOptions]:
    """label -> options; a pairs-layout candidate rewrites the uncached graph, so it is the only one.
    Batches of 2 or more also time each plan's hybrid (batches on the GEMM form) unless ``batched``
    was asked for; one request never runs the GEMM branch."""
    if options.layout != "fields":
        return {f"cached {options.layout}": options}
    budgets = [options.cache_budget] + [b for b in ("unlimited", "min") if b != options.cache_budget]
    forms = [options.batched] if options.batched else ["cached", "gemm"] if batch > 1 else ["cached"]
    return {f"cached {budget_label(b)}{batched_label(form)}": replace(options, cache_budget=b, batched=form)
            for form in forms for b in budgets}


def budget_label(budget) -> str:
    return budget if isinstance(budget, str) and not budget[:1].isdigit() else f"budget {budget}"


def median_seconds(run: Callable[[], object], seconds: float = TIMING_SECONDS, min_runs: int = 5,
                   warmup: int = 3) -> float:
    for _ in range(warmup):
        run()
    times, spent = [], 0.0
    while spent < seconds or len(times) < min_runs:
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
        spent += times[-1]
    return statistics.median(times)


@dataclass
class Choice:
    label: str
    files: list[Path]
    timings_us: dict[str, float]  # label -> median µs per batch
    batch: int
    threads: int

    def write(self, path: Path, external_data_threshold: int) -> list[Path]:
        model = load_model(self.files[0])
        model.metadata_props.update({
            "serve_batch": str(self.batch), "serve_choice": self.label, "serve_threads": str(self.threads),
            "serve_timings_us": json.dumps({k: round(v, 2) for k, v in self.timings_us.items()}),
        })
        return save_model(model, path, external_data_threshold=external_data_threshold)


def choose_fastest(candidates: dict[str, list[Path]], spec: ModelSpec, batch: int,
                   report: Callable[[str], None], *, threads: int = SERVE_THREADS) -> Choice:
    # A pool of different requests, so no candidate times one batch of rows sitting in cache.
    pool = request_ids(spec.vocab_sizes, batch * max(8, 4096 // batch))
    feeds = [{INPUT_NAME: pool[i * batch:(i + 1) * batch]} for i in range(len(pool) // batch)]
    timings, width = {}, max(map(len, candidates))
    for label, files in candidates.items():
        sess = session(files[0], threads)
        turn = iter(range(1 << 62))
        timings[label] = median_seconds(lambda: sess.run(None, feeds[next(turn) % len(feeds)])) * 1e6
        del sess
        report(f"serve batch {batch}: {label:<{width}} {timings[label]:>12,.1f} µs per batch "
               f"({batch / timings[label] * 1e6:>12,.0f} rows/s, {threads} thread{'s' if threads > 1 else ''})")
    best = min(timings, key=timings.get)
    report(f"serve batch {batch}: writing {best}")
    return Choice(best, candidates[best], timings, batch, threads)

