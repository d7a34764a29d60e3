"""Golden outputs (``fm2onnx check MODEL --golden FILE [--write]``, ``fm2onnx.testing``): a recording
passes on its own file and fails, naming the worst row, once a table of the file changes; cached,
compact int8, uncached and raw-input files; one-line errors for files that are not its golden file."""

from __future__ import annotations

import errno
import json
import os
import re

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from export.golden import DEFAULT_TOLERANCE, check_golden, write_golden
from fm2onnx.errors import Fm2OnnxError
from fm2onnx.testing import assert_matches_golden

from .conftest import VARIABLE_DIMS
from .raw_checkpoints import raw_models  # noqa: F401  (session fixture)

FMFMV = ("fmfm", VARIABLE_DIMS)
WORST = re.compile(r"worst row (\d+) \((alone|served in a batch of (\d+))\): logit recorded (\S+), now (\S+), "
                   r"\|Δ\| (\S+)")


def with_changed_table(model, target):
    """A copy of ``model`` whose largest float initializer is shifted by 0.5: one changed table."""
    proto = onnx.load(str(model))
    tables = [t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.FLOAT]
    table = max(tables, key=lambda t: int(np.prod(t.dims)))
    table.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(table) + np.float32(0.5), table.name))
    onnx.save(proto, str(target))
    return target


def with_metadata(model, target, **props):
    proto = onnx.load(str(model))
    for p in proto.metadata_props:
        if p.key in props:
            p.value = props[p.key]
    onnx.save(proto, str(target))
    return target


def test_golden_passes_on_its_file_and_names_the_worst_row_of_a_changed_one(cli, exported, tmp_path):
    _, cached, _, _ = exported(FMFMV)
    golden = tmp_path / "golden.npz"
    code, out, err = cli("check", cached, "--golden", golden, "--write", "--rows", "300")
    assert code == 0 and out.startswith(f"wrote {golden}: 300 random rows"), err
    code, out, err = cli("check", cached, "--golden", golden)
    assert code == 0 and " matches: 300 rows" in out and len(out.strip().splitlines()) == 1, err

    code, out, _ = cli("check", with_changed_table(cached, tmp_path / "changed.onnx"), "--golden", golden)
    assert code == 1 and "changed.onnx moved" in out
    row, how, size, recorded, now, delta = WORST.search(out).groups()
    stored = np.load(golden)
    way = "alone" if how == "alone" else "served"
    assert float(recorded) == pytest.approx(float(stored[f"{way}.logit"][int(row)]), abs=1e-6)
    assert size is None or int(size) == stored["served_batch_size"][int(row)]
    assert float(delta) == pytest.approx(abs(float(now) - float(recorded)), rel=1e-2, abs=1e-5)
    assert float(delta) > DEFAULT_TOLERANCE * (1 + abs(float(recorded)))


def test_compact_int8_file_is_pinned_alone_and_in_batches(exported, tmp_path):
    from export import CachedFormOptions, load_model, make_cached, save_model

    _, _, uncached, _ = exported(FMFMV)
    int8 = save_model(make_cached(load_model(uncached), CachedFormOptions(table_dtype="int8")).model,
                      tmp_path / "int8.onnx")[0]
    meta = write_golden(int8, tmp_path / "int8.npz")
    assert meta["model"]["table_dtype"] == "int8" and meta["model"]["form"] == "cached"
    # alone (int8 tables) and in a batch (the float32 GEMM form) the same row scores differently, by
    # more than the golden tolerance: hence each way is recorded and compared with itself
    assert meta["branch_gap"] > DEFAULT_TOLERANCE * 10
    stored = np.load(tmp_path / "int8.npz")
    assert set(stored["served_batch_size"][:6]) == {1} and stored["served_batch_size"][-1] > 8
    result = assert_matches_golden(int8, tmp_path / "int8.npz")
    assert result.ok and result.max_abs_logit_delta <= DEFAULT_TOLERANCE


def test_uncached_file_and_the_helpers_assertion(exported, tmp_path):
    _, _, uncached, _ = exported(FMFMV)
    golden = tmp_path / "uncached.npz"
    write_golden(uncached, golden, rows=200, seed=3)
    assert assert_matches_golden(uncached, golden).rows == 200
    with pytest.raises(AssertionError, match=r"moved: \d+ of 400 scorings past .*worst row \d+"):
        assert_matches_golden(with_changed_table(uncached, tmp_path / "changed.onnx"), golden)
    assert check_golden(with_changed_table(uncached, tmp_path / "changed.onnx"), golden, tolerance=1e3).ok


