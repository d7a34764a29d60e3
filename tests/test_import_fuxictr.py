"""`fm2onnx import fuxictr` against FuxiCTR itself: models built from the fuxictr wheel's layers, trained
a few steps on a generated CSV, saved as FuxiCTR saves them, imported, exported (cached + uncached id
graphs and raw graphs) and compared with FuxiCTR's own forward on the same rows.

The wheel ships no model_zoo, so the models below are written from the model definitions with
FuxiCTR's attribute names (their state-dict keys are what the importer reads). FuxiCTR's
FeatureProcessor is not used (it needs ray and polars < 2): feature_map.json and feature_vocab.json
are written here in its format, with its Tokenizer's rules (``__PAD__`` 0, tokens by descending
count, ``__OOV__`` last; the empty value is never a token).
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch
from torch import nn

fuxictr_layers = pytest.importorskip("fuxictr.pytorch.layers")
from fuxictr.features import FeatureMap  # noqa: E402
from fuxictr.pytorch.layers import (FactorizationMachine, FeatureEmbedding, InnerProductInteraction,  # noqa: E402
                                    LogisticRegression)
from fuxictr.pytorch.models import BaseModel  # noqa: E402

from fm2onnx.checkpoint import load_checkpoint  # noqa: E402
from tests.cli_runner import error_of, invoke  # noqa: E402
from fm2onnx.data import Preprocessor  # noqa: E402
from fm2onnx.errors import Fm2OnnxError  # noqa: E402

FEATURES = ("site", "ad", "device", "hour")
CARDINALITY = (40, 25, 6, 24)
K = 4
TOLERANCE = 1e-4
FIT = dict(gpu=-1, verbose=0, model_root="unused", metrics=["logloss"], optimizer="adam",
           loss="binary_crossentropy", learning_rate=0.05)


# ----------------------------------------------------------------------------- FuxiCTR's models


class LR(BaseModel):
    def __init__(self, feature_map, **kw):
        super().__init__(feature_map, model_id="LR", **kw)
        self.lr_layer = LogisticRegression(feature_map, use_bias=True)
        self.compile(kw["optimizer"], kw["loss"], kw["learning_rate"])
        self.reset_parameters()

    def forward(self, inputs):
        return {"y_pred": self.output_activation(self.lr_layer(self.get_inputs(inputs)))}


class FM(BaseModel):
    def __init__(self, feature_map, embedding_dim=K, **kw):
        super().__init__(feature_map, model_id="FM", **kw)
        self.embedding_layer = FeatureEmbedding(feature_map, embedding_dim)
        self.fm = FactorizationMachine(feature_map)
        self.compile(kw["optimizer"], kw["loss"], kw["learning_rate"])
        self.reset_parameters()

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        return {"y_pred": self.output_activation(self.fm(X, self.embedding_layer(X)))}


class FwFM(BaseModel):
    """poly2 = Linear(P, 1) over the upper-triangle inner products; linear part by linear_type."""

    def __init__(self, feature_map, embedding_dim=K, linear_type="FiLV", **kw):
        super().__init__(feature_map, model_id="FwFM", **kw)
        n = feature_map.num_fields
        self.interaction_weight = nn.Linear(n * (n - 1) // 2, 1)
        self.embedding_layer = FeatureEmbedding(feature_map, embedding_dim)
        self.inner_product_layer = InnerProductInteraction(n, output="inner_product")
        self._linear_type = linear_type
        if linear_type == "LW":
            self.linear_weight_layer = FeatureEmbedding(feature_map, 1, use_pretrain=False)
        elif linear_type == "FeLV":
            self.linear_weight_layer = FeatureEmbedding(feature_map, embedding_dim)
        else:
            self.linear_weight_layer = nn.Linear(n * embedding_dim, 1, bias=False)
        self.compile(kw["optimizer"], kw["loss"], kw["learning_rate"])
        self.reset_parameters()

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        emb = self.embedding_layer(X)
        out = self.interaction_weight(self.inner_product_layer(emb))
        if self._linear_type == "LW":
            out = out + self.linear_weight_layer(X).sum(dim=1)
        elif self._linear_type == "FeLV":
            out = out + (emb * self.linear_weight_layer(X)).sum((1, 2)).view(-1, 1)
        else:
            out = out + self.linear_weight_layer(emb.flatten(start_dim=1))
        return {"y_pred": self.output_activation(out)}


class FmFM(BaseModel):
    """Pair p = (triu_index[0][p], triu_index[1][p]): left embedding times its matrix (or vector) . right."""

    def __init__(self, feature_map, embedding_dim=K, field_interaction_type="matrixed", **kw):
        super().__init__(feature_map, model_id="FmFM", **kw)
        n = feature_map.num_fields
        self.embedding_layer = FeatureEmbedding(feature_map, embedding_dim)
        shape = (n * (n - 1) // 2, embedding_dim) + ((embedding_dim,) if field_interaction_type == "matrixed" else ())
        self.field_interaction_type = field_interaction_type
        self.interaction_weight = nn.Parameter(torch.empty(shape))
        nn.init.xavier_normal_(self.interaction_weight)
        self.lr_layer = LogisticRegression(feature_map)
        self.triu_index = torch.triu_indices(n, n, offset=1)
        self.compile(kw["optimizer"], kw["loss"], kw["learning_rate"])
        self.reset_parameters()

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        emb = self.embedding_layer(X)
        left, right = emb[:, self.triu_index[0]], emb[:, self.triu_index[1]]
        if self.field_interaction_type == "vectorized":
            left = left * self.interaction_weight
        else:
            left = torch.matmul(left.unsqueeze(2), self.interaction_weight).squeeze(2)
        out = (left * right).sum(dim=-1).sum(dim=-1, keepdim=True) + self.lr_layer(X)
        return {"y_pred": self.output_activation(out)}


class FFM(BaseModel):
    """Table s holds every feature's vector towards its s-th other field: pair (i, j) reads table j-1 at
    field i and table i at field j."""

    def __init__(self, feature_map, embedding_dim=2, **kw):
        super().__init__(feature_map, model_id="FFM", **kw)
        self.num_fields = feature_map.num_fields
        self.lr_layer = LogisticRegression(feature_map)
        self.embedding_layers = nn.ModuleList(FeatureEmbedding(feature_map, embedding_dim)
                                              for _ in range(self.num_fields - 1))
        self.compile(kw["optimizer"], kw["loss"], kw["learning_rate"])
        self.reset_parameters()

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        tables = [layer(X) for layer in self.embedding_layers]
        out = self.lr_layer(X)
        for i in range(self.num_fields - 1):
            for j in range(i + 1, self.num_fields):
                out = out + (tables[j - 1][:, i] * tables[i][:, j]).sum(dim=1, keepdim=True)
        return {"y_pred": self.output_activation(out)}


class FFMv2(BaseModel):
    """One table of (n-1)*K columns: feature of field i, slot s; pair (i, j) = slot j-1 of i . slot i of j."""

    def __init__(self, feature_map, embedding_dim=2, **kw):
        super().__init__(feature_map, model_id="FFMv2", **kw)
        self.num_fields, self.embedding_dim = feature_map.num_fields, embedding_dim
        self.lr_layer = LogisticRegression(feature_map, use_bias=True)
        self.embedding_layer = FeatureEmbedding(feature_map, embedding_dim * (self.num_fields - 1))
        self.compile(kw["optimizer"], kw["loss"], kw["learning_rate"])
        self.reset_parameters()

    def forward(self, inputs):
        X = self.get_inputs(inputs)
        n, k = self.num_fields, self.embedding_dim
        slots = self.embedding_layer(X).view(-1, n, n - 1, k)
        out = self.lr_layer(X)
        for i in range(n - 1):
            for j in range(i + 1, n):
                out = out + (slots[:, i, j - 1] * slots[:, j, i]).sum(dim=1, keepdim=True)
        return {"y_pred": self.output_activation(out)}


# name -> (class, constructor options, expected fm2onnx kind, expected fm2onnx linear form)
CASES = {
    "LR": (LR, {}, "lr", "feature"),
    "FM": (FM, {}, "fm", "feature"),
    "FwFM-FiLV": (FwFM, {"linear_type": "FiLV"}, "fwfm", "field_vector"),
    "FwFM-LW": (FwFM, {"linear_type": "LW"}, "fwfm", "feature"),
    "FwFM-FeLV": (FwFM, {"linear_type": "FeLV"}, "fwfm", "feature"),
    "FmFM-matrixed": (FmFM, {"field_interaction_type": "matrixed"}, "fmfm", "feature"),
    "FmFM-vectorized": (FmFM, {"field_interaction_type": "vectorized"}, "fvfm", "feature"),
    "FFM": (FFM, {}, "ffm", "feature"),
    "FFMv2": (FFMv2, {}, "ffm", "feature"),
}


# ----------------------------------------------------------------------------- data in FuxiCTR's format


def generated_rows(rows: int = 700, seed: int = 0) -> list[dict[str, str]]:
    """Zipf-distributed tokens, a few empty values; the label depends on two features."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(rows):
        row = {}
        for name, card in zip(FEATURES, CARDINALITY):
            idx = min(int(rng.zipf(1.4)), card + 5) - 1  # values past the cardinality: rare, often unseen
            row[name] = "" if rng.random() < 0.05 else f"{name[0]}{idx}"
        score = (row["site"] in ("s0", "s2")) + 0.5 * (row["ad"] == "a1")
        row["label"] = str(int(rng.random() < 0.2 + 0.4 * score / 1.5))
        out.append(row)
    return out


