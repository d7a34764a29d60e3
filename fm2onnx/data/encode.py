"""Streaming two-pass encoding of a text data file into an encoded dataset directory (:mod:`.dataset`).

Pass 1 parses the text once (pyarrow's streaming CSV reader, in a background thread), validates
it, counts tokens per field and writes chunk-local codes into ``ids.npy`` (:mod:`.local_codes`).
The vocabularies are built from the counts, and pass 2 rewrites the codes into vocabulary ids in
place, without parsing the text again. With a given preprocessor, the file is parsed once and
encoded directly. Memory is bounded by the vocabularies (distinct tokens) plus one chunk of rows.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from ..errors import DataError, Fm2OnnxError
from ..progress import Progress
from .. import __version__
from .chunk_view import ChunkView, FieldCodes
from .counting import VocabCounter
from .dataset import ENCODED_KIND, ENCODED_VERSION, DatasetWriter, EncodedDataset, write_dataset_files
from .formats import TableFormat, get_format
from .local_codes import LocalCodes
from .preprocessor import Preprocessor
from .npy import NpyAppender, NpyRows
from .parallel import PartJob, PartResult, PartWriter, SlotProgress, clear_part, count_newlines, line_spans, \
    peak_rss_mb, resolve_jobs, run_parts
from .reader import ChunkReader, Span, check_input_file
from .splits import SPLIT_NAMES, WHOLE_FILE, check_split, train_mask
from .staging import staged_directory
from .validation import BadRows, check_chunk, collect_rejected_lines

__all__ = ["encode_file", "encode_files", "format_for", "resolve_format", "resolve_min_count", "source_info"]

# (view of a chunk, mask of its rows to keep or None, index of its first kept row) -> int32 ids
ChunkEncoder = Callable[[ChunkView, "np.ndarray | None", int], np.ndarray]


def resolve_format(fmt: TableFormat | str) -> TableFormat:
    if isinstance(fmt, TableFormat):
        return fmt
    if isinstance(fmt, str):
        return get_format(fmt)
    raise Fm2OnnxError(f"fmt must be a TableFormat or a format name, got {type(fmt).__name__}")


def format_for(pre: Preprocessor, fmt_name: str | None = None, schema: str | os.PathLike | None = None, *,
               where: str = "checkpoint") -> TableFormat:
    """The text format rows are read in for ``pre``: the one its vocabularies were built from (a csv/tsv
    schema included, so it need not be passed again), or ``fmt_name``/``schema`` when given."""
    if schema is None and fmt_name in (None, pre.format_name):
        fmt = pre.format
        if fmt is None:
            raise Fm2OnnxError(f"{where}: was trained on encoded ids, not text rows; pass an encoded dataset "
                               "directory, or --format (and --schema) of the rows")
        return fmt
    fmt = get_format(fmt_name or pre.format_name, os.fspath(schema) if schema is not None else None)
    if not pre.compatible_with(fmt):
        raise Fm2OnnxError(f"{where}: its fields differ from those of format {fmt.name!r}"
                           + (f" with schema {schema}" if schema is not None else ""))
    return fmt


def resolve_min_count(fmt: TableFormat, min_count: int | None, pre: Preprocessor | None) -> int:
    """The vocabulary threshold: the preprocessor's if one is given, else ``min_count`` or the format's default."""
    if pre is not None:
        if min_count is not None and int(min_count) != pre.min_count:
            raise Fm2OnnxError(
                f"min_count={min_count} conflicts with the given preprocessor (built with min_count={pre.min_count})"
            )
        return pre.min_count
    if min_count is None:
        return fmt.default_min_count
    if isinstance(min_count, bool) or not isinstance(min_count, (int, np.integer)) or min_count < 1:
        raise Fm2OnnxError(f"min_count must be a positive integer, got {min_count!r}")
    return int(min_count)


def source_info(path: str) -> dict:
    """What identifies the source file's version: a cached encoding is reused only while it matches."""
    size = check_input_file(path)
    st = os.stat(path)
    return {"path": os.path.abspath(path), "size": int(size), "mtime_ns": int(st.st_mtime_ns),
            "mtime": float(st.st_mtime)}


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise Fm2OnnxError(f"seed must be an integer, got {seed!r}")
    return int(seed)


