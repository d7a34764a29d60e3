"""``fm2onnx bench --request C:I``: a request's candidates scored by the request graph, against the
same candidates scored as full rows by the default export and by torch eager, in one process; and the
request graph's floor (export/bench/request_floor.py: the same reads, no item products), which says how
much of a request's time is the item pairs' arithmetic. With --huge-pages, every form again in a worker
process whose malloc puts the tables in transparent huge pages.

Every form runs the same requests (one context, N candidates drawn from ``export/traffic.py``; the forms:
export/bench/request_forms.py); the forms take turns in short slices within each round and the figures
are medians over rounds, so a slow spell of a shared machine hits every form alike. Latency is per
request (all N candidates); candidates per second is N over the median request latency.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from fm2onnx.checkpoint import load_checkpoint
from fm2onnx.errors import Fm2OnnxError
from models import ModelSpec
from models.spec import FIELD_MATRIX_KIND

from ..contract import FieldRoles
from ..folds import FieldWeights
from ..model_io import save_model
from ..pipeline import export_checkpoint
from ..request_export import export_request
from ..request_graph_fm import SUM_KINDS
from .request_floor import request_floor_graph
from .request_forms import FormsJob, LocalForms, WorkerForms
from .run import HUGE, HUGE_PAGES_ENV, require_huge_pages

SPLITS = ("largest", "smallest")  # the item fields: those with the most features, or the fewest
# Within a round the forms take turns in this many slices of its time: a shared host's slow spells last
# about a second, so a form timed in one stretch could spend all of it in one while the next form did not
SLICES = 5


@dataclass(frozen=True)
class RequestBenchConfig:
    context_count: int
    item_count: int
    candidates: tuple[int, ...] = (10, 100, 1000)
    splits: tuple[str, ...] = SPLITS
    threads: tuple[int, ...] = (1, 2)
    seconds: float = 0.5  # per form, split, thread count and size, in each round
    rounds: int = 3
    torch: bool = True
    ids: str = "zipf"
    huge_pages: bool = False  # also time every form in a process whose malloc uses transparent huge pages

    def check(self, spec: ModelSpec) -> None:
        if self.context_count < 1 or self.item_count < 1 or self.context_count + self.item_count != spec.num_fields:
            raise Fm2OnnxError(f"--request {self.context_count}:{self.item_count}: the context and item field "
                               f"counts must be >= 1 and add up to the model's {spec.num_fields} fields")
        self.check_options()

    def check_options(self) -> None:
        """What can be refused before a model is made or loaded."""
        unknown = [s for s in self.splits if s not in SPLITS]
        if unknown or not self.splits:
            raise Fm2OnnxError(f"unknown --item-split {','.join(unknown)!r}; expected {' and/or '.join(SPLITS)}")
        if not self.candidates or min(self.candidates) < 1 or self.rounds < 1 or self.seconds <= 0:
            raise Fm2OnnxError("--candidates must be >= 1, --rounds >= 1 and --seconds > 0")
        if self.huge_pages:
            require_huge_pages()


@dataclass(frozen=True)
class RequestTiming:
    split: str
    form: str
    threads: int
    candidates: int
    p50_us: float  # per request, median over rounds of each round's median
    p99_us: float  # per request, median over rounds of each round's 99th percentile

    @property
    def candidates_per_s(self) -> float:
        return self.candidates / self.p50_us * 1e6


@dataclass
class RequestBenchResult:
    model: str
    spec: ModelSpec
    config: RequestBenchConfig
    items: dict[str, list[str]]  # split -> item field names
    parity: dict[str, str]  # split -> the export gate's parity line
    timings: list[RequestTiming]
    huge_pages_mb: float | None = None  # with --huge-pages: the least any huge-pages worker held in them

    def forms(self, base: tuple[str, ...]) -> list[str]:
        """``base`` forms, then (--huge-pages) the same forms on huge pages."""
        return list(base) + ([HUGE + form for form in base] if self.config.huge_pages else [])

    def find(self, split: str, form: str, threads: int, candidates: int) -> RequestTiming | None:
        return next((t for t in self.timings if (t.split, t.form, t.threads, t.candidates)
                     == (split, form, threads, candidates)), None)

    def to_dict(self) -> dict:
        return {"model": self.model, "config": asdict(self.config), "items": self.items, "parity": self.parity,
                "timings": [asdict(t) | {"candidates_per_s": t.candidates_per_s} for t in self.timings],
                "huge_pages_mb": self.huge_pages_mb}


def item_fields(spec: ModelSpec, count: int, split: str) -> list[str]:
    """The ``count`` fields with the most (``largest``) or fewest features, in the model's field order."""
    ranked = sorted(range(spec.num_fields), key=lambda f: (-spec.vocab_sizes[f] if split == "largest"
                                                           else spec.vocab_sizes[f], f))
    return [spec.field_names[f] for f in sorted(ranked[:count])]


