"""Import any PyTorch FM-family model: a JSON mapping says which tensor (and which rows / columns)
holds each field's embedding and linear weights, the field matrices and the bias. The format is
documented, with a worked example, in docs/import.md.

A tensor reference is a name, or ``{"tensor": name, "rows": [start, stop], "cols": [start, stop],
"transpose": bool}`` (transpose first, then the half-open slices). Every shape is checked against
the kind, the vocabulary sizes and the embedding widths, and a mismatch names the mapping entry and
the tensor.
"""

from __future__ import annotations

from pathlib import Path

import torch

from fm2onnx.data import Preprocessor, get_format
from fm2onnx.errors import Fm2OnnxError
from fm2onnx.field_names import check_field_name
from fm2onnx.files import read_json, require_file
from models import MODEL_KINDS

from .common import ImportedParts, float_tensor, load_state_dict

TOP_KEYS = {"kind", "fields", "field_matrices", "field_vector", "bias", "label"}
FIELD_KEYS = {"name", "vocab_size", "unknown_row", "embedding", "linear", "tokens"}
REF_KEYS = {"tensor", "rows", "cols", "transpose"}
PAIR_KEYS = REF_KEYS | {"fields"}


class Mapping:
    """The parsed mapping file plus the state dict its references point into."""

    def __init__(self, path: Path, doc: dict, tensors: dict[str, torch.Tensor], state_path: Path):
        self.path, self.doc, self.tensors, self.state_path = path, doc, tensors, state_path

    def fail(self, where: str, message: str) -> Fm2OnnxError:
        return Fm2OnnxError(f"{self.path}: {where}: {message}")

    def tensor(self, ref, where: str) -> tuple[torch.Tensor, str]:
        """(the referenced slice as float32, a label such as 'emb.weight[0:100, :]' for messages)."""
        if isinstance(ref, str):
            ref = {"tensor": ref}
        if not isinstance(ref, dict) or not isinstance(ref.get("tensor"), str):
            raise self.fail(where, 'expected a tensor name or {"tensor": name, "rows": [start, stop], ...}')
        unknown = set(ref) - (PAIR_KEYS if "fields" in ref else REF_KEYS)
        if unknown:
            raise self.fail(where, f"unknown key(s) {sorted(unknown)}; a tensor reference has {sorted(REF_KEYS)}")
        name = ref["tensor"]
        if name not in self.tensors:
            near = [k for k in self.tensors if name.split(".")[0] in k][:3]
            raise self.fail(where, f"no tensor {name!r} in {self.state_path}"
                            + (f" (similar: {', '.join(near)})" if near else ""))
        t = float_tensor(self.tensors[name], name, f"{self.path}: {where}")
        label = name
        if type(ref.get("transpose", False)) is not bool:
            raise self.fail(where, f"\"transpose\" must be true or false, got {ref['transpose']!r}")
        if ref.get("transpose"):
            if t.dim() != 2:
                raise self.fail(where, f"tensor {name!r} has shape {list(t.shape)}: only 2-D tensors transpose")
            t, label = t.T, f"{name}.T"
        for axis, key in enumerate(("rows", "cols")):
            if key in ref:
                t, label = self._slice(t, ref[key], axis, label, where, key)
        return t, label

    def _slice(self, t: torch.Tensor, span, axis: int, label: str, where: str, key: str):
        if t.dim() <= axis:
            raise self.fail(where, f"tensor {label!r} has shape {list(t.shape)}: no axis for {key!r}")
        size = t.shape[axis]
        ok = (isinstance(span, list) and len(span) == 2 and all(type(x) is int for x in span)
              and 0 <= span[0] < span[1] <= size)
        if not ok:
            raise self.fail(where, f"{key} {span!r} of tensor {label!r} (shape {list(t.shape)}): expected "
                            f"[start, stop] with 0 <= start < stop <= {size}")
        index = [slice(None)] * t.dim()
        index[axis] = slice(*span)
        spans = [":"] * min(t.dim(), 2)
        spans[axis] = f"{span[0]}:{span[1]}"
        return t[tuple(index)], f"{label.split('[')[0]}[{', '.join(spans)}]"

    def shape_error(self, where: str, label: str, t: torch.Tensor, want, why: str) -> Fm2OnnxError:
        return self.fail(where, f"tensor {label!r} has shape {list(t.shape)}, expected {list(want)} ({why})")