def write_fuxictr_dir(root, rows, min_count: int = 2, extra_features: dict | None = None):
    """feature_map.json and feature_vocab.json as FuxiCTR's FeatureProcessor writes them."""
    vocab, specs = {}, []
    for name in FEATURES:
        counts = Counter(r[name] for r in rows)
        words = [t for t, c in counts.most_common() if c >= min_count and t != ""]
        v = {t: i for i, t in enumerate(words, 1)}
        v["__PAD__"], v["__OOV__"] = 0, len(words) + 1
        vocab[name] = dict(sorted(v.items(), key=lambda kv: kv[1]))
        specs.append({name: {"source": "", "type": "categorical", "padding_idx": 0, "vocab_size": len(words) + 2}})
    for name, spec in (extra_features or {}).items():
        specs.append({name: spec})
    fmap = {"dataset_id": "tiny", "num_fields": len(specs), "total_features": sum(len(v) for v in vocab.values()),
            "input_length": len(specs), "labels": ["label"], "features": specs}
    root.mkdir(parents=True, exist_ok=True)
    (root / "feature_map.json").write_text(json.dumps(fmap, indent=4))
    (root / "feature_vocab.json").write_text(json.dumps(vocab, indent=4))
    return vocab


def fuxictr_ids(vocab, rows) -> dict[str, torch.Tensor]:
    """FuxiCTR's encode_category: vocab.get(value, OOV); an empty value (fill_na "") is never a token."""
    return {name: torch.tensor([vocab[name].get(r[name], vocab[name]["__OOV__"]) for r in rows])
            for name in FEATURES}


