"""A small pass manager: named passes run in order, each reporting what it did."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import onnx_ir as ir
from onnx_ir.passes import common as common_passes
from onnxscript.rewriter import pattern


@dataclass(frozen=True)
class PassOutcome:
    name: str
    changes: int  # rewrites applied, nodes removed, ... (0: the pass found nothing to do)
    summary: str


@dataclass(frozen=True)
class NamedPass:
    name: str
    run: Callable[[ir.Model], tuple[int, str]]  # mutates the model in place -> (changes, summary)


def rule_pass(rule: pattern.RewriteRule) -> NamedPass:
    rules = pattern.RewriteRuleSet([rule])
    rules.remove_unused_nodes = False  # dead nodes are the cleanup pass's job, and its report line

    def run(model: ir.Model) -> tuple[int, str]:
        count = rules.apply_to_model(model)
        return count, f"{count} rewrite{'s' if count != 1 else ''}"

    return NamedPass(rule.name, run)


def cleanup(model: ir.Model) -> tuple[int, str]:
    """Drop the nodes and initializers the folds left dead (the raw field matrices, unused tables)."""
    nodes, inits = len(model.graph), len(model.graph.initializers)
    for cleanup_pass in (common_passes.RemoveUnusedNodesPass(), common_passes.RemoveUnusedOpsetsPass()):
        cleanup_pass(model)
    removed_nodes, removed_inits = nodes - len(model.graph), inits - len(model.graph.initializers)
    return removed_nodes + removed_inits, f"removed {removed_nodes} nodes, {removed_inits} initializers"


def infer_shapes(model: ir.Model) -> tuple[int, str]:
    common_passes.ShapeInferencePass()(model)
    return 0, "ok"


def set_metadata(**props: str) -> NamedPass:
    def run(model: ir.Model) -> tuple[int, str]:
        model.metadata_props.update(props)
        return len(props), ", ".join(f"{k}={v}" for k, v in props.items())

    return NamedPass("metadata", run)


def run_passes(model: ir.Model, passes: list[NamedPass]) -> list[PassOutcome]:
    return [PassOutcome(p.name, *p.run(model)) for p in passes]
