"""Housekeeping passes: drop what the folds left dead, infer shapes, stamp metadata."""

from __future__ import annotations

import onnx_ir as ir
from onnx_ir.passes import common as common_passes
from onnxscript.rewriter import pattern

from .manager import ReportedPass


class RulePass(ReportedPass):
    """One onnxscript rewrite rule, applied everywhere it matches."""

    def __init__(self, rule: pattern.RewriteRule):
        super().__init__()
        self.name = rule.name
        self.rules = pattern.RewriteRuleSet([rule])
        self.rules.remove_unused_nodes = False  # dead nodes are the cleanup pass's job, and its report line

    def apply(self, model: ir.Model) -> tuple[int, str]:
        count = self.rules.apply_to_model(model)
        return count, f"{count} rewrite{'s' if count != 1 else ''}"


class Cleanup(ReportedPass):
    """Drop the nodes and initializers the folds left dead (the raw field matrices, unused tables)."""

    name = "cleanup"

    def apply(self, model: ir.Model) -> tuple[int, str]:
        nodes, inits = len(model.graph), len(model.graph.initializers)
        for cleanup_pass in (common_passes.RemoveUnusedNodesPass(), common_passes.RemoveUnusedOpsetsPass()):
            cleanup_pass(model)
        removed_nodes, removed_inits = nodes - len(model.graph), inits - len(model.graph.initializers)
        return removed_nodes + removed_inits, f"removed {removed_nodes} nodes, {removed_inits} initializers"


class InferShapes(ReportedPass):
    name = "shape_inference"

    def apply(self, model: ir.Model) -> tuple[int, str]:
        common_passes.ShapeInferencePass()(model)
        return 0, "ok"


class SetMetadata(ReportedPass):
    name = "metadata"

    def __init__(self, **props: str):
        super().__init__()
        self.props = props

    def apply(self, model: ir.Model) -> tuple[int, str]:
        model.metadata_props.update(self.props)
        return len(self.props), ", ".join(f"{k}={v}" for k, v in self.props.items())
