"""`fm2onnx import torch`: a PyTorch FM-family model laid out unlike fm2onnx (one shared linear table
with per-field row ranges, unknown rows first, last or absent, field matrices stacked, as a block or
per pair) is described by a JSON mapping, imported, and compared with its own forward (and, for
some, with the exported graphs on onnxruntime)."""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pytest
import torch
from torch import nn

from fm2onnx.checkpoint import load_checkpoint
from tests.cli_runner import error_of, invoke
from fm2onnx.data import Preprocessor
from fm2onnx.errors import Fm2OnnxError

NAMES = ("user", "item", "context")
VOCAB = (5, 7, 4)  # rows of each field's tables in the foreign model
UNKNOWN = (0, -1, None)  # user: row 0 is unknown; item: the last row; context: none (a zero row is added)
PAIRS = list(combinations(range(3), 2))


class Foreign(nn.Module):
    """logit = bias + sum_a w[offset_a + x_a] + sum_{a<b} interaction; tables per field, weights shared."""

    def __init__(self, kind: str, dims=(3, 3, 3)):
        super().__init__()
        torch.manual_seed(0)
        self.kind, self.dims = kind, list(dims)
        self.offsets = [0, VOCAB[0], VOCAB[0] + VOCAB[1]]
        self.weights = nn.Parameter(torch.randn(sum(VOCAB), 1) * 0.5)
        self.bias = nn.Parameter(torch.randn(1))
        width = (lambda d: 2 * d) if kind == "ffm" else (lambda d: d)  # FFM: (n-1) vectors per feature
        self.tables = nn.ParameterList(nn.Parameter(torch.randn(v, width(d)) * 0.5) for v, d in zip(VOCAB, dims))
        total, k = sum(dims), dims[0]
        if kind == "fmfm":
            self.block = nn.Parameter(torch.randn(total, total) * 0.5)
        elif kind == "fvfm":
            self.pair_vectors = nn.Parameter(torch.randn(len(PAIRS), k))
            self.field_vector = nn.Linear(total, 1, bias=False)
        elif kind == "fwfm":
            self.pair_weights = nn.Linear(len(PAIRS), 1)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        # fvfm here has a field-vector linear term instead of per-feature weights; fwfm's bias is its pair layer's
        linear = 0 if self.kind == "fvfm" else sum(self.weights[self.offsets[a] + rows[:, a], 0] for a in range(3))
        out = (0 if self.kind == "fwfm" else self.bias) + linear
        if self.kind == "lr":
            return out
        v = [self.tables[a][rows[:, a]] for a in range(3)]
        starts = [0, self.dims[0], self.dims[0] + self.dims[1]]
        products = []
        for p, (a, b) in enumerate(PAIRS):
            if self.kind == "ffm":  # feature of a towards b: slot b-1; of b towards a: slot a (k = 3 each)
                products.append((v[a][:, (b - 1) * 3:b * 3] * v[b][:, a * 3:(a + 1) * 3]).sum(1))
            elif self.kind == "fmfm":
                m = self.block[starts[a]:starts[a] + self.dims[a], starts[b]:starts[b] + self.dims[b]]
                products.append(((v[a] @ m) * v[b]).sum(1))
            elif self.kind == "fvfm":
                products.append((v[a] * self.pair_vectors[p] * v[b]).sum(1))
            else:
                products.append((v[a] * v[b]).sum(1))
        stacked = torch.stack(products, dim=1)
        if self.kind == "fwfm":
            return out + self.pair_weights(stacked)[:, 0]
        if self.kind == "fvfm":
            out = out + self.field_vector(torch.cat(v, dim=1))[:, 0]
        return out + stacked.sum(1)


