"""Run a serving bench: prepare each model's files, then measure every form at every thread count,
each in its own process (export/bench/child.py)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from fm2onnx.errors import Fm2OnnxError

from .prepare import CachedVariant, Prepared, prepare

DEFAULT_BATCHES = (1, 16, 64, 256, 1024)


@dataclass(frozen=True)
class BenchConfig:
    batches: tuple[int, ...] = DEFAULT_BATCHES
    threads: tuple[int, ...] = (1, 2)
    ids: str = "zipf"  # export/traffic.py
    seconds: float = 1.0  # per form, thread count and batch size, after warm-up
    min_runs: int = 400  # at small batches (a 20th of it, at least 5, at large ones)
    torch: bool = True  # also time torch eager from the checkpoint
    rounds: int = 1  # every form measured this many times, interleaved; the figures are medians over rounds
    huge_pages: bool = False  # also measure every form with glibc's malloc on transparent huge pages

    def __post_init__(self) -> None:
        if not self.batches or min(self.batches) < 1 or not self.threads or min(self.threads) < 1:
            raise Fm2OnnxError("batch sizes and thread counts must be >= 1")
        if self.rounds < 1:
            raise Fm2OnnxError("--rounds must be >= 1")
        if self.seconds <= 0 or self.min_runs < 1:
            raise Fm2OnnxError("--seconds must be > 0 and --min-runs >= 1")
        if self.huge_pages:
            require_huge_pages()


THP_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")
# glibc >= 2.35: malloc asks the kernel for transparent huge pages (madvise) for its large blocks, so the
# tables onnxruntime and torch allocate sit in 2 MB pages; no code change in the serving process.
HUGE_PAGES_ENV = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}
HUGE = "huge pages: "  # label prefix of the forms measured that way


def shown_form(form: str) -> str:
    """The table row of a measured form: the floor's two shapes share one."""
    prefix, base = (HUGE, form[len(HUGE):]) if form.startswith(HUGE) else ("", form)
    return prefix + ("floor" if base.startswith("floor ") else base)


def require_huge_pages() -> None:
    """--huge-pages: a one-line error unless the kernel hands out transparent huge pages."""
    mode = transparent_huge_pages()
    if mode in (None, "never"):
        raise Fm2OnnxError(f"--huge-pages needs Linux with transparent huge pages; {THP_SETTING} says "
                           f"{mode or 'nothing (no such file)'}")


def transparent_huge_pages() -> str | None:
    """The kernel's THP mode (always | madvise | never), None where there is no such setting."""
    try:
        text = THP_SETTING.read_text()
    except OSError:
        return None
    return next((word[1:-1] for word in text.split() if word.startswith("[")), None)


@dataclass
class Measurement:
    model: str
    form: str  # "torch eager", "uncached", "cached", "cached int8", "floor concat", ...
    threads: int
    p50_us: dict[int, float]  # per batch: median µs per batch
    p99_us: dict[int, float]
    runs: dict[int, int]
    load_mb: float
    peak_mb: float
    huge_mb: float = 0.0  # of the process's memory, how much sat in transparent huge pages at the end

    def us_per_row(self, batch: int) -> float:
        return self.p50_us[batch] / batch

    def rows_per_s(self, batch: int) -> float:
        return batch / self.p50_us[batch] * 1e6


@dataclass
class BenchResult:
    config: BenchConfig
    models: list[Prepared]
    measurements: list[Measurement] = field(default_factory=list)
    machine: dict = field(default_factory=dict)

    def find(self, model: str, form: str, threads: int) -> Measurement | None:
        """The measurement of a table row; for the floor, the faster of its shapes at each batch size."""
        shapes = [m for m in self.measurements
                  if m.model == model and m.threads == threads and shown_form(m.form) == form]
        if len(shapes) < 2:
            return shapes[0] if shapes else None
        best = {b: min(s.p50_us[b] for s in shapes) for b in shapes[0].p50_us}
        pick = {b: min(shapes, key=lambda s: s.p50_us[b]) for b in best}
        return Measurement(model, form, threads, best, {b: pick[b].p99_us[b] for b in best},
                           {b: pick[b].runs[b] for b in best}, max(s.load_mb for s in shapes),
                           max(s.peak_mb for s in shapes), min(s.huge_mb for s in shapes))