def read_mapping(path: Path) -> dict:
    require_file(path, "mapping")
    doc = read_json(path)
    if not isinstance(doc, dict):
        raise Fm2OnnxError(f"{path}: the mapping must be a JSON object")
    unknown = set(doc) - TOP_KEYS
    if unknown:
        raise Fm2OnnxError(f"{path}: unknown key(s) {sorted(unknown)}; the mapping has {sorted(TOP_KEYS)}")
    if doc.get("kind") not in MODEL_KINDS:
        raise Fm2OnnxError(f"{path}: \"kind\" must be one of {', '.join(MODEL_KINDS)}, got {doc.get('kind')!r}")
    fields = doc.get("fields")
    if not isinstance(fields, list) or len(fields) < 2 or not all(isinstance(f, dict) for f in fields):
        raise Fm2OnnxError(f"{path}: \"fields\" must be a list of at least 2 objects")
    return doc


def import_torch(state_dict: str | Path, mapping: str | Path) -> tuple[ImportedParts, dict | None]:
    """(ImportedParts, preprocessor dict or None) of a state dict described by a mapping file."""
    doc = read_mapping(Path(mapping))
    m = Mapping(Path(mapping), doc, load_state_dict(state_dict), Path(state_dict))
    kind, n = doc["kind"], len(doc["fields"])
    fields = [read_field(m, i, f, kind, n) for i, f in enumerate(doc["fields"])]
    names = [f["name"] for f in fields]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise m.fail(f"fields[{i}]", f"field name {name!r} is used twice")
    if kind == "lr":
        dims = [0] * n
    else:
        dims = [f["table"].shape[1] // (n - 1 if kind == "ffm" else 1) for f in fields]
        if kind != "fmfm" and len(set(dims)) > 1:  # only FmFM's matrices can be rectangular
            a = next(a for a, d in enumerate(dims) if d != dims[0])
            raise m.fail(f"fields[{a}] ({names[a]}).embedding", f"{dims[a]} wide while {names[0]}'s is {dims[0]}: "
                         f"{kind} needs one embedding width (per-field widths: fmfm)")
    parts = ImportedParts(kind, names, [f["table_rows"] for f in fields], dims,
                          None if kind == "lr" else [f["table"] for f in fields],
                          linear_term(m, doc, fields, kind, sum(dims)), bias(m, doc.get("bias")),
                          field_matrices(m, doc.get("field_matrices"), kind, names, dims),
                          {"format": "torch", "model": kind, "state_dict": str(state_dict), "mapping": str(mapping)})
    return parts, mapped_preprocessor(m, doc, fields)


def read_field(m: Mapping, i: int, f: dict, kind: str, n: int) -> dict:
    """One field's name, tables in fm2onnx row order (row 0 = unknown) and optional tokens."""
    where = f"fields[{i}]"
    unknown = set(f) - FIELD_KEYS
    if unknown:
        raise m.fail(where, f"unknown key(s) {sorted(unknown)}; a field has {sorted(FIELD_KEYS)}")
    name = f.get("name")
    check_field_name(name, f"{m.path}: {where}")
    where = f"fields[{i}] ({name})"
    rows = f.get("vocab_size")
    if type(rows) is not int or rows < 1:
        raise m.fail(where, f"\"vocab_size\" (rows of its tables) must be a positive integer, got {rows!r}")
    u = f.get("unknown_row", 0)
    if u is not None and (type(u) is not int or not -rows <= u < rows):
        raise m.fail(where, f"\"unknown_row\" must be a row index below {rows} (negative: from the end) or null, "
                     f"got {u!r}")
    u = None if u is None else u % rows
    table = field_embedding(m, where, f.get("embedding"), rows, kind, n)
    linear = field_linear(m, where, f.get("linear"), rows)
    return {"name": name, "table": None if table is None else unknown_first(table, u),
            "linear": None if linear is None else unknown_first(linear, u),
            "table_rows": rows + (u is None), "tokens": field_tokens(m, where, f.get("tokens"), rows, u)}


def unknown_first(t: torch.Tensor, unknown: int | None) -> torch.Tensor:
    """Rows in fm2onnx order: the unknown row, then the others in order (a zero row when there is none)."""
    if unknown is None:
        return torch.cat([t.new_zeros((1,) + tuple(t.shape[1:])), t])
    order = [unknown] + [r for r in range(t.shape[0]) if r != unknown]
    return t[order]


def field_embedding(m: Mapping, where: str, ref, rows: int, kind: str, n: int) -> torch.Tensor | None:
    where += ".embedding"
    if kind == "lr":
        if ref is not None:
            raise m.fail(where, "LR has no embeddings; remove it")
        return None
    if ref is None:
        raise m.fail(where, f"missing: {kind} needs each field's embedding table")
    refs = ref if kind == "ffm" and isinstance(ref, list) else [ref]
    if len(refs) not in (1, n - 1):
        raise m.fail(where, f"FFM takes one table of (fields - 1) * K columns or a list of {n - 1} tables")
    pieces = []
    for s, r in enumerate(refs):
        at = f"{where}[{s}]" if len(refs) > 1 else where
        t, label = m.tensor(r, at)
        if t.dim() != 2 or t.shape[0] != rows or (pieces and t.shape[1] != pieces[0].shape[1]):
            width = pieces[0].shape[1] if pieces else "width"
            raise m.shape_error(at, label, t, [rows, width], "rows: the field's vocab_size")
        pieces.append(t)
    table = torch.cat(pieces, dim=1)
    if kind == "ffm" and table.shape[1] % (n - 1):
        raise m.fail(where, f"{table.shape[1]} columns: FFM needs (fields - 1) * K = {n - 1} * K")
    return table


def field_linear(m: Mapping, where: str, ref, rows: int) -> torch.Tensor | None:
    if ref is None:
        return None
    t, label = m.tensor(ref, where + ".linear")
    if t.dim() == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if tuple(t.shape) != (rows,):
        raise m.shape_error(where + ".linear", label, t, [rows], "one weight per row: [vocab_size] or [vocab_size, 1]")
    return t


def field_tokens(m: Mapping, where: str, tokens, rows: int, unknown: int | None) -> list[str] | None:
    """Tokens of the rows other than the unknown one, in row order (the fm2onnx ids 1, 2, ...)."""
    if tokens is None:
        return None
    want = rows - (unknown is not None)
    if not isinstance(tokens, list) or len(tokens) != want:
        raise m.fail(where + ".tokens", f"expected a list of {want} strings (one per row but the unknown row)")
    if not all(type(t) is str and t for t in tokens) or len(set(tokens)) != len(tokens):
        raise m.fail(where + ".tokens", "tokens must be distinct non-empty strings")
    return tokens


def linear_term(m: Mapping, doc: dict, fields: list[dict], kind: str, total_dim: int):
    """Per-feature weights (each field's "linear") or one vector per field ("field_vector")."""
    given = [f["name"] for f in fields if f["linear"] is not None]
    if "field_vector" in doc:
        if given:
            raise m.fail(f"fields ({given[0]}).linear", "give per-field \"linear\" weights or a top-level "
                         "\"field_vector\", not both")
        if kind in ("lr", "ffm"):
            raise m.fail("field_vector", f"{kind} has per-feature linear weights only")
        t, label = m.tensor(doc["field_vector"], "field_vector")
        if t.numel() != total_dim or sum(s != 1 for s in t.shape) > 1:
            raise m.shape_error("field_vector", label, t, [total_dim], "the fields' embedding widths summed")
        return t.reshape(-1)
    if given and len(given) != len(fields):
        missing = next(f["name"] for f in fields if f["linear"] is None)
        raise m.fail(f"field {missing!r}", "has no \"linear\" while other fields do")
    if not given and kind == "lr":
        raise m.fail(f"fields[0] ({fields[0]['name']}).linear", "missing: lr is its fields' linear weights alone")
    if not given:  # a model without a linear term: zero weights
        return [torch.zeros(f["table_rows"]) for f in fields]
    return [f["linear"] for f in fields]


def bias(m: Mapping, ref) -> float:
    if ref is None:
        return 0.0
    t, label = m.tensor(ref, "bias")
    if t.numel() != 1:
        raise m.shape_error("bias", label, t, [1], "one value")
    return float(t.reshape(-1)[0])


def field_matrices(m: Mapping, entry, kind: str, names: list[str], dims: list[int]):
    """fm2onnx's form (fwfm [P], fvfm [P, K], fmfm a list of [d_a, d_b]) from a stacked tensor, a
    block matrix or per-pair tensors."""
    from models import FIELD_MATRIX_KIND

    matrix_kind = FIELD_MATRIX_KIND[kind]
    if matrix_kind in (None, "identity"):
        if entry is not None:
            raise m.fail("field_matrices", f"{kind} has no field matrices; remove it")
        return None
    if entry is None:
        raise m.fail("field_matrices", f"missing: {kind} needs its field matrices")
    n = len(names)
    pairs = [(a, b) for a in range(n) for b in range(a + 1, n)]
    shapes = {"scalar": lambda a, b: (), "diagonal": lambda a, b: (dims[0],), "full": lambda a, b: (dims[a], dims[b])}
    want = [shapes[matrix_kind](a, b) for a, b in pairs]
    if isinstance(entry, dict) and "pairs" in entry:
        got = per_pair(m, entry, names, pairs, want)
    elif isinstance(entry, dict) and "block" in entry:
        if set(entry) != {"block"}:
            raise m.fail("field_matrices", f"unknown key(s) {sorted(set(entry) - {'block'})} beside \"block\"")
        if matrix_kind != "full":
            raise m.fail("field_matrices.block", f"a block matrix holds FmFM's full matrices, not {kind}'s")
        got = from_block(m, entry, pairs, dims)
    else:
        if len(set(want)) != 1:
            raise m.fail("field_matrices", f"the fields' dims differ {tuple(dims)}: give \"block\" or \"pairs\"")
        t, label = m.tensor(entry, "field_matrices")
        stacked = (len(pairs),) + want[0]
        if matrix_kind == "scalar" and t.numel() == len(pairs) and sum(s != 1 for s in t.shape) <= 1:
            t = t.reshape(-1)  # e.g. an nn.Linear(P, 1) weight [1, P]
        if tuple(t.shape) != stacked:
            raise m.shape_error("field_matrices", label, t, list(stacked),
                                "one per field pair (0,1), (0,2), ..., (1,2), ...")
        got = list(t.unbind(0))
    return got if matrix_kind == "full" else torch.stack(got)


def per_pair(m: Mapping, entry: dict, names: list[str], pairs, want) -> list[torch.Tensor]:
    items = entry["pairs"]
    if set(entry) != {"pairs"} or not isinstance(items, list):
        raise m.fail("field_matrices.pairs", "expected {\"pairs\": [{\"fields\": [a, b], \"tensor\": ...}, ...]}")
    found: dict[tuple[int, int], torch.Tensor] = {}
    for i, item in enumerate(items):
        where = f"field_matrices.pairs[{i}]"
        two = item.get("fields") if isinstance(item, dict) else None
        if not isinstance(two, list) or len(two) != 2 or not all(x in names for x in two) or two[0] == two[1]:
            raise m.fail(where, f"\"fields\" must name two different fields of {names}")
        a, b = names.index(two[0]), names.index(two[1])
        t, label = m.tensor(item, where)
        if a > b:  # <v_b M, v_a> = <v_a M^T, v_b>
            a, b, t = b, a, (t.T if t.dim() == 2 else t)
        if (a, b) in found:
            raise m.fail(where, f"pair ({names[a]}, {names[b]}) is given twice")
        shape = want[pairs.index((a, b))]
        if t.numel() == 1 and shape == ():
            t = t.reshape(())
        if tuple(t.shape) != shape:
            raise m.shape_error(where, label, t, list(shape), f"M between {names[a]} and {names[b]}")
        found[(a, b)] = t
    missing = [p for p in pairs if p not in found]
    if missing:
        a, b = missing[0]
        raise m.fail("field_matrices.pairs", f"no matrix for the pair ({names[a]}, {names[b]}) "
                     f"({len(missing)} pairs missing)")
    return [found[p] for p in pairs]


def from_block(m: Mapping, entry: dict, pairs, dims: list[int]) -> list[torch.Tensor]:
    """M_ab is the (a, b) block of W [D, D], the fields' widths laid out in order (only a < b is read)."""
    t, label = m.tensor(entry["block"], "field_matrices.block")
    total = sum(dims)
    if tuple(t.shape) != (total, total):
        raise m.shape_error("field_matrices.block", label, t, [total, total], "the fields' widths summed, squared")
    offsets = [sum(dims[:a]) for a in range(len(dims))]
    return [t[offsets[a]:offsets[a] + dims[a], offsets[b]:offsets[b] + dims[b]] for a, b in pairs]


def mapped_preprocessor(m: Mapping, doc: dict, fields: list[dict]) -> dict | None:
    """A CSV preprocessor (one categorical column per field) when every field lists its tokens."""
    with_tokens = [f["tokens"] is not None for f in fields]
    if not any(with_tokens):
        return None
    if not all(with_tokens):
        missing = fields[with_tokens.index(False)]["name"]
        raise m.fail(f"field {missing!r}", "has no \"tokens\" while other fields do (all or none)")
    names = [f["name"] for f in fields]
    label = doc.get("label", "label")
    if not isinstance(label, str) or not label or label in names:
        raise m.fail("label", f"must be a column name other than the fields', got {label!r}")
    fmt = get_format("csv", {"label": label, "categorical": names, "delimiter": ",", "header": True})
    return Preprocessor(fmt.fields, [f["tokens"] for f in fields], format_spec=fmt.to_dict(),
                        min_count=1, label=label).to_dict()