def mapping_of(kind: str) -> dict:
    fields = []
    for a, name in enumerate(NAMES):
        field = {"name": name, "vocab_size": VOCAB[a], "unknown_row": UNKNOWN[a]}
        if kind != "lr":
            field["embedding"] = f"tables.{a}"
        if kind != "fvfm":  # fvfm: one vector per field instead
            start = sum(VOCAB[:a])
            field["linear"] = {"tensor": "weights", "rows": [start, start + VOCAB[a]]}
        fields.append(field)
    doc = {"kind": kind, "fields": fields, "bias": "bias"}
    if kind == "fmfm":
        doc["field_matrices"] = {"block": "block"}
    elif kind == "fvfm":
        doc["field_matrices"] = "pair_vectors"
        doc["field_vector"] = "field_vector.weight"
    elif kind == "fwfm":
        doc["field_matrices"] = "pair_weights.weight"
        doc["bias"] = "pair_weights.bias"
    return doc


def fm2onnx_id(a: int, row: int) -> int:
    """The fm2onnx id of a foreign table row under UNKNOWN (row 0 is always the unknown feature)."""
    u = UNKNOWN[a]
    if u is None:
        return row + 1
    u %= VOCAB[a]
    return 0 if row == u else row + (row < u)


def all_rows() -> torch.Tensor:
    grid = torch.cartesian_prod(*(torch.arange(v) for v in VOCAB))
    return grid




def write(tmp_path, model: nn.Module, doc: dict):
    torch.save(model.state_dict(), tmp_path / "model.pt")
    (tmp_path / "map.json").write_text(json.dumps(doc))
    return tmp_path / "model.pt", "--mapping", tmp_path / "map.json"


KINDS = {"lr": (3, 3, 3), "fm": (3, 3, 3), "fwfm": (3, 3, 3), "fvfm": (3, 3, 3), "fmfm": (3, 2, 4), "ffm": (3, 3, 3)}


@pytest.mark.parametrize("kind", list(KINDS))
def test_mapped_model_matches_its_own_forward(tmp_path, kind):
    model = Foreign(kind, KINDS[kind]).eval()
    out = tmp_path / "ckpt.pt"
    result = invoke("import", "torch", *write(tmp_path, model, mapping_of(kind)), "-o", out)
    assert result.exit_code == 0, (result.output, result.exception)
    ckpt = load_checkpoint(out)
    assert ckpt.spec.kind == kind and list(ckpt.spec.vocab_sizes) == [5, 7, 5] and ckpt.preprocessor is None
    rows = all_rows()
    ids = torch.tensor([[fm2onnx_id(a, int(r)) for a, r in enumerate(row)] for row in rows])
    with torch.no_grad():
        want, got = model(rows), ckpt.model()(ids)
    assert (want - got).abs().max() <= 1e-5
    assert want.std() > 0.3


def test_fmfm_pairs_with_a_reversed_pair_and_ffm_as_column_slices(tmp_path):
    model = Foreign("fmfm", KINDS["fmfm"]).eval()
    state = dict(model.state_dict())
    starts, dims = [0, 3, 5], KINDS["fmfm"]
    pairs = []
    for a, b in PAIRS:
        m = model.block.detach()[starts[a]:starts[a] + dims[a], starts[b]:starts[b] + dims[b]]
        if (a, b) == (0, 2):  # given as (context, user): <v_context M^T, v_user> is the same term
            state["pair.context.user"] = m.T.clone()
            pairs.append({"fields": ["context", "user"], "tensor": "pair.context.user"})
        else:
            state[f"pair.{a}.{b}"] = m.clone()
            pairs.append({"fields": [NAMES[a], NAMES[b]], "tensor": f"pair.{a}.{b}"})
    doc = dict(mapping_of("fmfm"), field_matrices={"pairs": pairs})
    torch.save(state, tmp_path / "model.pt")
    (tmp_path / "map.json").write_text(json.dumps(doc))
    assert invoke("import", "torch", tmp_path / "model.pt", "--mapping", tmp_path / "map.json",
                  "-o", tmp_path / "a.pt").exit_code == 0
    ffm = Foreign("ffm").eval()
    doc = mapping_of("ffm")
    for a, field in enumerate(doc["fields"]):
        field["embedding"] = [{"tensor": f"tables.{a}", "cols": [0, 3]}, {"tensor": f"tables.{a}", "cols": [3, 6]}]
    assert invoke("import", "torch", *write(tmp_path, ffm, doc), "-o", tmp_path / "b.pt").exit_code == 0
    rows = all_rows()
    ids = torch.tensor([[fm2onnx_id(a, int(r)) for a, r in enumerate(row)] for row in rows])
    with torch.no_grad():
        for name, source in (("a.pt", model), ("b.pt", ffm)):
            assert (load_checkpoint(tmp_path / name).model()(ids) - source(rows)).abs().max() <= 1e-5


