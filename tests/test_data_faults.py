"""Faults while encoding -- a full disk, Ctrl-C, an unwritable cache folder, a killed worker process --
end in one line and leave no debris: no temporary folder, no empty cache folder; and a retry works."""

from __future__ import annotations

import errno
import multiprocessing
import os
import signal
import socket

import numpy as np
import pytest

import fm2onnx.data.encode as encode_module
import fm2onnx.data.parallel as parallel
from fm2onnx.data import encode_file, load_or_encode
from fm2onnx.data.npy import NpyAppender
from fm2onnx.data.synth import synthesize
from fm2onnx.errors import Fm2OnnxError
from fm2onnx.interrupt import Interrupted

SMALL = {"block_size": 8192, "chunk_rows": 300}


@pytest.fixture(scope="module")
def criteo_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("faults") / "criteo.txt"
    synthesize(path, rows=3000, fmt="criteo", seed=5, progress=False)
    return path


@pytest.fixture
def cache_root(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(parallel, "MIN_SPAN_BYTES", 1)
    return tmp_path / "xdg" / "fm2onnx"


def leftovers(root) -> list[str]:
    """Everything under ``root`` (which should not exist after a failed first encoding)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def full_disk_after(calls: int):
    """NpyAppender.write that fails like a full disk on its ``calls``-th call."""
    real, seen = NpyAppender.write, [0]

    def write(self, block):
        seen[0] += 1
        if seen[0] >= calls:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, block)

    return write


@pytest.mark.parametrize("jobs", [1, 2])
def test_full_disk_leaves_nothing_and_a_retry_works(criteo_file, cache_root, monkeypatch, jobs):
    monkeypatch.setattr(NpyAppender, "write", full_disk_after(20))  # in the parent: mid-way through its writes
    with pytest.raises(Fm2OnnxError) as failed:
        load_or_encode(criteo_file, "criteo", progress=False, jobs=jobs, **SMALL)
    message = str(failed.value)
    assert "\n" not in message and message.endswith("cannot write: No space left on device; nothing was kept")
    assert leftovers(cache_root) == []
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_root.parent))
    again = load_or_encode(criteo_file, "criteo", progress=False, jobs=jobs, **SMALL)
    clean = encode_file(criteo_file, "criteo", cache_root.parent.parent / "clean", progress=False)
    assert np.array_equal(again.ids, clean.ids) and again.preprocessor == clean.preprocessor
    assert [p.name for p in cache_root.iterdir()] and all(not p.name.startswith(".") for p in cache_root.rglob("*"))


# Run in the worker processes, which import this module afresh: there count_part is the real one.


def count_part_on_a_full_disk(job):
    """The real count_part, on a disk that fills up."""
    NpyAppender.write = full_disk_after(3)
    return encode_module.count_part(job)


def count_part_killed(job):
    """Killed outright, as the kernel's out-of-memory killer would."""
    if job.index == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return encode_module.count_part(job)


@pytest.mark.parametrize("work, expected", [
    (count_part_on_a_full_disk, "cannot write: No space left on device; nothing was kept"),
    (count_part_killed, "an encoding worker process died (killed, or out of memory?); nothing was written; "
                        "retry, with fewer --jobs if memory is short"),
])
def test_worker_faults_leave_nothing(criteo_file, cache_root, monkeypatch, work, expected):
    monkeypatch.setattr(encode_module, "count_part", work)
    with pytest.raises(Fm2OnnxError) as failed:
        load_or_encode(criteo_file, "criteo", progress=False, jobs=2, **SMALL)
    assert str(failed.value).endswith(expected) and "\n" not in str(failed.value)
    assert leftovers(cache_root) == []
    assert multiprocessing.active_children() == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_kill_while_workers_count(criteo_file, cache_root, monkeypatch, signum):
    """Ctrl-C reaches the parent (the workers ignore it), as does kill: the workers are stopped, nothing is left."""
    monkeypatch.setattr(parallel.Progress, "update", lambda *a, **k: os.kill(os.getpid(), signum))
    with pytest.raises(Interrupted) as stopped:
        load_or_encode(criteo_file, "criteo", progress=True, jobs=2, **SMALL)
    assert stopped.value.exit_code == 128 + signum
    assert leftovers(cache_root) == []
    assert multiprocessing.active_children() == []
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache_root.parent))
    assert load_or_encode(criteo_file, "criteo", progress=False).rows == 3000


