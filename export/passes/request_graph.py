"""The request graph as a pass: uncached graph -> one context, N candidates (export/request_graph.py;
FFM: export/request_graph_ffm.py; FM and LR: export/request_graph_fm.py).

Reads the model's weights back out of the uncached graph (read_weights.py, read_ffm.py).
"""

from __future__ import annotations

import onnx_ir as ir

from fm2onnx.errors import Fm2OnnxError

from ..contract import FieldRoles
from ..flops import count_flops
from ..request_graph import build_request_graph, request_layout
from ..request_graph_ffm import build_ffm_request_graph
from ..request_graph_fm import SUM_KINDS, build_sum_request_graph
from .manager import ReplacingPass
from .read_ffm import read_ffm_weights
from .read_weights import READABLE_KINDS, read_field_weights


def check_request_options(kind: str, table_dtype: str, cache_budget) -> None:
    """FFM's request graph reads its float32 tables as they are, FM's and LR's sum rows: neither caches."""
    if kind == "ffm" and (table_dtype != "float32" or cache_budget is not None):
        raise Fm2OnnxError("an FFM request graph keeps float32 embedding tables and caches nothing; "
                           "drop --table-dtype and --cache-budget")
    if kind in SUM_KINDS and cache_budget is not None:
        raise Fm2OnnxError(f"an {kind.upper()} request graph sums each side's rows and caches nothing; "
                           "drop --cache-budget")


class RequestGraphPass(ReplacingPass):
    name = "request_graph"

    def __init__(self, roles: FieldRoles, table_dtype: str = "float32", cache_budget=None):
        super().__init__()
        self.roles, self.table_dtype, self.cache_budget = roles, table_dtype, cache_budget

    def apply(self, model: ir.Model) -> tuple[ir.Model, str]:
        props = dict(model.metadata_props)
        kind = props.get("model_kind")
        check_request_options(kind, self.table_dtype, self.cache_budget)
        layout_note = ""
        if kind == "ffm":
            weights = read_ffm_weights(model)
            built = build_ffm_request_graph(weights, self.roles, props)
            read = f"read {weights.spec.num_fields} fields' field-aware vectors and linear weights"
        elif kind in SUM_KINDS:
            weights = read_field_weights(model, kinds=SUM_KINDS, purpose="to sum a request's rows from")
            built = build_sum_request_graph(weights, self.roles, props, self.table_dtype)
            read = f"read {weights.spec.num_fields} fields' rows and linear weights; pairs as a sum of squares"
        else:
            weights = read_field_weights(model, kinds=READABLE_KINDS, purpose="to score a request's candidates by")
            layout = request_layout(weights, self.roles, self.cache_budget, self.table_dtype)
            built = build_request_graph(weights, self.roles, props, self.table_dtype, layout)
            read = (f"read {weights.spec.num_fields} fields, {len(weights.matrices)} field matrices, "
                    f"{weights.spec.linear} linear term")
            layout_note = f"; {layout.describe(weights.spec, self.table_dtype)}"
        names = weights.spec.field_names
        flops, full_row = count_flops(built), count_flops(model, infer_shapes=False).total
        lines = [f"{read} from the uncached graph",
                 f"context, once per request: {', '.join(names[f] for f in self.roles.context)}",
                 f"items, per candidate: {', '.join(names[f] for f in self.roles.items)}; "
                 f"{self.table_dtype} tables{layout_note}",
                 f"FLOPs: {flops.total - flops.per_row:,} per request + {flops.per_row:,} per candidate "
                 f"(a full row on the uncached graph: {full_row:,})"]
        return built, "\n".join(lines)
