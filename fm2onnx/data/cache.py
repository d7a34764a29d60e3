"""The encoded-dataset cache: reuse an encoding of a data file made with the same settings.

An entry lives in ``<cache_dir>/<key>``, ``key`` a hash of the settings (format, min_count, seed,
split, skip_bad_rows, preprocessor), and is used only while the source's size and mtime match.
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
from .encode import encode_file, resolve_format, resolve_min_count, source_info
from .formats import TableFormat
from .preprocessor import Preprocessor
from .splits import check_split

__all__ = ["load_or_encode"]


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
    fmt = resolve_format(fmt)
    pre = kw.get("preprocessor")
    settings = _settings(fmt, resolve_min_count(fmt, kw.get("min_count"), pre), kw.get("seed", 0),
                         kw.get("split", (0.8, 0.1, 0.1)), kw.get("skip_bad_rows", False), pre)
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    source = source_info(path)
    progress = kw.get("progress", True)
    root = _cache_root(path, progress) if cache_dir is None else Path(cache_dir)
    if root.exists() and not root.is_dir():
        raise Fm2OnnxError(f"{root}: exists and is not a directory; pass another cache_dir")
    out = root / key
    force = bool(kw.pop("force", False))
    if out.is_dir() and not force:
        cached = _open_if_current(out, source, settings)
        if cached is not None:
            if progress:
                print(f"using cached encoding {out} ({cached.rows:,} rows)", file=sys.stderr)
            return cached
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


def _settings(fmt: TableFormat, min_count: int, seed: int, split, skip_bad_rows: bool,
              pre: Preprocessor | None) -> dict:
    """Everything an encoding depends on besides the source file: equal settings, equal encoding."""
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
    """The :func:`_settings` an existing dataset was encoded with, read back from its meta.json."""
    d = {key: meta.get(key) for key in ("format", "min_count", "seed", "split", "skip_bad_rows", "version")}
    if meta.get("preprocessor_given"):
        d["preprocessor_sha256"] = pre_sha
    return d


def _open_if_current(out: Path, source: dict, settings: dict) -> EncodedDataset | None:
    """The cached dataset in ``out`` if it encodes this version of the source with these settings."""
    try:
        ds = EncodedDataset.open(out)
    except Fm2OnnxError:
        return None
    cached_source = ds.meta.get("source", {})
    if (
        cached_source.get("size") == source["size"]
        and cached_source.get("mtime_ns") == source["mtime_ns"]
        and _settings_of_meta(ds.meta, settings.get("preprocessor_sha256")) == settings
    ):
        return ds
    return None


def _cache_root(path: str, progress: bool) -> Path:
    """``<path>.fm2onnx-cache`` beside the data, or a per-user directory when that is not writable."""
    root = Path(path + ".fm2onnx-cache")
    parent = root.parent
    if (root.is_dir() and _writable(root)) or _writable(parent):
        return root
    digest = hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:16]
    root = _user_cache_root() / f"{digest}-{os.path.basename(path)}"
    if progress:
        print(f"note: {parent} is not writable; caching the encoded data in {root}", file=sys.stderr)
    return root


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
