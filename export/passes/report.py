"""What a pipeline changed: ops by type, table bytes and FLOPs, before and after, and each pass's line."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import onnx_ir as ir

from ..flops import BatchFlops, flops_by_batch
from .manager import PassOutcome


def table_bytes(model: ir.Model) -> int:
    """Bytes of the tables a server keeps in memory: every initializer but int64 index constants."""
    values = (v for graph in model.graphs() for v in graph.initializers.values())
    return sum(v.const_value.nbytes for v in values
               if v.const_value is not None and v.const_value.dtype != ir.DataType.INT64)


@dataclass(frozen=True)
class GraphSummary:
    ops: Counter  # every graph's nodes, subgraphs included
    table_bytes: int
    flops: BatchFlops

    @classmethod
    def of(cls, model: ir.Model) -> "GraphSummary":
        ops = Counter(node.op_type for graph in model.graphs() for node in graph)
        return cls(ops, table_bytes(model), flops_by_batch(model))

    def to_dict(self) -> dict:
        return {"ops": dict(self.ops), "table_bytes": self.table_bytes, "flops": self.flops.to_dict()}


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
        for p in self.passes:
            first, *rest = p.summary.splitlines() or [""]
            out += [f"  {p.name:<18} {first}"] + [f"  {'':<18} {line}" for line in rest]
        out.append(f"  {'':<22}{'before':>14}{'after':>14}")
        out.append(row("FLOPs, one request", self.before.flops.one_request, self.after.flops.one_request))
        out.append(row("FLOPs per row, batches", self.before.flops.batches, self.after.flops.batches))
        out.append(row("table bytes", self.before.table_bytes, self.after.table_bytes))
        out.append(row("nodes", sum(self.before.ops.values()), sum(self.after.ops.values())))
        for op in sorted(set(self.before.ops) | set(self.after.ops)):
            out.append(row(f"  {op}", self.before.ops[op], self.after.ops[op]))
        return out

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "passes": [{"name": p.name, "changes": p.changes, "summary": p.summary} for p in self.passes],
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
        }


def row(label: str, before: int, after: int) -> str:
    return f"  {label:<22}{before:>14,}{after:>14,}"
