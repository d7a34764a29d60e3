"""The one way export/ builds ONNX nodes by hand: a tape (onnx_ir) with named values.

A writer either makes a whole graph (``graph``, ``serving_model``) or adds to an existing one
(``insert_into``: the preprocessing in front of an id graph, a pass's replacement nodes).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from .contract import OUTPUT_NAMES, stamp
from .to_onnx import DEFAULT_OPSET

FLOAT = ir.DataType.FLOAT
INT64 = ir.DataType.INT64


def tensor(array, name: str | None = None) -> ir.TensorProtocol:
    """``array`` as a tensor; strings (object or str arrays) as UTF-8 bytes, ONNX's string encoding."""
    array = np.asarray(array)
    if array.dtype.kind in "OU":
        encoded = [v if isinstance(v, bytes) else str(v).encode("utf-8") for v in array.reshape(-1)]
        return ir.StringTensor(np.array(encoded, dtype=object).reshape(array.shape), name=name)
    return ir.tensor(array, name=name)


class GraphWriter:
    """A tape with named values (``prefix`` + hint + a running count) and small-constant helpers."""

    def __init__(self, prefix: str = ""):
        self.tape = ir.tape.Tape()
        self.prefix = prefix
        self.count = 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{self.prefix}{hint}_{self.count}"

    def op(self, op_type: str, inputs, hint: str | None = None, *, domain: str = "", **attributes) -> ir.Value:
        """One node, its output named after ``hint`` (the op type when none)."""
        value = self.tape.op(op_type, inputs, attributes or None, domain=domain)
        value.name = self.name(hint or op_type)
        return value

    def ops(self, op_type: str, inputs, hint: str, count: int, *, domain: str = "",
            **attributes) -> list[ir.Value]:
        """One node with ``count`` outputs (Split also needs its ``num_outputs`` attribute)."""
        values = self.tape.op_multi_out(op_type, inputs, attributes or None, num_outputs=count, domain=domain)
        for i, value in enumerate(values):
            value.name = self.name(f"{hint}{i}")
        return list(values)

    def const(self, array, hint: str, name: str | None = None) -> ir.Value:
        """An initializer named ``name``, or after ``hint``; string arrays allowed (see ``tensor``)."""
        name = name or self.name(hint)
        return self.tape.initializer(tensor(array, name=name), name=name)

    def ints(self, *values, hint: str = "ints") -> ir.Value:
        return self.const(np.array(values, np.int64), hint)

    def slice(self, x: ir.Value, start: int, end: int, axis: int, hint: str) -> ir.Value:
        return self.op("Slice", [x, self.ints(start), self.ints(end), self.ints(axis)], hint)

    def graph(self, outputs: list[ir.Value], name: str, inputs=()) -> ir.Graph:
        return ir.Graph(list(inputs), outputs, nodes=self.tape.nodes, initializers=self.tape.initializers,
                        name=name, opset_imports={"": DEFAULT_OPSET})

    def insert_into(self, graph: ir.Graph, *, before: ir.Node) -> None:
        """Put what was written into ``graph``: the nodes in order ahead of ``before``, the constants as
        its initializers. Once per writer: the graph then owns them."""
        for value in self.tape.initializers:
            graph.register_initializer(value)
        graph.insert_before(before, self.tape.nodes)

    def serving_model(self, ids: ir.Value | list[ir.Value], logit: ir.Value, name: str, props: dict[str, str],
                      rows: str = "batch") -> ir.Model:
        """The model of the serving contract: ids in (``feature_ids``, or a request graph's context and
        candidate ids); probability and logit [``rows``] out; ``props`` stamped."""
        probability = self.op("Sigmoid", [logit], "probability_sum")
        probability.name, logit.name = OUTPUT_NAMES
        for value in (probability, logit):
            value.dtype, value.shape = FLOAT, ir.Shape([rows])
        inputs = ids if isinstance(ids, list) else [ids]
        out = ir.Model(self.graph([probability, logit], name, inputs=inputs), ir_version=10)
        stamp(out, props)
        return out
