"""What every importer shares: loading a foreign state dict safely, and assembling fm2onnx's layout.

An importer reads its source into :class:`ImportedParts` (per-field tables already in fm2onnx's row
order: row 0 is the unknown feature) and :func:`to_checkpoint` turns those into a checkpoint whose
tensors fit ``models/`` exactly, so a shape slip shows here with the tensor's name and not later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from fm2onnx.checkpoint import Checkpoint, read_torch_file
from fm2onnx.errors import Fm2OnnxError
from models import ModelSpec, build_model


@dataclass
class ImportedParts:
    """One model in fm2onnx's terms. Pair-indexed values follow ``ModelSpec.field_pairs``.

    field_matrices: fwfm [P]; fvfm [P, K]; fmfm a list of P matrices [d_a, d_b]; otherwise None.
    tables: per field [V_a, width] (FFM: the n-1 vectors of a feature side by side); None for LR.
    linear: per-feature weights (a list of [V_a] tensors) or one field-vector tensor [sum(dims)].
    """

    kind: str
    field_names: list[str]
    vocab_sizes: list[int]
    dims: list[int]
    tables: list[torch.Tensor] | None
    linear: list[torch.Tensor] | torch.Tensor
    bias: float = 0.0
    field_matrices: torch.Tensor | list[torch.Tensor] | None = None
    source: dict = field(default_factory=dict)

    @property
    def linear_form(self) -> str:
        return "field_vector" if isinstance(self.linear, torch.Tensor) else "feature"


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A saved state dict as {name: tensor}, read with ``weights_only`` so the file cannot run code.

    Nested dicts (e.g. ``{"state_dict": {...}}`` of a training checkpoint) are flattened with dots.
    """
    path = Path(path)
    payload = read_torch_file(path, "state dict", "save model.state_dict() instead")
    tensors: dict[str, torch.Tensor] = {}
    _flatten(payload, "", tensors)
    if not tensors:
        raise Fm2OnnxError(f"{path}: holds no tensors (expected a state dict)")
    return tensors


def _flatten(obj, prefix: str, out: dict[str, torch.Tensor]) -> None:
    if isinstance(obj, torch.Tensor):
        out[prefix] = obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            _flatten(value, f"{prefix}.{key}" if prefix else str(key), out)


def float_tensor(t: torch.Tensor, name: str, where: str) -> torch.Tensor:
    """The tensor as float32, refusing integer/bool tensors, tensors without plain values (meta, sparse) and
    NaN/inf with the tensor's name."""
    if t.is_meta:
        raise Fm2OnnxError(f"{where}: tensor {name!r} is a meta tensor, with no values; save the trained weights")
    if t.layout != torch.strided:
        raise Fm2OnnxError(f"{where}: tensor {name!r} is stored {t.layout}; save it dense (tensor.to_dense())")
    if not t.is_floating_point():
        raise Fm2OnnxError(f"{where}: tensor {name!r} has dtype {t.dtype}, expected floating point")
    t = t.detach().to(torch.float32)
    if not torch.isfinite(t).all():
        raise Fm2OnnxError(f"{where}: tensor {name!r} holds NaN or infinite values")
    return t


def expect_shape(t: torch.Tensor, shape: tuple[int, ...], name: str, where: str, why: str = "") -> torch.Tensor:
    if tuple(t.shape) != tuple(shape):
        raise Fm2OnnxError(f"{where}: tensor {name!r} has shape {list(t.shape)}, expected {list(shape)}"
                           + (f" ({why})" if why else ""))
    return t


def to_checkpoint(parts: ImportedParts, preprocessor: dict | None = None) -> Checkpoint:
    """The parts as an fm2onnx checkpoint (validated by building the model and loading every tensor)."""
    linear = parts.linear_form
    spec = ModelSpec.create(parts.kind, parts.field_names, parts.vocab_sizes,
                            dims=None if parts.kind == "lr" else parts.dims, linear=linear)
    model = build_model(spec, seed=0)
    state = model.state_dict()
    state["bias"] = torch.tensor([float(parts.bias)])
    for a, table in enumerate(parts.tables or []):
        state[f"embeddings.tables.{a}.weight"] = table
    if linear == "feature":
        for a, weights in enumerate(parts.linear):
            state[f"linear.weights.{a}.weight"] = weights.reshape(-1, 1)
    else:
        state["linear.field_vectors"] = parts.linear.reshape(-1)
    _put_field_matrices(spec, parts.field_matrices, state)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for name, want in expected.items():
        if tuple(state[name].shape) != want:  # an importer bug, not a user error; still one line
            raise Fm2OnnxError(f"imported tensor for {name!r} has shape {list(state[name].shape)}, "
                               f"fm2onnx's {spec.kind} needs {list(want)}")
    model.load_state_dict({k: v.contiguous().float() for k, v in state.items()})
    return Checkpoint.from_model(model, preprocessor=preprocessor, training={"imported_from": parts.source})


def _put_field_matrices(spec: ModelSpec, matrices, state: dict) -> None:
    kind = spec.field_matrix_kind
    if kind in ("scalar", "diagonal"):
        state["interaction.field_matrices.weights"] = matrices
    elif kind == "full":
        by_pair = dict(zip(spec.field_pairs, matrices))
        for a in range(spec.num_fields - 1):
            blocks = [by_pair[(a, b)] for b in range(a + 1, spec.num_fields)]
            state[f"interaction.field_matrices.rows.{a}"] = torch.cat(blocks, dim=1)
