"""Streaming two-pass encoding of a text data file into a compact on-disk dataset directory.

Pass 1 parses the text once (pyarrow's streaming CSV reader, in a background thread), validates
it, counts tokens per field and writes chunk-local codes into ``ids.npy`` (each chunk's distinct
tokens go to a temporary Arrow stream). The vocabularies are built from the counts, and pass 2
rewrites the codes into vocabulary ids in place, without parsing the text again. With a given
preprocessor, the file is parsed once and encoded directly. Memory is bounded by the
vocabularies (distinct tokens) plus one chunk of rows. The output directory holds::

    ids.npy            int32 [rows, n_fields]   field ids in file order (0 = unknown)
    labels.npy         float32 [rows]           0/1
    split.npy          uint8 [rows]             0 train, 1 valid, 2 test (seeded hash of the row)
    preprocessor.json  Preprocessor.to_dict()
    meta.json          source path/size/mtime, rows, bad rows, format, min_count, seed, split, timings
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import __version__
from ..errors import DataError, Fm2OnnxError
from ..progress import Progress
from ._util import SPLIT_NAMES, NpyAppender, assign_split, check_split
from .formats import TableFormat, get_format
from .reader import Chunk, ChunkReader, check_input_file
from .vocab import ChunkView, FieldCodes, Preprocessor, VocabCounter, _short

__all__ = ["encode_file", "load_or_encode", "EncodedDataset", "ENCODED_KIND", "BadRows"]

ENCODED_KIND = "fm2onnx.encoded"
ENCODED_VERSION = 1
_MAX_EXAMPLES = 20
_FILES = ("ids.npy", "labels.npy", "split.npy", "preprocessor.json", "meta.json")


# ----------------------------------------------------------------------------- bad rows


class BadRows:
    """Count of malformed rows plus the first few (line, reason) examples."""

    def __init__(self) -> None:
        self.count = 0
        self.examples: list[tuple[int, str]] = []

    def add(self, line: int, msg: str) -> None:
        self.count += 1
        if len(self.examples) < _MAX_EXAMPLES or line < self.examples[-1][0]:
            self.examples.append((line, msg))
            self.examples.sort()
            del self.examples[_MAX_EXAMPLES:]

    def add_many(self, n: int, examples: Sequence[tuple[int, str]]) -> None:
        self.count += n - len(examples)
        for line, msg in examples:
            self.add(line, msg)

    @property
    def lines(self) -> list[int]:
        return [ln for ln, _ in self.examples]


def _np(a) -> np.ndarray:
    return a.to_numpy() if hasattr(a, "num_chunks") else a.to_numpy(zero_copy_only=False)


def _label_problem(view: ChunkView, fmt: TableFormat):
    lab = view.column(fmt.label)
    is1 = pc.fill_null(pc.equal(lab, "1"), False)
    ok = pc.or_(is1, pc.fill_null(pc.equal(lab, "0"), False))
    ok_np = _np(ok)
    is1_np = _np(is1)
    if ok_np.all():
        return is1_np, None
    srcs = [fmt.label] + [s for s in dict.fromkeys(f.source for f in fmt.fields)]

    def describe(row: int) -> str:
        value = lab[row].as_py()
        if not value and all(not view.column(s)[row].as_py() for s in srcs):
            return "empty line"
        return f"column {fmt.label}: label must be 0 or 1, found {_short(value or '')}"

    return is1_np, (~ok_np, describe)


def _check_chunk(chunk: Chunk, view: ChunkView, fmt: TableFormat, skip: bool, bad: BadRows | None):
    """Validate a chunk. Returns (keep mask or None, labels of all rows as bool).

    Raises DataError for the first malformed line (in file order) unless ``skip``; with ``skip`` the
    malformed rows are recorded into ``bad`` (if given) and excluded via the mask.
    """
    is1, label_prob = _label_problem(view, fmt)
    problems = [label_prob] if label_prob else []
    seen_sources: set[tuple[str, str]] = set()
    for spec in fmt.fields:
        key = (spec.source, "hour" if spec.kind in ("day_of_week", "hour_of_day") else spec.kind)
        if key in seen_sources:
            continue
        seen_sources.add(key)
        p = view.field_problems(spec)
        if p is not None:
            problems.append(p)
    if not skip:
        rejected = chunk.reader.bad_lines_upto(chunk.last_line)
        first_value: tuple[int, str] | None = None
        if problems:
            best = min(problems, key=lambda p: int(np.flatnonzero(p[0])[0]))
            row = int(np.flatnonzero(best[0])[0])
            first_value = (int(chunk.lines(np.array([row]))[0]), best[1](row))
        cands = ([first_value] if first_value else []) + rejected[:1]
        if cands:
            line, msg = min(cands)
            raise DataError(f"{chunk.reader.path}:{line}: {msg}")
        return None, is1
    if not problems:
        return None, is1
    mask = np.zeros(chunk.rows, bool)
    for m, _ in problems:
        mask |= m
    if bad is not None:
        rows = np.flatnonzero(mask)
        lines = chunk.lines(rows[:_MAX_EXAMPLES])
        examples = []
        for r, ln in zip(rows[:_MAX_EXAMPLES], lines):
            msg = next(d(int(r)) for m, d in problems if m[r])
            examples.append((int(ln), msg))
        bad.add_many(len(rows), examples)
    return ~mask, is1


def _raise_rejected(reader: ChunkReader) -> None:
    rej = reader.bad_lines_upto(None)
    if rej:
        line, msg = rej[0]
        raise DataError(f"{reader.path}:{line}: {msg}")


# ----------------------------------------------------------------------------- dataset


class EncodedDataset:
    """An encoded dataset directory (see module docstring); arrays are memory-mapped read-only."""

    def __init__(self, path: Path, ids: np.ndarray, labels: np.ndarray, split: np.ndarray,
                 preprocessor: Preprocessor, meta: dict):
        self.path = path
        self.ids = ids
        self.labels = labels
        self.split = split
        self.preprocessor = preprocessor
        self.meta = meta

    @classmethod
    def open(cls, path: str | os.PathLike, mmap: bool = True, *, _pre: Preprocessor | None = None) -> "EncodedDataset":
        p = Path(path)
        if not p.is_dir():
            raise Fm2OnnxError(f"{p}: no such encoded dataset directory")
        missing = [f for f in _FILES if not (p / f).is_file()]
        if missing:
            raise Fm2OnnxError(f"{p}: not an encoded dataset (missing {', '.join(missing)})")
        try:
            meta = json.loads((p / "meta.json").read_text(encoding="utf-8"))
            pre_d = None if _pre is not None else json.loads((p / "preprocessor.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise Fm2OnnxError(f"{p}: unreadable meta.json/preprocessor.json: {e}") from None
        if not isinstance(meta, dict) or meta.get("kind") != ENCODED_KIND:
            raise Fm2OnnxError(f"{p / 'meta.json'}: not an fm2onnx encoded dataset")
        pre = _pre if _pre is not None else Preprocessor.from_dict(pre_d, where=str(p / "preprocessor.json"))
        mode = "r" if mmap else None
        try:
            ids = np.load(p / "ids.npy", mmap_mode=mode)
            labels = np.load(p / "labels.npy", mmap_mode=mode)
            split = np.load(p / "split.npy", mmap_mode=mode)
        except (OSError, ValueError) as e:
            raise Fm2OnnxError(f"{p}: unreadable array file: {e}") from None
        rows = meta.get("rows")
        if ids.dtype != np.int32 or ids.ndim != 2 or ids.shape != (rows, pre.n_fields):
            raise Fm2OnnxError(f"{p / 'ids.npy'}: expected int32 [{rows}, {pre.n_fields}], found {ids.dtype} {list(ids.shape)}")
        if labels.dtype != np.float32 or labels.shape != (rows,):
            raise Fm2OnnxError(f"{p / 'labels.npy'}: expected float32 [{rows}], found {labels.dtype} {list(labels.shape)}")
        if split.dtype != np.uint8 or split.shape != (rows,):
            raise Fm2OnnxError(f"{p / 'split.npy'}: expected uint8 [{rows}], found {split.dtype} {list(split.shape)}")
        return cls(p, ids, labels, split, pre, meta)

    @property
    def rows(self) -> int:
        return int(self.ids.shape[0])

    @property
    def n_fields(self) -> int:
        return int(self.ids.shape[1])

    @property
    def field_names(self) -> list[str]:
        return self.preprocessor.field_names

    @property
    def vocab_sizes(self) -> list[int]:
        return self.preprocessor.vocab_sizes

    @property
    def bad_rows(self) -> int:
        return int(self.meta.get("bad_rows", 0))

    @property
    def bad_row_lines(self) -> list[int]:
        return list(self.meta.get("bad_row_lines", []))

    def indices(self, name: str) -> np.ndarray:
        """int64 row indices of "train" / "valid" / "test" (in file order), or "all"."""
        if name == "all":
            return np.arange(self.rows, dtype=np.int64)
        if name not in SPLIT_NAMES:
            raise Fm2OnnxError(f"unknown split {name!r}; use train, valid, test or all")
        return np.flatnonzero(np.asarray(self.split) == SPLIT_NAMES.index(name)).astype(np.int64)

    def check(self) -> None:
        """Full scan: every id within its field's vocabulary, labels 0/1, split 0..2."""
        sizes = np.asarray(self.vocab_sizes, np.int64)
        step = 1 << 18
        for a in range(0, self.rows, step):
            block = np.asarray(self.ids[a:a + step])
            if block.size and ((block < 0).any() or (block.max(axis=0) >= sizes).any()):
                raise Fm2OnnxError(f"{self.path / 'ids.npy'}: id out of vocabulary range near row {a}")
        if self.rows and not np.isin(np.unique(np.asarray(self.labels)), [0.0, 1.0]).all():
            raise Fm2OnnxError(f"{self.path / 'labels.npy'}: labels other than 0/1")
        if self.rows and int(np.asarray(self.split).max()) > 2:
            raise Fm2OnnxError(f"{self.path / 'split.npy'}: split values other than 0/1/2")

    def __repr__(self) -> str:
        return f"EncodedDataset({str(self.path)!r}, rows={self.rows}, fields={self.n_fields})"


