"""The pass manager: onnx_ir passes run in order, each reporting what it did.

A pass either changes the model in place (``ReportedPass``: the fold rules, cleanup, merges) or
replaces it with a new one built from it (``ReplacingPass``: the fields layout, the GEMM form).
Both say how many changes they made and a one-line summary, or fail with ``NotApplicable`` naming
the node and the condition that did not hold.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import onnx_ir as ir

from fm2onnx.errors import Fm2OnnxError


class NotApplicable(Fm2OnnxError):
    """A pass's pattern does not hold on this graph; the message says where and why."""


def not_applicable(node: ir.Node | None, condition: str) -> NotApplicable:
    where = f"node {node.name!r} ({node.op_type})" if node is not None else "the graph"
    return NotApplicable(f"{where}: {condition}")


@dataclass(frozen=True)
class PassOutcome:
    name: str
    changes: int  # rewrites applied, nodes removed, ... (0: the pass found nothing to do)
    summary: str  # one or more lines


class ReportedPass(ir.passes.InPlacePass):
    """An in-place pass with a report: ``apply`` returns (changes, summary)."""

    name = "pass"
    outcome: PassOutcome | None = None

    @abc.abstractmethod
    def apply(self, model: ir.Model) -> tuple[int, str]: ...

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        changes, summary = self.apply(model)
        self.outcome = PassOutcome(self.name, changes, summary)
        return ir.passes.PassResult(model, modified=changes > 0)


class ReplacingPass(ir.passes.FunctionalPass):
    """A pass that builds a new model from its input, which it leaves as it was."""

    name = "pass"
    outcome: PassOutcome | None = None

    @abc.abstractmethod
    def apply(self, model: ir.Model) -> tuple[ir.Model, str]: ...

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        built, summary = self.apply(model)
        built.opset_imports[""] = model.opset_imports[""]  # the opset it was exported at (to_onnx.check_opset)
        self.outcome = PassOutcome(self.name, 1, summary)
        return ir.passes.PassResult(built, modified=True)


def run_passes(model: ir.Model, passes: list[ReportedPass | ReplacingPass]) -> tuple[ir.Model, list[PassOutcome]]:
    """Each pass on the previous one's model: (the last model, what each pass did)."""
    outcomes = []
    for step in passes:
        model = step(model).model
        outcomes.append(step.outcome)
    return model, outcomes
