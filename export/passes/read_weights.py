"""Read a model's weights back out of its traced uncached graph.

The uncached graph (export/serving.py traced by torch.onnx) is the only input the cached forms and
request graphs are built from. This module recognises its parts and returns them as ``FieldWeights``,
every field-matrix kind as the dense M_ab it stands for (Table 1):

    lookup        Gather(T_f, Gather(ids', f, axis=1))     ids' = the clamped ``feature_ids``
    FmFM pairs    Mul(Concat(Reshape(MatMul(v_a, W_a), [-1, c, d]) ...),
                      Gather(Concat(Unsqueeze(v_b, 1) ...), partners, axis=1))
                  slot k of the left side meets member partners[k] of the right side: M_ab is the
                  slot's d columns of W_a
    FvFM pairs    the same with Mul(Unsqueeze(v_a, 1), D_a) slots: M_ab = diag(row of D_a)
    FwFM pairs    Mul(ReduceSum(Mul(Unsqueeze(v_a, 1), Slice(Concat(Unsqueeze(v_b, 1) ...), s))), r_a):
                  M_ab = r_ab·I for the members from s on
    FM pairs      ((Σ v)² − Σ v²)/2 over Concat(Unsqueeze(v_f, 1) ...) of every field: M_ab = I
    linear term   Add(bias, ReduceSum(Concat(MatMul(v_f, w_f) | Gather(L_f, ids'_f) ...)))

Anything else makes ``read_field_weights`` fail with ``NotApplicable``, naming the node and the
condition, so ``fm2onnx rewrite`` says why a graph cannot take the fields layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from ..contract import INPUT_NAME, spec_of
from ..folds import FieldWeights
from ..plan import FIELDS_KINDS
from .graph_match import as_ints, constant, producer_of
from .manager import not_applicable as fail


@dataclass(frozen=True)
class Lookup:
    field: int
    table: np.ndarray


# the kinds whose weights are one table per field, a matrix per pair of fields and a linear term
READABLE_KINDS = ("lr", "fm", "fwfm", "fvfm", "fmfm")


def read_field_weights(model: ir.Model, *, kinds: tuple[str, ...] = FIELDS_KINDS,
                       purpose: str = "to lay out by field") -> FieldWeights:
    """The weights of an uncached graph of one of ``kinds`` (default: those the fields layout and the
    GEMM form take)."""
    spec = spec_of(model)
    if spec.kind not in kinds:
        what = ("scalar, diagonal or full field matrices" if kinds == FIELDS_KINDS
                else "one embedding per feature and field matrices")
        raise fail(None, f"a {spec.kind} model has no {what} {purpose}")
    lookups = find_lookups(model.graph)
    if spec.kind == "lr":
        tables = tuple(np.zeros((v, 0)) for v in spec.vocab_sizes)
        matrices = {pair: np.zeros((0, 0)) for pair in spec.field_pairs}
    else:
        tables = embedding_tables(spec, lookups)
        matrices = PAIR_READERS[spec.kind](model.graph, lookups, spec)
    bias, linear = linear_term(model.graph, lookups, spec)
    return FieldWeights(spec, tables, matrices, linear, bias)


def find_lookups(graph: ir.Graph) -> dict[ir.Value, Lookup]:
    """Every row lookup of a field's table, by the value it produces."""
    found = {}
    for node in graph:
        if node.op_type != "Gather" or node.attributes.get_int("axis", 0) != 0:
            continue
        table = constant(node.inputs[0])
        column = producer_of(node.inputs[1], "Gather")
        if table is None or table.ndim != 2 or column is None or column.attributes.get_int("axis", 0) != 1:
            continue
        field = as_ints(column.inputs[1])
        if field is None or len(field) != 1:
            raise fail(column, "the field column is not selected by one constant index")
        if not reads_clamped_ids(column.inputs[0]):
            raise fail(column, f"field {field[0]}'s ids do not pass the unknown-row clamp Where(bad, 0, {INPUT_NAME})")
        found[node.outputs[0]] = Lookup(field[0], table.astype(np.float64))
    return found


def reads_clamped_ids(value: ir.Value) -> bool:
    where = producer_of(value, "Where")
    return where is not None and where.inputs[2] is not None and where.inputs[2].name == INPUT_NAME \
        and where.inputs[2].is_graph_input()