def train_briefly(model, vocab, rows, steps: int = 6):
    """Weights scaled up first (FuxiCTR initializes embeddings at std 1e-4, which hides the interactions)."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.dtype.is_floating_point:
                p.normal_(0.0, 0.3)
    batch = fuxictr_ids(vocab, rows)
    batch["label"] = torch.tensor([[float(r["label"])] for r in rows])
    model.train()
    for _ in range(steps):
        out = model(batch)
        loss = model.compute_loss(out, batch["label"])
        model.optimizer.zero_grad()
        loss.backward()
        model.optimizer.step()
    model.eval()


def fuxictr_logits(model, vocab, rows) -> np.ndarray:
    model.output_activation = nn.Identity()  # the logit: FuxiCTR's forward before its sigmoid
    with torch.no_grad():
        return model(fuxictr_ids(vocab, rows))["y_pred"].reshape(-1).double().numpy()




# ----------------------------------------------------------------------------- round trips


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuxictr")
    rows = generated_rows()
    train, test = rows[:500], rows[500:]
    with open(root / "tiny.csv", "w") as f:  # the CSV the vocabularies were counted on (and its test rows)
        f.write(",".join(("label",) + FEATURES) + "\n")
        f.writelines(",".join([r["label"]] + [r[c] for c in FEATURES]) + "\n" for r in rows)
    vocab = write_fuxictr_dir(root / "data", train)
    feature_map = FeatureMap("tiny", str(root / "data"))
    feature_map.load(str(root / "data" / "feature_map.json"), {"embedding_dim": K})
    # test rows plus values no vocabulary has, an all-empty row and a row of the most common tokens
    probes = [{c: "never-seen" for c in FEATURES}, {c: "" for c in FEATURES},
              {c: next(iter(t for t in vocab[c] if not t.startswith("__"))) for c in FEATURES}]
    return root, vocab, feature_map, train, test + probes


def sessions(root, ckpt, raw: bool) -> dict:
    """Exports by the command line: the cached and uncached id graphs, or the raw-input ones."""
    import onnxruntime as ort

    stem = "m.raw" if raw else "m"
    result = invoke("export", ckpt, "--form", "both", *(("--input", "raw") if raw else ()), "-o", root / f"{stem}.onnx")
    assert result.exit_code == 0, (result.output, result.exception)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return {form: ort.InferenceSession(str(root / name), options, providers=["CPUExecutionProvider"])
            for form, name in (("cached", f"{stem}.onnx"), ("uncached", f"{stem}.uncached.onnx"))}


def imported(dataset, tmp_path, case):
    """(FuxiCTR model, checkpoint path, FuxiCTR's logits on the probe rows) of one trained, saved, imported model."""
    root, vocab, feature_map, train, rows = dataset
    cls, options, kind, linear = CASES[case]
    model = cls(feature_map, **options, **FIT)
    train_briefly(model, vocab, train)
    model_file = tmp_path / f"{cls.__name__}_tiny.model"
    model.save_weights(str(model_file))  # torch.save(model.state_dict()), as FuxiCTR does
    ckpt = tmp_path / "ckpt.pt"
    result = invoke("import", "fuxictr", model_file, "--data-dir", root / "data", "-o", ckpt)
    assert result.exit_code == 0, (result.output, result.exception)
    spec = load_checkpoint(ckpt).spec
    assert (spec.kind, spec.linear) == (kind, linear)
    want = fuxictr_logits(model, vocab, rows)
    assert np.ptp(want) > 0.1  # the rows really exercise the model
    return ckpt, want


def report(case: str, deltas: dict) -> None:
    print(f"\n{case}: max |Δlogit| " + ", ".join(f"{k} {v:.2e}" for k, v in deltas.items()))
    assert max(deltas.values()) <= TOLERANCE, deltas


@pytest.mark.parametrize("case", list(CASES))
def test_imported_model_and_id_graphs_match_fuxictr_forward(dataset, tmp_path, case):
    _, vocab, _, _, rows = dataset
    ckpt, want = imported(dataset, tmp_path, case)
    loaded = load_checkpoint(ckpt)
    ids = Preprocessor.from_dict(loaded.preprocessor).encode_records(rows).astype(np.int64)
    by_fuxictr = fuxictr_ids(vocab, rows)
    fuxictr_id_matrix = np.stack([by_fuxictr[c].numpy() for c in FEATURES], axis=1)  # OOV: one past the table
    with torch.no_grad():
        deltas = {"checkpoint": float(np.abs(loaded.model()(torch.from_numpy(ids)).double().numpy() - want).max())}
    for form, sess in sessions(tmp_path, ckpt, raw=False).items():
        got = sess.run(["logit"], {"feature_ids": ids})[0]
        same = sess.run(["logit"], {"feature_ids": fuxictr_id_matrix})[0]
        np.testing.assert_allclose(same, got, atol=1e-6)  # FuxiCTR's own ids serve as they are
        deltas[form] = float(np.abs(got.astype(np.float64) - want).max())
    report(case, deltas)


# Raw graphs repeat the whole export; three models in the quick loop, the others with the slow tests.
RAW_QUICK = ("FwFM-FeLV", "FmFM-matrixed", "FFMv2")


@pytest.mark.parametrize("case", [c if c in RAW_QUICK else pytest.param(c, marks=pytest.mark.slow) for c in CASES])
def test_raw_graphs_match_fuxictr_forward_on_raw_rows(dataset, tmp_path, case):
    rows = dataset[4]
    ckpt, want = imported(dataset, tmp_path, case)
    strings = np.array([[r[c] for c in FEATURES] for r in rows], dtype=object)  # unseen and empty values too
    deltas = {f"raw {form}": float(np.abs(sess.run(["logit"], {"categorical": strings})[0] - want).max())
              for form, sess in sessions(tmp_path, ckpt, raw=True).items()}
    report(case, deltas)


# ----------------------------------------------------------------------------- refusals, one line each


@pytest.fixture(scope="module")
def saved_fmfm(dataset, tmp_path_factory):
    root, vocab, feature_map, train, _ = dataset
    model = FmFM(feature_map, **FIT)
    path = tmp_path_factory.mktemp("fmfm") / "FmFM_tiny.model"
    model.save_weights(str(path))
    return path, model.state_dict()


def test_model_override_and_existing_output(dataset, saved_fmfm, tmp_path):
    root = dataset[0]
    model_file, _ = saved_fmfm
    out = tmp_path / "ckpt.pt"
    args = ("import", "fuxictr", model_file, "--data-dir", root / "data")
    assert invoke(*args, "--model", "fmfm", "-o", out).exit_code == 0
    assert "already exists" in error_of(invoke("import", "fuxictr", model_file, "--data-dir", root / "data", "-o", out))
    assert invoke("import", "fuxictr", model_file, "--data-dir", root / "data", "-o", out, "--force").exit_code == 0
    message = error_of(invoke("import", "fuxictr", model_file, "--data-dir", root / "data", "--model", "FM",
                              "-o", tmp_path / "fm.pt"))
    assert "fm.lr_layer" in message  # the tensor an FM would have
    assert "--linear-type is FwFM's option" in error_of(invoke(*args, "--linear-type", "LW", "-o", tmp_path / "y.pt"))
    assert load_checkpoint(out).training["imported_from"]["field_interaction_type"] == "matrixed"
    assert "DeepFM" in error_of(invoke("import", "fuxictr", model_file, "--data-dir", root / "data",
                                       "--model", "DeepFM", "-o", tmp_path / "x.pt"))


@pytest.mark.parametrize("name", ["feature_map.json", "feature_vocab.json"])
def test_the_import_never_writes_over_the_data_directory_it_reads(dataset, saved_fmfm, tmp_path, name):
    write_fuxictr_dir(tmp_path / "data", dataset[3])
    target = tmp_path / "data" / name
    before = target.read_bytes()
    message = error_of(invoke("import", "fuxictr", saved_fmfm[0], "--data-dir", tmp_path / "data", "-o", target,
                              "--force"))
    assert message == f"{target}: is also this command's input; write the output to another file"
    assert target.read_bytes() == before


@pytest.mark.parametrize("feature, spec, words", [
    ("price", {"source": "", "type": "numeric"}, "'price' is numeric"),
    ("price", {"source": "", "type": "numeric", "normalizer": "MinMaxScaler"}, "'price' is numeric"),
    ("history", {"source": "", "type": "sequence", "splitter": "^", "max_len": 5, "padding_idx": 0,
                 "vocab_size": 9}, "'history' has type 'sequence'"),
    ("bucketed", {"source": "", "type": "categorical", "category_processor": "hash_bucket", "vocab_size": 10},
     "'bucketed' uses a category processor"),
    ("ad,site", {"source": "", "type": "categorical", "vocab_size": 10}, "field name 'ad,site': a name must"),
    ("shared", {"source": "", "type": "categorical", "vocab_size": 10, "share_embedding": FEATURES[0]},
     "'shared' uses another feature's table"),
    (FEATURES[0], {"source": "", "type": "categorical", "vocab_size": 10}, f"'{FEATURES[0]}' is listed twice"),
])
def test_features_fm2onnx_cannot_express_are_refused_by_name(dataset, saved_fmfm, tmp_path, feature, spec, words):
    _, _, _, train, _ = dataset
    write_fuxictr_dir(tmp_path / "data", train, extra_features={feature: spec})
    message = error_of(invoke("import", "fuxictr", saved_fmfm[0], "--data-dir", tmp_path / "data",
                              "-o", tmp_path / "x.pt"))
    assert words in message and "feature_map.json" in message
    assert not (tmp_path / "x.pt").exists()


def test_bad_files_name_the_file_or_tensor(dataset, saved_fmfm, tmp_path):
    root, vocab, _, train, _ = dataset
    model_file, state = saved_fmfm
    data = root / "data"

    def error(model, data_dir=data):
        return error_of(invoke("import", "fuxictr", model, "--data-dir", data_dir, "-o", tmp_path / "x.pt"))

    assert "feature_map.json: no such file" in error(model_file, tmp_path)
    (tmp_path / "feature_map.json").write_text((data / "feature_map.json").read_text())
    assert "feature_vocab.json: no such file" in error(model_file, tmp_path)
    (tmp_path / "feature_vocab.json").write_text("{not json")
    assert "feature_vocab.json:1: not valid JSON" in error(model_file, tmp_path)
    cut = tmp_path / "cut.model"
    cut.write_bytes(model_file.read_bytes()[:200])
    assert "cut.model" in error(cut)
    pickled = tmp_path / "object.model"
    torch.save({"model": nn.Linear(2, 2)}, pickled)  # a whole module: unpickling it could run code
    assert "refused" in error(pickled)
    wrong = dict(state)
    key = "embedding_layer.embedding_layer.embedding_layers.ad.weight"
    wrong[key] = wrong[key][:-1]
    torch.save(wrong, tmp_path / "short.model")
    assert f"'{key}' has shape" in error(tmp_path / "short.model")
    deep = dict(state, **{"mlp.0.weight": torch.zeros(2, 2)})
    torch.save(deep, tmp_path / "deep.model")
    assert "'mlp.0.weight' is not part of a FuxiCTR FmFM" in error(tmp_path / "deep.model")
    bad_vocab = json.loads((data / "feature_vocab.json").read_text())
    del bad_vocab["ad"]["__OOV__"]
    (tmp_path / "feature_vocab.json").write_text(json.dumps(bad_vocab))
    assert "'ad': __OOV__" in error(model_file, tmp_path)


def test_fwfm_linear_type_choice(dataset, tmp_path):
    root, _, feature_map, _, _ = dataset
    model = FwFM(feature_map, linear_type="LW", **FIT)
    model.save_weights(str(tmp_path / "FwFM.model"))
    args = ("import", "fuxictr", tmp_path / "FwFM.model", "--data-dir", root / "data", "-o", tmp_path / "x.pt")
    assert "'XYZ' is not one fm2onnx can express" in error_of(invoke(*args, "--linear-type", "XYZ"))
    assert invoke(*args, "--linear-type", "LW").exit_code == 0
    assert load_checkpoint(tmp_path / "x.pt").training["imported_from"]["linear_type"] == "LW"


def test_meta_features_are_not_fields(dataset, saved_fmfm, tmp_path):
    train = dataset[3]
    write_fuxictr_dir(tmp_path / "data", train, extra_features={"request_id": {"type": "meta"}})
    result = invoke("import", "fuxictr", saved_fmfm[0], "--data-dir", tmp_path / "data", "-o", tmp_path / "x.pt")
    assert result.exit_code == 0, (result.output, result.exception)
    assert load_checkpoint(tmp_path / "x.pt").spec.field_names == FEATURES
