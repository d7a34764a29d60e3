"""Counting a large text file in worker processes, one line-aligned byte range (span) each.

Each worker parses, validates and counts its span exactly as the serial pass does, writing its rows'
chunk-local codes and labels into a part folder inside the staged output (:mod:`.local_codes`), and
returns its per-field counts of training-split tokens. The parent merges the counts in file order --
the vocabularies only depend on the summed counts -- and rewrites each part's codes as ids into the
dataset, so the result is the serial one bit for bit.

A row's split is a hash of its index among the kept rows, which a worker knows only from the rows
before its span: it assumes every earlier line is a row (so it is unless bad rows are skipped), and
a span whose assumption proves wrong is counted again with its true first row.

Workers ignore Ctrl-C (the parent stops them); a worker that dies (killed, out of memory) fails the
run with one line, and the staged output, parts included, is deleted by the caller.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import shutil
import signal
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa

from ..errors import Fm2OnnxError
from ..interrupt import handled_signals
from ..progress import Progress
from .npy import NpyAppender
from .reader import ChunkReader, Span, is_compressed

__all__ = ["physical_cores", "resolve_jobs", "line_spans", "count_newlines", "run_parts", "peak_rss_mb", "PartJob",
           "PartResult", "PartWriter", "SlotProgress", "clear_part"]

MIN_SPAN_BYTES = 16 << 20  # smaller spans cost more in process start-up than they save
_progress_slots: Any = None  # per worker process: the shared [rows, bytes] counters of every span


def physical_cores() -> int:
    """Cores this process may run on, not hardware threads: the two threads of one core share its
    floating-point units, so a second torch thread per core slows training down."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return max(1, (os.cpu_count() or 2) // 2)
    cores = set()
    for cpu in cpus:
        topology = f"/sys/devices/system/cpu/cpu{cpu}/topology/"
        try:
            with open(topology + "core_id") as a, open(topology + "physical_package_id") as b:
                cores.add((a.read().strip(), b.read().strip()))
        except OSError:
            cores.add((str(cpu), ""))
    return max(1, len(cores))


def resolve_jobs(jobs: int | None) -> int:
    """Worker processes: ``jobs``, or one per physical core when None."""
    if jobs is None:
        return physical_cores()
    if isinstance(jobs, bool) or not isinstance(jobs, (int, np.integer)) or jobs < 1:
        raise Fm2OnnxError(f"--jobs must be a positive integer, got {jobs!r}")
    return int(jobs)


