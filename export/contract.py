"""The serving contract: what every fm2onnx graph takes, returns and says about itself.

    input   ``feature_ids`` int64 [batch, n_fields]: field-local ids, 0 the field's unknown feature
    output  ``probability``, ``logit`` float32 [batch]
    ids     a negative id or one past the field's vocabulary reads the unknown row 0
    props   ``metadata_props``: the keys of ``describe`` (plus a cached graph's layout keys)

Hand-built graphs clamp ids with ``clamp_rows``; traced graphs inherit the torch model's own rule
(``models.embeddings.sanitize_ids``), which gives the same rows.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx_ir as ir

from fm2onnx import __version__
from fm2onnx.errors import Fm2OnnxError
from models import ModelSpec

from .field_order import canonical_order

INPUT_NAME = "feature_ids"
OUTPUT_NAMES = ("probability", "logit")
# Version of the serving contract (inputs, outputs, id semantics, these keys). Bump on any change.
SERVING_SCHEMA_VERSION = "1"
FORMS = ("uncached", "cached")
SPEC_KEYS = ("model_kind", "field_names", "vocab_sizes", "dims", "linear")


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


def spec_of(model: ir.Model, source: str = "the model") -> ModelSpec:
    """The model spec a graph's metadata describes; a missing or malformed key is named."""
    props = model.metadata_props
    missing = [key for key in SPEC_KEYS if key not in props]
    if missing:
        raise Fm2OnnxError(f"{source}: metadata lacks {', '.join(missing)}: not an fm2onnx graph")
    try:
        fields, vocab, dims = (json.loads(props[key]) for key in ("field_names", "vocab_sizes", "dims"))
    except ValueError as exc:
        raise Fm2OnnxError(f"{source}: malformed metadata ({exc})") from None
    return ModelSpec.from_dict({"kind": props["model_kind"], "field_names": fields, "vocab_sizes": vocab,
                                "dims": dims, "linear": props["linear"]})


def clamp_rows(w, ids: ir.Value, first: np.ndarray, last: np.ndarray) -> ir.Value:
    """Field f's id i -> row ``first[f] + i`` of a table whose rows ``first[f]`` (the unknown row) to
    ``last[f]`` (a copy of it) hold the field: negative ids land on the first, ids past the
    vocabulary on the last. ``w`` is a GraphWriter."""
    low = w.const(first, "row_bases") if np.any(first) else w.ints(0)
    if np.any(first):
        ids = w.op("Add", [ids, low], "ids_shifted")
    capped = w.op("Min", [ids, w.const(last, "row_bases_past_vocabulary")], "rows_capped")
    return w.op("Max", [capped, low], "rows")


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