def test_exported_graphs_of_a_mapped_fmfm_with_tokens(tmp_path):
    """Per-field dims (3, 2, 4); tokens give the checkpoint a preprocessor, so the raw graph works too."""
    import onnxruntime as ort

    model = Foreign("fmfm", KINDS["fmfm"]).eval()
    doc = mapping_of("fmfm")
    for a, field in enumerate(doc["fields"]):
        unknown = None if UNKNOWN[a] is None else UNKNOWN[a] % VOCAB[a]
        field["tokens"] = [f"{NAMES[a]}-{r}" for r in range(VOCAB[a]) if r != unknown]
    doc["label"] = "clicked"
    ckpt = tmp_path / "ckpt.pt"
    assert invoke("import", "torch", *write(tmp_path, model, doc), "-o", ckpt).exit_code == 0
    for args in (("-o", tmp_path / "m.onnx"), ("--input", "raw", "-o", tmp_path / "m.raw.onnx")):
        result = invoke("export", ckpt, "--form", "both", *args)
        assert result.exit_code == 0, (result.output, result.exception)
    rows = all_rows()
    ids = np.array([[fm2onnx_id(a, int(r)) for a, r in enumerate(row)] for row in rows], dtype=np.int64)
    with torch.no_grad():
        want = model(rows).double().numpy()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    for name in ("m.onnx", "m.uncached.onnx"):
        sess = ort.InferenceSession(str(tmp_path / name), options, providers=["CPUExecutionProvider"])
        assert np.abs(sess.run(["logit"], {"feature_ids": ids})[0] - want).max() <= 1e-4
    pre = Preprocessor.from_dict(load_checkpoint(ckpt).preprocessor)
    strings = np.array([[f"{NAMES[a]}-{int(r)}" for a, r in enumerate(row)] for row in rows] + [["?", "", "x"]],
                       dtype=object)
    records = [dict(zip(NAMES, s)) for s in strings]
    expected_ids = pre.encode_records(records).astype(np.int64)
    assert (expected_ids[:-1] == ids).all() and (expected_ids[-1] == 0).all()
    ckpt_model = load_checkpoint(ckpt).model()
    with torch.no_grad():
        want_raw = ckpt_model(torch.from_numpy(expected_ids)).double().numpy()
    for name in ("m.raw.onnx", "m.raw.uncached.onnx"):
        sess = ort.InferenceSession(str(tmp_path / name), options, providers=["CPUExecutionProvider"])
        assert np.abs(sess.run(["logit"], {"categorical": strings})[0] - want_raw).max() <= 1e-4


