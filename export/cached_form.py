"""The cached graph of a checkpoint's model, in one of two layouts:

    fields  FmFM only: a cache plan (export/plan.py) laid out one table row per field, with compact
            table dtypes (export/fields_layout.py). The default for FmFM.
    pairs   the rule-based rewrite of the uncached graph (export/rewrite): per-pair dot products in
            Table 4's shape, every kind; float32 tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import onnx_ir as ir

from fm2onnx.errors import Fm2OnnxError
from models import FMFamilyModel

from .fields_graph import build_fields_graph
from .fields_layout import TABLE_DTYPES, FieldsLayout, FieldsLayoutConfig
from .flops import count_flops
from .model_io import tensor_bytes
from .parity import tolerance_of
from .plan import BYTES_PER_VALUE, CachePlan, parse_budget, plan_for_budget
from .rewrite import RewriteReport, rewrite_to_cached

LAYOUTS = ("fields", "pairs")


@dataclass(frozen=True)
class CachedFormOptions:
    layout: str = "fields"
    cache_budget: str | int = "unlimited"  # fields: "unlimited", "min" or bytes of cached vectors
    table_dtype: str = "float32"
    # fields: what batches of 2 or more run on, "gemm" (the default: faster from a few requests on) or
    # "cached" (the tables alone: the smallest file); the pairs layout has its tables only
    batched: str | None = None
    pair_major: bool = False  # pairs: merge the cached lookups too (rewrite/merge.py)
    fields: FieldsLayoutConfig = field(default_factory=FieldsLayoutConfig)

    def for_kind(self, kind: str) -> "CachedFormOptions":
        """Check the options against the model kind; the fields layout exists for FmFM only."""
        if self.layout not in LAYOUTS:
            raise Fm2OnnxError(f"unknown layout {self.layout!r}; expected one of {', '.join(LAYOUTS)}")
        if self.table_dtype not in TABLE_DTYPES:
            raise Fm2OnnxError(f"unknown table dtype {self.table_dtype!r}; expected one of {', '.join(TABLE_DTYPES)}")
        parse_budget(self.cache_budget)
        if self.pair_major and self.layout != "pairs":
            raise Fm2OnnxError("--pair-major is an option of the pairs layout")
        layout = self.layout if kind == "fmfm" else "pairs"
        if layout == "pairs" and (self.table_dtype != "float32" or self.cache_budget != "unlimited"
                                  or self.batched not in (None, "cached")):
            what = f"{kind} models" if kind != "fmfm" else "the pairs layout"
            raise Fm2OnnxError(f"cache budgets, compact table dtypes and --batched gemm need the fields layout of an "
                               f"FmFM model, not {what}")
        batched = self.batched or ("gemm" if layout == "fields" else "cached")
        return replace(self, layout=layout, fields=replace(self.fields, table_dtype=self.table_dtype, batched=batched))

    @property
    def tolerance(self) -> tuple[float, float]:
        return tolerance_of(self.table_dtype)


def batched_label(batched: str) -> str:
    """How a cached variant's label names its batched form: nothing for the tables, " + gemm batches"."""
    return "" if batched == "cached" else f" + {batched} batches"


@dataclass
class CachedGraph:
    model: ir.Model
    lines: list[str]  # what to report
    plan: CachePlan | None = None  # fields layout
    report: RewriteReport | None = None  # pairs layout


def make_cached(model: FMFamilyModel | None, uncached: ir.Model, options: CachedFormOptions, *,
                checkpoint_sha256: str = "") -> CachedGraph:
    """The cached graph: the fields layout from the torch ``model``; the pairs layout by rewriting
    ``uncached`` in place (save it first if it is needed too)."""
    options = options.for_kind(uncached.metadata_props.get("model_kind", ""))
    if options.layout == "pairs":
        report = rewrite_to_cached(uncached, pair_major=options.pair_major)
        uncached.metadata_props["layout"] = "pairs"
        return CachedGraph(uncached, report.lines(), report=report)
    plan = plan_for_budget(model.spec, options.cache_budget, BYTES_PER_VALUE[options.table_dtype])
    graph = build_fields_graph(model, plan, options.fields, checkpoint_sha256=checkpoint_sha256)
    layout = FieldsLayout(plan, options.fields)
    lines = [f"cache plan {plan.describe(BYTES_PER_VALUE[options.table_dtype])}",
             f"fields layout: {layout.describe()}",
             f"fields layout: {options.table_dtype} tables, {tensor_bytes(graph):,} bytes of tensors, "
             f"{layout.graph_flops():,} FLOPs per request read from the tables (run padding and own vectors included)"]
    if options.fields.batched == "gemm":  # the graph's count is its larger branch: the GEMM the batches run on
        lines.append(f"batches of 2 or more run on the GEMM form: {count_flops(graph).total:,} FLOPs per row")
    return CachedGraph(graph, lines, plan)
