"""Small questions the passes ask of a graph's values."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir


def constant(value: ir.Value | None) -> np.ndarray | None:
    """The value's array if it is a fixed initializer (not overridable as a graph input), else None."""
    if value is None or value.const_value is None or value.is_graph_input():
        return None
    return value.const_value.numpy()


def as_ints(value: ir.Value | None) -> list[int] | None:
    array = constant(value)
    return None if array is None else [int(x) for x in array.reshape(-1)]


def producer_of(value: ir.Value | None, op_type: str) -> ir.Node | None:
    """The node that computes ``value`` if it is an ``op_type`` node, else None."""
    node = value.producer() if value is not None else None
    return node if node is not None and node.op_type == op_type else None
