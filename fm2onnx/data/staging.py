"""Outputs are built beside their target and renamed over it only once complete.

A failed or interrupted run therefore never leaves a half-written dataset under the target's name,
and never deletes what was there; nor does it leave debris: the temporary directory goes, and so do
the folders made to hold it if they are still empty (a cache folder per data file). A process killed
outright cannot clean up, so a temporary directory is named after its process, and the next run on
the same target deletes those whose process is gone. A write failure (a full disk) is one line naming
the target. What may be replaced at all is decided here: nothing without ``force``
(:func:`fm2onnx.files.refuse_overwrite`), and even with it never a directory that is not an encoded
dataset (it could hold a user's files).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Iterator

from ..errors import Fm2OnnxError
from ..files import (check_output_file, missing_folders, process_alive, refuse_overwrite,
                     remove_if_empty, written_atomically)

__all__ = ["staged_directory", "staged_file"]


@contextlib.contextmanager
def staged_directory(target: Path, *, force: bool) -> Iterator[Path]:
    """A fresh temporary directory beside ``target``; it replaces ``target`` if the block succeeds."""
    _check_replaceable_directory(target, force)
    made = missing_folders(target.parent)
    try:
        with _creating(target):
            target.parent.mkdir(parents=True, exist_ok=True)
            _remove_orphans(target)
            tmp = Path(tempfile.mkdtemp(prefix=_owned_prefix(target, "tmp"), dir=target.parent))
    except BaseException:
        remove_if_empty(made)
        raise
    try:
        yield tmp
        _replace_directory(tmp, target)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        remove_if_empty(made)
        if isinstance(e, OSError):
            where = f" ({e.filename})" if e.filename else ""
            raise Fm2OnnxError(f"{target}: cannot write{where}: {e.strerror or e}; nothing was kept") from None
        raise


def _owned_prefix(target: Path, kind: str) -> str:
    return f".{target.name}.{kind}-{os.getpid()}@{socket.gethostname()}-"


def _remove_orphans(target: Path) -> None:
    """Temporary directories of ``target`` left by processes of this host that no longer run."""
    pattern = re.compile(re.escape(f".{target.name}.") + r"(?:tmp|old)-(\d+)@(.+)-[^-]+$")
    host = socket.gethostname()
    for entry in target.parent.iterdir():
        m = pattern.match(entry.name)
        orphan = m and m.group(2) == host and not process_alive(int(m.group(1)))
        if orphan and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)


@contextlib.contextmanager
def staged_file(target: Path, *, force: bool) -> Iterator[Path]:
    """A fresh temporary file path beside ``target``; it replaces ``target`` if the block succeeds."""
    check_output_file(target, force=force)
    with written_atomically(target) as tmp:
        yield tmp


def _check_replaceable_directory(target: Path, force: bool) -> None:
    refuse_overwrite(target, force=force)
    if not (target.exists() or target.is_symlink()):
        return
    if not target.is_dir() or target.is_symlink():
        raise Fm2OnnxError(f"{target}: exists and is not a directory; refusing to overwrite it")
    if any(target.iterdir()) and not (target / "meta.json").is_file():
        raise Fm2OnnxError(f"{target}: exists and is not an encoded dataset (no meta.json); refusing to delete it")


@contextlib.contextmanager
def _creating(target: Path) -> Iterator[None]:
    """Create ``target``'s directory if needed; report failures in the block as one line naming ``target``."""
    try:
        yield
    except OSError as e:
        raise Fm2OnnxError(f"{target}: cannot create output: {e.strerror or e}") from None


def _replace_directory(tmp: Path, target: Path) -> None:
    """Swap ``tmp`` in as ``target``: the old directory moves aside first and is deleted last."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=_owned_prefix(target, "old"), dir=target.parent))
        os.rename(target, old / "d")
    os.rename(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
