"""The request graph as a pass: uncached graph -> one context, N candidates (export/request_graph.py;
FFM: export/request_graph_ffm.py).

Reads the model's weights back out of the uncached graph (read_weights.py, read_ffm.py).
"""

from __future__ import annotations

import onnx_ir as ir

from ..contract import FieldRoles
from ..flops import count_flops
from ..request_graph import build_request_graph, request_layout
from ..request_graph_ffm import build_ffm_request_graph, check_ffm_request_options
from .manager import ReplacingPass
from .read_ffm import read_ffm_weights
from .read_weights import READABLE_KINDS, read_field_weights


class RequestGraphPass(ReplacingPass):
    name = "request_graph"

    def __init__(self, roles: FieldRoles, table_dtype: str = "float32", cache_budget=None):
        super().__init__()
        self.roles, self.table_dtype, self.cache_budget = roles, table_dtype, cache_budget

    def apply(self, model: ir.Model) -> tuple[ir.Model, str]:
        props = dict(model.metadata_props)
        if props.get("model_kind") == "ffm":
            check_ffm_request_options(self.table_dtype, self.cache_budget)
            weights = read_ffm_weights(model)
            built = build_ffm_request_graph(weights, self.roles, props)
            read = f"read {weights.spec.num_fields} fields' field-aware vectors and linear weights"
        else:
            weights = read_field_weights(model, kinds=READABLE_KINDS, purpose="to score a request's candidates by")
            layout = request_layout(weights, self.roles, self.cache_budget, self.table_dtype)
            built = build_request_graph(weights, self.roles, props, self.table_dtype, layout)
            read = (f"read {weights.spec.num_fields} fields, {len(weights.matrices)} field matrices, "
                    f"{weights.spec.linear} linear term")
        names = weights.spec.field_names
        flops, full_row = count_flops(built), count_flops(model, infer_shapes=False).total
        lines = [f"{read} from the uncached graph",
                 f"context, once per request: {', '.join(names[f] for f in self.roles.context)}",
                 f"items, per candidate: {', '.join(names[f] for f in self.roles.items)}; "
                 f"{self.table_dtype} tables" + (f"; {layout.describe(weights.spec, self.table_dtype)}"
                                                  if props.get("model_kind") != "ffm" else ""),
                 f"FLOPs: {flops.total - flops.per_row:,} per request + {flops.per_row:,} per candidate "
                 f"(a full row on the uncached graph: {full_row:,})"]
        return built, "\n".join(lines)
