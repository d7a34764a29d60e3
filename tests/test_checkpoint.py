"""Checkpoint schema v1: round trip, and one clear error for each kind of bad file."""

import os

import pytest
import torch

from fm2onnx.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from fm2onnx.errors import CheckpointError, Fm2OnnxError
from models import ModelSpec, build_model


def make_checkpoint(tmp_path, kind="fmfm", dims=(2, 3, 4)):
    spec = ModelSpec.create(kind, ["a", "b", "c"], [3, 4, 5], dims=list(dims) if kind == "fmfm" else None, dim=3)
    model = build_model(spec, seed=0)
    path = tmp_path / "ckpt.pt"
    save_checkpoint(Checkpoint.from_model(model, {"format_name": "criteo"}, {"metrics": {"test": {"auc": 0.7}}}),
                    path)
    return path, model


def raw_payload(path):
    return torch.load(path, weights_only=True)


def test_round_trip_gives_the_same_logits(tmp_path):
    path, model = make_checkpoint(tmp_path)
    ckpt = load_checkpoint(path)
    assert ckpt.spec == model.spec
    assert ckpt.training["metrics"]["test"]["auc"] == 0.7
    ids = torch.tensor([[0, 1, 2], [2, 3, 4]])
    torch.testing.assert_close(ckpt.model()(ids), model(ids))


def test_existing_file_is_not_overwritten_without_force(tmp_path):
    path, model = make_checkpoint(tmp_path)
    before = path.read_bytes()
    with pytest.raises(Fm2OnnxError, match="already exists"):
        save_checkpoint(Checkpoint.from_model(model), path)
    assert path.read_bytes() == before
    save_checkpoint(Checkpoint.from_model(model), path, force=True)


class RunsCode:
    def __reduce__(self):
        return (os.mkdir, ("/tmp/fm2onnx-pwned-by-checkpoint",))


def edit(path, **changes):
    payload = raw_payload(path)
    for key, value in changes.items():
        if value is None:
            payload.pop(key)
        else:
            payload[key] = value
    torch.save(payload, path)


@pytest.mark.parametrize("corrupt, message", [
    (lambda p: p.write_text("label\tI1\n1\t2\n"), "truncated or not a torch checkpoint"),
    (lambda p: p.write_bytes(p.read_bytes()[:300]), "truncated or not a torch checkpoint"),
    (lambda p: torch.save({"weights": torch.zeros(2)}, p), "not an fm2onnx checkpoint"),
    (lambda p: edit(p, model={**raw_payload(p)["model"], "kind": "deepfm"}), "unknown model kind 'deepfm'"),
    (lambda p: edit(p, schema_version=99), "schema 99 is newer"),
    (lambda p: edit(p, model={**raw_payload(p)["model"], "vocab_sizes": [3, 4, 6]}),
     r"tensor 'embeddings.tables.2.weight' has shape \[5, 4\] but the fields imply \[6, 4\]"),
    (lambda p: edit(p, state_dict={k: v for k, v in raw_payload(p)["state_dict"].items() if k != "bias"}),
     "missing \\['bias'\\]"),
])
def test_bad_checkpoints_get_one_clear_error(tmp_path, corrupt, message):
    path, _ = make_checkpoint(tmp_path)
    corrupt(path)
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_pickled_objects_are_refused_and_never_run(tmp_path):
    path, _ = make_checkpoint(tmp_path)
    marker = "/tmp/fm2onnx-pwned-by-checkpoint"
    if os.path.exists(marker):
        os.rmdir(marker)
    edit(path, training={"note": RunsCode()})
    with pytest.raises(CheckpointError, match="pickled Python objects"):
        load_checkpoint(path)
    assert not os.path.exists(marker)


def test_missing_file_or_a_directory(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "folder.pt").mkdir()
    with pytest.raises(CheckpointError, match="folder.pt: is a directory, not a checkpoint file"):
        load_checkpoint(tmp_path / "folder.pt")


def test_a_checkpoint_whose_tensors_changed_after_saving_is_refused(tmp_path):
    """torch.load does not check the archive's CRCs: the saved digest of the tensors does."""
    spec = ModelSpec.create("fmfm", ["a", "b", "c"], [5, 6, 7], dim=3)
    path = save_checkpoint(Checkpoint.from_model(build_model(spec, seed=0)), tmp_path / "ckpt.pt")
    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["bias"] += 1.0  # as a flipped byte would: the digest stays the old one
    torch.save(payload, tmp_path / "changed.pt")
    with pytest.raises(CheckpointError, match="changed.pt: corrupted: its tensors do not match the digest"):
        load_checkpoint(tmp_path / "changed.pt")
    del payload["tensors_sha256"]  # a checkpoint written before digests: loads as it is
    torch.save(payload, tmp_path / "no-digest.pt")
    assert load_checkpoint(tmp_path / "no-digest.pt").state_dict["bias"].item() == pytest.approx(1.0)
