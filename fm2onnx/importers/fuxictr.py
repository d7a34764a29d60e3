"""Import a FuxiCTR model (LR, FM, FwFM, FmFM, FFM, FFMv2) saved as ``<model_id>.model``.

FuxiCTR keeps one ``nn.Embedding`` per feature whose row 0 is ``__PAD__`` (never produced for a
categorical value) and whose last row is ``__OOV__`` (a trained row: values outside the vocabulary
and missing values read it). fm2onnx's row 0 is the unknown feature, so each table becomes
``[OOV row, then the rows of the vocabulary's tokens in FuxiCTR index order]``; a token's fm2onnx id
is its position in that order (with the usual remapped vocabulary, its FuxiCTR index, and FuxiCTR's
OOV index falls past the table, which fm2onnx reads as the unknown row too).

Only the JSON files of the data directory are read (``feature_map.json``, ``feature_vocab.json``);
``feature_processor.pkl`` is a pickle and is never opened.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from fm2onnx.data import Preprocessor, get_format
from fm2onnx.errors import Fm2OnnxError
from fm2onnx.field_names import check_field_name
from fm2onnx.files import read_json

from .common import ImportedParts, expect_shape, float_tensor, load_state_dict

MODELS = ("LR", "FM", "FwFM", "FmFM", "FFM", "FFMv2")
# FwFM's linear_type -> how fm2onnx expresses it (FeLV: <emb, w> per feature is one scalar per feature).
LINEAR_TYPES = {"FiLV": "field_vector", "LW": "feature", "FeLV": "feature"}
PAD, OOV = "__PAD__", "__OOV__"
# FwFM's InnerProductInteraction keeps its upper-triangle mask as a (frozen) parameter.
IGNORED = ("inner_product_layer.triu_mask",)


@dataclass
class Field:
    name: str
    rows: int  # FuxiCTR's vocab_size (table rows)
    order: list[int]  # FuxiCTR row of each fm2onnx id (order[0] = the OOV row)
    tokens: list[str]  # token of fm2onnx id i + 1


class Source:
    """The state dict with bookkeeping: every tensor must be used, so another model is not half-read."""

    def __init__(self, path: Path, tensors: dict[str, torch.Tensor]):
        self.path, self.tensors, self.used = path, tensors, set(IGNORED)

    def has_prefix(self, prefix: str) -> bool:
        return any(k.startswith(prefix) for k in self.tensors)

    def get(self, name: str, why: str = "") -> torch.Tensor:
        if name not in self.tensors:
            raise Fm2OnnxError(f"{self.path}: no tensor {name!r}" + (f" ({why})" if why else ""))
        self.used.add(name)
        return float_tensor(self.tensors[name], name, str(self.path))

    def check_all_used(self, model: str) -> None:
        extra = sorted(set(self.tensors) - self.used)
        if extra:
            raise Fm2OnnxError(f"{self.path}: tensor {extra[0]!r} is not part of a FuxiCTR {model} "
                               f"({len(extra)} unused); a different model? (--model chooses the kind)")


def import_fuxictr(model_file: str | Path, data_dir: str | Path, model: str | None = None,
                   linear_type: str | None = None) -> tuple[ImportedParts, dict]:
    """(ImportedParts, preprocessor dict) of a FuxiCTR model and its data directory's vocabularies."""
    src = Source(Path(model_file), load_state_dict(model_file))
    fields, label = read_fields(Path(data_dir))
    name = resolve_model(model) if model else detect_model(src)
    if linear_type is not None and name != "FwFM":
        raise Fm2OnnxError(f"--linear-type is FwFM's option; {src.path} holds a FuxiCTR {name}")
    parts = BUILDERS[name](src, fields, linear_type)
    src.check_all_used(name)
    parts.source = {"format": "fuxictr", "model": name, "model_file": str(model_file), **parts.source}
    return parts, preprocessor(fields, label)


def resolve_model(name: str) -> str:
    for known in MODELS:
        if known.lower() == name.lower():
            return known
    raise Fm2OnnxError(f"--model {name!r}: fm2onnx imports the FuxiCTR models {', '.join(MODELS)}")


def detect_model(src: Source) -> str:
    """The FuxiCTR model whose parameter names these are (their module attribute names)."""
    t = src.tensors
    if "interaction_weight" in t:
        return "FmFM"
    if "interaction_weight.weight" in t:
        return "FwFM"
    if src.has_prefix("fm.lr_layer."):
        return "FM"
    if src.has_prefix("embedding_layers.0."):
        return "FFM"
    if src.has_prefix("lr_layer.") and src.has_prefix("embedding_layer."):
        return "FFMv2"
    if src.has_prefix("lr_layer."):
        return "LR"
    sample = ", ".join(sorted(t)[:3])
    raise Fm2OnnxError(f"{src.path}: not a state dict of a FuxiCTR model fm2onnx knows ({', '.join(MODELS)}); "
                       f"its tensors start {sample}; pass --model if it is one")


