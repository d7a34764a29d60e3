"""The serving contract: what every fm2onnx graph takes, returns and says about itself.

    input   ``feature_ids`` int64 [batch, n_fields]: field-local ids, 0 the field's unknown feature
    output  ``probability``, ``logit`` float32 [batch]
    ids     a negative id or one past the field's vocabulary reads the unknown row 0
    props   ``metadata_props``: the keys of ``describe`` (plus a cached graph's layout keys)

A request graph (form ``request``) scores one context against N candidates instead:

    inputs  ``context_ids`` int64 [1, n_context], ``candidate_ids`` int64 [N, n_item]: the ids of the
            context and item fields, each in the checkpoint's field order (``FieldRoles``)
    output  ``probability``, ``logit`` float32 [N]: row i is the full row (context, candidate i)
    props   ``field_roles``: "context" or "item" per field, in the checkpoint's field order

Hand-built graphs clamp ids with ``clamp_rows``; traced graphs inherit the torch model's own rule
(``models.embeddings.sanitize_ids``), which gives the same rows.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx_ir as ir

from fm2onnx import __version__
from fm2onnx.errors import Fm2OnnxError
from models import ModelSpec

from .field_order import canonical_order

INPUT_NAME = "feature_ids"
OUTPUT_NAMES = ("probability", "logit")
CONTEXT_INPUT, CANDIDATES_INPUT = "context_ids", "candidate_ids"
ROLES_KEY = "field_roles"
# Version of the serving contract (inputs, outputs, id semantics, these keys). Bump on any change.
SERVING_SCHEMA_VERSION = "1"
FORMS = ("uncached", "cached", "request")
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


@dataclass(frozen=True)
class FieldRoles:
    """The fields a request graph reads once per request (context) and once per candidate (items), as
    original field indices in the checkpoint's order."""

    context: tuple[int, ...]
    items: tuple[int, ...]

    @classmethod
    def of_names(cls, spec: ModelSpec, context: list[str] | None, items: list[str] | None) -> "FieldRoles":
        """One side named, the other is every other field; both named, they must split the fields."""
        if not context and not items:
            raise Fm2OnnxError("name the context fields (--context-fields) or the item fields (--item-fields)")
        chosen = {role: indices_of(spec, names, option) for role, names, option in
                  (("context", context, "--context-fields"), ("items", items, "--item-fields")) if names}
        rest = lambda taken: tuple(f for f in range(spec.num_fields) if f not in taken)  # noqa: E731
        roles = cls(chosen.get("context") or rest(chosen["items"]), chosen.get("items") or rest(chosen["context"]))
        overlap = set(roles.context) & set(roles.items)
        if overlap:
            raise Fm2OnnxError(f"field(s) {', '.join(spec.field_names[f] for f in sorted(overlap))} are named "
                               "both context and item")
        missing = set(range(spec.num_fields)) - set(roles.context) - set(roles.items)
        if missing:
            raise Fm2OnnxError(f"field(s) {', '.join(spec.field_names[f] for f in sorted(missing))} are neither "
                               "context nor item; every field is one or the other")
        if not roles.context or not roles.items:
            raise Fm2OnnxError("a request graph needs at least one context field and one item field")
        return roles

    def to_props(self, spec: ModelSpec) -> dict[str, str]:
        return {ROLES_KEY: json.dumps(["context" if f in self.context else "item" for f in range(spec.num_fields)])}

    @classmethod
    def of_props(cls, props: dict[str, str], source: str = "the model",
                 widths: dict[str, object] | None = None) -> "FieldRoles":
        """The roles a request graph's metadata records, one per field of ``field_names``; with the graph's
        input ``widths`` (input name -> its second dimension), checked against them."""
        try:
            roles = json.loads(props[ROLES_KEY])
        except (KeyError, ValueError):
            raise Fm2OnnxError(f"{source}: no readable {ROLES_KEY} in its metadata: not a request graph") from None
        fields = len(json.loads(props.get("field_names", "[]")))
        if not isinstance(roles, list) or len(roles) != fields or not set(roles) <= {"context", "item"}:
            raise Fm2OnnxError(f"{source}: metadata {ROLES_KEY} must be \"context\" or \"item\" for each of its "
                               f"{fields} field_names, got {props[ROLES_KEY][:80]}")
        found = cls(tuple(f for f, r in enumerate(roles) if r == "context"),
                    tuple(f for f, r in enumerate(roles) if r == "item"))
        for name, count in ((CONTEXT_INPUT, len(found.context)), (CANDIDATES_INPUT, len(found.items))):
            width = (widths or {}).get(name, count)
            if width != count and isinstance(width, int):
                raise Fm2OnnxError(f"{source}: metadata {ROLES_KEY} names {count} field(s) for {name}, which "
                                   f"takes {width}")
        return found

    def full_rows(self, context_ids: np.ndarray, candidate_ids: np.ndarray) -> np.ndarray:
        """The ``feature_ids`` rows a request stands for: [N, n_fields], the context repeated."""
        rows = np.empty((len(candidate_ids), len(self.context) + len(self.items)), np.int64)
        rows[:, list(self.context)] = np.asarray(context_ids).reshape(1, -1)
        rows[:, list(self.items)] = candidate_ids
        return rows


def indices_of(spec: ModelSpec, names: list[str], option: str) -> tuple[int, ...]:
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise Fm2OnnxError(f"{option}: {', '.join(map(repr, repeated))} named more than once")
    unknown = [name for name in names if name not in spec.field_names]
    if unknown:
        raise Fm2OnnxError(f"{option}: no field {', '.join(map(repr, unknown))}; the model's fields are "
                           f"{', '.join(spec.field_names)}")
    return tuple(sorted({spec.field_names.index(name) for name in names}))


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
