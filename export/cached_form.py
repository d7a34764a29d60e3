"""The cached graph of an uncached graph, in one of two layouts, each a pipeline of passes (export/passes):

    fields  a cache plan (export/plan.py) laid out one table row per field, with compact table dtypes
            (export/fields_layout.py). The default for the kinds with field matrices to fold (FwFM,
            FvFM, FmFM; plan.FIELDS_KINDS).
    pairs   the rule-based rewrite: per-pair dot products in Table 4's shape, every kind; float32 tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import onnx_ir as ir

from fm2onnx.errors import Fm2OnnxError

from .fields_layout import FieldsLayoutConfig
from .folds import BYTES_PER_VALUE
from .parity import tolerance_of
from .passes import RewriteReport, fields_pipeline, pairs_pipeline, rewrite
from .plan import FIELDS_KINDS, CachePlan, check_budget, parse_budget

LAYOUTS = ("fields", "pairs")


@dataclass(frozen=True)
class CachedFormOptions:
    layout: str = "fields"
    cache_budget: str | int = "unlimited"  # fields: "unlimited", "min" or bytes of cached vectors
    table_dtype: str = "float32"
    # fields: what batches of 2 or more run on, "gemm" (the default: faster from a few requests on) or
    # "cached" (the tables alone: the smallest file); the pairs layout has its tables only
    batched: str | None = None
    pair_major: bool = False  # pairs: merge the cached lookups too (passes/merge_lookups.py)
    fields: FieldsLayoutConfig = field(default_factory=FieldsLayoutConfig)

    @classmethod
    def of_cli(cls, layout: str | None, pair_major: bool, cache_budget: str = "unlimited",
               table_dtype: str = "float32", batched: str | None = None) -> "CachedFormOptions":
        """The options as ``export`` and ``rewrite`` take them: ``--pair-major`` implies the pairs layout."""
        return cls(layout=layout or ("pairs" if pair_major else "fields"), cache_budget=cache_budget,
                   table_dtype=table_dtype, batched=batched, pair_major=pair_major)

    def for_kind(self, kind: str) -> "CachedFormOptions":
        """Check the options against the model kind; the other kinds take the pairs layout."""
        if self.layout not in LAYOUTS:
            raise Fm2OnnxError(f"unknown layout {self.layout!r}; expected one of {', '.join(LAYOUTS)}")
        parse_budget(self.cache_budget)
        if self.pair_major and self.layout != "pairs":
            raise Fm2OnnxError("--pair-major is an option of the pairs layout")
        layout = self.layout if kind in FIELDS_KINDS else "pairs"
        batched = self.batched or ("gemm" if layout == "fields" else "cached")
        fields = replace(self.fields, table_dtype=self.table_dtype, batched=batched)  # checks dtype and form
        if layout == "pairs" and (self.table_dtype != "float32" or self.cache_budget != "unlimited"
                                  or batched != "cached"):
            what = f"{kind} models" if kind not in FIELDS_KINDS else "the pairs layout"
            raise Fm2OnnxError(f"cache budgets, compact table dtypes and --batched gemm need the fields layout of an "
                               f"FwFM, FvFM or FmFM model, not {what}")
        return replace(self, layout=layout, fields=fields)

    def for_spec(self, spec) -> "CachedFormOptions":
        """``for_kind``, and the cache budget checked against the model's size before any work."""
        options = self.for_kind(spec.kind)
        if options.layout == "fields":
            check_budget(spec, options.cache_budget, BYTES_PER_VALUE[options.table_dtype])
        return options

    @property
    def tolerance(self) -> tuple[float, float]:
        return tolerance_of(self.table_dtype)


def batched_label(batched: str) -> str:
    """How a cached variant's label names its batched form: nothing for the tables, " + gemm batches"."""
    return "" if batched == "cached" else f" + {batched} batches"


@dataclass
class CachedGraph:
    model: ir.Model
    report: RewriteReport
    plan: CachePlan | None = None  # fields layout

    @property
    def lines(self) -> list[str]:
        return self.report.lines()


def make_cached(uncached: ir.Model, options: CachedFormOptions) -> CachedGraph:
    """The cached graph of an uncached fm2onnx graph (which is left as it was)."""
    options = options.for_kind(uncached.metadata_props.get("model_kind", ""))
    if options.layout == "pairs":
        return CachedGraph(*rewrite(uncached, pairs_pipeline(pair_major=options.pair_major)))
    passes = fields_pipeline(options.fields, options.cache_budget)
    model, report = rewrite(uncached, passes)
    return CachedGraph(model, report, passes[0].plan)