def machine_info() -> dict:
    import onnxruntime
    import torch

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    return {"cpu": cpu, "cores": os.cpu_count(), "load_1min_at_start": load, "onnxruntime": onnxruntime.__version__,
            "torch": torch.__version__, "python": platform.python_version(),
            "transparent_huge_pages": transparent_huge_pages()}


def run_child(job: dict, timeout: float, huge_pages: bool = False) -> dict:
    env = os.environ | HUGE_PAGES_ENV if huge_pages else None
    proc = subprocess.run([sys.executable, "-m", "export.bench.child", json.dumps(job)], capture_output=True,
                          text=True, timeout=timeout, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise Fm2OnnxError(f"measuring {job['path']} failed: {last}")
    return json.loads(lines[-1][len("RESULT "):])


def run_bench(models: list[tuple[str, Path]], variants: list[CachedVariant], config: BenchConfig, workdir: Path,
              echo=lambda line: None) -> BenchResult:
    result = BenchResult(config, [], machine=machine_info())
    for i, (name, checkpoint) in enumerate(models):
        echo(f"preparing {name}")
        prepared = prepare(checkpoint, workdir / f"model{i}", name, variants, echo)
        result.models.append(prepared)
        forms = ([("torch eager", "torch", prepared.checkpoint)] if config.torch else []) + \
            [(label, "onnx", path) for label, path in prepared.files.items()]
        forms = [(label, kind, path, False) for label, kind, path in forms] + \
            [(HUGE + label, kind, path, True) for label, kind, path in (forms if config.huge_pages else [])]
        taken: dict[tuple[str, int], list[dict]] = {}
        width = max([24] + [len(label) for label, *_ in forms])
        for round_ in range(config.rounds):  # interleaved, so a slow spell of the machine hits every form
            for threads in config.threads:
                for label, kind, path, huge in forms:
                    job = {"kind": kind, "path": str(path), "threads": threads, "batches": list(config.batches),
                           "ids": config.ids, "seconds": config.seconds, "min_runs": config.min_runs,
                           "vocab": prepared.vocab_sizes, "seed": round_}
                    budget = 60 + len(config.batches) * (config.seconds * 20 + 30)
                    taken.setdefault((label, threads), []).append(run_child(job, budget, huge))
                    m = combine(name, label, threads, taken[(label, threads)][-1:])
                    echo(f"  {label:<{width}} {threads} thread{'s' if threads > 1 else ' '}  batch {config.batches[0]} p50 "
                         f"{m.p50_us[config.batches[0]]:>10,.1f} µs   batch {config.batches[-1]} "
                         f"{m.rows_per_s(config.batches[-1]):>12,.0f} rows/s"
                         + (f"   (round {round_ + 1})" if config.rounds > 1 else ""))
        for (label, threads), raws in taken.items():
            result.measurements.append(combine(name, label, threads, raws))
    return result


def combine(model: str, form: str, threads: int, raws: list[dict]) -> Measurement:
    """One measurement from a child's figures over rounds: medians of the p50s and p99s, runs summed."""
    def per_batch(key: str, reduce) -> dict[int, float]:
        return {int(b): float(reduce([raw[key][b] for raw in raws])) for b in raws[0][key]}

    return Measurement(model, form, threads, per_batch("p50_us", np.median), per_batch("p99_us", np.median),
                       {b: int(v) for b, v in per_batch("runs", sum).items()},
                       max(raw["load_mb"] for raw in raws), max(raw["peak_mb"] for raw in raws),
                       min(raw.get("huge_mb", 0.0) for raw in raws))


def to_dict(result: BenchResult) -> dict:
    return {"config": asdict(result.config), "machine": result.machine,
            "models": [asdict(m) | {"checkpoint": str(m.checkpoint), "files": {k: str(v) for k, v in m.files.items()}}
                       for m in result.models],
            "measurements": [asdict(m) for m in result.measurements]}