def test_unwritable_cache_folder(criteo_file, tmp_path, monkeypatch, cli):
    blocker = tmp_path / "not-a-folder"  # root may write anywhere; a file in the way stops it too
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    with pytest.raises(Fm2OnnxError, match=r"/not-a-folder/fm2onnx/criteo\.txt-\w+/\w+: cannot create output: "
                                           r"Not a directory$"):
        load_or_encode(criteo_file, "criteo", progress=False)
    code, out, err = cli("encode", criteo_file, "-o", blocker / "enc", "--jobs", "2")
    assert code == 2 and err.startswith(f"fm2onnx: error: {blocker / 'enc'}: cannot create output: ")
    assert err.count("\n") == 1
    assert blocker.read_text() == ""


def test_a_killed_run_is_swept_by_the_next(criteo_file, tmp_path):
    """A run killed outright cannot clean up; its temporary folder is named after its process, and the
    next run on the same target deletes it once that process is gone."""
    out = tmp_path / "enc"
    dead = _dead_pid()
    orphan = tmp_path / f".enc.tmp-{dead}@{socket.gethostname()}-abc123"
    orphan.mkdir()
    (orphan / "ids.npy").write_bytes(b"half")
    other_host = tmp_path / f".enc.tmp-{dead}@elsewhere.example-abc123"
    other_host.mkdir()
    encode_file(criteo_file, "criteo", out, progress=False)
    assert not orphan.exists() and other_host.exists()


def _dead_pid() -> int:
    proc = multiprocessing.get_context("fork").Process(target=int)
    proc.start()
    proc.join()
    return proc.pid


@pytest.fixture(scope="module")
def avazu_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("packed") / "avazu.csv"
    synthesize(path, rows=3000, fmt="avazu", seed=5, progress=False)
    return path


def damaged_copy(source, target, *, keep: float = 1.0, prefix: bytes = b""):
    """``source`` compressed by ``target``'s suffix, cut to ``keep`` of its bytes, ``prefix`` in front."""
    import bz2
    import gzip

    packed = (gzip if target.suffix == ".gz" else bz2).compress(source.read_bytes())
    target.write_bytes(prefix + packed[:int(len(packed) * keep)])
    return target


@pytest.mark.parametrize("name, keep, prefix, message", [
    ("head.csv.gz", 0.01, b"", "truncated gzip stream (Truncated compressed stream)"),  # while reading the header
    ("half.csv.gz", 0.5, b"", "truncated gzip stream (Truncated compressed stream)"),  # while parsing rows
    ("half.csv.bz2", 0.5, b"", "truncated bz2 stream (Truncated compressed stream)"),
    ("junk.csv.gz", 1.0, b"junk", "corrupt gzip stream (zlib inflate failed: incorrect header check)"),
])
def test_a_damaged_compressed_file_is_named_in_one_line(avazu_file, tmp_path, cli, name, keep, prefix, message):
    damaged = damaged_copy(avazu_file, tmp_path / name, keep=keep, prefix=prefix)
    code, out, err = cli("encode", damaged, "--format", "avazu", "-o", tmp_path / "enc", "--quiet")
    assert (code, err) == (2, f"fm2onnx: error: {damaged}: {message}\n")
    assert not (tmp_path / "enc").exists()


def test_training_on_a_truncated_file_names_it(avazu_file, tmp_path, cli):
    damaged = damaged_copy(avazu_file, tmp_path / "half.csv.gz", keep=0.5)
    code, _, err = cli("train", "--data", damaged, "--format", "avazu", "-o", tmp_path / "ck.pt", "--quiet")
    assert (code, err) == (2, f"fm2onnx: error: {damaged}: truncated gzip stream (Truncated compressed stream)\n")
