"""``fm2onnx package``: ORT-format files that load and match their .onnx, the combined operator
config, the summary, sidecar models, and that nothing is written on a bad conversion or over a file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from export import CachedFormOptions, load_model, make_cached, save_model
from export.contract import INPUT_NAME, spec_of
from export.ort import session
from export.package import CONFIG_NAME, SUMMARY_NAME, package_models, read_config
from export.parity import outputs_in_serving_batches, parity_ids
from export.raw_input import RawContract
from export.raw_rows import graph_feeds, probe_rows
from fm2onnx.errors import Fm2OnnxError

from .raw_checkpoints import raw_models  # noqa: F401  (session fixture)

FMFM, FFM = ("fmfm", None), ("ffm", None)


@pytest.fixture(scope="module")
def sources(exported, raw_models, tmp_path_factory):  # noqa: F811
    """name -> .onnx: the default FmFM file, its float16-table variant, an FFM file, a raw graph and the
    FmFM file with its weights in a sidecar, under distinct names (a package holds one <name>.ort each)."""
    root = tmp_path_factory.mktemp("package-sources")
    _, fmfm, fmfm_uncached, _ = exported(FMFM)
    float16 = make_cached(load_model(fmfm_uncached), CachedFormOptions(table_dtype="float16")).model
    paths = {"fmfm": shutil.copy(fmfm, root / "fmfm.onnx"), "ffm": shutil.copy(exported(FFM)[1], root / "ffm.onnx"),
             "fmfm16": save_model(float16, root / "fmfm16.onnx")[0],
             "raw": shutil.copy(raw_models("avazu").raw["cached"], root / "avazu.raw.onnx")}
    (root / "side").mkdir()
    paths["side"] = save_model(load_model(fmfm), root / "side" / "big.onnx", external_data_threshold=0)[0]
    assert (root / "side" / "big.onnx.data").is_file()
    return {name: Path(path) for name, path in paths.items()}


@pytest.fixture(scope="module")
def package(sources, tmp_path_factory):
    out = tmp_path_factory.mktemp("package") / "edge"
    lines = []
    result = package_models(list(sources.values()), out, echo=lines.append)
    return out, result, lines


def test_every_ort_file_loads_and_matches_its_onnx(sources, package, raw_models):  # noqa: F811
    out, result, _ = package
    for name, source in sources.items():
        ort_file = out / source.name.replace(".onnx", ".ort")
        assert ort_file.is_file() and ort_file in result.written
        if name == "raw":  # the checkpoint's own probe rows, which the package's gate never saw
            pre = raw_models("avazu").preprocessor
            feeds = graph_feeds(RawContract.of(pre), probe_rows(pre, 256, seed=7))
        else:
            feeds = {INPUT_NAME: parity_ids(spec_of(load_model(source)), 256, seed=7)}
        want = outputs_in_serving_batches(session(source), feeds)
        got = outputs_in_serving_batches(session(ort_file), feeds)
        for key in want:
            np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-5)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [s.name.replace(".onnx", ".ort") for s in sources.values()] + [CONFIG_NAME, SUMMARY_NAME])
    assert "  parity fmfm16.ort vs fmfm16.onnx: max |Δlogit| 0.00e+00" in "\n".join(package[2])


def test_config_and_summary_list_the_operators(sources, package):
    out, result, lines = package
    config = read_config(out / CONFIG_NAME)
    assert {"Gather", "Sigmoid"} <= set(sum(config["ai.onnx"].values(), []))
    assert config["ai.onnx.ml"] == {4: ["LabelEncoder"]}  # the raw graph's, for the whole package
    assert "If" in sum(config["ai.onnx"].values(), [])  # the FmFM file's batch-size branch
    summary = json.loads((out / SUMMARY_NAME).read_text())
    assert summary == result.summary and len(summary["models"]) == len(sources)
    for entry in summary["models"]:
        assert entry["ort_bytes"] == (out / entry["ort"]).stat().st_size > 0
        for domain, opsets in entry["operators"].items():
            for opset, ops in opsets.items():
                assert set(ops) <= set(config[domain][int(opset)]), entry["ort"]
        assert entry["parity"]["max_abs"]["logit"] <= 1e-4
    raw = next(e for e in summary["models"] if e["input"] == "raw")
    assert "ai.onnx.ml" in raw["operators"] and {"LabelEncoder", "RegexFullMatch"} <= set(raw["string_ops"])
    assert not any("ai.onnx.ml" in e["operators"] for e in summary["models"] if e["input"] == "ids")
    assert any(line.startswith("  raw input: ai.onnx.ml LabelEncoder") for line in lines)
    assert not any(".fm2onnx-" in line for line in lines)  # no word of the scratch directory
    assert "# - fmfm.ort" in (out / CONFIG_NAME).read_text()


def test_a_sidecar_model_becomes_one_self_contained_ort_file(sources, package):
    out, result, lines = package
    assert not list(out.glob("*.data"))  # the gate loaded big.ort where no sidecar is
    entry = next(e for e in result.summary["models"] if e["ort"] == "big.ort")
    assert entry["sidecar_bytes"] == (sources["side"].parent / "big.onnx.data").stat().st_size > 0
    assert any(line.startswith("big.onnx (") and "+ sidecar" in line for line in lines)
    assert "  parity big.ort vs big.onnx: max |Δlogit| 0.00e+00" in "\n".join(lines)


def test_cli_refuses_to_overwrite_and_replaces_with_force(sources, package, tmp_path, cli):
    out = shutil.copytree(package[0], tmp_path / "edge")
    code, _, err = cli("package", sources["ffm"], "-o", out)
    assert code == 2 and err.strip() == f"fm2onnx: error: {out / 'ffm.ort'}: already exists (pass --force to overwrite)"
    before = (out / SUMMARY_NAME).read_text()
    code, text, err = cli("package", sources["ffm"], "-o", out, "--force")
    assert code == 0, err
    assert f"wrote {out / 'ffm.ort'}" in text and (out / SUMMARY_NAME).read_text() != before
    assert [m["ort"] for m in json.loads((out / SUMMARY_NAME).read_text())["models"]] == ["ffm.ort"]


def _corrupt_truncate(out_dir):
    ort_file = out_dir / "ffm.ort"
    ort_file.write_bytes(ort_file.read_bytes()[: ort_file.stat().st_size // 2])


def _corrupt_swap(out_dir):  # a well-formed file of another model: only the parity gate can tell
    shutil.copy(out_dir / "fmfm.ort", out_dir / "ffm.ort")


@pytest.mark.parametrize("corrupt, message", [(_corrupt_truncate, "onnxruntime cannot run it"),
                                              (_corrupt_swap, "disagrees with ffm.onnx")])
def test_a_corrupted_conversion_is_not_written(sources, tmp_path, monkeypatch, corrupt, message):
    """ffm.ort made unloadable, or replaced by a well-formed file of another model: nothing is written."""
    import export.package as package_module

    real = package_module.convert

    def convert_then_corrupt(models_dir, out_dir):
        real(models_dir, out_dir)
        corrupt(out_dir)

    monkeypatch.setattr(package_module, "convert", convert_then_corrupt)
    with pytest.raises(Fm2OnnxError, match=message) as failure:
        package_models([sources["fmfm"], sources["ffm"]], tmp_path / "edge")
    assert str(failure.value).startswith("ffm.ort: not written") and "\n" not in str(failure.value)
    assert list((tmp_path / "edge").iterdir()) == []  # nothing in place, no scratch directory left


def test_refusals_name_the_file(sources, package, tmp_path):
    out, _, _ = package
    with pytest.raises(Fm2OnnxError, match=r"fmfm\.ort: already exists \(pass --force"):
        package_models([sources["fmfm"]], out)
    other = tmp_path / "other"
    other.mkdir()
    twin = shutil.copy(sources["ffm"], other / "fmfm.onnx")
    with pytest.raises(Fm2OnnxError, match="same file name as .*both would become fmfm.ort"):
        package_models([sources["fmfm"], twin], tmp_path / "edge")
    with pytest.raises(Fm2OnnxError, match="given twice"):
        package_models([sources["ffm"], sources["ffm"]], tmp_path / "edge")
    with pytest.raises(Fm2OnnxError, match="expected a .onnx file"):
        package_models([tmp_path / "model.ort"], tmp_path / "edge")
    with pytest.raises(Fm2OnnxError, match="no such ONNX file"):
        package_models([tmp_path / "missing.onnx"], tmp_path / "edge")


def test_models_the_ort_format_cannot_hold_or_the_converter_rejects(sources, tmp_path, monkeypatch):
    import onnx

    import export.package as package_module

    monkeypatch.setattr(package_module, "ORT_FORMAT_LIMIT", 1000)  # stands in for 2 GiB of weights
    with pytest.raises(Fm2OnnxError, match=r"ffm\.onnx: [\d,]+ bytes of weights; .* stops at 2 GiB"):
        package_models([sources["ffm"]], tmp_path / "edge")
    monkeypatch.undo()
    broken = onnx.load(str(sources["ffm"]))
    broken.graph.node[-1].op_type = "NoSuchOp"
    onnx.save(broken, str(tmp_path / "broken.onnx"))
    with pytest.raises(Fm2OnnxError, match="broken.onnx: onnxruntime's converter failed: .*NoSuchOp") as failure:
        package_models([tmp_path / "broken.onnx"], tmp_path / "edge")
    assert ".fm2onnx-" not in str(failure.value) and list((tmp_path / "edge").iterdir()) == []
