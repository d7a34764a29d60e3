"""The encoded dataset directory: what :func:`.encode_file` and ``synthesize(fmt="ids")`` write::

    ids.npy            int32 [rows, n_fields]   field ids in file order (0 = unknown)
    labels.npy         float32 [rows]           0/1
    split.npy          uint8 [rows]             0 train, 1 valid, 2 test (seeded hash of the row)
    preprocessor.json  Preprocessor.to_dict()
    meta.json          source, rows, bad rows, format, min_count, seed, split, ...

:class:`EncodedDataset` reads one (arrays memory-mapped), :class:`DatasetWriter` writes one.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import __version__
from ..errors import Fm2OnnxError
from .npy import NpyAppender
from .preprocessor import Preprocessor
from .splits import SPLIT_NAMES, assign_split, check_split

__all__ = ["EncodedDataset", "DatasetWriter", "write_dataset_files", "ENCODED_KIND", "ENCODED_VERSION"]

ENCODED_KIND = "fm2onnx.encoded"
ENCODED_VERSION = 1
DATASET_FILES = ("ids.npy", "labels.npy", "split.npy", "preprocessor.json", "meta.json")


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
        """Open a dataset directory (``_pre``: its preprocessor, when the caller already holds it)."""
        p = Path(path)
        if not p.is_dir():
            raise Fm2OnnxError(f"{p}: no such encoded dataset directory")
        missing = [f for f in DATASET_FILES if not (p / f).is_file()]
        if missing:
            raise Fm2OnnxError(f"{p}: not an encoded dataset (missing {', '.join(missing)})")
        meta, pre = _read_json_files(p, _pre)
        ids, labels, split = _load_arrays(p, mmap)
        rows = meta.get("rows")
        _check_array(p / "ids.npy", ids, np.int32, (rows, pre.n_fields))
        _check_array(p / "labels.npy", labels, np.float32, (rows,))
        _check_array(p / "split.npy", split, np.uint8, (rows,))
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


def _read_json_files(p: Path, pre: Preprocessor | None) -> tuple[dict, Preprocessor]:
    try:
        meta = json.loads((p / "meta.json").read_text(encoding="utf-8"))
        pre_d = None if pre is not None else json.loads((p / "preprocessor.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise Fm2OnnxError(f"{p}: unreadable meta.json/preprocessor.json: {e}") from None
    if not isinstance(meta, dict) or meta.get("kind") != ENCODED_KIND:
        raise Fm2OnnxError(f"{p / 'meta.json'}: not an fm2onnx encoded dataset")
    if pre is None:
        pre = Preprocessor.from_dict(pre_d, where=str(p / "preprocessor.json"))
    return meta, pre


def _load_arrays(p: Path, mmap: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mode = "r" if mmap else None
    try:
        return tuple(np.load(p / name, mmap_mode=mode) for name in ("ids.npy", "labels.npy", "split.npy"))
    except (OSError, ValueError) as e:
        raise Fm2OnnxError(f"{p}: unreadable array file: {e}") from None


def _check_array(path: Path, a: np.ndarray, dtype, shape: tuple) -> None:
    if a.dtype != dtype or a.shape != shape:
        expected = f"{np.dtype(dtype)} [{', '.join(map(str, shape))}]"
        raise Fm2OnnxError(f"{path}: expected {expected}, found {a.dtype} {list(a.shape)}")


# ----------------------------------------------------------------------------- writing


class DatasetWriter:
    """Appends rows (ids + labels) to a dataset directory's arrays, assigning each row its split.

    A context manager: leaving the block with an exception closes the files without finishing them.
    """

    def __init__(self, directory: Path, n_fields: int, seed: int, split: Sequence[float]):
        self.directory = directory
        self.seed = seed
        self.split = list(check_split(split))
        self.split_counts = np.zeros(3, np.int64)
        self.positives = 0
        self._ids = NpyAppender(str(directory / "ids.npy"), np.int32, (n_fields,))
        self._labels = NpyAppender(str(directory / "labels.npy"), np.float32)
        self._split = NpyAppender(str(directory / "split.npy"), np.uint8)

    @property
    def rows(self) -> int:
        return self._ids.rows

    def write(self, ids: np.ndarray, labels: np.ndarray) -> None:
        """Append int32 ids [n, n_fields] and their bool labels [n]."""
        row0 = self.rows
        split = assign_split(np.arange(row0, row0 + len(labels)), self.seed, self.split)
        self._ids.write(ids)
        self._labels.write(labels.astype(np.float32))
        self._split.write(split)
        self.split_counts += np.bincount(split, minlength=3)[:3]
        self.positives += int(labels.sum())

    def close(self) -> None:
        """Finish the arrays (``ids.npy`` may then be rewritten in place)."""
        for appender in (self._ids, self._labels, self._split):
            appender.close()

    def meta(self, pre: Preprocessor, **entries: Any) -> dict:
        """``meta.json`` content: what the writer knows about the rows, plus the caller's ``entries``."""
        rows = self.rows
        return {
            "kind": ENCODED_KIND,
            "version": ENCODED_VERSION,
            "fm2onnx_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "rows": int(rows),
            "n_fields": pre.n_fields,
            "field_names": pre.field_names,
            "vocab_sizes": pre.vocab_sizes,
            "min_count": pre.min_count,
            "seed": self.seed,
            "split": self.split,
            "split_counts": {n: int(c) for n, c in zip(SPLIT_NAMES, self.split_counts)},
            "positive_rate": self.positives / rows if rows else 0.0,
            **entries,
        }

    def abort(self) -> None:
        """Close the files without finishing them (their directory is about to be deleted)."""
        for appender in (self._ids, self._labels, self._split):
            appender.abort()

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_dataset_files(directory: Path, pre: Preprocessor, meta: dict) -> None:
    """preprocessor.json + meta.json (the arrays are written by a :class:`DatasetWriter`)."""
    # json.dumps runs the C encoder (json.dump would take the pure-Python path: ~10x slower)
    text = json.dumps(pre.to_dict(), ensure_ascii=False, separators=(",", ":"))
    with open(directory / "preprocessor.json", "w", encoding="utf-8") as f:
        f.write(text)
        f.write("\n")
    meta_text = json.dumps(meta, indent=1, ensure_ascii=False)
    (directory / "meta.json").write_text(meta_text + "\n", encoding="utf-8")