# ----------------------------------------------------------------------------- output dir handling


def _prepare_out(out_dir: Path, force: bool) -> Path:
    """Check ``out_dir`` may be (over)written; return a fresh temp dir beside it."""
    if out_dir.exists() or out_dir.is_symlink():
        if not force:
            raise Fm2OnnxError(f"{out_dir}: already exists; pass force=True (--force) to overwrite it")
        if not out_dir.is_dir() or out_dir.is_symlink():
            raise Fm2OnnxError(f"{out_dir}: exists and is not a directory; refusing to overwrite it")
        if any(out_dir.iterdir()) and not (out_dir / "meta.json").is_file():
            raise Fm2OnnxError(
                f"{out_dir}: exists and is not an encoded dataset (no meta.json); refusing to delete it"
            )
    parent = out_dir.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=parent))
    except OSError as e:
        raise Fm2OnnxError(f"{out_dir}: cannot create output directory: {e.strerror or e}") from None


def _commit_out(tmp: Path, out_dir: Path) -> None:
    old = None
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        os.rename(out_dir, old / "d")
    os.rename(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def write_dataset_files(tmp: Path, pre: Preprocessor, meta: dict) -> None:
    """preprocessor.json + meta.json (arrays are written by the caller)."""
    # json.dumps runs the C encoder (json.dump would take the pure-Python path: ~10x slower)
    text = json.dumps(pre.to_dict(), ensure_ascii=False, separators=(",", ":"))
    with open(tmp / "preprocessor.json", "w", encoding="utf-8") as f:
        f.write(text)
        f.write("\n")
    _write_json(tmp / "meta.json", meta)


# ----------------------------------------------------------------------------- encode_file


def _resolve_format(fmt: TableFormat | str) -> TableFormat:
    if isinstance(fmt, TableFormat):
        return fmt
    if isinstance(fmt, str):
        return get_format(fmt)
    raise Fm2OnnxError(f"fmt must be a TableFormat or a format name, got {type(fmt).__name__}")


def _resolve_min_count(fmt: TableFormat, min_count: int | None, pre: Preprocessor | None) -> int:
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


def _transpose_into(dst: np.ndarray, src: np.ndarray, step: int = 4096) -> None:
    """dst[n, f] = src[f, n] in cache-sized tiles (a column-at-a-time copy is ~10x slower)."""
    for a in range(0, src.shape[1], step):
        dst[a:a + step] = src[:, a:a + step].T


class _Plan:
    """What pass 1 left for pass 2: per chunk, its rows and how each field was coded.

    Pass 1 writes, for field j of a chunk, ``base_j + 1 + code`` (``base_j`` for a missing value),
    where the fields' code ranges are laid end to end; pass 2 then maps a whole chunk with one
    lookup table. Fields coded by tokens have them in the spill stream, in field order.
    """

    def __init__(self) -> None:
        # (row0, rows, [(integer key offset, or None when the tokens were spilled; size)] per field)
        self.chunks: list[tuple[int, int, list[tuple[int | None, int]]]] = []


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
) -> EncodedDataset:
    """Encode the text file ``path`` of format ``fmt`` into the dataset directory ``out_dir``.

    Without ``preprocessor``: pass 1 parses the file once, validates it, counts tokens and writes
    chunk-local codes (plus each chunk's distinct tokens, spilled to a temporary Arrow stream);
    the vocabularies are then built (``min_count`` defaults to the format's threshold: criteo 8,
    avazu 5, csv/tsv 1) and pass 2 rewrites the codes into ids in place. With ``preprocessor`` its
    vocabularies are used as they are (unseen values -> 0) in a single parse.

    Malformed rows raise ``DataError("path:line: ...")`` unless ``skip_bad_rows``, which excludes,
    counts and reports them (``meta.json``: bad_rows, bad_row_lines, bad_row_examples).
    """
    t_start = time.perf_counter()
    path = os.fspath(path)
    fmt = _resolve_format(fmt)
    fr = check_split(split)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise Fm2OnnxError(f"seed must be an integer, got {seed!r}")
    seed = int(seed)
    if preprocessor is not None:
        if not isinstance(preprocessor, Preprocessor):
            raise Fm2OnnxError("preprocessor must be a Preprocessor (use Preprocessor.from_dict)")
        if not preprocessor.compatible_with(fmt):
            raise Fm2OnnxError(
                f"the given preprocessor was built for format {preprocessor.format_name!r} with fields "
                f"{preprocessor.field_names[:4]}..., which do not match format {fmt.name!r}"
            )
    mc = _resolve_min_count(fmt, min_count, preprocessor)
    size = check_input_file(path)
    st = os.stat(path)
    out = Path(out_dir)
    rkw = {}
    if block_size:
        rkw["block_size"] = block_size
    if chunk_rows:
        rkw["chunk_rows"] = chunk_rows
    reader = ChunkReader(path, fmt, **rkw)  # checks the header before anything is created
    tmp = _prepare_out(out, force)
    bad = BadRows()
    writers: list[NpyAppender] = []
    spill = None
    try:
        w_ids = NpyAppender(str(tmp / "ids.npy"), np.int32, (fmt.n_fields,))
        w_lab = NpyAppender(str(tmp / "labels.npy"), np.float32)
        w_split = NpyAppender(str(tmp / "split.npy"), np.uint8)
        writers = [w_ids, w_lab, w_split]
        split_counts = np.zeros(3, np.int64)
        positives = 0
        memos: dict = {}
        pre = preprocessor
        name = os.path.basename(path)
        prog = Progress(f"{'count' if pre is None else 'encode'} {name}", progress)
        if pre is None:
            counter = VocabCounter(fmt.n_fields)
            plan = _Plan()
            spill_path = tmp / "tokens.spill.arrows"
            spill = pa.ipc.new_stream(str(spill_path), pa.schema([("v", pa.string())]))
        for chunk in reader:
            view = ChunkView(chunk.table, memos)
            keep, is1 = _check_chunk(chunk, view, fmt, skip_bad_rows, bad)
            if keep is not None:
                is1 = is1[keep]
            n = len(is1)
            if n == 0:
                continue
            row0 = w_ids.rows
            if pre is None:
                cols = np.empty((fmt.n_fields, n), np.int32)
                coded: list[tuple[int | None, int]] = []
                base = 0
                for j, spec in enumerate(fmt.fields):
                    fc = view.field_codes(spec, keep)
                    keys, cnts = fc.counts()
                    counter.add(j, keys, cnts)
                    if base + fc.size + 1 >= 2**31:
                        raise Fm2OnnxError(f"{path}: chunk too large to encode; pass a smaller chunk_rows")
                    np.add(fc.codes, base + 1, out=cols[j])
                    base += fc.size + 1
                    if fc.tokens is None:
                        coded.append((fc.offset, fc.size))
                    else:
                        coded.append((None, fc.size))
                        spill.write_batch(pa.record_batch([fc.tokens], names=["v"]))
                plan.chunks.append((row0, n, coded))
                ids = np.empty((n, fmt.n_fields), np.int32)
                _transpose_into(ids, cols)
                del cols
            else:
                ids = pre.encode_view(view)
                if keep is not None:
                    ids = ids[keep]
            sp = assign_split(np.arange(row0, row0 + n), seed, fr)
            w_ids.write(ids)
            w_lab.write(is1.astype(np.float32))
            w_split.write(sp)
            split_counts += np.bincount(sp, minlength=3)[:3]
            positives += int(is1.sum())
            prog.update(reader.rows_parsed, reader.bytes_read / size)
        if not skip_bad_rows:
            _raise_rejected(reader)
        for line, msg in reader.bad_lines_upto(None):
            bad.add(line, msg)
        rows = w_ids.rows
        if rows == 0:
            raise DataError(f"{path}:{reader.first_data_line}: no valid data rows")
        for w in writers:
            w.close()
        first_s = prog.done(reader.rows_parsed)
        count_s, encode_s = (first_s, 0.0) if pre is None else (0.0, first_s)
        if pre is None:
            spill.close()
            spill = None
            pre = Preprocessor.from_counter(fmt, counter, mc)
            del counter, memos
            prog = Progress(f"encode {name}", progress)
            _remap(tmp / "ids.npy", spill_path, plan, pre, prog)
            os.unlink(spill_path)
            encode_s = prog.done(rows)
        total_s = time.perf_counter() - t_start
        meta = {
            "kind": ENCODED_KIND,
            "version": ENCODED_VERSION,
            "fm2onnx_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "source": {
                "path": os.path.abspath(path),
                "size": int(size),
                "mtime_ns": int(st.st_mtime_ns),
                "mtime": float(st.st_mtime),
            },
            "format": fmt.to_dict(),
            "rows": int(rows),
            "n_fields": pre.n_fields,
            "field_names": pre.field_names,
            "vocab_sizes": pre.vocab_sizes,
            "min_count": mc,
            "seed": seed,
            "split": list(fr),
            "split_counts": {n: int(c) for n, c in zip(SPLIT_NAMES, split_counts)},
            "positive_rate": positives / rows,
            "skip_bad_rows": bool(skip_bad_rows),
            "bad_rows": bad.count,
            "bad_row_lines": bad.lines,
            "bad_row_examples": [f"{ln}: {msg}" for ln, msg in bad.examples],
            "preprocessor_given": preprocessor is not None,
            "timing": {
                "count_s": round(count_s, 3),
                "encode_s": round(encode_s, 3),
                "total_s": round(total_s, 3),
                "rows_per_s": round(rows / total_s, 1) if total_s > 0 else None,
            },
        }
        write_dataset_files(tmp, pre, meta)
        _commit_out(tmp, out)
    except BaseException:
        for w in writers:
            w.abort()
        if spill is not None:
            try:
                spill.close()
            except Exception:
                pass
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if progress:
        msg = f"wrote {out}: {rows:,} rows, {pre.n_fields} fields, {sum(pre.vocab_sizes):,} features"
        if bad.count:
            msg += f"; skipped {bad.count:,} bad rows (first at lines {', '.join(map(str, bad.lines[:5]))})"
        print(msg, file=sys.stderr)
    return EncodedDataset.open(out, _pre=pre)  # the vocabularies in memory are the ones just written


