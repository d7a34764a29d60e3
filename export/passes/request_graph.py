"""The request graph as a pass: uncached graph -> one context, N candidates (export/request_graph.py).

Reads the model's weights back out of the uncached graph (read_weights.py): any kind whose
interaction is a field matrix per pair, and LR.
"""

from __future__ import annotations

import onnx_ir as ir

from ..contract import FieldRoles
from ..request_graph import build_request_graph
from .manager import ReplacingPass
from .read_weights import READABLE_KINDS, read_field_weights


class RequestGraphPass(ReplacingPass):
    name = "request_graph"

    def __init__(self, roles: FieldRoles, table_dtype: str = "float32"):
        super().__init__()
        self.roles, self.table_dtype = roles, table_dtype

    def apply(self, model: ir.Model) -> tuple[ir.Model, str]:
        weights = read_field_weights(model, kinds=READABLE_KINDS, purpose="to score a request's candidates by")
        names = weights.spec.field_names
        built = build_request_graph(weights, self.roles, dict(model.metadata_props), self.table_dtype)
        lines = [f"read {weights.spec.num_fields} fields, {len(weights.matrices)} field matrices, "
                 f"{weights.spec.linear} linear term from the uncached graph",
                 f"context, once per request: {', '.join(names[f] for f in self.roles.context)}",
                 f"items, per candidate: {', '.join(names[f] for f in self.roles.items)}; "
                 f"{self.table_dtype} tables"]
        return built, "\n".join(lines)