def test_raw_graph_with_probe_rows_and_data_rows(cli, raw_models, tmp_path):
    models = raw_models("avazu")
    raw, golden = models.raw["cached"], tmp_path / "raw.npz"
    code, out, err = cli("check", raw, "--golden", golden, "--write", "--rows", "200",
                         "--data", models.data, "--checkpoint", models.checkpoint)
    assert code == 0 and f"+ 200 rows of {models.data.name}" in out, err
    stored = np.load(golden)
    assert stored["feed.categorical"].dtype.kind == "U" and stored["feed.categorical"].shape[0] == 400
    ids = stored["served.feature_ids"]
    assert 0.05 < (ids != 0).mean() < 0.95  # known tokens and unknown values both occur
    assert json.loads(str(stored["meta"]))["rows"] == {"random": 200, "seed": 0, "data": 200,
                                                       "data_file": models.data.name}
    code, out, err = cli("check", raw, "--golden", golden)
    assert code == 0 and " matches: 400 rows" in out, err


def test_files_that_are_not_the_models_golden_file(cli, exported, tmp_path):
    _, cached, _, _ = exported(FMFMV)
    golden = tmp_path / "golden.npz"
    write_golden(cached, golden, rows=20)
    (tmp_path / "text.npz").write_text("logit\n0.5\n")
    renamed = with_metadata(cached, tmp_path / "renamed.onnx", field_names=json.dumps(list("abcdef")))
    errors = {
        tmp_path / "missing.npz": "no such golden file",
        tmp_path / "text.npz": "not an npz file",
    }
    for path, message in errors.items():
        with pytest.raises(Fm2OnnxError, match=f"^{re.escape(str(path))}: {message}"):
            check_golden(cached, path)
    field = r"golden.npz: recorded for 6 fields, .* field 0 is 'site' in the recording, 'a' in the model"
    with pytest.raises(Fm2OnnxError, match=field):
        check_golden(renamed, golden)
    code, _, err = cli("check", cached, "--golden", golden, "--write")
    assert code == 2 and "golden.npz: already exists (pass --force" in err
    assert cli("check", cached, "--golden", golden, "--write", "--force", "--rows", "10")[0] == 0
    code, _, err = cli("check", cached, "--golden", golden, "--write", "--data", tmp_path / "x.csv")
    assert code == 2 and "--checkpoint" in err and len(err.strip().splitlines()) == 1
    for args, message in [((cached,), "check takes CHECKPOINT MODELS"), ((cached, "--write"), "go with --golden"),
                          ((cached, cached, "--golden", golden), "--golden takes one model"),
                          ((cached, "--golden", golden, "--rows", "5"), "go with --golden FILE --write")]:
        code, _, err = cli("check", *args)
        assert code == 2 and message in err, (args, err)


def test_a_golden_path_is_checked_first_and_a_missing_folder_is_made(cli, exported, tmp_path):
    _, cached, _, _ = exported(FMFMV)
    folder = tmp_path / "adir"
    folder.mkdir()
    code, out, err = cli("check", cached, "--golden", folder, "--write", "--force", "--rows", "10")
    assert (code, out, err) == (2, "", f"fm2onnx: error: {folder}: is a directory, not a file\n")
    assert [p.name for p in tmp_path.iterdir()] == ["adir"] and list(folder.iterdir()) == []
    golden = tmp_path / "new" / "golden.npz"
    code, _, err = cli("check", cached, "--golden", golden, "--write", "--rows", "10")
    assert code == 0, err
    assert [p.name for p in golden.parent.iterdir()] == ["golden.npz"]


def test_a_golden_file_on_a_full_disk_is_named_and_leaves_nothing(cli, exported, tmp_path, monkeypatch):
    def full_disk(f, **arrays):
        f.write(b"PK half a file")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(np, "savez_compressed", full_disk)
    _, cached, _, _ = exported(FMFMV)
    golden = tmp_path / "new" / "golden.npz"
    code, _, err = cli("check", cached, "--golden", golden, "--write", "--rows", "10")
    assert (code, err) == (2, f"fm2onnx: error: {golden}: cannot write: No space left on device (nothing "
                              "half-written is left)\n")
    assert list(tmp_path.iterdir()) == []  # no temporary file, nor the folder made for it


def test_a_feed_resaved_with_another_dtype_or_rank_is_one_line(cli, exported, tmp_path):
    _, cached, _, _ = exported(FMFMV)
    golden = tmp_path / "golden.npz"
    write_golden(cached, golden, rows=20)
    arrays = dict(np.load(golden))
    ids = arrays["feed.feature_ids"]
    for name, feed, message in [("float.npz", ids.astype(np.float32), "feed.feature_ids is float32, the model's "
                                                                       "input feature_ids takes int64"),
                                ("rank.npz", ids[:, :, None], "feed.feature_ids is [batch, 6, 1], the model's "
                                                              "input feature_ids takes [batch, 6]")]:
        np.savez(tmp_path / name, **arrays | {"feed.feature_ids": feed})
        code, _, err = cli("check", cached, "--golden", tmp_path / name)
        assert (code, err) == (2, f"fm2onnx: error: {tmp_path / name}: {message}\n")
