"""Faults end in one line and leave nothing half-written: a loss that turns NaN, a full disk or a
read-only folder under train and export, and Ctrl-C in any command."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import export.staging
import fm2onnx.checkpoint
import fm2onnx.files
import fm2onnx.train
from fm2onnx.resume import ResumeState
from tests.small_runs import synthesize_ids, train_args

ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return synthesize_ids(tmp_path_factory.mktemp("faults"))


def weights(path):
    return torch.load(path, weights_only=True)["state_dict"]


def same_weights(a, b) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def files_in(folder):
    return sorted(p.name for p in folder.iterdir())


def nan_labels_at(monkeypatch, epoch: int, batch: int) -> None:
    """Batch ``batch`` of epoch ``epoch`` carries NaN labels, so its loss is NaN (as a diverging run's is)."""
    shuffled, epochs = fm2onnx.train.shuffled_batches, []

    def batches(*args, **kwargs):
        epochs.append(1)
        for number, (x, y) in enumerate(shuffled(*args, **kwargs), start=1):
            yield x, (torch.full_like(y, float("nan")) if (len(epochs), number) == (epoch, batch) else y)

    monkeypatch.setattr(fm2onnx.train, "shuffled_batches", batches)


def test_a_nan_loss_stops_training_and_writes_the_best_epoch_before_it(cli, data, tmp_path, monkeypatch):
    assert cli(*train_args(data, tmp_path / "two.pt", epochs=2))[0] == 0
    out = tmp_path / "out.pt"
    nan_labels_at(monkeypatch, epoch=3, batch=2)
    code, _, err = cli(*train_args(data, out))
    assert code == 2
    assert err == ("fm2onnx: error: the training loss became nan at epoch 3 batch 2 (a lower --lr usually helps); "
                   f"the best epoch before it (2) is written to {out}\n")
    # the output is the best of epochs 1-2, the very weights an uninterrupted 2-epoch run ends with
    assert same_weights(out, tmp_path / "two.pt")
    training = torch.load(out, weights_only=True)["training"]
    assert training["best_epoch"] == 2 and "epoch 3 batch 2" in training["stopped"]
    assert files_in(tmp_path) == ["out.pt", "out.pt.log.jsonl", "two.pt", "two.pt.log.jsonl"]


def test_a_nan_loss_in_the_first_epoch_writes_nothing(cli, data, tmp_path, monkeypatch):
    nan_labels_at(monkeypatch, epoch=1, batch=1)
    code, _, err = cli(*train_args(data, tmp_path / "out.pt"))
    assert code == 2 and err == ("fm2onnx: error: the training loss became nan at epoch 1 batch 1 (a lower --lr "
                                 "usually helps); no epoch had finished, so nothing is written\n")
    assert files_in(tmp_path) == []


def disk_full_on(monkeypatch, which) -> None:
    """torch.save writes part of a file, then the disk is full, for the payloads ``which`` picks."""
    save = torch.save

    def full(payload, f, *args, **kwargs):
        if not which(payload):
            return save(payload, f, *args, **kwargs)
        f.write(b"PK\x03\x04 half a file")
        raise ENOSPC

    monkeypatch.setattr(fm2onnx.checkpoint.torch, "save", full)


def test_a_full_disk_while_saving_an_epoch_keeps_the_epochs_before(cli, data, tmp_path, monkeypatch):
    out, state = tmp_path / "out.pt", tmp_path / "out.pt.resume.pt"
    with monkeypatch.context() as patch:
        disk_full_on(patch, lambda payload: payload.get("epoch") == 2)
        code, _, err = cli(*train_args(data, out))
    assert code == 2
    assert err == (f"fm2onnx: error: {state}: cannot write: No space left on device (nothing half-written is "
                   f"left); epoch 1 is kept in {state}; rerun the same command with --resume to continue\n")
    assert files_in(tmp_path) == ["out.pt.log.jsonl", "out.pt.resume.pt"]
    assert ResumeState.load(state).epoch == 1  # the file of epoch 1, intact

    assert cli(*train_args(data, out, "--resume"))[0] == 0
    assert cli(*train_args(data, tmp_path / "ref.pt"))[0] == 0
    assert same_weights(out, tmp_path / "ref.pt")


def test_a_full_disk_while_writing_the_output_keeps_every_epoch(cli, data, tmp_path, monkeypatch):
    out, state = tmp_path / "out.pt", tmp_path / "out.pt.resume.pt"
    with monkeypatch.context() as patch:
        disk_full_on(patch, lambda payload: payload.get("format") == "fm2onnx-checkpoint")
        code, _, err = cli(*train_args(data, out, epochs=2))
    assert code == 2
    assert err == (f"fm2onnx: error: {out}: cannot write: No space left on device (nothing half-written is left); "
                   f"epochs 1–2 are kept in {state}; rerun the same command with --resume to continue\n")
    assert files_in(tmp_path) == ["out.pt.log.jsonl", "out.pt.resume.pt"]
    assert cli(*train_args(data, out, "--resume", epochs=2))[0] == 0  # nothing left to train: just written
    assert files_in(tmp_path) == ["out.pt", "out.pt.log.jsonl"]


def test_an_unwritable_output_folder_fails_before_any_work(cli, data, tmp_path, monkeypatch):
    def read_only(*args, dir=None, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.path.join(dir, "probe"))

    monkeypatch.setattr(fm2onnx.files.tempfile, "mkstemp", read_only)
    out = tmp_path / "out.pt"
    code, _, err = cli(*train_args(data, out))
    assert code == 2 and err == (f"fm2onnx: error: {out}: cannot write: Read-only file system (checked before "
                                 "any work was done)\n")
    assert files_in(tmp_path) == []


def test_export_on_a_full_disk_leaves_nothing(cli, data, tmp_path, monkeypatch):
    ckpt, models = tmp_path / "ckpt.pt", tmp_path / "models"
    assert cli(*train_args(data, ckpt, epochs=1))[0] == 0
    models.mkdir()
    (models / "other.txt").write_text("a user's file")
    save_model = export.staging.save_model

    def full(*args, **kwargs):
        save_model(*args, **kwargs)  # the bytes are on disk, then the disk fills up
        raise ENOSPC

    monkeypatch.setattr(export.staging, "save_model", full)
    code, _, err = cli("export", ckpt, "-o", models / "model.onnx", "--form", "both")
    assert code == 2
    assert err.endswith(f"fm2onnx: error: {models / 'model.uncached.onnx'}: cannot write: No space left on device "
                        "(the staged files were removed, nothing new is left there)\n")
    assert files_in(models) == ["other.txt"]


def test_a_dims_csv_on_a_full_disk_leaves_nothing(cli, data, tmp_path, monkeypatch):
    import fm2onnx.compression.dims

    ckpt, out = tmp_path / "ckpt.pt", tmp_path / "dims.csv"
    assert cli(*train_args(data, ckpt, epochs=1))[0] == 0
    writer = fm2onnx.compression.dims.csv.writer

    class FullDisk:
        def __init__(self, f, **kwargs):
            self.rows, self.inner = 0, writer(f, **kwargs)

        def writerow(self, row):
            self.rows += 1
            if self.rows == 3:  # two rows are in the file, then the disk is full
                raise ENOSPC
            self.inner.writerow(row)

    monkeypatch.setattr(fm2onnx.compression.dims.csv, "writer", FullDisk)
    code, _, err = cli("dims", ckpt, "-o", out, "--quiet")
    assert code == 2 and err == (f"fm2onnx: error: {out}: cannot write: No space left on device (nothing "
                                 "half-written is left)\n")
    assert files_in(tmp_path) == ["ckpt.pt", "ckpt.pt.log.jsonl"]


def test_an_interrupted_report_leaves_no_folder(cli, data, tmp_path, monkeypatch):
    import fm2onnx.report

    ckpt, out = tmp_path / "ckpt.pt", tmp_path / "report"
    assert cli(*train_args(data, ckpt, epochs=1))[0] == 0
    bars = fm2onnx.report.field_dims_bars

    def interrupted_after_the_first_figure(*args, **kwargs):
        assert (out / "cross_field_dims.png").exists()
        os.kill(os.getpid(), signal.SIGINT)
        return bars(*args, **kwargs)

    monkeypatch.setattr(fm2onnx.report, "field_dims_bars", interrupted_after_the_first_figure)
    assert cli("report", ckpt, "-o", out, "--quiet") == (130, "", "fm2onnx: interrupted by SIGINT\n")
    assert files_in(tmp_path) == ["ckpt.pt", "ckpt.pt.log.jsonl"]
    monkeypatch.undo()
    code, _, err = cli("report", ckpt, "-o", out, "--quiet")  # the same command again just works
    assert code == 0, err


def test_ctrl_c_in_any_command_is_one_line(cli, tmp_path, monkeypatch):
    import fm2onnx.cli.train_cmds

    def interrupted_read(path):
        os.kill(os.getpid(), signal.SIGINT)
        raise AssertionError("the signal did not stop the command")

    monkeypatch.setattr(fm2onnx.cli.train_cmds, "load_checkpoint", interrupted_read)
    assert cli("info", tmp_path / "ckpt.pt") == (130, "", "fm2onnx: interrupted by SIGINT\n")

    def raises_keyboard_interrupt(path):
        raise KeyboardInterrupt  # as code may, where no signal handler of ours is installed

    monkeypatch.setattr(fm2onnx.cli.train_cmds, "load_checkpoint", raises_keyboard_interrupt)
    assert cli("info", tmp_path / "ckpt.pt") == (130, "", "fm2onnx: interrupted by SIGINT\n")


def test_sigint_to_a_command_writing_a_file_leaves_no_debris(tmp_path):
    """A real ``fm2onnx synth`` process, signalled while it writes its staged file."""
    out = tmp_path / "data.txt"
    command = [sys.executable, "-c", "from fm2onnx.cli import main; main()", "synth", "-o", str(out),
               "--rows", "5000000", "--format", "criteo"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not any(tmp_path.iterdir()) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert err.splitlines()[-1] == "fm2onnx: interrupted by SIGINT"
    assert files_in(tmp_path) == []
