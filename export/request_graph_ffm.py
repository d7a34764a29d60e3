"""The request graph of an FFM model (Eq. 5): the context's own part once per request.

FFM's pair (a, b) is <v_{i_a, F=b}, v_{i_b, F=a}>: no field matrix, so nothing folds the context
into one vector per item field the way s_b does for the field-matrix kinds. What a request still
saves is the context's own work:

    per request     bias + lin(c) + Σ_{a<b ∈ C} <v_{c_a,b}, v_{c_b,a}>, and u_b = [v_{c_a,b}]_{a ∈ C}
    per candidate   lin(i) + Σ_{a<b ∈ I} <v_{i_a,b}, v_{i_b,a}> + Σ_{b ∈ I} <u_b, [v_{i_b,a}]_{a ∈ C}>

The context×item term costs a candidate |C|·|I|·K multiply-adds, as in a full row; the candidate
never reads a context field's table or a context pair.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from .contract import CANDIDATES_INPUT, CONTEXT_INPUT, FieldRoles, clamp_rows
from .folds import FFMWeights
from .graph_writer import INT64, GraphWriter
from .request_graph import CANDIDATES


def build_ffm_request_graph(weights: FFMWeights, roles: FieldRoles, props: dict[str, str]) -> ir.Model:
    w, spec = GraphWriter(), weights.spec
    n, k = spec.num_fields, spec.dims[0]
    context = ir.val(CONTEXT_INPUT, dtype=INT64, shape=ir.Shape([1, len(roles.context)]))
    candidates = ir.val(CANDIDATES_INPUT, dtype=INT64, shape=ir.Shape([CANDIDATES, len(roles.items)]))
    c_slots, c_linear = side_rows(w, weights, roles.context, context, "context")  # [1, |C|(n-1), K], [1]
    i_slots, i_linear = side_rows(w, weights, roles.items, candidates, "item")  # [N, |I|(n-1), K], [N]
    own_context = pair_sum(w, c_slots, pair_slots(weights, roles.context), "context")
    per_request = w.op("Sum", [own_context, c_linear, w.const(np.array([weights.bias], np.float32), "bias")],
                       "per_request")
    left, right = cross_slots(weights, roles)
    u = w.op("Reshape", [w.op("Gather", [c_slots, w.const(left, "context_cross_slots")], "u", axis=1),
                         w.ints(-1, 1)], "u_column")  # [|I||C|K, 1]
    z = w.op("Gather", [i_slots, w.const(right, "item_cross_slots")], "z", axis=1)  # [N, |I||C|, K]
    z_flat = w.op("Reshape", [z, w.ints(-1, len(right) * k)], "z_row")
    cross = w.op("Squeeze", [w.op("MatMul", [z_flat, u], "cross_column"), w.ints(1)], "cross")
    terms = [cross, i_linear, pair_sum(w, i_slots, pair_slots(weights, roles.items), "item"), per_request]
    logit = w.op("Sum", terms, "logit_sum")
    props = props | {"form": "request", "layout": "request", "table_dtype": "float32"} | roles.to_props(spec)
    return w.serving_model([context, candidates], logit, "fm2onnx_ffm_request", props, rows=CANDIDATES)


def side_rows(w: GraphWriter, weights: FFMWeights, fields: tuple[int, ...], ids: ir.Value,
              side: str) -> tuple[ir.Value, ir.Value]:
    """One side's vectors [B, fields·(n-1), K] and linear sum [B]: one stacked table each, one Gather."""
    spec = weights.spec
    n, k = spec.num_fields, spec.dims[0]
    vocab = np.array([spec.vocab_sizes[f] for f in fields], np.int64)
    bases = np.concatenate([[0], np.cumsum(vocab + 1)[:-1]]).astype(np.int64)
    rows = clamp_rows(w, ids, bases, bases + vocab)  # row V of each field: a copy of the unknown row
    with_copy = lambda t: np.concatenate([t, t[:1]])  # noqa: E731
    table = np.concatenate([with_copy(weights.tables[f]) for f in fields]).astype(np.float32)
    linear = np.concatenate([with_copy(weights.linear[f]) for f in fields]).astype(np.float32)
    vectors = w.op("Gather", [w.const(table, f"{side}_vectors"), rows], f"{side}_rows", axis=0)
    slots = w.op("Reshape", [vectors, w.ints(-1, len(fields) * (n - 1), k)], f"{side}_slots")
    linear_sum = w.op("ReduceSum", [w.op("Gather", [w.const(linear, f"{side}_linear"), rows], f"{side}_weights",
                                         axis=0), w.ints(1)], f"{side}_linear_sum", keepdims=0)
    return slots, linear_sum


def pair_slots(weights: FFMWeights, fields: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """For the pairs a < b among ``fields``: the slots of v_{a,F=b} and v_{b,F=a} in the side's stack."""
    n = weights.spec.num_fields
    pairs = [(i, j) for i in range(len(fields)) for j in range(i + 1, len(fields))]
    left = [i * (n - 1) + weights.slot(fields[i], fields[j]) for i, j in pairs]
    right = [j * (n - 1) + weights.slot(fields[j], fields[i]) for i, j in pairs]
    return np.array(left, np.int64), np.array(right, np.int64)


def cross_slots(weights: FFMWeights, roles: FieldRoles) -> tuple[np.ndarray, np.ndarray]:
    """For every (item b, context a): the context's slot of v_{a,F=b} and the candidate's of v_{b,F=a}."""
    n = weights.spec.num_fields
    pairs = [(i, j) for i in range(len(roles.items)) for j in range(len(roles.context))]
    left = [j * (n - 1) + weights.slot(roles.context[j], roles.items[i]) for i, j in pairs]
    right = [i * (n - 1) + weights.slot(roles.items[i], roles.context[j]) for i, j in pairs]
    return np.array(left, np.int64), np.array(right, np.int64)


def pair_sum(w: GraphWriter, slots: ir.Value, indices: tuple[np.ndarray, np.ndarray], side: str) -> ir.Value:
    """Σ over the side's pairs of <left slot, right slot>, [B]; zeros when the side has one field."""
    left, right = indices
    if len(left) == 0:
        return w.op("ReduceSum", [w.op("Mul", [slots, w.const(np.zeros(1, np.float32), "zero")], "zeros"),
                                  w.ints(1, 2)], f"{side}_pairs", keepdims=0)
    products = w.op("Mul", [w.op("Gather", [slots, w.const(left, f"{side}_left_slots")], "left", axis=1),
                            w.op("Gather", [slots, w.const(right, f"{side}_right_slots")], "right", axis=1)],
                    f"{side}_products")
    return w.op("ReduceSum", [products, w.ints(1, 2)], f"{side}_pairs", keepdims=0)