def run_request_bench(name: str, checkpoint: Path, config: RequestBenchConfig, workdir: Path,
                      echo: Callable[[str], None]) -> RequestBenchResult:
    spec = load_checkpoint(checkpoint).spec
    config.check(spec)
    full = workdir / f"{checkpoint.stem}.full.onnx"
    export_checkpoint(checkpoint, full, force=True)
    result = RequestBenchResult(name, spec, config, {}, {}, [])
    graphs, floors = {}, {}
    # the floor leaves out the GEMM form's item products, which FFM's, FM's and LR's request graphs do not have
    has_floor = FIELD_MATRIX_KIND[spec.kind] and spec.kind not in SUM_KINDS
    weights = FieldWeights.of_model(load_checkpoint(checkpoint).model()) if has_floor else None
    for split in config.splits:
        result.items[split] = item_fields(spec, config.item_count, split)
        lines: list[str] = []
        graphs[split] = workdir / f"{checkpoint.stem}.request-{split}.onnx"
        export_request(checkpoint, graphs[split], context=None, items=result.items[split], force=True,
                       echo=lines.append)
        result.parity[split] = next(line for line in lines if line.startswith("parity"))
        echo(f"{split} {config.item_count} fields as items ({', '.join(result.items[split])}): {result.parity[split]}")
        if weights is not None:
            floors[split] = workdir / f"{checkpoint.stem}.floor-{split}.onnx"
            roles = FieldRoles.of_names(spec, None, result.items[split])
            save_model(request_floor_graph(weights, roles), floors[split])
    job = FormsJob(str(checkpoint), str(full), {k: str(v) for k, v in graphs.items()},
                   {k: str(v) for k, v in floors.items()}, result.items, config.candidates, config.ids, config.torch)
    for threads in config.threads:
        result.timings += time_forms(job, result, threads, echo)
    return result


def time_forms(job: FormsJob, result: RequestBenchResult, threads: int,
               echo: Callable[[str], None]) -> list[RequestTiming]:
    """Every form at ``threads`` (and with --huge-pages, every form again in a worker on huge pages),
    interleaved within each round; medians over rounds."""
    config = result.config
    with contextlib.ExitStack() as stack:
        sets: list[LocalForms | WorkerForms] = [LocalForms(job, threads)]
        if config.huge_pages:
            worker = WorkerForms(job, threads, HUGE_PAGES_ENV, HUGE)
            stack.callback(worker.close)
            held = worker.huge_pages_mb
            result.huge_pages_mb = held if result.huge_pages_mb is None else min(result.huge_pages_mb, held)
            sets.append(worker)
        samples: dict[tuple, list[tuple[float, float]]] = {}
        for round_ in range(config.rounds):
            times: dict[tuple, list[float]] = {}
            for _ in range(SLICES):
                for forms in sets:
                    for key, got in forms.slice(config.seconds / SLICES, 20 // SLICES).items():
                        times.setdefault(key, []).extend(got)
            for key, got in times.items():
                samples.setdefault(key, []).append((np.median(got) * 1e6, np.percentile(got, 99) * 1e6))
            echo(f"threads {threads}: round {round_ + 1}/{config.rounds} done")
    return [RequestTiming(split, form, threads, n, float(np.median([s[0] for s in got])),
                          float(np.median([s[1] for s in got]))) for (split, form, n), got in samples.items()]