def _remap(ids_path: Path, spill_path: Path, plan: _Plan, pre: Preprocessor, prog: Progress,
           group_tokens: int = 1 << 22) -> None:
    """Pass 2: chunk-local codes in ``ids.npy`` -> vocabulary ids, in place, one table per chunk.

    The spilled tokens of several chunks are looked up together (one hash of each vocabulary per
    group of chunks holding up to ``group_tokens`` tokens), so large vocabularies stay cheap.
    """
    mm = np.load(ids_path, mmap_mode="r+")
    total = mm.shape[0]
    nf = pre.n_fields
    with pa.memory_map(str(spill_path)) as src:
        stream = pa.ipc.open_stream(src)
        i = 0
        while i < len(plan.chunks):
            group, held = [], 0
            while i < len(plan.chunks) and (not group or held < group_tokens):
                chunk = plan.chunks[i]
                group.append(chunk)
                held += sum(size for off, size in chunk[2] if off is None)
                i += 1
            # tokens of the group, per field, in chunk order
            spilled: list[list[pa.Array]] = [[] for _ in range(nf)]
            for _, _, coded in group:
                for j, (offset, _) in enumerate(coded):
                    if offset is None:
                        spilled[j].append(stream.read_next_batch().column(0))
            field_ids: list[list[np.ndarray]] = []
            for j in range(nf):
                if spilled[j]:
                    ids = pre.value_ids(j, FieldCodes(pa.concat_arrays(spilled[j]), 0, _EMPTY))
                    cuts = np.cumsum([len(a) for a in spilled[j]])[:-1]
                    field_ids.append(np.split(ids, cuts))
                else:
                    field_ids.append([])
            used = [0] * nf
            for row0, n, coded in group:
                table = np.zeros(sum(size + 1 for _, size in coded), np.int32)
                base = 0
                for j, (offset, size) in enumerate(coded):
                    if offset is None:
                        ids = field_ids[j][used[j]]
                        used[j] += 1
                    else:
                        ids = pre.value_ids(j, FieldCodes(None, offset, _EMPTY, size))
                    table[base + 1:base + 1 + size] = ids
                    base += size + 1
                block = mm[row0:row0 + n]
                np.take(table, block, out=block)
                prog.update(row0 + n, (row0 + n) / total)
    mm.flush()
    del mm


