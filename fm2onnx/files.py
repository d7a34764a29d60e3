"""Rules for the files fm2onnx reads and writes: a user's text read as UTF-8 whatever its editor added;
outputs checked before the work, written whole or not at all, and a user's file never replaced without
``--force``."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from .errors import Fm2OnnxError, WriteError

# What the system says when an output cannot be written: no space, no quota, a read-only or unwritable folder.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM})


def refuse_overwrite(*paths: str | Path | None, force: bool) -> None:
    """Refuse, in one line naming the file, to replace any existing path unless ``force``."""
    for path in paths:
        if path is not None and Path(path).exists() and not force:
            raise Fm2OnnxError(f"{path}: already exists (pass --force to overwrite)")


def require_file(path: Path, what: str, hint: str = "", error: type[Fm2OnnxError] = Fm2OnnxError) -> None:
    """An input ``path`` that is not a file is one line naming it: a directory, or missing (``hint`` added)."""
    if path.is_dir():
        article = "an" if what[0] in "AEIOUaeiou" else "a"
        raise error(f"{path}: is a directory, not {article} {what} file")
    if not path.is_file():
        raise error(f"{path}: no such {what} file" + (f" ({hint})" if hint else ""))


def read_text(path: str | Path) -> str:
    """A user's text file (JSON, CSV) as UTF-8, a leading byte-order mark skipped (editors on Windows add
    one); one line naming the file when it cannot be read or is not UTF-8."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise Fm2OnnxError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Fm2OnnxError(f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None


def read_json(path: str | Path):
    """A user's JSON file (see :func:`read_text`); a syntax error is named by its line."""
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise Fm2OnnxError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from None


def check_output_file(path: str | Path | None, *, force: bool, inputs: Iterable[str | Path | None] = ()) -> None:
    """Before any work, one line naming ``path`` unless it can take the file a command writes there: not a
    directory, not one of the command's ``inputs`` (even with ``force``: it is read while the output is
    made), not an existing file unless ``force``, and in a folder that takes new files (a missing folder is
    made by the write, so the nearest existing one is tried)."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        raise Fm2OnnxError(f"{path}: is a directory, not a file")
    if any(source is not None and _same_file(path, Path(source)) for source in inputs):
        raise Fm2OnnxError(f"{path}: is also this command's input; write the output to another file")
    refuse_overwrite(path, force=force)
    _probe_folder(path.parent, named=path)


def check_distinct_outputs(outputs: dict[str, str | Path | None]) -> None:
    """Before any work, one line naming a file that two of a command's outputs (option -> path) would
    both be written to: the second would replace the first."""
    seen: dict[str, Path] = {}
    for option, path in outputs.items():
        if path is None:
            continue
        for earlier_option, earlier in seen.items():
            if _same_file(Path(path), earlier):
                raise Fm2OnnxError(f"{path}: named by both {earlier_option} and {option}; give each its own file")
        seen[option] = Path(path)


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file: by identity when both exist (links, other spellings), else by path."""
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def check_output_folder(path: str | Path | None, option: str, *, force: bool = True) -> None:
    """Before any work, one line naming ``path`` unless the directory ``option`` names can hold what a
    command writes: an existing directory or none yet (the command makes it), in a folder taking files,
    and holding no files unless ``force``."""
    if path is None:
        return
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise Fm2OnnxError(f"{path}: is a file, not a directory ({option} names a folder to write into)")
    if not force and path.is_dir() and any(path.iterdir()):
        raise Fm2OnnxError(f"{path}: exists and is not empty (pass --force to write into it)")
    _probe_folder(path, named=path)


def _probe_folder(folder: Path, named: Path) -> None:
    """Fail now rather than after the work: create and delete a file in ``folder``, or in its nearest
    existing ancestor if it is still to be made."""
    missing = missing_folders(folder)
    existing = missing[-1].parent if missing else folder
    if not existing.is_dir():
        raise Fm2OnnxError(f"{named}: cannot be written: {existing} is not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{named.name}.probe-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        if exc.errno not in WRITE_ERRNOS:
            raise
        raise _write_error(named, exc, "checked before any work was done") from None


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
        raise _write_error(target, exc, cleanup) from None


def _write_error(target: str | Path, exc: OSError, cleanup: str) -> WriteError:
    return WriteError(f"{target}: cannot write: {exc.strerror or exc} ({cleanup})")


def temporary_path(target: Path, pid: int | str | None = None) -> Path:
    """Where ``target`` is written before it is renamed over it: beside it (a rename within a folder is
    atomic), hidden, named after the writing process (:func:`remove_stale_temporaries`). Named rather than
    made by mkstemp, whose private 0600 mode the output would keep."""
    return target.with_name(f".{target.name}.tmp-{os.getpid() if pid is None else pid}")


def remove_stale_temporaries(path: Path) -> None:
    """Delete the temporary files of ``path`` left by processes killed outright (``kill -9``, a power cut),
    whose clean-up never ran; those of live processes stay."""
    for tmp in path.parent.glob(temporary_path(path, "*").name):
        pid = tmp.name.rpartition("-")[2]
        if pid.isdigit() and not process_alive(int(pid)):
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def written_atomically(target: str | Path) -> Iterator[Path]:
    """A temporary path for the block to write ``target``'s contents to; it replaces ``target`` only if the
    block succeeds, so ``target`` is never half-written. A missing folder is made; on any failure the
    temporary file goes, and so do the folders made for it. A full disk or an unwritable folder is one line
    naming ``target``, never the temporary file."""
    target = Path(target)
    tmp = temporary_path(target)
    with reported_write_errors(target), made_folders_removed_if_unused(target.parent):
        try:
            tmp.unlink(missing_ok=True)  # left by an earlier process with our pid
            yield tmp
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            raise


def missing_folders(folder: Path) -> list[Path]:
    """``folder`` and its ancestors that do not exist yet, deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def remove_if_empty(folders: list[Path]) -> None:
    """Deepest first; rmdir leaves a folder that something else has written into."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


@contextlib.contextmanager
def made_folders_removed_if_unused(folder: Path) -> Iterator[None]:
    """``folder``, and the ancestors it lacks, made for the block; if the block fails or is interrupted,
    those it left empty are removed and the files it finished stay."""
    made = missing_folders(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        yield
    except BaseException:
        remove_if_empty(made)
        raise


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
