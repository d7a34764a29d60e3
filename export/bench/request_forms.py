"""The request bench's forms and requests: what one process times, here or in a worker of its own.

Every form runs the same requests (one context, N candidates drawn from ``export/traffic.py``). A
``FormsJob`` names the files and fields; ``LocalForms`` times them in this process, slice by slice;
``WorkerForms`` times them in a child process started with another environment (glibc's malloc on
huge pages, which a process takes only at its start: export/bench/request_worker.py), so the parent
can interleave the two sets' slices and a slow spell of a shared machine hits both alike.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from fm2onnx.checkpoint import load_checkpoint
from fm2onnx.errors import Fm2OnnxError
from models import ModelSpec

from ..contract import CANDIDATES_INPUT, CONTEXT_INPUT, INPUT_NAME, FieldRoles
from ..ort import session
from ..traffic import request_ids
from .child import measure

REQUEST, FULL, TORCH = "request graph", "full rows (default export)", "full rows (torch eager)"
FLOOR = "request floor (no item products)"  # export/bench/request_floor.py
POOL = 16  # different requests per size, so repeated runs do not read the same rows from cache
WARMUP = 2  # runs before each slice's timed ones: the other forms' slices have just evicted this one's rows

Key = tuple[str, str, int]  # (split, form, N)


@dataclass(frozen=True)
class Request:
    context: np.ndarray  # [1, n_context]
    candidates: np.ndarray  # [N, n_item]
    rows: np.ndarray  # [N, n_fields]: the same as full rows


@dataclass(frozen=True)
class FormsJob:
    """What to time: the files of every form, each split's item fields, the N and the ids' distribution."""

    checkpoint: str
    full: str  # the default export
    graphs: dict[str, str]  # split -> its request graph
    floors: dict[str, str]  # split -> its floor graph (none for FFM and LR)
    items: dict[str, list[str]]  # split -> item field names
    candidates: tuple[int, ...]
    ids: str
    torch: bool


def request_pool(spec: ModelSpec, roles: FieldRoles, n: int, distribution: str) -> list[Request]:
    ids = request_ids(spec.vocab_sizes, POOL * (n + 1), distribution, seed=n)
    pool = []
    for k in range(POOL):
        block = ids[k * (n + 1):(k + 1) * (n + 1)]
        context, candidates = block[:1, list(roles.context)], block[1:, list(roles.items)]
        pool.append(Request(context, candidates, roles.full_rows(context, candidates)))
    return pool


def request_runner(path, threads: int):
    sess = session(path, threads)
    return lambda r: sess.run(None, {CONTEXT_INPUT: r.context, CANDIDATES_INPUT: r.candidates})


def full_row_runner(path, threads: int):
    sess = session(path, threads)
    return lambda r: sess.run(None, {INPUT_NAME: r.rows})


def torch_runner(checkpoint, threads: int):
    import torch

    torch.set_num_threads(threads)
    model = load_checkpoint(checkpoint).model().eval()

    def run(r: Request):
        with torch.inference_mode():
            return model(torch.from_numpy(r.rows))

    return run


@dataclass
class LocalForms:
    """Every form of ``job`` at ``threads``, loaded in this process."""

    job: FormsJob
    threads: int
    runners: dict[tuple[str, str], Callable] = field(init=False)
    pools: dict[tuple[str, int], list[Request]] = field(init=False)

    def __post_init__(self) -> None:
        job, threads = self.job, self.threads
        spec = load_checkpoint(job.checkpoint).spec
        self.runners = {(split, REQUEST): request_runner(path, threads) for split, path in job.graphs.items()}
        self.runners |= {(split, FLOOR): request_runner(path, threads) for split, path in job.floors.items()}
        self.runners |= {(split, FULL): full_row_runner(job.full, threads) for split in job.graphs}
        if job.torch:
            self.runners |= {(split, TORCH): torch_runner(job.checkpoint, threads) for split in job.graphs}
        self.pools = {(split, n): request_pool(spec, FieldRoles.of_names(spec, None, job.items[split]), n, job.ids)
                      for split in job.graphs for n in job.candidates}

    def slice(self, seconds: float, min_runs: int) -> dict[Key, list[float]]:
        """Every form at every N for ``seconds`` each and at least ``min_runs`` runs: each run's seconds."""
        return {(split, form, n): measure(run, self.pools[(split, n)], seconds, min_runs, warmup=WARMUP)
                for (split, form), run in self.runners.items() for n in self.job.candidates}


class WorkerForms:
    """The same forms in a child process started with ``env`` added; their keys' forms get ``prefix``."""

    def __init__(self, job: FormsJob, threads: int, env: dict[str, str], prefix: str) -> None:
        self.prefix, self.errors = prefix, tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "export.bench.request_worker", json.dumps(asdict(job)),
                                      str(threads)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.errors, text=True, env=os.environ | env)
        ready = self.reply()
        self.huge_pages_mb = float(ready["huge_pages_mb"])

    def reply(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            self.errors.seek(0)
            last = (self.errors.read().strip().splitlines() or ["no output"])[-1]
            self.close()
            raise Fm2OnnxError(f"the bench's {self.prefix.rstrip(': ')} worker stopped: {last}")
        return json.loads(line)

    def slice(self, seconds: float, min_runs: int) -> dict[Key, list[float]]:
        self.proc.stdin.write(json.dumps({"seconds": seconds, "min_runs": min_runs}) + "\n")
        self.proc.stdin.flush()
        return {(split, self.prefix + form, n): times for split, form, n, times in self.reply()["times"]}

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()  # the worker's loop ends with its input
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.errors.close()