_EMPTY = np.zeros(0, np.int32)


# ----------------------------------------------------------------------------- cache


def _settings(fmt: TableFormat, min_count: int, seed: int, split, skip_bad_rows: bool,
              pre: Preprocessor | None) -> dict:
    d = {
        "format": fmt.to_dict(),
        "min_count": min_count,
        "seed": seed,
        "split": list(check_split(split)),
        "skip_bad_rows": bool(skip_bad_rows),
        "version": ENCODED_VERSION,
    }
    if pre is not None:
        blob = json.dumps(pre.to_dict(), sort_keys=True, separators=(",", ":")).encode()
        d["preprocessor_sha256"] = hashlib.sha256(blob).hexdigest()
    return d


def _settings_of_meta(meta: dict, pre_sha: str | None) -> dict:
    d = {
        "format": meta.get("format"),
        "min_count": meta.get("min_count"),
        "seed": meta.get("seed"),
        "split": meta.get("split"),
        "skip_bad_rows": meta.get("skip_bad_rows"),
        "version": meta.get("version"),
    }
    if meta.get("preprocessor_given"):
        d["preprocessor_sha256"] = pre_sha
    return d


def _writable(d: Path) -> bool:
    """Writable by us and not marked read-only (root may write anywhere; it still should not
    write into a directory without write bits, such as a read-only copy of shared data)."""
    try:
        return os.access(d, os.W_OK) and bool(os.stat(d).st_mode & 0o222)
    except OSError:
        return False


