"""``fm2onnx export --input raw``: files, the parity report, refusals."""

from __future__ import annotations

import json

import onnx

from .conftest import randomized_model, write_checkpoint
from .raw_checkpoints import checkpoint_with_vocabulary


def test_export_input_raw_writes_a_checked_raw_graph(cli, tmp_path):
    ckpt, data = checkpoint_with_vocabulary("avazu", "lr", tmp_path)
    code, out, err = cli("export", ckpt, "--input", "raw", "--parity-data", data)
    assert code == 0, err
    target = ckpt.with_suffix(".raw.onnx")
    model = onnx.load(str(target))
    assert [i.name for i in model.graph.input] == ["categorical"]
    assert {p.key: p.value for p in model.metadata_props}["input"] == "raw"
    assert "parity raw cached on probe rows: 512 rows, ids identical" in out
    assert f"parity raw cached on {data.name}: 3,000 rows, ids identical, max |Δlogit| vs the id graph 0.00e+00" in out
    assert f"wrote {target}" in out and ".fm2onnx-" not in out  # no word of the scratch directory

    code, _, err = cli("export", ckpt, "--input", "raw")
    assert code == 2 and err.strip() == f"fm2onnx: error: {target}: already exists (pass --force to overwrite)"

    # check feeds a raw graph raw probe rows and compares with torch on Python's ids for them
    code, out, err = cli("check", ckpt, target, "--json")
    assert code == 0, err
    result = json.loads(out)["graphs"][0]
    assert result["form"] == "raw cached" and result["within_tolerance"] and result["max_abs_logit_error"] < 1e-4


def test_export_input_raw_refusals(cli, tmp_path):
    no_vocabulary = write_checkpoint(randomized_model("lr"), tmp_path / "ids-only.pt")
    code, _, err = cli("export", no_vocabulary, "--input", "raw")
    assert code == 2 and "has no preprocessor (vocabularies)" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("export", no_vocabulary, "--input", "strings")
    assert code == 2 and "unknown --input 'strings'" in err
    code, _, err = cli("export", no_vocabulary, "--parity-data", tmp_path / "x.csv")
    assert code == 2 and "go with --input raw" in err
    assert not list(tmp_path.glob("*.onnx"))