def line_spans(path: str, parts: int, min_bytes: int | None = None) -> list[tuple[int, int]]:
    """Up to ``parts`` (start, end) byte ranges of ``path`` that each begin at a line's start; one range
    for a compressed file (its bytes cannot be cut) or one too small to be worth cutting."""
    size = os.path.getsize(path)
    min_bytes = MIN_SPAN_BYTES if min_bytes is None else min_bytes
    parts = min(parts, max(1, size // max(1, min_bytes)))
    if parts <= 1 or is_compressed(path):
        return [(0, size)]
    cuts = [0]
    with open(path, "rb") as f:
        for k in range(1, parts):
            cut = _next_line_start(f, max(k * size // parts, cuts[-1]), size)
            if cut < size and cut > cuts[-1]:
                cuts.append(cut)
    cuts.append(size)
    return list(zip(cuts[:-1], cuts[1:]))


def _next_line_start(f, pos: int, size: int, step: int = 1 << 16) -> int:
    """Offset just past the first newline at or after ``pos - 1`` (``pos`` itself if a line starts there)."""
    f.seek(max(0, pos - 1))
    at = max(0, pos - 1)
    while at < size:
        block = f.read(step)
        i = block.find(b"\n")
        if i >= 0:
            return at + i + 1
        at += len(block)
    return size


def count_newlines(path: str, start: int, end: int, step: int = 16 << 20) -> int:
    with open(path, "rb") as f:
        f.seek(start)
        left, n = end - start, 0
        while left > 0:
            block = f.read(min(step, left))
            if not block:
                break
            n += block.count(b"\n")
            left -= len(block)
    return n


# ----------------------------------------------------------------------------- the worker side


@dataclass
class PartJob:
    """One span to count: what a worker needs, all of it picklable."""

    index: int
    path: str
    fmt: dict
    span: Span
    row0: int  # index among the file's kept rows of the span's first row, as far as is known
    part_dir: str
    skip_bad_rows: bool
    seed: int
    split: tuple[float, float, float]
    reader_options: dict = field(default_factory=dict)


@dataclass
class PartResult:
    """What a worker hands back: its rows, their chunks' plans, token counts and bad rows."""

    index: int
    row0: int
    rows: int
    rows_parsed: int
    chunks: list
    counts: list[pa.Table]
    bad_count: int
    bad_examples: list[tuple[int, str]]
    seconds: float
    cpu_s: float
    peak_rss_mb: float = field(default_factory=lambda: peak_rss_mb())


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (a worker's own: the parent's figure leaves it out)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class PartWriter:
    """A part's chunk-local codes and labels, appended in row order (``codes.npy``, ``labels.npy``)."""

    def __init__(self, directory: Path, n_fields: int):
        self.directory = directory
        self._codes = NpyAppender(str(directory / "codes.npy"), np.int32, (n_fields,))
        self._labels = NpyAppender(str(directory / "labels.npy"), np.bool_)

    @property
    def rows(self) -> int:
        return self._codes.rows

    def write(self, codes: np.ndarray, labels: np.ndarray) -> None:
        self._codes.write(codes)
        self._labels.write(labels)

    def close(self) -> None:
        self._codes.close()
        self._labels.close()

    def abort(self) -> None:
        self._codes.abort()
        self._labels.abort()


class SlotProgress:
    """A worker's progress, published to the parent through shared counters (rows, bytes read)."""

    def __init__(self, index: int, reader: ChunkReader):
        self.index, self.reader, self.t0 = index, reader, time.perf_counter()

    def update(self, rows: int, fraction: float | None = None) -> None:
        if _progress_slots is not None:
            _progress_slots[2 * self.index] = rows
            _progress_slots[2 * self.index + 1] = self.reader.bytes_read

    def done(self, rows: int) -> float:
        self.update(rows)
        return time.perf_counter() - self.t0


def _start_worker(slots: Any, parent: int) -> None:
    """Ctrl-C reaches the whole process group: the parent alone handles it, and stops the workers. A
    parent killed outright cannot stop them, so each also ends itself once the parent is gone."""
    global _progress_slots
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _progress_slots = slots
    threading.Thread(target=_exit_with_parent, args=(parent,), name="fm2onnx-parent-watch", daemon=True).start()


def _exit_with_parent(parent: int, every: float = 0.5) -> None:
    while True:
        time.sleep(every)
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            os._exit(1)
        except OSError:
            pass


# ----------------------------------------------------------------------------- the parent side


def run_parts(work: Callable[[PartJob], PartResult], jobs: Sequence[PartJob], workers: int, label: str,
              total_bytes: int, progress: bool) -> list[PartResult]:
    """``work`` on every job in ``workers`` processes; results in job order. The first failure in
    file order is raised; a worker that died fails the run with one line."""
    prog = Progress(label, progress)
    context = _worker_context()
    slots = context.Array("q", 2 * max(j.index for j in jobs) + 2, lock=False)
    pool = ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context, initializer=_start_worker,
                               initargs=(slots, os.getpid()))
    try:
        with handled_signals():  # SIGTERM too unwinds, so the workers are stopped and the output deleted
            futures = [pool.submit(work, job) for job in jobs]
            _wait_for_first_failure(futures, prog, slots, total_bytes)
            results = [f.result() for f in futures]
    except BrokenProcessPool:
        raise Fm2OnnxError(f"{jobs[0].path}: an encoding worker process died (killed, or out of memory?); "
                           "nothing was written; retry, with fewer --jobs if memory is short") from None
    finally:
        _stop(pool)
    peak = max(r.peak_rss_mb for r in results)
    prog.done(sum(r.rows_parsed for r in results), f", worker peak RSS {peak:,.0f} MB")
    return results


def _worker_context() -> Any:
    """Workers forked from a fresh server process, not from this one, which may hold threads (torch's,
    the reader's) that a fork would copy mid-step.

    The server imports numpy and pyarrow once for all its workers, but not fm2onnx: Python 3.11 imports
    preloads with the server's own path, where the working directory comes first and may hold another
    fm2onnx (a checkout of another version); nor numpy or pyarrow when the working directory holds one."""
    context = multiprocessing.get_context("forkserver")
    shadowed = any(os.path.exists(name) for name in ("numpy", "numpy.py", "pyarrow", "pyarrow.py"))
    context.set_forkserver_preload([] if shadowed else ["numpy", "pyarrow", "pyarrow.compute", "pyarrow.csv"])
    return context


def _wait_for_first_failure(futures: list[Future], prog: Progress, slots: Any, total_bytes: int) -> None:
    """Wait, showing progress, until all are done or one failed and every job before it is done (an
    earlier job may fail on an earlier line, which is the one to report)."""
    pending = set(futures)
    while pending:
        done, pending = wait(pending, timeout=0.25, return_when=FIRST_EXCEPTION)
        rows, read = sum(slots[0::2]), sum(slots[1::2])
        prog.update(rows, read / total_bytes if total_bytes else None)
        failed = [i for i, f in enumerate(futures) if f.done() and f.exception() is not None]
        if failed and all(f.done() for f in futures[:failed[0]]):
            return


def _stop(pool: ProcessPoolExecutor) -> None:
    """End the pool now: on a failure or Ctrl-C the workers still counting are killed, not waited for."""
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        if proc.is_alive():
            proc.terminate()
    pool.shutdown(wait=True, cancel_futures=True)


def clear_part(job: PartJob) -> None:
    shutil.rmtree(job.part_dir, ignore_errors=True)

