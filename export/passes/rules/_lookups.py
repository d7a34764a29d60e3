"""What the fold rules share: recognising a row lookup and writing its folded table."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from ..graph_match import constant


def is_row_lookup(rows: ir.Value) -> bool:
    """``rows`` = Gather(table, ids) along axis 0 of a 2-D initializer table."""
    node = rows.producer()
    table = constant(node.inputs[0])
    return node.attributes.get_int("axis", 0) == 0 and table is not None and table.ndim == 2


def cached_table(op, name: str, array: np.ndarray, dtype) -> ir.Value:
    return op.initializer(ir.tensor(array.astype(dtype), name=name), name=name)


def shape_constant(op, name: str, dims) -> ir.Value:
    return op.initializer(ir.tensor(np.array(dims, dtype=np.int64), name=name), name=name)
