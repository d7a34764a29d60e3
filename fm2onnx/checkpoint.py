"""The versioned ``ckpt.pt`` schema (documented in the README), saved with torch.save and loaded
with ``torch.load(weights_only=True)`` so that a checkpoint can never run code.

Schema version 1, a dict of plain types and tensors:
    format            "fm2onnx-checkpoint"
    schema_version    1
    fm2onnx_version   writer's version
    model             ModelSpec.to_dict(): kind, field_names, vocab_sizes, dims, linear
    state_dict        parameter name -> tensor (layout in models/)
    preprocessor      Preprocessor.to_dict() (vocabularies and preprocessing) or None
    training          config and metrics of the run that produced it, or {}
    tensors_sha256    digest of the state_dict (names, dtypes, shapes, bytes), checked on every load:
                      torch.load does not check the archive's CRCs, so a flipped byte would load silently
"""

from __future__ import annotations

import hashlib
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from models import FMFamilyModel, ModelSpec, build_model

from . import __version__
from .errors import CheckpointError, Fm2OnnxError
from .files import refuse_overwrite, require_file, written_atomically

FORMAT = "fm2onnx-checkpoint"
SCHEMA_VERSION = 1


@dataclass
class Checkpoint:
    spec: ModelSpec
    state_dict: dict[str, torch.Tensor]
    preprocessor: dict | None = None
    training: dict = field(default_factory=dict)
    path: Path | None = None

    def model(self) -> FMFamilyModel:
        model = build_model(self.spec)
        model.load_state_dict(self.state_dict)
        model.eval()
        return model

    @classmethod
    def from_model(cls, model: FMFamilyModel, preprocessor: dict | None = None, training: dict | None = None):
        state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
        return cls(model.spec, state, preprocessor, training or {})


def save_checkpoint(ckpt: Checkpoint, path: str | Path, *, force: bool = False) -> Path:
    path = Path(path)
    refuse_overwrite(path, force=force)
    payload = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "fm2onnx_version": __version__,
        "model": ckpt.spec.to_dict(),
        "state_dict": ckpt.state_dict,
        "preprocessor": ckpt.preprocessor,
        "training": ckpt.training,
        "tensors_sha256": tensors_sha256(ckpt.state_dict),
    }
    write_atomically(payload, path)
    return path


def write_atomically(payload, path: Path) -> None:
    """torch.save ``payload`` to ``path`` whole or not at all (:func:`fm2onnx.files.written_atomically`), and
    durably: the temporary file is fsynced before its rename over ``path``, then the folder, so the rename
    survives a crash too."""
    with written_atomically(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
    fsync_directory(path.parent)


def fsync_directory(folder: Path) -> None:
    """Make a rename in ``folder`` durable; a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a folder; the rename itself has happened
    finally:
        os.close(fd)


def tensors_sha256(state: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().contiguous().cpu()
        digest.update(f"{name}:{tensor.dtype}:{list(tensor.shape)};".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def load_checkpoint(path: str | Path) -> Checkpoint:
    path = Path(path)
    payload = read_torch_file(path, "checkpoint", "fm2onnx checkpoints hold only tensors and plain data")
    return _validate(path, payload)


def read_torch_file(path: Path, what: str, pickled_hint: str):
    """The one place fm2onnx reads a torch.save file: ``weights_only``, so it can never run code; every
    way it fails is one line naming the file (``pickled_hint`` says what to save instead)."""
    require_file(path, what, error=CheckpointError)
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is not ours or cut short
        raise CheckpointError(f"{path}: truncated or not a torch checkpoint (no zip archive inside)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            raise CheckpointError(f"{path}: refused: it holds pickled Python objects, which could run code "
                                  f"({pickled_hint})") from None
        raise CheckpointError(f"{path}: not a torch checkpoint ({first})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: truncated or not a torch checkpoint ({first})") from None


def _validate(path: Path, payload) -> Checkpoint:
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an fm2onnx checkpoint (no format={FORMAT!r} entry)")
    version = payload.get("schema_version")
    if not isinstance(version, int):
        raise CheckpointError(f"{path}: schema_version missing or not an integer")
    if version > SCHEMA_VERSION:
        raise CheckpointError(f"{path}: checkpoint schema {version} is newer than this fm2onnx supports "
                              f"({SCHEMA_VERSION}); upgrade fm2onnx")
    try:
        spec = ModelSpec.from_dict(payload.get("model") or {})
    except Fm2OnnxError as exc:
        raise CheckpointError(f"{path}: {exc}") from None
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: state_dict missing or not a dict of tensors")
    with torch.device("meta"):  # shapes only: no memory for a throwaway model (FFM can be GBs)
        expected = build_model(spec).state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise CheckpointError(f"{path}: state_dict does not fit a {spec.kind} model of these fields "
                              f"(missing {missing[:3]}, unexpected {extra[:3]})")
    for name, want in expected.items():
        got = state[name]
        if tuple(got.shape) != tuple(want.shape):
            raise CheckpointError(f"{path}: tensor {name!r} has shape {list(got.shape)} but the fields imply "
                                  f"{list(want.shape)}")
        if not got.is_floating_point():
            raise CheckpointError(f"{path}: tensor {name!r} has dtype {got.dtype}, expected floating point")
        if not torch.isfinite(got).all():
            raise CheckpointError(f"{path}: tensor {name!r} holds NaN or infinite values")
    preprocessor = payload.get("preprocessor")
    if preprocessor is not None and not isinstance(preprocessor, dict):
        raise CheckpointError(f"{path}: preprocessor must be a dict or None")
    recorded = payload.get("tensors_sha256")
    if recorded is not None and recorded != tensors_sha256(state):
        raise CheckpointError(f"{path}: corrupted: its tensors do not match the digest they were saved with")
    training = payload.get("training") or {}
    return Checkpoint(spec, {k: state[k].float() for k in expected}, preprocessor, training, path)