def _check_preprocessor(pre: Preprocessor | None, fmt: TableFormat) -> None:
    if pre is None:
        return
    if not isinstance(pre, Preprocessor):
        raise Fm2OnnxError("preprocessor must be a Preprocessor (use Preprocessor.from_dict)")
    if not pre.compatible_with(fmt):
        raise Fm2OnnxError(
            f"the given preprocessor was built for format {pre.format_name!r} with fields "
            f"{pre.field_names[:4]}..., which do not match format {fmt.name!r}"
        )


def encode_file(
    path: str | os.PathLike,
    fmt: TableFormat | str,
    out_dir: str | os.PathLike,
    *,
    min_count: int | None = None,
    seed: int = 0,
    split: Sequence[float] = (0.8, 0.1, 0.1),
    skip_bad_rows: bool = False,
    preprocessor: Preprocessor | None = None,
    progress: bool = True,
    force: bool = False,
    block_size: int | None = None,
    chunk_rows: int | None = None,
    announce: bool = True,
    jobs: int | None = 1,
) -> EncodedDataset:
    """Encode the text file ``path`` of format ``fmt`` into the dataset directory ``out_dir``.

    Without ``preprocessor``: pass 1 parses the file once, validates it, counts tokens and writes
    chunk-local codes (plus each chunk's distinct tokens, spilled to a temporary Arrow stream);
    the vocabularies are then built from the rows of the training split alone (``min_count``
    defaults to the format's threshold: criteo 8, avazu 5, csv/tsv 1) and pass 2 rewrites the codes
    into ids in place. With ``preprocessor`` its
    vocabularies are used as they are (unseen values -> 0) in a single parse.

    Malformed rows raise ``DataError("path:line: ...")`` unless ``skip_bad_rows``, which excludes,
    counts and reports them (``meta.json``: bad_rows, bad_row_lines, bad_row_examples). ``announce``:
    with ``progress``, end with a line naming what was written.
    """
    started = time.perf_counter()
    path = os.fspath(path)
    fmt = resolve_format(fmt)
    fractions = check_split(split)
    seed = _check_seed(seed)
    _check_preprocessor(preprocessor, fmt)
    min_count = resolve_min_count(fmt, min_count, preprocessor)
    jobs = resolve_jobs(jobs)
    source = source_info(path)
    reader_options = {"block_size": block_size, "chunk_rows": chunk_rows}
    reader = ChunkReader(path, fmt, **{k: v for k, v in reader_options.items() if v})  # checks the header first
    out = Path(out_dir)
    encoding = _Encoding(reader, skip_bad_rows, progress, jobs)
    with staged_directory(out, force=force) as tmp, DatasetWriter(tmp, fmt.n_fields, seed, fractions) as writer:
        if preprocessor is None:
            pre = encoding.count_then_remap(writer, min_count, seed, fractions)
        else:
            pre = encoding.encode_directly(writer, preprocessor)
        meta = writer.meta(pre, source=source, format=fmt.to_dict(), skip_bad_rows=bool(skip_bad_rows),
                           **encoding.bad.to_meta(), preprocessor_given=preprocessor is not None,
                           timing=encoding.timing(started, writer.rows))
        write_dataset_files(tmp, pre, meta)
    if progress:
        encoding.report(out if announce else None, writer.rows, pre, meta["timing"])
    return EncodedDataset.open(out, _pre=pre)  # the vocabularies in memory are the ones just written


