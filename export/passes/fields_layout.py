"""The fields layout as a pass: uncached FwFM, FvFM or FmFM graph -> cached graph, one table row per field.

Reads the model's weights back out of the uncached graph (read_weights.py), picks the cache plan
for the budget and table dtype (export/plan.py) and writes the graph export/fields_graph.py
describes: single requests on the cached tables, batches on the GEMM form or on the tables alone.
"""

from __future__ import annotations

import onnx_ir as ir

from ..fields_graph import build_fields_graph
from ..fields_layout import FieldsLayout, FieldsLayoutConfig
from ..folds import BYTES_PER_VALUE
from ..plan import CachePlan, plan_for_budget
from .manager import ReplacingPass
from .read_weights import read_field_weights


class FieldsLayoutPass(ReplacingPass):
    name = "fields_layout"

    def __init__(self, config: FieldsLayoutConfig, cache_budget: str | int = "unlimited"):
        super().__init__()
        self.config, self.cache_budget = config, cache_budget
        self.plan: CachePlan | None = None

    def apply(self, model: ir.Model) -> tuple[ir.Model, str]:
        weights = read_field_weights(model)
        per_value = BYTES_PER_VALUE[self.config.table_dtype]
        self.plan = plan_for_budget(weights.spec, self.cache_budget, per_value)
        layout = FieldsLayout(self.plan, self.config)
        built = build_fields_graph(weights, self.plan, self.config, dict(model.metadata_props))
        batches = ("batches of 2 or more on the GEMM form" if self.config.batched == "gemm"
                   else "batches on the tables alone")
        lines = [f"read {weights.spec.num_fields} fields, {len(weights.matrices)} field matrices, "
                 f"{weights.spec.linear} linear term from the uncached graph",
                 f"cache plan {self.plan.describe(per_value)}",
                 f"{layout.describe()}; {self.config.table_dtype} tables; {batches}"]
        return built, "\n".join(lines)