def embedding_tables(spec, lookups: dict[ir.Value, Lookup]) -> tuple[np.ndarray, ...]:
    tables: dict[int, np.ndarray] = {}
    for value, lookup in lookups.items():
        if all(use.node.op_type == "Concat" for use in value.uses()):
            continue  # a per-feature linear weight, read by linear_term
        shape = (spec.vocab_sizes[lookup.field], spec.dims[lookup.field])
        if lookup.table.shape != shape:
            raise fail(value.producer(), f"field {lookup.field}'s table is {list(lookup.table.shape)}, "
                                         f"the metadata says {list(shape)}")
        tables[lookup.field] = lookup.table
    missing = [f for f in range(spec.num_fields) if f not in tables]
    if missing:
        raise fail(None, f"no embedding lookup for field(s) {missing}")
    return tuple(tables[f] for f in range(spec.num_fields))


def pair_matrices(graph: ir.Graph, lookups: dict[ir.Value, Lookup], spec) -> dict[tuple[int, int], np.ndarray]:
    matrices: dict[tuple[int, int], np.ndarray] = {}
    for node in graph:
        if node.op_type != "Mul" or producer_of(node.inputs[1], "Gather") is None:
            continue
        right = partner_fields(node.inputs[1], lookups)
        left = projected_slots(node.inputs[0], lookups)
        if right is None or left is None:
            continue
        if len(left) != len(right):
            raise fail(node, f"{len(left)} projected slots meet {len(right)} partners")
        for (a, block), b in zip(left, right):
            key, m = ((a, b), block) if a < b else ((b, a), block.T)
            if key in matrices or a == b:
                raise fail(node, f"the pair of fields {key} is served twice")
            matrices[key] = m
    return complete(matrices, spec)


def parts_of(value: ir.Value) -> list[ir.Value]:
    """A Concat's inputs along axis 1, or the value itself."""
    node = value.producer()
    if node is not None and node.op_type == "Concat" and node.attributes.get_int("axis", 0) == 1:
        return list(node.inputs)
    return [value]


def partner_fields(value: ir.Value, lookups: dict[ir.Value, Lookup]) -> list[int] | None:
    """Gather(Concat(Unsqueeze(v_b, 1) ...), partners, axis=1) -> the field of each partner slot."""
    gather = value.producer()
    index = as_ints(gather.inputs[1])
    if gather.attributes.get_int("axis", 0) != 1 or index is None:
        return None
    members = stacked_fields(gather.inputs[0], lookups)
    return None if members is None else [members[i] for i in index]


def projected_slots(value: ir.Value, lookups: dict[ir.Value, Lookup]) -> list[tuple[int, np.ndarray]] | None:
    """Concat(Reshape(MatMul(v_a, W), [-1, c, d]) ...) -> (field a, its d-column block of W) per slot;
    FvFM's Mul(Unsqueeze(v_a, 1), D [c, K]) parts -> (field a, diag(D[j])) per slot."""
    slots = []
    for part in parts_of(value):
        diagonal = diagonal_slots(part, lookups)
        if diagonal is not None:
            slots += diagonal
            continue
        reshape = producer_of(part, "Reshape")
        shape = as_ints(reshape.inputs[1]) if reshape is not None else None
        matmul = producer_of(reshape.inputs[0], "MatMul") if reshape is not None else None
        if shape is None or len(shape) != 3 or matmul is None or matmul.inputs[0] not in lookups:
            return None
        w, (_, c, d) = constant(matmul.inputs[1]), shape
        if w is None or w.ndim != 2 or w.shape[1] != c * d:
            raise fail(matmul, f"the field matrices are not a constant [d, {c}·{d}] initializer")
        field = lookups[matmul.inputs[0]].field
        slots += [(field, w[:, j * d:(j + 1) * d].astype(np.float64)) for j in range(c)]
    return slots


def linear_term(graph: ir.Graph, lookups: dict[ir.Value, Lookup], spec) -> tuple[float, tuple[np.ndarray, ...]]:
    """Add(bias, ReduceSum(Concat(term_f ...))) -> (bias, per field its weights or field vector)."""
    for node in graph:
        if node.op_type != "Add":
            continue
        consts = [constant(x) for x in node.inputs]
        if sum(c is not None and c.size == 1 for c in consts) != 1:
            continue
        bias_at = 0 if consts[0] is not None else 1
        reduce = producer_of(node.inputs[1 - bias_at], "ReduceSum")
        if reduce is None:
            continue
        terms = [linear_of(part, lookups, spec) for part in parts_of(reduce.inputs[0])]
        if any(t is None for t in terms) or sorted(f for f, _ in terms) != list(range(spec.num_fields)):
            continue
        return float(consts[bias_at].reshape(-1)[0]), tuple(v for _, v in sorted(terms, key=lambda t: t[0]))
    raise fail(None, "no Add(bias, ReduceSum(Concat(one linear term per field)))")