class _Encoding:
    """One run of :func:`encode_file`: its passes over the data, their timings and the bad rows."""

    def __init__(self, reader: ChunkReader, skip_bad_rows: bool, progress: bool, jobs: int = 1):
        self.reader = reader
        self.jobs = jobs
        self.jobs_used = 1  # processes that counted: fewer than ``jobs`` for a file too small to cut
        self.worker_peak_rss_mb: float | None = None
        self.worker_cpu_s = 0.0
        self.skip_bad_rows = skip_bad_rows
        self.progress = progress
        self.name = os.path.basename(reader.path)
        self.bad = BadRows()
        self.count_s = self.encode_s = 0.0

    def encode_directly(self, writer: DatasetWriter, pre: Preprocessor) -> Preprocessor:
        """One pass: parse, validate and encode with the given vocabularies."""

        def encode(view: ChunkView, keep: np.ndarray | None, row0: int) -> np.ndarray:
            ids = pre.encode_view(view)
            return ids if keep is None else ids[keep]

        self.encode_s = self._parse_pass(writer, encode, Progress(f"encode {self.name}", self.progress))
        self._finish_rows(writer)
        return pre

    def count_then_remap(self, writer: DatasetWriter, min_count: int, seed: int,
                         split: tuple[float, float, float]) -> Preprocessor:
        """Pass 1 counts and writes local codes; pass 2 rewrites them as ids of the counted vocabularies."""
        spans = line_spans(self.reader.path, self.jobs) if self.jobs > 1 else [(0, self.reader.size)]
        if len(spans) > 1:
            return self._count_then_remap_in_parts(writer, min_count, seed, split, spans)
        codes = LocalCodes(self.reader.path, self.reader.fmt, writer.directory / "tokens.spill.arrows")
        encode, counter = codes.encode_chunk, codes.counter
        if split[0] < 1:
            encode, counter = _train_rows_counted(codes, seed, split)
        try:
            self.count_s = self._parse_pass(writer, encode, Progress(f"count {self.name}", self.progress))
        finally:
            codes.close()
        self._finish_rows(writer)
        pre = Preprocessor.from_counter(self.reader.fmt, counter, min_count)
        prog = Progress(f"encode {self.name}", self.progress)
        codes.remap(writer.directory / "ids.npy", pre, prog)
        self.encode_s = prog.done(writer.rows)
        return pre

    def _parse_pass(self, writer: DatasetWriter | PartWriter, encode: ChunkEncoder, prog) -> float:
        """Parse and validate every chunk, append its kept rows as ``encode`` codes them; seconds taken
        (``prog``: a :class:`Progress`, or a worker's :class:`SlotProgress`)."""
        reader = self.reader
        memos: dict = {}  # shared by the pass's views: each distinct numeric value is parsed once
        for chunk in reader:
            view = ChunkView(chunk.table, memos)
            keep, is1 = check_chunk(chunk, view, reader.fmt, self.skip_bad_rows, self.bad)
            labels = is1 if keep is None else is1[keep]
            if len(labels):
                writer.write(encode(view, keep, writer.rows), labels)
            prog.update(reader.rows_parsed, reader.bytes_read / reader.size)
        collect_rejected_lines(reader, self.skip_bad_rows, self.bad)
        return prog.done(reader.rows_parsed)

    def _finish_rows(self, writer: DatasetWriter) -> None:
        if writer.rows == 0:
            raise DataError(f"{self.reader.path}:{self.reader.first_data_line}: no valid data rows")
        writer.close()

    def _count_then_remap_in_parts(self, writer: DatasetWriter, min_count: int, seed: int,
                                   split: tuple[float, float, float], spans: list[tuple[int, int]]) -> Preprocessor:
        """:meth:`count_then_remap` with the counting spread over worker processes (:mod:`.parallel`)."""
        reader, started = self.reader, time.perf_counter()
        jobs = _part_jobs(reader, spans, writer.directory, self.skip_bad_rows, seed, split)
        self.jobs_used = len(jobs)
        results = _count_parts(jobs, self.jobs, f"count {self.name} ({self.jobs} jobs)", reader.size, self.progress)
        counter = VocabCounter(reader.fmt.n_fields)
        for result in results:
            for j, table in enumerate(result.counts):
                counter.add(j, table["k"], table["c"].to_numpy())
            result.counts = []
            self.bad.add_many(result.bad_count, result.bad_examples)
        self.worker_peak_rss_mb = max(r.peak_rss_mb for r in results)
        self.worker_cpu_s = sum(r.cpu_s for r in results)
        self.count_s = time.perf_counter() - started
        pre = Preprocessor.from_counter(reader.fmt, counter, min_count)
        prog = Progress(f"encode {self.name}", self.progress)
        total = sum(r.rows for r in results)
        for job, result in zip(jobs, results):
            _write_part_ids(job, result, reader.fmt, pre, writer, lambda rows: prog.update(rows, rows / total))
            clear_part(job)
        self._finish_rows(writer)
        self.encode_s = prog.done(writer.rows)
        return pre

    def timing(self, started: float, rows: int) -> dict:
        total_s = time.perf_counter() - started
        return {
            "count_s": round(self.count_s, 3),
            "encode_s": round(self.encode_s, 3),
            "total_s": round(total_s, 3),
            "rows_per_s": round(rows / total_s, 1) if total_s > 0 else None,
            "jobs": self.jobs_used,
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "worker_peak_rss_mb": None if self.worker_peak_rss_mb is None else round(self.worker_peak_rss_mb, 1),
            "worker_cpu_s": round(self.worker_cpu_s, 3),
        }

    def report(self, out: Path | None, rows: int, pre: Preprocessor, timing: dict) -> None:
        """The run's closing line: what was written (``out`` None: a part of a larger dataset), bad rows,
        speed and peak memory."""
        msg = f"{self.name}: {rows:,} rows, {pre.n_fields} fields, {sum(pre.vocab_sizes):,} features"
        if out is not None:
            msg = f"wrote {out}: {rows:,} rows, {pre.n_fields} fields, {sum(pre.vocab_sizes):,} features"
        if self.bad.count:
            first = ", ".join(map(str, self.bad.lines[:5]))
            msg += f"; skipped {self.bad.count:,} bad rows (first at lines {first})"
        msg += (f"; {timing['total_s']:.1f}s, {timing['rows_per_s'] or 0:,.0f} rows/s with {timing['jobs']} "
                f"job{'s' if timing['jobs'] > 1 else ''}, peak RSS {timing['peak_rss_mb']:,.0f} MB")
        if timing["worker_peak_rss_mb"]:
            msg += f" (workers {timing['worker_peak_rss_mb']:,.0f} MB)"
        print(msg, file=sys.stderr)


