"""What a rewrite changed: ops by type, table bytes and FLOPs per row, before and after."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import onnx_ir as ir

from ..flops import count_flops
from ..model_io import tensor_bytes
from .passes import PassOutcome


@dataclass(frozen=True)
class GraphSummary:
    ops: Counter
    table_bytes: int  # float initializers: embedding tables, field matrices, cached tables
    flops_per_row: int

    @classmethod
    def of(cls, model: ir.Model) -> "GraphSummary":
        return cls(Counter(node.op_type for node in model.graph), tensor_bytes(model, float_only=True),
                   count_flops(model).total)


@dataclass(frozen=True)
class RewriteReport:
    kind: str
    before: GraphSummary
    after: GraphSummary
    passes: list[PassOutcome]

    @property
    def folds(self) -> int:
        return sum(p.changes for p in self.passes if p.name.startswith("fold_"))

    def lines(self) -> list[str]:
        out = [f"rewrite of a {self.kind} model"]
        out += [f"  {p.name:<18} {p.summary}" for p in self.passes]
        out.append(f"  {'':<22}{'before':>14}{'after':>14}")
        out.append(row("FLOPs per row", self.before.flops_per_row, self.after.flops_per_row))
        out.append(row("table bytes", self.before.table_bytes, self.after.table_bytes))
        out.append(row("nodes", sum(self.before.ops.values()), sum(self.after.ops.values())))
        for op in sorted(set(self.before.ops) | set(self.after.ops)):
            out.append(row(f"  {op}", self.before.ops[op], self.after.ops[op]))
        return out

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "passes": [{"name": p.name, "changes": p.changes, "summary": p.summary} for p in self.passes],
            "before": summary_dict(self.before),
            "after": summary_dict(self.after),
        }


def row(label: str, before: int, after: int) -> str:
    return f"  {label:<22}{before:>14,}{after:>14,}"


def summary_dict(s: GraphSummary) -> dict:
    return {"ops": dict(s.ops), "table_bytes": s.table_bytes, "flops_per_row": s.flops_per_row}