def _read_json(path: Path):
    if not path.is_file():
        raise Fm2OnnxError(f"{path}: no such file (the FuxiCTR data directory holds feature_map.json and "
                           "feature_vocab.json)")
    return read_json(path)


def data_files(data_dir: Path) -> tuple[Path, Path]:
    """The files of a FuxiCTR data directory the import reads: its feature map and vocabularies."""
    return data_dir / "feature_map.json", data_dir / "feature_vocab.json"


def read_fields(data_dir: Path) -> tuple[list[Field], str]:
    """The model's fields (non-meta features, in feature-map order) and the label column."""
    map_path, vocab_path = data_files(data_dir)
    fmap, vocab = _read_json(map_path), _read_json(vocab_path)
    features = fmap.get("features") if isinstance(fmap, dict) else None
    if not isinstance(features, list) or not all(isinstance(x, dict) and len(x) == 1 for x in features):
        raise Fm2OnnxError(f"{map_path}: 'features' must be a list of {{name: spec}} objects")
    if not isinstance(vocab, dict):
        raise Fm2OnnxError(f"{vocab_path}: expected an object of {{feature: {{token: index}}}}")
    fields, seen = [], set()
    for entry in features:
        (name, spec), = entry.items()
        if not isinstance(spec, dict):
            raise Fm2OnnxError(f"{map_path}: feature {name!r}: its spec is not an object")
        if name in seen:
            raise Fm2OnnxError(f"{map_path}: feature {name!r} is listed twice")
        seen.add(name)
        if spec.get("type") == "meta":
            continue  # ids such as a group id: not a model input
        check_feature(map_path, name, spec)
        fields.append(field_vocab(vocab_path, name, int(spec["vocab_size"]), vocab.get(name)))
    if len(fields) < 2:
        raise Fm2OnnxError(f"{map_path}: {len(fields)} categorical features; a model needs at least 2")
    labels = fmap.get("labels")
    return fields, labels[0] if isinstance(labels, list) and labels and isinstance(labels[0], str) else "label"


