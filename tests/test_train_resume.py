"""Interrupting and resuming ``fm2onnx train``: a stopped run keeps its finished epochs, and resuming it
ends with the very model (bit for bit) and history of a run that was never interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import fm2onnx.train
from fm2onnx.checkpoint import tensors_sha256
from fm2onnx.errors import CheckpointError
from fm2onnx.resume import ResumeState
from tests.small_runs import synthesize_ids, train_args

# Timings differ between runs; everything else in an epoch's record must not.
TIMING = ("rows_per_s", "seconds")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthesize_ids(tmp_path_factory.mktemp("resume"))


# Epochs of 200 batches, so that a signal sent once the first epoch is saved lands inside the second.
SIGNALLED = {"batch_size": 32, "epochs": 2}


@pytest.fixture(scope="module")
def signalled_reference(data, tmp_path_factory):
    """The uninterrupted run the signalled ones are held to."""
    from fm2onnx.cli import main

    out = tmp_path_factory.mktemp("reference") / "ref.pt"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["fm2onnx", *map(str, train_args(data, out, **SIGNALLED))])
        with pytest.raises(SystemExit) as exit:
            main()
    assert exit.value.code in (0, None)
    return out


def signal_at(monkeypatch, epoch: int, batch: int, signum=signal.SIGINT) -> None:
    """Send this process a real ``signum`` while epoch ``epoch`` reads batch ``batch``."""
    shuffled, epochs = fm2onnx.train.shuffled_batches, []

    def batches(*args, **kwargs):
        epochs.append(1)
        for number, item in enumerate(shuffled(*args, **kwargs), start=1):
            if (len(epochs), number) == (epoch, batch):
                os.kill(os.getpid(), signum)
            yield item

    monkeypatch.setattr(fm2onnx.train, "shuffled_batches", batches)


def checkpoint(path):
    return torch.load(path, weights_only=True)


def assert_same_run(resumed, reference):
    """The same weights bit for bit, the same metrics and the same history up to timings."""
    a, b = checkpoint(resumed), checkpoint(reference)
    assert tensors_sha256(a["state_dict"]) == tensors_sha256(b["state_dict"])
    for name, tensor in b["state_dict"].items():
        assert torch.equal(a["state_dict"][name], tensor), name
    assert a["training"]["metrics"] == b["training"]["metrics"]
    assert a["training"]["best_epoch"] == b["training"]["best_epoch"]
    untimed = [[{k: v for k, v in r.items() if k not in TIMING} for r in c["training"]["history"]] for c in (a, b)]
    assert untimed[0] == untimed[1]


def stray_files(folder, *expected):
    return sorted(p.name for p in folder.iterdir() if p.name not in expected)


# Adam and SparseAdam on FmFM; Adagrad on FFM with early stopping, stopped after the best epoch (2) and
# one epoch without progress, so the resumed run must carry the best weights and the count to stop at 4.
RUNS = {
    "fmfm-adam": ((), 2, "epoch 1 is"),
    "ffm-adagrad-early-stop": (("--model", "ffm", "--optimizer", "adagrad", "--lr", "0.1", "--patience", "2",
                                "--epochs", "8"), 4, "epochs 1–3 are"),
}


@pytest.mark.parametrize("run", RUNS)
def test_a_stopped_run_resumes_to_the_uninterrupted_model(cli, data, tmp_path, monkeypatch, run):
    options, stop_epoch, kept = RUNS[run]
    code, _, err = cli(*train_args(data, tmp_path / "ref.pt", *options))
    assert code == 0, err
    out = tmp_path / "out.pt"
    with monkeypatch.context() as patch:
        signal_at(patch, epoch=stop_epoch, batch=3)
        code, _, err = cli(*train_args(data, out, *options))
    assert code == 130
    assert err == (f"fm2onnx: stopped at epoch {stop_epoch} batch 3; {kept} kept in {out}.resume.pt; rerun the "
                   "same command with --resume to continue\n")
    # the finished epochs in the resumable state and in the log; no output yet, no temporary files
    assert stray_files(tmp_path, "ref.pt", "ref.pt.log.jsonl") == ["out.pt.log.jsonl", "out.pt.resume.pt"]
    logged = [json.loads(line)["epoch"] for line in (tmp_path / "out.pt.log.jsonl").read_text().splitlines()]
    assert logged == list(range(1, stop_epoch))

    code, _, err = cli(*train_args(data, out, *options, "--resume"))
    assert code == 0, err
    assert_same_run(out, tmp_path / "ref.pt")
    assert stray_files(tmp_path, "ref.pt", "ref.pt.log.jsonl") == ["out.pt", "out.pt.log.jsonl"]  # state removed
    logged = [json.loads(line) for line in (tmp_path / "out.pt.log.jsonl").read_text().splitlines()]
    assert logged == checkpoint(out)["training"]["history"]
    if run == "ffm-adagrad-early-stop":  # the setting does what the comment above says
        assert len(logged) == 4 and checkpoint(out)["training"]["best_epoch"] == 2


def test_a_stop_during_the_first_epoch_leaves_nothing_behind(cli, data, tmp_path, monkeypatch):
    signal_at(monkeypatch, epoch=1, batch=2, signum=signal.SIGTERM)
    code, _, err = cli(*train_args(data, tmp_path / "out.pt"))
    assert code == 143
    assert err == ("fm2onnx: stopped at epoch 1 batch 2; no epoch had finished, so nothing is kept; rerun the "
                   "same command to start again\n")
    assert stray_files(tmp_path) == []
    monkeypatch.undo()
    code, _, err = cli(*train_args(data, tmp_path / "out.pt"))  # the same command again just works
    assert code == 0, err


@pytest.fixture
def interrupted(cli, data, tmp_path, monkeypatch):
    """An output whose run stopped in epoch 2: its resumable state holds epoch 1."""
    out = tmp_path / "out.pt"
    with monkeypatch.context() as patch:
        signal_at(patch, epoch=2, batch=1)
        assert cli(*train_args(data, out))[0] == 130
    return out


@pytest.mark.parametrize("option, value", [("--lr", "0.01"), ("--dim", "8"), ("--seed", "1"),
                                           ("--batch-size", "256"), ("--model", "fm"), ("--epochs", "5")])
def test_resume_refuses_other_options_naming_the_option(cli, data, interrupted, option, value):
    args = list(train_args(data, interrupted, "--resume"))
    if option in args:
        args[args.index(option) + 1] = value
    else:
        args += [option, value]
    code, _, err = cli(*args)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"fm2onnx: error: {option}: ") and "differs from the interrupted run's" in err
    assert interrupted.with_name("out.pt.resume.pt").exists()  # refused, and nothing lost


def test_resume_refuses_changed_data(cli, data, interrupted):
    meta = data / "meta.json"
    stat = meta.stat()
    os.utime(meta, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    try:
        code, _, err = cli(*train_args(data, interrupted, "--resume"))
    finally:
        os.utime(meta, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert code == 2 and err == (f"fm2onnx: error: --data: {data} changed since the interrupted run (size or "
                                 f"modification time) ({interrupted}.resume.pt); resume with the run's options, "
                                 "or start over without --resume (--force)\n")


def test_a_fresh_start_over_an_interrupted_run_needs_resume_or_force(cli, data, interrupted):
    code, _, err = cli(*train_args(data, interrupted))
    assert code == 2 and err == (f"fm2onnx: error: {interrupted}.resume.pt: holds the finished epochs of an "
                                 f"interrupted run of {interrupted}: pass --resume to continue it, or --force to "
                                 "start over\n")
    code, _, err = cli(*train_args(data, interrupted, "--force"))
    assert code == 0, err
    assert not interrupted.with_name("out.pt.resume.pt").exists()


def test_resume_without_a_resumable_state_is_one_line(cli, data, tmp_path):
    out = tmp_path / "out.pt"
    code, _, err = cli(*train_args(data, out, "--resume"))
    assert code == 2 and err == (f"fm2onnx: error: {out}.resume.pt: no interrupted run to resume (it is written at "
                                 "each epoch's end and removed when the run finishes)\n")


def test_a_damaged_resumable_state_is_refused_in_one_line(interrupted):
    path = interrupted.with_name("out.pt.resume.pt")
    state = ResumeState.load(path)
    assert state.epoch == 1 and [r["epoch"] for r in state.history] == [1]
    payload = checkpoint(path)
    payload["model"][next(iter(payload["model"]))][0] += 1.0
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="corrupted: its tensors do not match"):
        ResumeState.load(path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated or not a torch checkpoint"):
        ResumeState.load(path)


def signal_a_training(data, out, signum) -> tuple[int, str]:
    """Start a real ``fm2onnx train`` process and send it ``signum`` as its second epoch begins."""
    command = [sys.executable, "-c", "from fm2onnx.cli import main; main()",
               *map(str, train_args(data, out, **SIGNALLED))]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    state = out.with_name(out.name + ".resume.pt")
    deadline = time.monotonic() + 120
    while not state.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    return process.returncode, err


# SIGTERM's variant is slow-marked: the quick loop already has it in-process, and a process start is ~6 s.
@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130),
                                          pytest.param(signal.SIGTERM, 143, marks=pytest.mark.slow)])
def test_a_signal_to_the_command_stops_it_cleanly_and_it_resumes(cli, data, signalled_reference, tmp_path, signum,
                                                                  code):
    out, state = tmp_path / "out.pt", tmp_path / "out.pt.resume.pt"
    returncode, err = signal_a_training(data, out, signum)
    assert returncode == code, err
    assert err.startswith("fm2onnx: stopped at epoch 2 batch ") or err.startswith("fm2onnx: stopped after epoch")
    assert err.endswith(f"kept in {state}; rerun the same command with --resume to continue\n")
    assert err.count("\n") == 1
    assert stray_files(tmp_path) == ["out.pt.log.jsonl", "out.pt.resume.pt"]

    assert cli(*train_args(data, out, "--resume", **SIGNALLED))[0] == 0
    assert_same_run(out, signalled_reference)
    assert stray_files(tmp_path) == ["out.pt", "out.pt.log.jsonl"]


@pytest.mark.slow
def test_a_killed_run_resumes_too(cli, data, signalled_reference, tmp_path):
    """kill -9 runs no clean-up at all: the last epoch's file, renamed into place whole, still resumes."""
    out = tmp_path / "out.pt"
    returncode, _ = signal_a_training(data, out, signal.SIGKILL)
    assert returncode == -signal.SIGKILL
    assert cli(*train_args(data, out, "--resume", **SIGNALLED))[0] == 0
    assert_same_run(out, signalled_reference)
    assert stray_files(tmp_path) == ["out.pt", "out.pt.log.jsonl"]


def test_resume_removes_the_temporary_files_of_killed_runs_only(cli, data, interrupted):
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    dead = interrupted.with_name(f".out.pt.resume.pt.tmp-{finished.pid}")
    dead.write_bytes(b"PK half a file")
    alive = interrupted.with_name(f".out.pt.tmp-{os.getppid()}")  # as if a live process were writing it
    alive.write_bytes(b"PK being written")
    assert cli(*train_args(data, interrupted, "--resume"))[0] == 0
    assert not dead.exists() and alive.exists()
