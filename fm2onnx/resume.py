"""A training run's resumable state: everything needed to continue after its last finished epoch and
end with the same model, bit for bit, as a run that was never interrupted.

``fm2onnx train -o OUT`` keeps it in ``OUT.resume.pt`` (beside the output, so the final rename and this
file live on one file system), rewritten atomically at every epoch's end and removed once ``OUT`` is
written. Saved with torch.save and read only through ``torch.load(weights_only=True)``
(:func:`fm2onnx.checkpoint.read_torch_file`), so it holds tensors and plain data only. Schema version 1:

    format           "fm2onnx-resume"
    schema_version   1
    fm2onnx_version  writer's version
    options          the options that decide the result (data files' size and mtime included); a resume
                     with any of them changed is refused
    spec             ModelSpec.to_dict() of the model
    epoch            epochs finished
    model            state_dict after that epoch
    optimizers       each optimizer's state_dict (Adam and SparseAdam, or Adagrad)
    numpy_rng        bit_generator.state of the Generator that shuffles the batches
    torch_rng        torch.get_rng_state()
    best             early stopping: {"score", "epoch", "stale", "state"} (the best epoch's state_dict)
    history          one record per finished epoch, as in the epoch log
    tensors_sha256   digest of the model's and the best epoch's tensors, checked on load
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .checkpoint import read_torch_file, tensors_sha256, write_atomically
from .errors import CheckpointError, Fm2OnnxError

FORMAT = "fm2onnx-resume"
SCHEMA_VERSION = 1
SUFFIX = ".resume.pt"


@dataclass
class ResumeState:
    """One run after ``epoch`` finished epochs; :meth:`capture` and :meth:`restore` move it in and out
    of the live model, optimizers and random generators, :meth:`save` and :meth:`load` to and from disk."""

    options: dict
    spec: dict
    epoch: int
    model: dict[str, torch.Tensor]
    optimizers: list[dict]
    numpy_rng: dict
    torch_rng: torch.Tensor
    best: dict
    history: list[dict] = field(default_factory=list)

    @classmethod
    def capture(cls, options: dict, epoch: int, model, optimizers, rng: np.random.Generator, best: dict,
                history: list[dict]) -> "ResumeState":
        """The live objects' state, by reference: save it before training moves on."""
        return cls(plain(options), model.spec.to_dict(), epoch, model.state_dict(),
                   [o.state_dict() for o in optimizers], rng.bit_generator.state, torch.get_rng_state(),
                   plain(best), plain(history))

    def restore(self, model, optimizers, rng: np.random.Generator, where: Path | str) -> None:
        """Put the saved state into a freshly built model, its optimizers and the shuffling generator."""
        if model.spec.to_dict() != self.spec:
            raise Fm2OnnxError(f"{where}: the interrupted run trained another model (fields, vocabularies or "
                               "dims differ); the data changed since")
        if len(optimizers) != len(self.optimizers):
            raise CheckpointError(f"{where}: holds {len(self.optimizers)} optimizer states, the run has "
                                  f"{len(optimizers)}")
        try:
            model.load_state_dict(self.model)
            for optimizer, state in zip(optimizers, self.optimizers):
                optimizer.load_state_dict(state)
            rng.bit_generator.state = self.numpy_rng
            torch.set_rng_state(self.torch_rng)
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise CheckpointError(f"{where}: does not fit this run ({first})") from None

    def payload(self) -> dict:
        return {"format": FORMAT, "schema_version": SCHEMA_VERSION, "fm2onnx_version": __version__,
                "options": self.options, "spec": self.spec, "epoch": self.epoch, "model": self.model,
                "optimizers": self.optimizers, "numpy_rng": self.numpy_rng, "torch_rng": self.torch_rng,
                "best": self.best, "history": self.history, "tensors_sha256": self.digest()}

    def digest(self) -> str:
        best_state = self.best.get("state") or {}
        return tensors_sha256({**{f"model.{k}": v for k, v in self.model.items()},
                               **{f"best.{k}": v for k, v in best_state.items()}})

    def save(self, path: Path) -> None:
        write_atomically(self.payload(), path)

    @classmethod
    def load(cls, path: Path) -> "ResumeState":
        payload = read_torch_file(path, "resumable training state", "it must hold tensors and plain data only")
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise CheckpointError(f"{path}: not an fm2onnx resumable training state (no format={FORMAT!r} entry)")
        version = payload.get("schema_version")
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise CheckpointError(f"{path}: resumable state schema {version!r} is not one this fm2onnx reads "
                                  f"({SCHEMA_VERSION}); resume with the fm2onnx version that wrote it")
        try:
            state = cls(**{name: payload[name] for name in cls.__dataclass_fields__})
        except KeyError as exc:
            raise CheckpointError(f"{path}: resumable state has no {exc.args[0]!r} entry") from None
        state.check_types(path)
        if payload.get("tensors_sha256") != state.digest():
            raise CheckpointError(f"{path}: corrupted: its tensors do not match the digest they were saved with")
        return state

    def check_types(self, path: Path) -> None:
        best = self.best if isinstance(self.best, dict) else {}
        checks = {
            "epoch": isinstance(self.epoch, int) and self.epoch >= 1,
            "options": isinstance(self.options, dict), "spec": isinstance(self.spec, dict),
            "model": is_tensor_dict(self.model), "optimizers": isinstance(self.optimizers, list),
            "numpy_rng": isinstance(self.numpy_rng, dict), "torch_rng": isinstance(self.torch_rng, torch.Tensor),
            "best": isinstance(best.get("score"), float) and is_tensor_dict(best.get("state"))
            and isinstance(best.get("epoch"), int) and isinstance(best.get("stale"), int),
            "history": isinstance(self.history, list) and len(self.history) >= self.epoch,
        }
        for name, ok in checks.items():
            if not ok:
                raise CheckpointError(f"{path}: resumable state entry {name!r} is missing or malformed")