def linear_of(value: ir.Value, lookups: dict[ir.Value, Lookup], spec) -> tuple[int, np.ndarray] | None:
    if value in lookups and spec.linear == "feature":
        lookup = lookups[value]
        return lookup.field, lookup.table[:, 0]
    matmul = producer_of(value, "MatMul")
    if spec.linear == "feature" or matmul is None or matmul.inputs[0] not in lookups:
        return None
    w = constant(matmul.inputs[1])
    if w is None or w.ndim != 2 or w.shape[1] != 1:
        return None
    return lookups[matmul.inputs[0]].field, w[:, 0].astype(np.float64)


def diagonal_slots(value: ir.Value, lookups: dict[ir.Value, Lookup]) -> list[tuple[int, np.ndarray]] | None:
    """Mul(Unsqueeze(v_a, 1), D [c, K]) -> (field a, diag(D[j])) for each of its c partners."""
    mul = producer_of(value, "Mul")
    if mul is None:
        return None
    field, diagonals = unsqueezed_lookup(mul.inputs[0], lookups), constant(mul.inputs[1])
    if field is None or diagonals is None or diagonals.ndim != 2:
        return None
    return [(field, np.diag(row.astype(np.float64))) for row in diagonals]


def unsqueezed_lookup(value: ir.Value, lookups: dict[ir.Value, Lookup]) -> int | None:
    """Unsqueeze(v_f, 1) -> f."""
    unsqueeze = producer_of(value, "Unsqueeze")
    if unsqueeze is None or as_ints(unsqueeze.inputs[1]) != [1] or unsqueeze.inputs[0] not in lookups:
        return None
    return lookups[unsqueeze.inputs[0]].field


def stacked_fields(value: ir.Value, lookups: dict[ir.Value, Lookup]) -> list[int] | None:
    """Concat(Unsqueeze(v_f, 1) ...) -> the field of each member."""
    fields = [unsqueezed_lookup(part, lookups) for part in parts_of(value)]
    return None if None in fields else fields


def scalar_pair_matrices(graph: ir.Graph, lookups: dict[ir.Value, Lookup], spec) -> dict[tuple[int, int], np.ndarray]:
    """FwFM: Mul(ReduceSum(Mul(Unsqueeze(v_a, 1), Slice(stack, s))), r_a) -> r_ab·I for stack[s:]."""
    matrices, k = {}, spec.dims[0]
    for node in graph:
        if node.op_type != "Mul":
            continue
        reduce, weights = producer_of(node.inputs[0], "ReduceSum"), constant(node.inputs[1])
        if reduce is None or weights is None:
            continue
        mul = producer_of(reduce.inputs[0], "Mul")
        a = unsqueezed_lookup(mul.inputs[0], lookups) if mul is not None else None
        sliced = producer_of(mul.inputs[1], "Slice") if mul is not None else None
        members = stacked_fields(sliced.inputs[0], lookups) if sliced is not None else None
        start = as_ints(sliced.inputs[1]) if sliced is not None else None
        if a is None or members is None or start is None or as_ints(sliced.inputs[3]) != [1]:
            continue
        partners = members[start[0]:]
        if len(partners) != weights.size:
            raise fail(node, f"{weights.size} pair weights for {len(partners)} partners")
        for b, r in zip(partners, weights.reshape(-1)):
            matrices[(min(a, b), max(a, b))] = float(r) * np.eye(k)
    return complete(matrices, spec)


def identity_pair_matrices(graph: ir.Graph, lookups: dict[ir.Value, Lookup], spec) -> dict[tuple[int, int], np.ndarray]:
    """FM: Mul(stack, stack) over a stack of every field (the Σ v² of ((Σ v)² − Σ v²)/2) -> M_ab = I."""
    for node in graph:
        if node.op_type == "Mul" and node.inputs[0] is node.inputs[1]:
            fields = stacked_fields(node.inputs[0], lookups)
            if fields is not None and sorted(fields) == list(range(spec.num_fields)):
                return {pair: np.eye(spec.dims[0]) for pair in spec.field_pairs}
    raise fail(None, "no ((Σ v)² − Σ v²)/2 over a stack of every field's embedding")


def complete(matrices: dict[tuple[int, int], np.ndarray], spec) -> dict[tuple[int, int], np.ndarray]:
    missing = [pair for pair in spec.field_pairs if pair not in matrices]
    if missing:
        raise fail(None, f"no field matrix for the pair(s) {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    return matrices


PAIR_READERS = {"fmfm": pair_matrices, "fvfm": pair_matrices, "fwfm": scalar_pair_matrices,
                "fm": identity_pair_matrices}
