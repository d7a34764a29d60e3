"""Rules for the files fm2onnx writes: a user's file is never replaced without ``--force``."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import Fm2OnnxError, WriteError

# What the system says when an output cannot be written: no space, no quota, a read-only or unwritable folder.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM})


def refuse_overwrite(*paths: str | Path | None, force: bool) -> None:
    """Refuse, in one line naming the file, to replace any existing path unless ``force``."""
    for path in paths:
        if path is not None and Path(path).exists() and not force:
            raise Fm2OnnxError(f"{path}: already exists (pass --force to overwrite)")


def check_writable(target: Path) -> None:
    """Fail now, in one line, rather than after the work, if no file can be created beside ``target``
    (its folder is created if missing)."""
    with reported_write_errors(target, "checked before any work was done"):
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{target.name}.probe-", dir=target.parent)
        os.close(fd)
        os.unlink(probe)


@contextlib.contextmanager
def reported_write_errors(target: str | Path, cleanup: str = "nothing half-written is left") -> Iterator[None]:
    """A write in this block that fails for want of space or permission becomes one line naming
    ``target`` (the output the user named, not a temporary file); other errors, and errors on files
    elsewhere (an input that cannot be read), pass unchanged."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in WRITE_ERRNOS or not _written_at(exc.filename, Path(target)):
            raise
        raise WriteError(f"{target}: cannot write: {exc.strerror or exc} ({cleanup})") from None


@contextlib.contextmanager
def removed_unless_complete(folder: Path) -> Iterator[None]:
    """What this block adds to ``folder`` is deleted if the block fails or is interrupted (the folder too,
    if the block created it), so a half-filled output folder never blocks the rerun; what was there
    before stays."""
    existed = folder.is_dir()
    before = set(folder.iterdir()) if existed else set()
    try:
        yield
    except BaseException:
        added = set(folder.iterdir()) - before if folder.is_dir() else set()
        for path in added:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        if not existed:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _written_at(filename, target: Path) -> bool:
    """Whether an error on ``filename`` (None: a write to an open file) is one on ``target`` or its folder."""
    if filename is None:
        return True
    folder = (target if target.is_dir() else target.parent).resolve()
    return Path(filename).resolve().is_relative_to(folder)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine still runs: a temporary file named after a live process is
    being written, one named after a dead process is debris to remove."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        return True
    return True