def check_feature(path: Path, name: str, spec: dict) -> None:
    """Refuse what fm2onnx's categorical fields cannot express, naming the feature."""
    check_field_name(name, str(path))
    kind = spec.get("type")
    if kind == "numeric":
        raise Fm2OnnxError(f"{path}: feature {name!r} is numeric (FuxiCTR scales a learned vector by its "
                           "value, after any normalizer); fm2onnx fields are categorical ids, so it cannot be imported")
    if kind != "categorical":
        raise Fm2OnnxError(f"{path}: feature {name!r} has type {kind!r}; fm2onnx imports categorical features only")
    for key, what in (("category_processor", "a category processor"), ("feature_encoder", "a feature encoder"),
                      ("pretrained_emb", "a pretrained embedding"), ("share_embedding", "another feature's table")):
        if spec.get(key):
            raise Fm2OnnxError(f"{path}: feature {name!r} uses {what} ({key}={spec[key]!r}), "
                               "which fm2onnx cannot express")
    size = spec.get("vocab_size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 2:
        raise Fm2OnnxError(f"{path}: feature {name!r}: vocab_size must be an integer >= 2, got {size!r}")


def field_vocab(path: Path, name: str, rows: int, vocab) -> Field:
    """The fm2onnx row order and tokens of one feature from its FuxiCTR vocabulary {token: index}."""
    if not isinstance(vocab, dict):
        raise Fm2OnnxError(f"{path}: no vocabulary for feature {name!r}")
    oov = vocab.get(OOV)
    if not isinstance(oov, int) or not 0 <= oov < rows:
        raise Fm2OnnxError(f"{path}: feature {name!r}: {OOV} must be an index below vocab_size {rows}, got {oov!r}")
    seen: dict[int, str] = {}
    for token, index in vocab.items():
        if token in (PAD, OOV):
            continue
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < rows or index == oov:
            raise Fm2OnnxError(f"{path}: feature {name!r}: token {token!r} has index {index!r}, "
                               f"not a row below vocab_size {rows} other than {OOV}'s")
        if index in seen:
            raise Fm2OnnxError(f"{path}: feature {name!r}: tokens {seen[index]!r} and {token!r} share index {index}")
        if token == "":
            raise Fm2OnnxError(f"{path}: feature {name!r}: the empty token is in the vocabulary, but fm2onnx "
                               "reads an empty value as unknown")
        seen[index] = token
    order = sorted(seen)
    return Field(name, rows, [oov] + order, [seen[i] for i in order])


def preprocessor(fields: list[Field], label: str) -> dict:
    """A CSV preprocessor with one categorical column per feature: token -> id as imported."""
    names = [f.name for f in fields]
    if label in names:
        label = "label" if "label" not in names else "__label__"
    fmt = get_format("csv", {"label": label, "categorical": names, "delimiter": ",", "header": True})
    return Preprocessor(fmt.fields, [f.tokens for f in fields], format_spec=fmt.to_dict(),
                        min_count=1, label=fmt.label).to_dict()


# ----------------------------------------------------------------------------- per model


def tables(src: Source, fields: list[Field], prefix: str, width: int | None = None,
           what: str = "embedding") -> list[torch.Tensor]:
    """Each feature's table of a FuxiCTR ``FeatureEmbedding`` at ``prefix``, rows in fm2onnx's order."""
    out = []
    for f in fields:
        key = f"{prefix}embedding_layer.embedding_layers.{f.name}.weight"
        t = src.get(key, f"the {what} table of feature {f.name!r}")
        if t.dim() != 2 or t.shape[0] != f.rows or (width is not None and t.shape[1] != width):
            want = [f.rows, width if width is not None else "K"]
            raise Fm2OnnxError(f"{src.path}: tensor {key!r} has shape {list(t.shape)}, expected {want} "
                               "(rows: the feature's vocab_size in feature_map.json)")
        out.append(t[f.order])
    return out


def uniform_dim(src: Source, fields: list[Field], embeddings: list[torch.Tensor], prefix: str) -> int:
    widths = {t.shape[1] for t in embeddings}
    if len(widths) != 1:
        a = next(i for i, t in enumerate(embeddings) if t.shape[1] != embeddings[0].shape[1])
        raise Fm2OnnxError(f"{src.path}: tensor '{prefix}embedding_layer.embedding_layers.{fields[a].name}.weight' "
                           f"has {embeddings[a].shape[1]} columns, the first feature's {embeddings[0].shape[1]}: "
                           "these models need one embedding_dim")
    return widths.pop()


def lr_part(src: Source, fields: list[Field], prefix: str) -> tuple[list[torch.Tensor], float]:
    """A FuxiCTR ``LogisticRegression`` layer: per-feature weights and its bias."""
    weights = [t[:, 0] for t in tables(src, fields, f"{prefix}embedding_layer.", width=1, what="linear weight")]
    bias = expect_shape(src.get(f"{prefix}bias", "the LR bias"), (1,), f"{prefix}bias", str(src.path))
    return weights, float(bias[0])


def _parts(kind: str, fields: list[Field], dim: int, embeddings, linear, bias, matrices=None) -> ImportedParts:
    return ImportedParts(kind, [f.name for f in fields], [len(f.order) for f in fields],
                         [dim] * len(fields), embeddings, linear, bias, matrices)


def num_pairs(fields: list[Field]) -> int:
    return len(fields) * (len(fields) - 1) // 2


def build_lr(src: Source, fields: list[Field], linear_type=None) -> ImportedParts:
    weights, bias = lr_part(src, fields, "lr_layer.")
    return _parts("lr", fields, 0, None, weights, bias)


def build_fm(src: Source, fields: list[Field], linear_type=None) -> ImportedParts:
    embeddings = tables(src, fields, "embedding_layer.")
    weights, bias = lr_part(src, fields, "fm.lr_layer.")
    return _parts("fm", fields, uniform_dim(src, fields, embeddings, "embedding_layer."), embeddings, weights, bias)


def build_fmfm(src: Source, fields: list[Field], linear_type=None) -> ImportedParts:
    """field_interaction_type "matrixed" ([P, K, K]: v_a M_p . v_b) is fmfm, "vectorized" ([P, K]) fvfm."""
    embeddings = tables(src, fields, "embedding_layer.")
    k = uniform_dim(src, fields, embeddings, "embedding_layer.")
    weights, bias = lr_part(src, fields, "lr_layer.")
    w = src.get("interaction_weight", "FmFM's field matrices")
    p = num_pairs(fields)
    if tuple(w.shape) == (p, k, k):
        parts = _parts("fmfm", fields, k, embeddings, weights, bias, list(w.unbind(0)))
    else:
        expect_shape(w, (p, k), "interaction_weight", str(src.path),
                     f"{p} field pairs: [P, K, K] if matrixed, [P, K] if vectorized")
        parts = _parts("fvfm", fields, k, embeddings, weights, bias, w)
    parts.source["field_interaction_type"] = "matrixed" if parts.kind == "fmfm" else "vectorized"
    return parts


def build_ffm(src: Source, fields: list[Field], linear_type=None) -> ImportedParts:
    """FFM's table s holds, for every feature, its vector towards the s-th other field (fm2onnx's slot s)."""
    n = len(fields)
    slots = [tables(src, fields, f"embedding_layers.{s}.") for s in range(n - 1)]
    k = uniform_dim(src, fields, [t for slot in slots for t in slot], "embedding_layers.0.")
    embeddings = [torch.cat([slots[s][a] for s in range(n - 1)], dim=1) for a in range(n)]
    weights, bias = lr_part(src, fields, "lr_layer.")
    return _parts("ffm", fields, k, embeddings, weights, bias)


def build_ffmv2(src: Source, fields: list[Field], linear_type=None) -> ImportedParts:
    """FFMv2 stores the n-1 vectors of a feature side by side already, in fm2onnx's slot order."""
    n = len(fields)
    embeddings = tables(src, fields, "embedding_layer.")
    width = uniform_dim(src, fields, embeddings, "embedding_layer.")
    if width % (n - 1):
        raise Fm2OnnxError(f"{src.path}: FFMv2 tables have {width} columns, not a multiple of {n - 1} (fields - 1)")
    weights, bias = lr_part(src, fields, "lr_layer.")
    return _parts("ffm", fields, width // (n - 1), embeddings, weights, bias)


def fwfm_linear_type(src: Source, k: int, given: str | None) -> str:
    """FiLV keeps one Linear over the flattened embeddings; LW and FeLV a FeatureEmbedding of width 1 / K."""
    if given is not None:
        if given not in LINEAR_TYPES:
            raise Fm2OnnxError(f"FwFM linear_type {given!r} is not one fm2onnx can express "
                               f"({', '.join(LINEAR_TYPES)})")
        return given
    if "linear_weight_layer.weight" in src.tensors:
        return "FiLV"
    tables_ = [v for key, v in src.tensors.items() if key.startswith("linear_weight_layer.embedding_layer.")]
    if not tables_:
        raise Fm2OnnxError(f"{src.path}: FwFM without linear_weight_layer tensors (linear_type FiLV, FeLV or LW)")
    width = tables_[0].shape[-1] if tables_[0].dim() == 2 else -1
    if width == 1 and k == 1:
        raise Fm2OnnxError(f"{src.path}: with embedding_dim 1, LW and FeLV store the same shapes; "
                           "pass --linear-type LW or FeLV")
    if width not in (1, k):
        raise Fm2OnnxError(f"{src.path}: linear_weight_layer tables have {width} columns: neither LW (1) "
                           f"nor FeLV (embedding_dim {k})")
    return "LW" if width == 1 else "FeLV"


def build_fwfm(src: Source, fields: list[Field], linear_type: str | None = None) -> ImportedParts:
    """poly2 = Linear(P, 1) over the pair inner products (its bias is the model's), plus the linear_type term."""
    embeddings = tables(src, fields, "embedding_layer.")
    k = uniform_dim(src, fields, embeddings, "embedding_layer.")
    p, where = num_pairs(fields), str(src.path)
    r = expect_shape(src.get("interaction_weight.weight"), (1, p), "interaction_weight.weight", where,
                     f"one weight per field pair, {p} pairs")
    bias = expect_shape(src.get("interaction_weight.bias"), (1,), "interaction_weight.bias", where)
    linear_type = fwfm_linear_type(src, k, linear_type)
    if linear_type == "FiLV":
        n = len(fields)
        linear = expect_shape(src.get("linear_weight_layer.weight"), (1, n * k), "linear_weight_layer.weight",
                              where, "FiLV: one K-vector per field").reshape(-1)
    elif linear_type == "LW":
        linear = [t[:, 0] for t in tables(src, fields, "linear_weight_layer.", width=1, what="LW weight")]
    else:  # FeLV: <v_i, w_i> depends on the feature alone, so it is one per-feature weight
        vectors = tables(src, fields, "linear_weight_layer.", width=k, what="FeLV vector")
        linear = [(e * w).sum(dim=1) for e, w in zip(embeddings, vectors)]
    parts = _parts("fwfm", fields, k, embeddings, linear, float(bias[0]), r.reshape(-1))
    parts.source["linear_type"] = linear_type
    return parts


BUILDERS = {"LR": build_lr, "FM": build_fm, "FwFM": build_fwfm, "FmFM": build_fmfm,
            "FFM": build_ffm, "FFMv2": build_ffmv2}