def _part_jobs(reader: ChunkReader, spans: list[tuple[int, int]], directory: Path, skip_bad_rows: bool,
               seed: int, split: tuple[float, float, float]) -> list[PartJob]:
    """One job per span; its first line from the newlines before it, its first row assuming no bad rows."""
    jobs, first_line = [], 1
    options = {"block_size": reader.block_size, "chunk_rows": reader.chunk_rows}
    for i, (start, end) in enumerate(spans):
        row0 = max(0, first_line - reader.first_data_line)
        jobs.append(PartJob(i, reader.path, reader.fmt.to_dict(), Span(start, end, first_line), row0,
                            str(directory / f"part-{i:04d}"), skip_bad_rows, seed, split, options))
        if i + 1 < len(spans):
            first_line += count_newlines(reader.path, start, end)
    return jobs


def _count_parts(jobs: list[PartJob], workers: int, label: str, size: int, progress: bool) -> list[PartResult]:
    """Every part counted; a part whose first row was wrongly assumed (bad rows skipped before it) twice."""
    results = run_parts(count_part, jobs, workers, label, size, progress)
    redo, row0 = [], 0
    for job, result in zip(jobs, results):
        if result.row0 != row0:
            clear_part(job)
            job.row0 = row0
            redo.append(job)
        row0 += result.rows
    if redo:
        redo_bytes = sum(job.span.end - job.span.start for job in redo)
        for result in run_parts(count_part, redo, workers, f"{label}, again past skipped rows", redo_bytes, progress):
            results[result.index] = result
    return results


