"""The encoded-dataset cache: reuse an encoding of a data file made with the same settings.

An entry lives in ``<cache_dir>/<key>``, ``key`` a hash of the settings (format, min_count, seed,
split or the user's validation/test files, skip_bad_rows, preprocessor), and is used only while the
sizes and mtimes of its source files match. ``cache_dir`` defaults to a folder per data file under
the user's cache directory (``$XDG_CACHE_HOME/fm2onnx``, else ``~/.cache/fm2onnx``): nothing is
written beside the user's data.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import Fm2OnnxError
from .dataset import ENCODED_VERSION, EncodedDataset
from .encode import encode_file, encode_files, resolve_format, resolve_min_count, source_info
from .formats import TableFormat
from .preprocessor import Preprocessor
from .splits import DEFAULT_SPLIT, check_split

__all__ = ["load_or_encode", "default_cache_dir", "user_cache_root"]


def load_or_encode(
    path: str | os.PathLike,
    fmt: TableFormat | str,
    cache_dir: str | os.PathLike | None = None,
    *,
    valid: str | os.PathLike | None = None,
    test: str | os.PathLike | None = None,
    **kw: Any,
) -> EncodedDataset:
    """Reuse an encoded copy of ``path`` made with the same settings, else encode it.

    With ``valid`` and/or ``test`` files, ``path`` is the training file and each file is its own split
    (:func:`encode_files`); without them ``path`` is split by ``seed`` and ``split``. The dataset
    lives in ``<cache_dir>/<key>``, ``key`` a hash of the settings; ``cache_dir`` defaults to
    :func:`default_cache_dir` of ``path``. A cached copy is used only while every source file's size
    and mtime still match; ``force=True`` re-encodes. Other keyword arguments go to the encoder.
    """
    path = os.fspath(path)
    fmt = resolve_format(fmt)
    files = {"train": path, "valid": valid, "test": test} if valid is not None or test is not None else None
    settings = _settings(fmt, resolve_min_count(fmt, kw.get("min_count"), kw.get("preprocessor")),
                         kw.get("seed", 0), kw.get("split", DEFAULT_SPLIT), kw.get("skip_bad_rows", False),
                         kw.get("preprocessor"), files)
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    sources = {name: source_info(os.fspath(f)) for name, f in (files or {"train": path}).items() if f is not None}
    progress = kw.get("progress", True)
    root = default_cache_dir(path) if cache_dir is None else Path(cache_dir)
    if root.exists() and not root.is_dir():
        raise Fm2OnnxError(f"{root}: exists and is not a directory; pass another --cache-dir")
    out = root / key
    force = bool(kw.pop("force", False))
    if out.is_dir() and not force:
        cached = _open_if_current(out, sources, settings)
        if cached is not None:
            if progress:
                print(f"using cached encoding {out} ({cached.rows:,} rows)", file=sys.stderr)
            return cached
        if (out / "meta.json").is_file() or not any(out.iterdir()):
            force = True  # our own stale cache entry
    try:
        if files is None:
            return encode_file(path, fmt, out, force=force, **kw)
        kw.pop("seed", None), kw.pop("split", None)  # the files are the split
        return encode_files(files, fmt, out, force=force, **kw)
    except Fm2OnnxError:
        if out.is_dir() and not force:
            # another process may have just written the same entry
            try:
                return EncodedDataset.open(out)
            except Fm2OnnxError:
                pass
        raise


def default_cache_dir(path: str | os.PathLike) -> Path:
    """Where encodings of ``path`` are cached by default: a folder named after the file (and a hash of
    its absolute path, so equal names in other folders never share one) under :func:`user_cache_root`."""
    path = os.path.abspath(os.fspath(path))
    digest = hashlib.sha256(path.encode()).hexdigest()[:16]
    return user_cache_root() / f"{os.path.basename(path)}-{digest}"


def _settings(fmt: TableFormat, min_count: int, seed: int, split, skip_bad_rows: bool,
              pre: Preprocessor | None, files: dict | None = None) -> dict:
    """Everything an encoding depends on besides the source files' contents: equal settings, equal encoding."""
    d = {
        "format": fmt.to_dict(),
        "min_count": min_count,
        "seed": seed,
        "split": list(check_split(split)),
        "skip_bad_rows": bool(skip_bad_rows),
        "version": ENCODED_VERSION,
    }
    if files is not None:
        d.update(seed=None, split="files",
                 files={n: os.path.abspath(os.fspath(f)) for n, f in files.items() if f is not None})
    if pre is not None:
        blob = json.dumps(pre.to_dict(), sort_keys=True, separators=(",", ":")).encode()
        d["preprocessor_sha256"] = hashlib.sha256(blob).hexdigest()
    return d


def _settings_of_meta(meta: dict, pre_sha: str | None) -> dict:
    """The :func:`_settings` an existing dataset was encoded with, read back from its meta.json."""
    d = {key: meta.get(key) for key in ("format", "min_count", "seed", "split", "skip_bad_rows", "version")}
    if meta.get("split") == "files":
        d["files"] = {n: f["source"]["path"] for n, f in meta.get("files", {}).items()}
    if meta.get("preprocessor_given"):
        d["preprocessor_sha256"] = pre_sha
    return d


def _open_if_current(out: Path, sources: dict, settings: dict) -> EncodedDataset | None:
    """The cached dataset in ``out`` if it encodes these versions of the sources with these settings."""
    try:
        ds = EncodedDataset.open(out)
    except Fm2OnnxError:
        return None
    if ds.meta.get("split") == "files":
        cached = {n: f.get("source", {}) for n, f in ds.meta.get("files", {}).items()}
    else:
        cached = {"train": ds.meta.get("source", {})}
    same_files = set(cached) == set(sources) and all(
        cached[n].get("size") == s["size"] and cached[n].get("mtime_ns") == s["mtime_ns"] for n, s in sources.items())
    if same_files and _settings_of_meta(ds.meta, settings.get("preprocessor_sha256")) == settings:
        return ds
    return None


def user_cache_root() -> Path:
    """``$XDG_CACHE_HOME/fm2onnx``, else ``~/.cache/fm2onnx``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fm2onnx"