def plain(value):
    """``value`` with numpy scalars made Python numbers: weights_only loading refuses numpy objects."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def is_tensor_dict(value) -> bool:
    return isinstance(value, dict) and all(isinstance(v, torch.Tensor) for v in value.values())


@dataclass
class ResumeFile:
    """Where a run keeps its :class:`ResumeState`, and the options that identify the run."""

    path: Path
    options: dict
    saved_epoch: int = 0  # the last epoch this file holds

    @classmethod
    def beside(cls, output: Path, options: dict) -> "ResumeFile":
        return cls(output.with_name(output.name + SUFFIX), options)

    def load(self) -> ResumeState:
        """The saved state, refused in one line if it is missing or the run's options changed."""
        if not self.path.exists():
            raise Fm2OnnxError(f"{self.path}: no interrupted run to resume (it is written at each epoch's end "
                               "and removed when the run finishes)")
        state = ResumeState.load(self.path)
        check_same_options(state.options, self.options, self.path)
        self.saved_epoch = state.epoch
        return state

    def save(self, state: ResumeState) -> None:
        state.save(self.path)
        self.saved_epoch = state.epoch

    def remove(self) -> None:
        if self.path.exists():  # unlink(missing_ok=True) still fails on a read-only file system
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def kept(self) -> str:
        """What an interrupted run leaves to resume from, for its one-line message."""
        if self.saved_epoch == 0:
            return "no epoch had finished, so nothing is kept; rerun the same command to start again"
        epochs = "epoch 1 is" if self.saved_epoch == 1 else f"epochs 1–{self.saved_epoch} are"
        return f"{epochs} kept in {self.path}; rerun the same command with --resume to continue"


def check_same_options(saved: dict, current: dict, path: Path) -> None:
    """Refuse, naming the first option that differs, to resume a run with other options."""
    for name in sorted(set(saved) | set(current)):
        was, now = saved.get(name), current.get(name)
        if same_value(was, now):
            continue
        option = "--" + name.replace("_", "-")
        if isinstance(was, dict) and isinstance(now, dict) and was.get("path") == now.get("path"):
            detail = f"{now['path']} changed since the interrupted run (size or modification time)"
        else:
            detail = f"{describe(now)} differs from the interrupted run's {describe(was)}"
        raise Fm2OnnxError(f"{option}: {detail} ({path}); resume with the run's options, or start over "
                           "without --resume (--force)")


def same_value(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b


def describe(value) -> str:
    if isinstance(value, dict) and "path" in value:
        return str(value["path"])
    return "none" if value is None else repr(value)


def file_stamp(path: Path | None) -> dict | None:
    """A data file (or an encoded folder) as the options record it: its path, size and modification time,
    the same test the encoding cache uses to decide a file is unchanged."""
    if path is None:
        return None
    path = Path(path).resolve()
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files if p.exists()]
    return {"path": str(path), "files": [list(s) for s in stats]}