def count_part(job: PartJob) -> PartResult:
    """In a worker process: pass 1 over one span, into its part folder (:mod:`.parallel`)."""
    cpu0 = time.process_time()
    fmt = TableFormat.from_dict(job.fmt)
    reader = ChunkReader(job.path, fmt, span=job.span, **job.reader_options)
    part = Path(job.part_dir)
    part.mkdir()
    encoding = _Encoding(reader, job.skip_bad_rows, progress=False)
    codes = LocalCodes(job.path, fmt, part / "tokens.spill.arrows")
    encode, counter = codes.encode_chunk, codes.counter
    if job.split[0] < 1:
        encode, counter = _train_rows_counted(codes, job.seed, job.split, job.row0)
    writer = PartWriter(part, fmt.n_fields)
    try:
        seconds = encoding._parse_pass(writer, encode, SlotProgress(job.index, reader))
        writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        codes.close()
    return PartResult(job.index, job.row0, writer.rows, reader.rows_parsed, codes.chunks,
                      [counter.counts(j) for j in range(fmt.n_fields)], encoding.bad.count,
                      encoding.bad.examples, seconds, time.process_time() - cpu0)


def _write_part_ids(job: PartJob, result: PartResult, fmt: TableFormat, pre: Preprocessor,
                    writer: DatasetWriter, update: Callable[[int], None]) -> None:
    """A counted part's codes, as vocabulary ids, appended to the dataset with their labels."""
    part = Path(job.part_dir)
    local = LocalCodes(job.path, fmt, part / "tokens.spill.arrows", chunks=result.chunks)
    with NpyRows(str(part / "codes.npy")) as codes, NpyRows(str(part / "labels.npy")) as labels:
        for row0, n, table in local.chunk_tables(pre):
            block = codes.read(row0, n)
            writer.write(np.take(table, block, out=block), labels.read(row0, n))
            update(writer.rows)


class _RecordingView:
    """A :class:`ChunkView` that keeps the field codes it hands out, so they can be counted again."""

    def __init__(self, view: ChunkView):
        self._view = view
        self.codes: list[FieldCodes] = []

    def __getattr__(self, name: str):
        return getattr(self._view, name)

    def field_codes(self, spec, keep):
        fc = self._view.field_codes(spec, keep)
        self.codes.append(fc)
        return fc


class _NoCounts:
    def add(self, *args) -> None:
        pass


def _train_rows_counted(codes: LocalCodes, seed: int, split: tuple[float, float, float],
                        first_row: int = 0) -> tuple[ChunkEncoder, VocabCounter]:
    """``codes.encode_chunk`` and a counter of the training split's rows only: a feature seen only in
    validation or test rows must map to the unknown row, as it will for rows never seen in serving.
    ``first_row``: the file's row index of the codes' row 0 (a part of the file starts further on)."""
    counter, codes.counter = codes.counter, _NoCounts()

    def encode(view: ChunkView, keep: np.ndarray | None, row0: int) -> np.ndarray:
        recording = _RecordingView(view)
        ids = codes.encode_chunk(recording, keep, row0)  # type: ignore[arg-type]
        train = train_mask(first_row + row0, len(ids), seed, split)
        for j, fc in enumerate(recording.codes):
            counter.add(j, *FieldCodes(fc.tokens, fc.offset, fc.codes[train], fc.size).counts())
        return ids

    return encode, counter


