"""Built-in model shapes, so the figures reproduce without data: Criteo (39 fields, the feature counts
of Table 3, K = 16 or Table 3's per-field dims) and Avazu (23 fields, Avazu-like feature counts)."""

from __future__ import annotations

from pathlib import Path

import torch

from fm2onnx.checkpoint import Checkpoint, save_checkpoint
from fm2onnx.errors import Fm2OnnxError
from models import ModelSpec, build_model
from models.spec import MODEL_KINDS
from models.paper_shapes import (AVAZU_FEATURES_PER_FIELD, AVAZU_FIELD_NAMES, CRITEO_FEATURES_PER_FIELD,
                                 CRITEO_FIELD_NAMES, CRITEO_TABLE3_DIMS, vocab_sizes)

SHAPES = {"criteo": (CRITEO_FIELD_NAMES, CRITEO_FEATURES_PER_FIELD), "avazu": (AVAZU_FIELD_NAMES, AVAZU_FEATURES_PER_FIELD)}
WEIGHT_STD = 0.05  # random weights: timing does not depend on them, parity checks use them


def shape_spec(shape: str, dims: str, kind: str = "fmfm") -> ModelSpec:
    """``dims``: "table3" (Criteo's, FmFM only) or a uniform K such as "16"; ``kind``: the model kind."""
    if shape not in SHAPES:
        raise Fm2OnnxError(f"unknown shape {shape!r}; expected one of {', '.join(SHAPES)}")
    if kind not in MODEL_KINDS:
        raise Fm2OnnxError(f"unknown --kind {kind!r}; expected one of {', '.join(MODEL_KINDS)}")
    names, features = SHAPES[shape]
    if dims == "table3":
        if shape != "criteo":
            raise Fm2OnnxError("--dims table3 are Criteo's per-field dims (Table 3); use a K such as 16 for avazu")
        if kind != "fmfm":
            raise Fm2OnnxError(f"--dims table3 are per-field dims, which only FmFM takes; "
                               f"use a K such as 16 for {kind}")
        return ModelSpec.create(kind, names, vocab_sizes(features), dims=CRITEO_TABLE3_DIMS)
    try:
        k = int(dims)
    except ValueError:
        raise Fm2OnnxError(f"--dims {dims!r}: expected table3 or an embedding dim such as 16") from None
    if k < 1:
        raise Fm2OnnxError(f"--dims {dims!r}: the embedding dim must be >= 1")
    return ModelSpec.create(kind, names, vocab_sizes(features), dim=k)


def shape_label(shape: str, dims: str, kind: str = "fmfm") -> str:
    return f"{shape} {'' if kind == 'fmfm' else kind + ' '}{'Table 3 dims' if dims == 'table3' else f'K = {dims}'}"


def make_checkpoint(spec: ModelSpec, path: Path, seed: int = 0) -> Path:
    model = build_model(spec, seed=seed)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, WEIGHT_STD)
    state = {k: v.detach() for k, v in model.state_dict().items()}
    return save_checkpoint(Checkpoint(spec, state), path, force=True)
