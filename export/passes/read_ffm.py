"""Read an FFM model's weights back out of its traced uncached graph (export/serving.py FFMServing):

    lookups       Gather(T_f, Gather(ids', f, axis=1)), T_f [V_f, (n-1)·K]
    pairs         Mul(Gather(S, left, axis=1), Gather(S, right, axis=1)),
                  S = Reshape(Concat(v_0 ... v_{n-1}), [-1, n(n-1), K]); slot a(n-1)+b-1 meets b(n-1)+a
    linear term   Add(bias, ReduceSum(Concat(Gather(L_f, ids'_f) ...)))

The slot layout is checked, not assumed: a graph whose pairs read other slots is NotApplicable.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from ..contract import spec_of
from ..folds import FFMWeights
from .graph_match import as_ints, producer_of
from .manager import not_applicable as fail
from .read_weights import find_lookups, linear_term, parts_of


def read_ffm_weights(model: ir.Model) -> FFMWeights:
    spec = spec_of(model)
    if spec.kind != "ffm":
        raise fail(None, f"a {spec.kind} model is not an FFM model")
    lookups = find_lookups(model.graph)
    stacked = slot_stack(model.graph, spec)
    members = [lookups[part].field if part in lookups else None for part in parts_of(stacked)]
    if members != list(range(spec.num_fields)):
        raise fail(stacked.producer(), "the slot stack is not every field's vectors in field order")
    tables = tuple(lookups[part].table for part in parts_of(stacked))
    bias, linear = linear_term(model.graph, lookups, spec)
    return FFMWeights(spec, tables, linear, bias)


def slot_stack(graph: ir.Graph, spec) -> ir.Value:
    """The Concat of the field vectors whose slots the pair Gathers read, checked against Eq. 5's layout."""
    n = spec.num_fields
    pairs = [(a, b) for a in range(n) for b in range(a + 1, n)]
    want = ([a * (n - 1) + b - 1 for a, b in pairs], [b * (n - 1) + a for a, b in pairs])
    for node in graph:
        if node.op_type != "Mul":
            continue
        gathers = [producer_of(x, "Gather") for x in node.inputs]
        if None in gathers or gathers[0].inputs[0] is not gathers[1].inputs[0]:
            continue
        reshape = producer_of(gathers[0].inputs[0], "Reshape")
        if reshape is None or producer_of(reshape.inputs[0], "Concat") is None:
            continue
        if (as_ints(gathers[0].inputs[1]), as_ints(gathers[1].inputs[1])) != want:
            raise fail(node, "the pair slots are not Eq. 5's v_{i,F(j)} · v_{j,F(i)} layout")
        return reshape.inputs[0]
    raise fail(None, "no Mul(Gather(slots, left), Gather(slots, right)) over the field vectors")