@pytest.mark.parametrize("change, words", [
    (lambda d: d.update(kind="dcn"), '"kind" must be one of'),
    (lambda d: d.update(extra=1), "unknown key(s) ['extra']"),
    (lambda d: d["fields"][1].update(embedding="tables.9"), "fields[1] (item).embedding: no tensor 'tables.9'"),
    (lambda d: d["fields"][1].update(vocab_size=6), "fields[1] (item).embedding: tensor 'tables.1' has shape [7, 2], "
                                                    "expected [6, 'width']"),
    (lambda d: d["fields"][0].update(linear={"tensor": "weights", "rows": [0, 50]}),
     "rows [0, 50] of tensor 'weights'"),
    (lambda d: d["fields"][0].update(linear={"tensor": "weights", "rows": [0, 4]}),
     "fields[0] (user).linear: tensor 'weights[0:4, :]' has shape [4], expected [5]"),
    (lambda d: d["fields"][2].update(unknown_row=4), '"unknown_row" must be a row index below 4'),
    (lambda d: d["fields"][2].pop("linear"), "field 'context': has no \"linear\" while other fields do"),
    (lambda d: d.update(field_matrices="tables.0"), "the fields' dims differ (3, 2, 4): give \"block\" or \"pairs\""),
    (lambda d: d.update(field_matrices={"block": {"tensor": "block", "cols": [0, 8]}}),
     "tensor 'block[:, 0:8]' has shape [9, 8], expected [9, 9]"),
    (lambda d: d.update(field_matrices={"pairs": [{"fields": ["user", "item"], "tensor": "block"}]}),
     "tensor 'block' has shape [9, 9], expected [3, 2] (M between user and item)"),
    (lambda d: d.update(field_matrices={"pairs": []}), "no matrix for the pair (user, item)"),
    (lambda d: d.pop("field_matrices"), "field_matrices: missing: fmfm needs its field matrices"),
    (lambda d: d.update(bias="block"), "bias: tensor 'block' has shape [9, 9], expected [1]"),
    (lambda d: d["fields"][0].update(tokens=["a"]), "fields[0] (user).tokens: expected a list of 4 strings"),
    (lambda d: d["fields"][1].update(name="ad,site"), "fields[1]: field name 'ad,site': a name must be non-empty"),
    (lambda d: d["fields"][1].update(name=""), "fields[1]: field name '': a name must be non-empty"),
    (lambda d: d["fields"][0].update(linear={"tensor": "weights", "rows": [0, 5], "transpose": "false"}),
     "fields[0] (user).linear: \"transpose\" must be true or false, got 'false'"),
    (lambda d: d.update(field_matrices={"block": "block", "extra": 1}),
     "field_matrices: unknown key(s) ['extra'] beside \"block\""),
])
def test_mapping_errors_name_the_entry_and_tensor(tmp_path, change, words):
    doc = mapping_of("fmfm")
    change(doc)
    message = error_of(invoke("import", "torch", *write(tmp_path, Foreign("fmfm", KINDS["fmfm"]), doc),
                              "-o", tmp_path / "x.pt"))
    assert "map.json" in message and words in message, message
    assert not (tmp_path / "x.pt").exists()


def test_one_width_unless_fmfm(tmp_path):
    doc = mapping_of("fm")
    model = Foreign("fm", (3, 2, 3))
    message = error_of(invoke("import", "torch", *write(tmp_path, model, doc), "-o", tmp_path / "x.pt"))
    assert "fields[1] (item).embedding: 2 wide while user's is 3" in message


def test_bad_state_dict_files(tmp_path):
    model_file, _, mapping = write(tmp_path, Foreign("fm"), mapping_of("fm"))
    (tmp_path / "cut.pt").write_bytes(model_file.read_bytes()[:100])
    for path, words in ((tmp_path / "none.pt", "no such state dict file"), (tmp_path / "cut.pt", "cut.pt"),
                        (mapping, "not a torch checkpoint")):
        assert words in error_of(invoke("import", "torch", path, "--mapping", mapping, "-o", tmp_path / "x.pt"))
    (tmp_path / "plain.txt").write_text("")  # a missing folder is made, a file is no folder
    assert "plain.txt is not a directory" in error_of(invoke("import", "torch", model_file, "--mapping", mapping,
                                                             "-o", tmp_path / "plain.txt" / "x.pt"))
    torch.save(Foreign("fm"), tmp_path / "whole.pt")  # a pickled module, not a state dict
    assert "refused: it holds pickled Python objects, which could run code (save model.state_dict() instead)" \
        in error_of(invoke("import", "torch", tmp_path / "whole.pt", "--mapping", mapping, "-o", tmp_path / "x.pt"))
    torch.save({"state_dict": Foreign("fm").state_dict(), "epoch": 3}, tmp_path / "nested.pt")
    nested = mapping_of("fm")  # a nested dict's tensors are named with dots
    nested["bias"] = "state_dict.bias"
    for field in nested["fields"]:
        field["embedding"] = "state_dict." + field["embedding"]
        field["linear"]["tensor"] = "state_dict.weights"
    (tmp_path / "nested.json").write_text(json.dumps(nested))
    assert invoke("import", "torch", tmp_path / "nested.pt", "--mapping", tmp_path / "nested.json",
                  "-o", tmp_path / "x.pt").exit_code == 0


