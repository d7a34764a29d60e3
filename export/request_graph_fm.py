"""The request graph of FM and LR (Eq. 1-2): every field's row summed, no pairs.

FM's field matrix is the identity, so its pairs are a sum of squares (Rendle's identity): with c_f =
lin_f − ½‖v_f‖² per feature,

    logit = bias + Σ_f c_f + ½‖Σ_f v_f‖²

over all fields of the row. Each side's table holds rows [v_f | c_f]; a request sums its context's
rows once, [s | Σ_C c], each candidate its item fields' rows, [u | Σ_I c], and a candidate's logit is
bias + Σ of the last column + ½‖s + u‖². A candidate reads its item fields' rows and adds them up:
no context field, no pair and no field-matrix product per candidate. LR is the same with no v.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from .contract import CANDIDATES_INPUT, CONTEXT_INPUT, FieldRoles, clamp_rows
from .folds import FieldWeights
from .gemm_form import gather_rows
from .graph_writer import INT64, GraphWriter
from .request_graph import CANDIDATES

SUM_KINDS = ("fm", "lr")


def build_sum_request_graph(weights: FieldWeights, roles: FieldRoles, props: dict[str, str],
                            table_dtype: str = "float32") -> ir.Model:
    """The request graph of an FM or LR model's ``weights`` (``props``: the uncached graph's metadata)."""
    w, spec = GraphWriter(), weights.spec
    context = ir.val(CONTEXT_INPUT, dtype=INT64, shape=ir.Shape([1, len(roles.context)]))
    candidates = ir.val(CANDIDATES_INPUT, dtype=INT64, shape=ir.Shape([CANDIDATES, len(roles.items)]))
    k = spec.dims[0]  # 0 for LR
    per_request = summed_rows(w, weights, roles.context, context, table_dtype, "context")  # [1, K + 1]
    # the bias joins the context's Σ c, once per request
    bias = w.const(np.array([0.0] * k + [weights.bias], np.float32), "bias")
    per_request = w.op("Add", [per_request, bias], "context_and_bias")
    per_candidate = summed_rows(w, weights, roles.items, candidates, table_dtype, "item")  # [N, K + 1]
    total = w.op("Add", [per_candidate, per_request], "row_sums")
    if k == 0:  # LR: the sum is the logit
        logit = w.op("Reshape", [total, w.ints(-1)], "logit_sum")
    else:  # Σ total ⊙ (total ⊙ half + last): ½ Σ_k (s + u)_k² plus the c column, in one ReduceSum
        half = w.const(np.array([0.5] * k + [0.0], np.float32), "half_of_squares")
        last = w.const(np.array([0.0] * k + [1.0], np.float32), "sum_of_c")
        weighted = w.op("Add", [w.op("Mul", [total, half], "halved"), last], "weights_of_sums")
        logit = w.op("ReduceSum", [w.op("Mul", [total, weighted], "squares_and_c"), w.ints(1)], "logit_sum",
                     keepdims=0)
    props = props | {"form": "request", "layout": "request", "table_dtype": table_dtype,
                     "context_cached": "false"} | roles.to_props(spec)
    return w.serving_model([context, candidates], logit, "fm2onnx_request", props, rows=CANDIDATES)


def summed_rows(w: GraphWriter, weights: FieldWeights, fields: tuple[int, ...], ids: ir.Value, table_dtype: str,
                side: str) -> ir.Value:
    """Σ over ``fields`` of their rows [v_f | c_f], [B, K + 1], from the field-local ids [B, len(fields)]."""
    tables = [side_rows(weights, f) for f in fields]
    first = np.cumsum([0] + [len(t) for t in tables[:-1]]).astype(np.int64)
    vocab = np.array([weights.spec.vocab_sizes[f] for f in fields], np.int64)
    rows = clamp_rows(w, ids, first, first + vocab)
    gathered = gather_rows(w, w, np.concatenate(tables).astype(np.float32), rows, table_dtype, f"{side}_rows")
    return w.op("ReduceSum", [gathered, w.ints(1)], f"{side}_sum", keepdims=0)


def side_rows(weights: FieldWeights, f: int) -> np.ndarray:
    """Field f's rows [v | lin − ½‖v‖²] in float64, row V a copy of the unknown row 0."""
    v = weights.tables[f]
    own = np.concatenate([v, (weights.linear_values(f) - 0.5 * (v * v).sum(axis=1))[:, None]], axis=1)
    return np.concatenate([own, own[:1]])
