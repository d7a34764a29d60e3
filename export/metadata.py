"""``metadata_props`` of every fm2onnx model: what a server needs to know without the checkpoint."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import onnx_ir as ir

from fm2onnx import __version__
from models import ModelSpec

from .field_order import canonical_order

# Version of the serving contract (inputs, outputs, id semantics, these keys). Bump on any change.
SERVING_SCHEMA_VERSION = "1"
FORMS = ("uncached", "cached")


def describe(spec: ModelSpec, *, form: str, checkpoint_sha256: str) -> dict[str, str]:
    return {
        "fm2onnx_version": __version__,
        "serving_schema_version": SERVING_SCHEMA_VERSION,
        "model_kind": spec.kind,
        "form": form,
        "field_names": json.dumps(list(spec.field_names)),
        "vocab_sizes": json.dumps(list(spec.vocab_sizes)),
        "dims": json.dumps(list(spec.dims)),
        "linear": spec.linear,
        "field_order": json.dumps(canonical_order(spec)),  # original field index per graph position
        "source_checkpoint_sha256": checkpoint_sha256,
    }


def stamp(model: ir.Model, props: dict[str, str]) -> None:
    model.metadata_props.update(props)
    model.producer_name, model.producer_version = "fm2onnx", __version__


def read(model: ir.Model) -> dict[str, str]:
    return dict(model.metadata_props)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