def test_fmfm_matrices_stacked_per_pair(tmp_path):
    """One [P, K, K] tensor (FuxiCTR's and most FmFM code's layout) when all fields share K."""
    model = Foreign("fmfm", (3, 3, 3)).eval()
    state = dict(model.state_dict())
    state["stacked"] = torch.stack([model.block.detach()[3 * a:3 * a + 3, 3 * b:3 * b + 3] for a, b in PAIRS])
    torch.save(state, tmp_path / "model.pt")
    (tmp_path / "map.json").write_text(json.dumps(dict(mapping_of("fmfm"), field_matrices="stacked")))
    assert invoke("import", "torch", tmp_path / "model.pt", "--mapping", tmp_path / "map.json",
                  "-o", tmp_path / "x.pt").exit_code == 0
    rows = all_rows()
    ids = torch.tensor([[fm2onnx_id(a, int(r)) for a, r in enumerate(row)] for row in rows])
    with torch.no_grad():
        assert (load_checkpoint(tmp_path / "x.pt").model()(ids) - model(rows)).abs().max() <= 1e-5


def test_the_import_never_writes_over_its_own_state_dict(tmp_path):
    args = write(tmp_path, Foreign("fm", KINDS["fm"]), mapping_of("fm"))
    source, before = args[0], args[0].read_bytes()
    message = error_of(invoke("import", "torch", *args, "-o", source, "--force"))
    assert message == f"{source}: is also this command's input; write the output to another file"
    assert source.read_bytes() == before


def test_lr_without_linear_weights_is_refused(tmp_path):
    doc = mapping_of("lr")
    for field in doc["fields"]:
        field.pop("linear")
    message = error_of(invoke("import", "torch", *write(tmp_path, Foreign("lr"), doc), "-o", tmp_path / "x.pt"))
    assert message.endswith("map.json: fields[0] (user).linear: missing: lr is its fields' linear weights alone")


@pytest.mark.parametrize("stored, words", [
    (lambda t: torch.empty_like(t, device="meta"), "is a meta tensor, with no values; save the trained weights"),
    (lambda t: t.to_sparse(), "is stored torch.sparse_coo; save it dense (tensor.to_dense())"),
])
def test_tensors_without_plain_values_are_named(tmp_path, stored, words):
    model_file, _, mapping = write(tmp_path, Foreign("fm"), mapping_of("fm"))
    state = torch.load(model_file, weights_only=True)
    state["tables.1"] = stored(state["tables.1"])
    torch.save(state, model_file)
    message = error_of(invoke("import", "torch", model_file, "--mapping", mapping, "-o", tmp_path / "x.pt"))
    assert message == f"{mapping}: fields[1] (item).embedding: tensor 'tables.1' {words}"


def test_a_mapping_saved_with_a_byte_order_mark_imports(tmp_path):
    model_file, _, mapping = write(tmp_path, Foreign("fm"), mapping_of("fm"))
    mapping.write_bytes(b"\xef\xbb\xbf" + mapping.read_bytes())
    assert invoke("import", "torch", model_file, "--mapping", mapping, "-o", tmp_path / "x.pt").exit_code == 0
    mapping.write_bytes(b'{"kind": "fm\xff"}')
    assert error_of(invoke("import", "torch", model_file, "--mapping", mapping, "-o", tmp_path / "y.pt")) == \
        f"{mapping}: not UTF-8 text (byte 0xff at offset 12)"
