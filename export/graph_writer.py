"""A small helper for building ONNX graphs by hand with onnx_ir: a tape with named values."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from .contract import OUTPUT_NAMES, stamp
from .to_onnx import DEFAULT_OPSET

FLOAT = ir.DataType.FLOAT
INT64 = ir.DataType.INT64


class GraphWriter:
    """A tape with named values and small-constant helpers."""

    def __init__(self, prefix: str = ""):
        self.tape = ir.tape.Tape()
        self.prefix = prefix
        self.count = 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{self.prefix}{hint}_{self.count}"

    def op(self, op_type: str, inputs, hint: str, **attributes) -> ir.Value:
        value = self.tape.op(op_type, inputs, attributes or None)
        value.name = self.name(hint)
        return value

    def ops(self, op_type: str, inputs, hint: str, count: int, **attributes) -> list[ir.Value]:
        values = self.tape.op_multi_out(op_type, inputs, attributes or None, num_outputs=count)
        for i, value in enumerate(values):
            value.name = self.name(f"{hint}{i}")
        return list(values)

    def const(self, array, hint: str, name: str | None = None) -> ir.Value:
        array = np.asarray(array)
        name = name or self.name(hint)
        return self.tape.initializer(ir.tensor(array, name=name), name=name)

    def ints(self, *values, hint: str = "ints") -> ir.Value:
        return self.const(np.array(values, np.int64), hint)

    def slice(self, x: ir.Value, start: int, end: int, axis: int, hint: str) -> ir.Value:
        return self.op("Slice", [x, self.ints(start), self.ints(end), self.ints(axis)], hint)

    def graph(self, outputs: list[ir.Value], name: str, inputs=()) -> ir.Graph:
        return ir.Graph(list(inputs), outputs, nodes=self.tape.nodes, initializers=self.tape.initializers,
                        name=name, opset_imports={"": DEFAULT_OPSET})

    def serving_model(self, ids: ir.Value, logit: ir.Value, name: str, props: dict[str, str]) -> ir.Model:
        """The model of the serving contract: ids in; probability and logit [batch] out; ``props`` stamped."""
        probability = self.op("Sigmoid", [logit], "probability_sum")
        probability.name, logit.name = OUTPUT_NAMES
        for value in (probability, logit):
            value.dtype, value.shape = FLOAT, ir.Shape(["batch"])
        out = ir.Model(self.graph([probability, logit], name, inputs=[ids]), ir_version=10)
        stamp(out, props)
        return out
