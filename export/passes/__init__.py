"""Every cached graph is a pipeline of passes over the traced uncached graph.

    pairs layout   fold rules (rules/) -> cleanup -> shape inference -> merge lookups -> cleanup
                   -> shape inference -> metadata form=cached        (every kind; in place on a copy)
    fields layout  read the weights back out of the graph -> cache plan -> fields graph   (FwFM, FvFM, FmFM)
    GEMM form      read the weights -> one MatMul per width group (per coordinate: FwFM, FvFM)

``rewrite`` runs a pipeline and reports each pass and the graph before and after; the input model
is never changed. A pass that cannot apply raises ``NotApplicable`` naming the node and condition.
"""

from __future__ import annotations

import onnx_ir as ir

from fm2onnx.errors import Fm2OnnxError

from ..fields_layout import FieldsLayoutConfig
from ..to_onnx import check_opset
from .common import Cleanup, InferShapes, RulePass, SetMetadata
from .fields_layout import FieldsLayoutPass
from .gemm_form import GemmFormPass
from .manager import NotApplicable, PassOutcome, ReplacingPass, ReportedPass, run_passes
from .merge_lookups import MergeLookups
from .report import GraphSummary, RewriteReport
from .rules import CACHE_RULES


def pairs_pipeline(*, pair_major: bool = False) -> list[ReportedPass]:
    return [
        *(RulePass(rule) for rule in CACHE_RULES),
        Cleanup(),  # merge_lookups only takes tables nothing else reads
        InferShapes(),
        MergeLookups(pair_major),
        Cleanup(),
        InferShapes(),
        SetMetadata(form="cached", layout="pairs"),
    ]


def fields_pipeline(config: FieldsLayoutConfig, cache_budget: str | int = "unlimited") -> list:
    return [FieldsLayoutPass(config, cache_budget), InferShapes()]


def require_uncached(model: ir.Model, where: str = "") -> None:
    """The rewrites start from the uncached graph; ``where`` (a file) is named when given."""
    form = model.metadata_props.get("form")
    if form != "uncached":
        raise Fm2OnnxError(f"{where + ': ' if where else ''}expected an uncached fm2onnx model (metadata "
                           f"form=uncached), got form={form!r}; `fm2onnx export --form uncached` writes one")


def rewrite(model: ir.Model, passes: list[ReportedPass | ReplacingPass]) -> tuple[ir.Model, RewriteReport]:
    """Run ``passes`` on a copy of an uncached fm2onnx ``model``: (the rewritten model, its report)."""
    require_uncached(model)
    check_opset(model.opset_imports.get("", 0), of="the uncached graph's ")  # the rewritten graph keeps it
    before = GraphSummary.of(model)
    work = model.clone() if isinstance(passes[0], ReportedPass) else model  # in-place passes get a copy
    rewritten, outcomes = run_passes(work, passes)
    report = RewriteReport(model.metadata_props.get("model_kind", "?"), before, GraphSummary.of(rewritten), outcomes)
    return rewritten, report


__all__ = ["CACHE_RULES", "FieldsLayoutPass", "GemmFormPass", "GraphSummary", "NotApplicable", "PassOutcome",
           "RewriteReport", "fields_pipeline", "pairs_pipeline", "require_uncached", "rewrite"]
