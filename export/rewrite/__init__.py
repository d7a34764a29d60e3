"""Uncached fm2onnx graph -> cached graph: fold field matrices into per-field lookup tables.

    fold rules (rules.py) -> cleanup -> merge lookups (merge.py) -> cleanup -> shape inference
    -> metadata form=cached

``rewrite_to_cached`` mutates the model in place and returns a report of what changed. The full
ONNX checker runs when the model is written (export/model_io.save_model).
"""

from __future__ import annotations

from functools import partial

import onnx_ir as ir

from fm2onnx.errors import Fm2OnnxError

from .merge import merge_lookups
from .passes import NamedPass, cleanup, infer_shapes, rule_pass, run_passes, set_metadata
from .report import GraphSummary, RewriteReport
from .rules import CACHE_RULES


def cached_pipeline(*, pair_major: bool = False) -> list[NamedPass]:
    return [
        *(rule_pass(r) for r in CACHE_RULES),
        NamedPass("cleanup", cleanup),  # merge_lookups only takes tables nothing else reads
        NamedPass("shape_inference", infer_shapes),
        NamedPass("merge_lookups", partial(merge_lookups, pair_major=pair_major)),
        NamedPass("cleanup", cleanup),
        NamedPass("shape_inference", infer_shapes),
        set_metadata(form="cached"),
    ]


def rewrite_to_cached(model: ir.Model, *, pair_major: bool = False) -> RewriteReport:
    """``pair_major``: also merge the cached left-side lookups (faster at batch 1, see merge.py)."""
    form = model.metadata_props.get("form")
    if form != "uncached":
        raise Fm2OnnxError(f"expected an uncached fm2onnx model (metadata form=uncached), got form={form!r}")
    before = GraphSummary.of(model)
    outcomes = run_passes(model, cached_pipeline(pair_major=pair_major))
    return RewriteReport(model.metadata_props.get("model_kind", "?"), before, GraphSummary.of(model), outcomes)


__all__ = ["cached_pipeline", "CACHE_RULES", "GraphSummary", "RewriteReport", "rewrite_to_cached"]