def _user_cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fm2onnx"


def load_or_encode(
    path: str | os.PathLike,
    fmt: TableFormat | str,
    cache_dir: str | os.PathLike | None = None,
    **kw: Any,
) -> EncodedDataset:
    """Reuse an encoded copy of ``path`` made with the same settings, else encode it.

    The dataset lives in ``<cache_dir>/<key>``, ``key`` a hash of the settings (format, min_count,
    seed, split, skip_bad_rows, preprocessor). ``cache_dir`` defaults to ``<path>.fm2onnx-cache``
    beside the data (or ``~/.cache/fm2onnx/<hash of path>`` when that directory is not writable).
    A cached copy is used only if the source's size and mtime still match; ``force=True`` re-encodes.
    Other keyword arguments go to :func:`encode_file`.
    """
    path = os.fspath(path)
    fmt = _resolve_format(fmt)
    pre = kw.get("preprocessor")
    mc = _resolve_min_count(fmt, kw.get("min_count"), pre)
    seed = kw.get("seed", 0)
    split = kw.get("split", (0.8, 0.1, 0.1))
    settings = _settings(fmt, mc, seed, split, kw.get("skip_bad_rows", False), pre)
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    size = check_input_file(path)
    st = os.stat(path)
    progress = kw.get("progress", True)
    if cache_dir is None:
        root = Path(path + ".fm2onnx-cache")
        parent = root.parent
        if not (root.is_dir() and _writable(root)) and not _writable(parent):
            apath = os.path.abspath(path)
            root = _user_cache_root() / (
                hashlib.sha256(apath.encode()).hexdigest()[:16] + "-" + os.path.basename(path)
            )
            if progress:
                print(f"note: {parent} is not writable; caching the encoded data in {root}", file=sys.stderr)
    else:
        root = Path(cache_dir)
    if root.exists() and not root.is_dir():
        raise Fm2OnnxError(f"{root}: exists and is not a directory; pass another cache_dir")
    out = root / key
    force = bool(kw.pop("force", False))
    if out.is_dir() and not force:
        try:
            ds = EncodedDataset.open(out)
            src = ds.meta.get("source", {})
            pre_sha = settings.get("preprocessor_sha256")
            if (
                src.get("size") == size
                and src.get("mtime_ns") == int(st.st_mtime_ns)
                and _settings_of_meta(ds.meta, pre_sha) == settings
            ):
                if progress:
                    print(f"using cached encoding {out} ({ds.rows:,} rows)", file=sys.stderr)
                return ds
        except Fm2OnnxError:
            pass
        if (out / "meta.json").is_file() or not any(out.iterdir()):
            force = True  # our own stale cache entry
    try:
        return encode_file(path, fmt, out, force=force, **kw)
    except Fm2OnnxError:
        if out.is_dir() and not force:
            # another process may have just written the same entry
            try:
                return EncodedDataset.open(out)
            except Fm2OnnxError:
                pass
        raise