def encode_files(
    files: Mapping[str, str | os.PathLike | None],
    fmt: TableFormat | str,
    out_dir: str | os.PathLike,
    *,
    min_count: int | None = None,
    skip_bad_rows: bool = False,
    preprocessor: Preprocessor | None = None,
    progress: bool = True,
    force: bool = False,
    jobs: int | None = 1,
) -> EncodedDataset:
    """A user's own split: ``files["train"]`` and optional ``"valid"`` / ``"test"`` files -> one dataset
    directory whose split of each row is the file it came from.

    The vocabularies are counted on the training file alone (unless ``preprocessor`` is given), and
    the other files are encoded through them, so a feature seen only in them maps to id 0.
    """
    unknown = set(files) - set(SPLIT_NAMES)
    if unknown or files.get("train") is None:
        raise Fm2OnnxError(f"files must name a 'train' file and optionally 'valid' and 'test', got {sorted(files)}")
    fmt = resolve_format(fmt)
    out = Path(out_dir)
    pre = preprocessor
    with staged_directory(out, force=force) as tmp:
        parts: dict[str, EncodedDataset] = {}
        for name in SPLIT_NAMES:
            if files.get(name) is None:
                continue
            parts[name] = encode_file(files[name], fmt, tmp / f"part-{name}",
                                      min_count=min_count if pre is None else None, split=WHOLE_FILE[name],
                                      skip_bad_rows=skip_bad_rows, preprocessor=pre, progress=progress,
                                      announce=False, jobs=jobs)
            pre = parts[name].preprocessor
        meta = _concatenate(parts, tmp, preprocessor_given=preprocessor is not None)
        write_dataset_files(tmp, pre, meta)
        for part in parts.values():
            shutil.rmtree(part.path)
    if progress:
        counts = ", ".join(f"{n} {c:,}" for n, c in meta["split_counts"].items() if c)
        print(f"wrote {out}: {meta['rows']:,} rows ({counts}), {sum(pre.vocab_sizes):,} features", file=sys.stderr)
    return EncodedDataset.open(out, _pre=pre)


def _concatenate(parts: Mapping[str, EncodedDataset], out: Path, *, preprocessor_given: bool,
                 block_rows: int = 1 << 18) -> dict:
    """The parts' arrays, one after the other, into ``out``'s; returns the combined meta.json."""
    first = next(iter(parts.values()))
    appenders = [NpyAppender(str(out / "ids.npy"), np.int32, (first.n_fields,)),
                 NpyAppender(str(out / "labels.npy"), np.float32), NpyAppender(str(out / "split.npy"), np.uint8)]
    for part in parts.values():
        for a in range(0, part.rows, block_rows):
            for appender, array in zip(appenders, (part.ids, part.labels, part.split)):
                appender.write(np.asarray(array[a:a + block_rows]))
    for appender in appenders:
        appender.close()
    rows = sum(p.rows for p in parts.values())
    positives = sum(float(np.asarray(p.labels).sum()) for p in parts.values())
    keep = ("source", "rows", "bad_rows", "bad_row_lines", "bad_row_examples", "timing")
    pre = first.preprocessor
    return {
        "kind": ENCODED_KIND, "version": ENCODED_VERSION, "fm2onnx_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "rows": int(rows), "n_fields": pre.n_fields,
        "field_names": pre.field_names, "vocab_sizes": pre.vocab_sizes, "min_count": pre.min_count,
        "seed": None, "split": "files", "source": first.meta["source"],
        "files": {name: {k: p.meta[k] for k in keep if k in p.meta} for name, p in parts.items()},
        "split_counts": {n: int(parts[n].rows) if n in parts else 0 for n in SPLIT_NAMES},
        "positive_rate": positives / rows if rows else 0.0, "format": first.meta["format"],
        "skip_bad_rows": first.meta.get("skip_bad_rows", False),
        "bad_rows": sum(int(p.meta.get("bad_rows", 0)) for p in parts.values()),
        "preprocessor_given": preprocessor_given,
    }
