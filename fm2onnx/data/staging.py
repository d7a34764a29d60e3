"""Outputs are built beside their target and renamed over it only once complete.

A failed or interrupted run therefore never leaves a half-written dataset under the target's name,
and never deletes what was there. What may be replaced at all is decided here: nothing without
``force`` (:func:`fm2onnx.files.refuse_overwrite`), and even with it never a directory that is not
an encoded dataset (it could hold a user's files).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from ..errors import Fm2OnnxError
from ..files import refuse_overwrite

__all__ = ["staged_directory", "staged_file"]


@contextlib.contextmanager
def staged_directory(target: Path, *, force: bool) -> Iterator[Path]:
    """A fresh temporary directory beside ``target``; it replaces ``target`` if the block succeeds."""
    _check_replaceable_directory(target, force)
    with _creating(target):
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        _replace_directory(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def staged_file(target: Path, *, force: bool) -> Iterator[Path]:
    """A fresh temporary file path beside ``target``; it replaces ``target`` if the block succeeds."""
    refuse_overwrite(target, force=force)
    if target.is_dir():
        raise Fm2OnnxError(f"{target}: is a directory; refusing to overwrite it")
    # named here rather than made by mkstemp, whose private 0600 mode the output would keep
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    with _creating(target):
        tmp.unlink(missing_ok=True)  # left by an earlier process with our pid
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
        target.parent.mkdir(parents=True, exist_ok=True)
        yield
    except OSError as e:
        raise Fm2OnnxError(f"{target}: cannot create output: {e.strerror or e}") from None


def _replace_directory(tmp: Path, target: Path) -> None:
    """Swap ``tmp`` in as ``target``: the old directory moves aside first and is deleted last."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.rename(target, old / "d")
    os.rename(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
