"""Streaming reader: a delimited text file -> chunks of string columns, with exact line numbers.

pyarrow's CSV reader parses (single-threaded, so that it reports line numbers of malformed rows)
in a background thread while the caller transforms the previous chunk. Rows with the wrong number
of columns never reach the caller: they are recorded (1-based line, message) in ``bad_lines``;
``Chunk.lines()`` maps a chunk's row positions back to source line numbers taking them into account.
"""

from __future__ import annotations

import bisect
import contextlib
import csv
import io
import os
import queue
import threading
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.csv as pv

from ..errors import DataError, Fm2OnnxError
from .formats import TableFormat

__all__ = ["ChunkReader", "Chunk", "Span", "check_input_file", "is_compressed"]

DEFAULT_BLOCK_SIZE = 4 << 20
DEFAULT_CHUNK_ROWS = 1 << 18

_CODECS = {".gz": "gzip", ".bz2": "bz2", ".zst": "zstd", ".lz4": "lz4"}


def check_input_file(path: str) -> int:
    """Size of an existing, non-empty regular file; one-line errors otherwise."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise Fm2OnnxError(f"{path}: no such file") from None
    except OSError as e:
        raise Fm2OnnxError(f"{path}: cannot open: {e.strerror or e}") from None
    if os.path.isdir(path):
        raise Fm2OnnxError(f"{path}: is a directory, not a data file")
    if st.st_size == 0:
        raise DataError(f"{path}:1: file is empty")
    return st.st_size


def is_compressed(path: str) -> bool:
    """True for a file read through a decompressor (whose bytes cannot be split into line ranges)."""
    return os.path.splitext(path)[1].lower() in _CODECS


def _open_stream(path: str) -> tuple[pa.NativeFile, pa.NativeFile]:
    """(raw file for progress, decompressed stream to parse)."""
    raw = pa.OSFile(path, "rb")
    codec = _CODECS.get(os.path.splitext(path)[1].lower())
    if codec is None:
        return raw, raw
    return raw, pa.CompressedInputStream(raw, codec)


def _decompression_error(path: str, e: BaseException) -> Fm2OnnxError | None:
    """A compressed file's decoder failing, named after the file; None for any other error. pyarrow's
    codecs raise OSError without an errno (a failed read of the file itself has one)."""
    codec = _CODECS.get(os.path.splitext(path)[1].lower())
    if codec is None or not isinstance(e, OSError) or e.errno is not None:
        return None
    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
    damage = "truncated" if "truncated" in msg.lower() else "corrupt"
    return Fm2OnnxError(f"{path}: {damage} {codec} stream ({msg})")


@contextlib.contextmanager
def _decompressed(path: str) -> Iterator[pa.NativeFile]:
    """The file's text as a stream, its decoder's failures named after the file."""
    raw, stream = _open_stream(path)
    try:
        yield stream
    except OSError as e:
        failed = _decompression_error(path, e)
        if failed is None:
            raise
        raise failed from None
    finally:
        raw.close()


class _ByteRange(io.RawIOBase):
    """The bytes ``start .. end - 1`` of a file, read as a stream of their own."""

    def __init__(self, path: str, start: int, end: int):
        self._f = open(path, "rb")
        self._f.seek(start)
        self._left = end - start
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = min(len(b), self._left)
        if n <= 0:
            return 0
        got = self._f.readinto(memoryview(b)[:n]) or 0
        self._left -= got
        self._pos += got
        return got

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        self._f.close()
        super().close()


@dataclass(frozen=True)
class Span:
    """A part of a plain-text file: bytes ``start .. end - 1``, whole lines, the first being line ``first_line``."""

    start: int
    end: int
    first_line: int


def _first_line(path: str) -> str:
    with _decompressed(path) as stream:
        buf = b""
        while b"\n" not in buf:
            piece = stream.read(1 << 16)
            if not piece:
                break
            buf += piece
            if len(buf) > (64 << 20):
                break
    line = buf.split(b"\n", 1)[0].rstrip(b"\r")
    if line.startswith(b"\xef\xbb\xbf"):
        line = line[3:]
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path}:1: not UTF-8 text") from None


def _split_line(line: str, fmt: TableFormat) -> list[str]:
    if fmt.quoting:
        return next(csv.reader(io.StringIO(line), delimiter=fmt.delimiter))
    return line.split(fmt.delimiter)


def other_delimiter_hint(names: list[str], delimiter: str) -> str:
    """When a header of one column holds tabs or commas instead, say so: the file has another format."""
    if len(names) != 1:
        return ""
    for other, label in (("\t", "tabs"), (",", "commas"), (";", "semicolons")):
        if other != delimiter and other in names[0]:
            return f"; it is separated by {label}: is --format right?"
    return ""


def _locate_bad_utf8(path: str) -> int | None:
    with _decompressed(path) as stream:
        lineno, rest = 1, b""
        while True:
            piece = stream.read(1 << 22)
            if not piece:
                lines = [rest] if rest else []
            else:
                data = rest + piece
                lines = data.split(b"\n")
                rest = lines.pop()
            for ln in lines:
                try:
                    ln.decode("utf-8")
                except UnicodeDecodeError:
                    return lineno
                lineno += 1
            if not piece:
                return None


@dataclass
class Chunk:
    """Rows ``row0 .. row0 + rows - 1`` (counting only rows that were parsed) as string columns."""

    table: pa.Table
    row0: int
    reader: "ChunkReader"

    @property
    def rows(self) -> int:
        return self.table.num_rows

    @property
    def last_line(self) -> int:
        return int(self.lines(np.array([self.rows - 1]))[0]) if self.rows else 0

    def lines(self, idx: np.ndarray) -> np.ndarray:
        """1-based source line numbers of the rows at positions ``idx`` of this chunk."""
        return self.reader.line_of_rows(self.row0 + np.asarray(idx, np.int64))


class ChunkReader:
    """Iterate a file of ``fmt`` in chunks of about ``chunk_rows`` rows (string columns only)."""

    def __init__(
        self,
        path: str | os.PathLike,
        fmt: TableFormat,
        *,
        block_size: int = DEFAULT_BLOCK_SIZE,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        span: Span | None = None,
    ):
        self.path = os.fspath(path)
        self.fmt = fmt
        self.size = check_input_file(self.path)
        self.block_size = int(block_size)
        self.chunk_rows = int(chunk_rows)
        self.first_data_line = 2 if fmt.header else 1
        self.span = span
        if span is not None:
            self.size = span.end - span.start
        if self._mid_file:  # no header here: the columns are named by the caller, the lines shifted
            self.first_data_line = span.first_line
        self.bad_lines: list[tuple[int, str]] = []  # (line, message) of rows pyarrow rejected
        self._skipped_sorted: list[int] = []  # data-line offsets of those rows, sorted
        self._lock = threading.Lock()
        self.bytes_read = 0
        self.rows_parsed = 0
        self._column_names, self._include = self._resolve_columns()

    @property
    def _mid_file(self) -> bool:
        return self.span is not None and self.span.start > 0

    # -- columns --------------------------------------------------------------------

    def _resolve_columns(self) -> tuple[list[str] | None, list[str]]:
        fmt, path = self.fmt, self.path
        span_named = self._mid_file
        need = fmt.source_columns
        if fmt.header:
            names = _split_line(_first_line(path), fmt)
            seen: set[str] = set()
            for n in names:
                if n in seen and n in need:
                    raise DataError(f"{path}:1: header names column {n!r} twice")
                seen.add(n)
            missing = [c for c in need if c not in seen]
            if missing:
                shown = ", ".join(repr(c) for c in missing[:5]) + (" ..." if len(missing) > 5 else "")
                start = fmt.delimiter.join(names[:4])
                start = start[:60] + (" ..." if len(start) > 60 else "")
                raise DataError(
                    f"{path}:1: header lacks column(s) {shown} required by format {fmt.name!r}"
                    f" (header starts {start!r}{other_delimiter_hint(names, fmt.delimiter)})"
                )
            return (names if span_named else None), need
        if fmt.column_names is not None:
            return list(fmt.column_names), need
        n = len(_split_line(_first_line(path), fmt))
        for c in need:
            if int(c) >= n:
                raise DataError(
                    f"{path}:1: schema refers to column {c} but the first line has {n} columns"
                )
        return [str(i) for i in range(n)], need

    # -- line numbers ------------------------------------------------------------------

    def _on_invalid(self, row: "pv.InvalidRow") -> str:
        if row.number is None:  # cannot happen with use_threads=False; be safe anyway
            raise Fm2OnnxError(f"{self.path}: malformed row with unknown line number: {row.text[:80]!r}")
        msg = f"expected {row.expected_columns} columns, found {row.actual_columns}"
        line = int(row.number) + (self.span.first_line - 1 if self._mid_file else 0)
        with self._lock:
            self.bad_lines.append((line, msg))
            bisect.insort(self._skipped_sorted, line - self.first_data_line)
        return "skip"

    def line_of_rows(self, rows: np.ndarray) -> np.ndarray:
        """1-based line numbers of parsed rows (0-based indices among rows that were not rejected)."""
        with self._lock:
            s = np.asarray(self._skipped_sorted, np.int64)
        rows = np.asarray(rows, np.int64)
        if len(s):
            t = s - np.arange(len(s))
            rows = rows + np.searchsorted(t, rows, side="right")
        return rows + self.first_data_line

    def bad_lines_upto(self, line: int | None) -> list[tuple[int, str]]:
        with self._lock:
            out = [b for b in self.bad_lines if line is None or b[0] <= line]
        return sorted(out)

    # -- iteration -------------------------------------------------------------------

    def _options(self):
        fmt = self.fmt
        ro = pv.ReadOptions(
            use_threads=False,
            block_size=self.block_size,
            column_names=self._column_names,
            autogenerate_column_names=False,
        )
        po = pv.ParseOptions(
            delimiter=fmt.delimiter,
            quote_char='"' if fmt.quoting else False,
            double_quote=fmt.quoting,
            escape_char=False,
            newlines_in_values=False,
            ignore_empty_lines=False,
            invalid_row_handler=self._on_invalid,
        )
        co = pv.ConvertOptions(
            column_types={c: pa.string() for c in self._include},
            include_columns=self._include,
            null_values=[""],
            strings_can_be_null=True,  # empty -> null: lets integer columns be cast directly
            quoted_strings_can_be_null=False,
        )
        return ro, po, co

    def _produce(self, q: "queue.Queue", stop: threading.Event) -> None:
        def put(item) -> bool:
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        raw = None
        try:
            raw, stream = self._open()
            ro, po, co = self._options()
            reader = pv.open_csv(stream, read_options=ro, parse_options=po, convert_options=co)
            buf: list[pa.RecordBatch] = []
            n = 0
            while not stop.is_set():
                try:
                    b = reader.read_next_batch()
                except StopIteration:
                    break
                if b.num_rows == 0:
                    continue
                buf.append(b)
                n += b.num_rows
                self.bytes_read = raw.tell()
                if n >= self.chunk_rows:
                    if not put(("t", buf)):
                        return
                    buf, n = [], 0
            if buf:
                put(("t", buf))
            self.bytes_read = self.size
            put(("end", None))
        except BaseException as e:  # handed to the consumer
            put(("err", e))
        finally:
            if raw is not None:
                raw.close()

    def _open(self) -> tuple[pa.NativeFile, pa.NativeFile]:
        if self.span is None:
            return _open_stream(self.path)
        raw = pa.PythonFile(_ByteRange(self.path, self.span.start, self.span.end), mode="r")
        return raw, raw

    def _translate(self, e: BaseException) -> BaseException:
        if isinstance(e, Fm2OnnxError):
            return e
        failed = _decompression_error(self.path, e)
        if failed is not None:
            return failed
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if isinstance(e, pa.ArrowInvalid) and "UTF8" in msg.upper().replace("-", ""):
            line = _locate_bad_utf8(self.path)
            return DataError(f"{self.path}:{line or '?'}: not valid UTF-8 text")
        if isinstance(e, pa.ArrowInvalid) and "straddling" in msg:
            return DataError(f"{self.path}:?: a row is longer than the read block size ({self.block_size} bytes)")
        if isinstance(e, (pa.ArrowInvalid, OSError)):
            return DataError(f"{self.path}:?: cannot parse as {self.fmt.name}: {msg}")
        return e

    def __iter__(self) -> Iterator[Chunk]:
        q: queue.Queue = queue.Queue(maxsize=2)
        stop = threading.Event()
        th = threading.Thread(target=self._produce, args=(q, stop), name="fm2onnx-csv-reader", daemon=True)
        th.start()
        row0 = 0
        try:
            while True:
                kind, payload = q.get()
                if kind == "end":
                    break
                if kind == "err":
                    raise self._translate(payload)
                table = pa.Table.from_batches(payload)
                chunk = Chunk(table, row0, self)
                row0 += table.num_rows
                self.rows_parsed = row0
                yield chunk
        finally:
            stop.set()
            while th.is_alive():
                try:
                    q.get(timeout=0.05)
                except queue.Empty:
                    pass
            th.join()
