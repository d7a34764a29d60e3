"""A user's own train/valid/test files, vocabularies counted on training rows, scoring through a checkpoint's
own format, and what the commands write (nothing beside the data). Generated data only."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from fm2onnx.checkpoint import load_checkpoint
from fm2onnx.data import encode_file, load_or_encode, synthesize
from fm2onnx.data.splits import DEFAULT_SPLIT, assign_split, rows_filling_every_split

ONLY_HELD_OUT = "0ddba11e"  # a C1 value written into the validation and test files only


@pytest.fixture
def user_cache(tmp_path, monkeypatch):
    cache = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache


def criteo_files(tmp_path: Path) -> dict[str, Path]:
    """a.txt / b.txt / c.txt (1200 / 300 / 257 rows) cut from one synthetic file; b and c carry
    ONLY_HELD_OUT in C1 on many rows, far above any min_count."""
    source = tmp_path / "source.txt"
    synthesize(source, rows=1757, fmt="criteo", seed=3, progress=False)
    lines = source.read_text().splitlines()
    source.unlink()
    data = tmp_path / "data"
    data.mkdir()
    files = {}
    for name, part in (("a", lines[:1200]), ("b", lines[1200:1500]), ("c", lines[1500:])):
        if name != "a":
            part = [_with_c1(line, ONLY_HELD_OUT) if i % 3 == 0 else line for i, line in enumerate(part)]
        files[name] = data / f"{name}.txt"
        files[name].write_text("\n".join(part) + "\n")
    return files


def _with_c1(line: str, value: str) -> str:
    cols = line.split("\t")
    cols[14] = value  # label, I1..I13, then C1
    return "\t".join(cols)


def test_three_files_test_auc_on_exactly_the_test_file(tmp_path, user_cache, cli):
    files = criteo_files(tmp_path)
    out = tmp_path
    code, stdout, err = cli("train", "--data", files["a"], "--valid", files["b"], "--test", files["c"], "--dim", "4",
                            "--epochs", "3", "--min-count", "1", "--threads", "1", "-o", out / "ckpt.pt")
    assert code == 0, err
    test_rows = len(files["c"].read_text().splitlines())
    ckpt = load_checkpoint(out / "ckpt.pt")
    metrics = ckpt.training["metrics"]
    assert test_rows == 257 and metrics["test"]["rows"] == test_rows
    assert metrics["valid"]["rows"] == 300 and metrics["train"]["rows"] == 1200
    assert f"│ test  │   {test_rows} │" in stdout
    assert "(at most 3, 1 thread)" in err
    wrote = f"wrote {out / 'ckpt.pt'}  (epoch log: {out / 'ckpt.pt.log.jsonl'})"
    assert len(wrote) > 80 and wrote in stdout.splitlines()  # not folded at 80 columns when piped
    # the vocabulary is a.txt's alone: no value seen only in b.txt or c.txt
    vocab = ckpt.preprocessor["tokens"] if "tokens" in ckpt.preprocessor else None
    from fm2onnx.data import Preprocessor

    pre = Preprocessor.from_dict(ckpt.preprocessor)
    train_c = [set(line.split("\t")[14 + j] for line in files["a"].read_text().splitlines()) for j in range(26)]
    for j in range(26):
        assert set(pre.tokens(f"C{j + 1}")) <= train_c[j] - {""}, f"C{j + 1}"
    assert ONLY_HELD_OUT not in pre.tokens("C1") and vocab is None
    assert sorted(p.name for p in files["a"].parent.iterdir()) == ["a.txt", "b.txt", "c.txt"]


def test_one_file_vocabulary_counts_training_rows_only(tmp_path):
    lines = (tmp_path / "x.txt")
    synthesize(lines, rows=600, fmt="criteo", seed=4, progress=False)
    text = lines.read_text().splitlines()
    held_out = np.flatnonzero(assign_split(np.arange(len(text)), 0, (0.8, 0.1, 0.1)) != 0)
    for i in held_out:
        text[i] = _with_c1(text[i], ONLY_HELD_OUT)
    lines.write_text("\n".join(text) + "\n")
    ds = encode_file(lines, "criteo", tmp_path / "enc", min_count=1, progress=False)
    assert ONLY_HELD_OUT not in ds.preprocessor.tokens("C1")
    assert (np.asarray(ds.ids)[held_out, 13] == 0).all()  # the unknown row
    every = encode_file(lines, "criteo", tmp_path / "all", min_count=1, split=(1, 0, 0), progress=False)
    assert ONLY_HELD_OUT in every.preprocessor.tokens("C1")


def test_split_seed_is_apart_from_the_model_seed(tmp_path, user_cache, cli):
    source = tmp_path / "d.txt"
    synthesize(source, rows=800, fmt="criteo", seed=5, progress=False)
    runs = {}
    for seed, split_seed in ((0, 0), (1, 0), (0, 7)):
        out = tmp_path / f"m{seed}{split_seed}.pt"
        code, _, err = cli("train", "--data", source, "--dim", "4", "--epochs", "1", "--seed", seed,
                           "--split-seed", split_seed, "--quiet", "-o", out)
        assert code == 0, err
        runs[seed, split_seed] = load_checkpoint(out).training["metrics"]["test"]["rows"]
    split = assign_split(np.arange(800), 0, (0.8, 0.1, 0.1))
    assert runs[0, 0] == runs[1, 0] == int((split == 2).sum())
    assert runs[0, 7] == int((assign_split(np.arange(800), 7, (0.8, 0.1, 0.1)) == 2).sum())
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("m")) == ["d.txt", "xdg"]


def test_cached_files_reused_until_one_changes(tmp_path, user_cache):
    files = criteo_files(tmp_path)
    a = load_or_encode(files["a"], "criteo", valid=files["b"], test=files["c"], progress=False)
    assert str(a.path).startswith(str(user_cache / "fm2onnx"))
    assert a.meta["split_counts"] == {"train": 1200, "valid": 300, "test": 257}
    assert load_or_encode(files["a"], "criteo", valid=files["b"], test=files["c"], progress=False).path == a.path
    st = os.stat(files["c"])
    os.utime(files["c"], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    b = load_or_encode(files["a"], "criteo", valid=files["b"], test=files["c"], progress=False)
    assert b.path == a.path and b.meta["files"]["test"]["source"]["mtime_ns"] == st.st_mtime_ns + 10**9
    without_test = load_or_encode(files["a"], "criteo", valid=files["b"], progress=False)
    assert without_test.path != a.path and without_test.meta["split_counts"]["test"] == 0


def csv_files(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    files = {}
    for name, n in (("train", 900), ("valid", 200), ("rows", 173)):
        site, price = rng.integers(0, 12, n), rng.choice(["1", "3", "", "40"], n)
        y = (rng.random(n) < 0.2 + 0.05 * (site % 4)).astype(int)
        body = [f"{a};s{b};{c}" for a, b, c in zip(y, site, price)]
        files[name] = data / f"{name}.csv"
        files[name].write_text("\n".join(["clicked;site;price", *body]) + "\n")
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"label": "clicked", "categorical": ["site"], "numeric": ["price"],
                                  "delimiter": ";"}))
    files["schema"] = schema
    return files


def test_csv_checkpoint_scored_without_schema(tmp_path, user_cache, cli):
    files = csv_files(tmp_path)
    ckpt, model = tmp_path / "ckpt.pt", tmp_path / "model.onnx"
    code, _, err = cli("train", "--data", files["train"], "--valid", files["valid"], "--format", "csv",
                       "--schema", files["schema"], "--model", "fm", "--dim", "4", "--epochs", "2", "--quiet",
                       "-o", ckpt)
    assert code == 0, err
    code, out, err = cli("evaluate", ckpt, "--data", files["rows"], "--json", "--quiet")
    assert code == 0, err
    scored = json.loads(out)
    assert scored["rows"] == 173  # every row of the file, not a split of it
    assert cli("export", ckpt, "-o", model)[0] == 0
    code, out, err = cli("check", ckpt, model, "--data", files["rows"], "--json")
    assert code == 0, err
    assert json.loads(out)["graphs"][0]["torch_auc"] == pytest.approx(scored["auc"], abs=1e-9)  # the same rows
    assert sorted(p.name for p in files["rows"].parent.iterdir()) == ["rows.csv", "train.csv", "valid.csv"]


def one_class_csv(path: Path, rows: int, label: int = 1) -> Path:
    """``rows`` rows of csv_files' layout, every one labelled ``label``."""
    path.write_text("\n".join(["clicked;site;price", *(f"{label};s{i % 12};3" for i in range(rows))]) + "\n")
    return path


def test_validation_rows_of_one_class_are_refused_before_training(tmp_path, user_cache, cli):
    """AUC needs both classes: a --valid file, or the split of one --data file, of one class fails in one
    line naming the file, before any epoch, and leaves no output, log or resumable state."""
    files = csv_files(tmp_path)
    ones = one_class_csv(files["train"].parent / "ones.csv", 100)
    for data, valid in ((files["train"], ones), (one_class_csv(tmp_path / "all_ones.csv", 900), None)):
        extra = ("--valid", valid) if valid else ()
        code, _, err = cli("train", "--data", data, *extra, "--format", "csv", "--schema", files["schema"],
                           "--dim", "4", "--threads", "1", "--quiet", "-o", tmp_path / "vo.pt")
        named = valid or data
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert f"{named}: the validation rows are all one class (label 1)" in err and "early stopping" in err
        assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("vo.pt")]


def test_a_test_file_of_one_class_is_scored_without_an_auc(tmp_path, user_cache, cli):
    files = csv_files(tmp_path)
    ones = one_class_csv(files["train"].parent / "ones.csv", 50, label=0)
    ckpt = tmp_path / "ckpt.pt"
    code, out, err = cli("train", "--data", files["train"], "--valid", files["valid"], "--test", ones,
                         "--format", "csv", "--schema", files["schema"], "--dim", "4", "--epochs", "2",
                         "--threads", "1", "--quiet", "-o", ckpt)
    assert code == 0, err
    assert "n/a (one class)" in out and "nan" not in out
    code, out, err = cli("info", ckpt, "--json")
    assert code == 0, err
    test = json.loads(out, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))["metrics"]["test"]
    assert test["auc"] is None and test["rows"] == 50


def test_split_file_errors_are_one_line(tmp_path, user_cache, cli):
    files = criteo_files(tmp_path)
    code, _, err = cli("train", "--data", files["a"], "--test", files["c"], "-o", tmp_path / "x.pt")
    assert code == 2 and "--test" in err and "--valid" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("train", "--data", files["a"], "--valid", tmp_path / "nope.txt", "-o", tmp_path / "x.pt")
    assert code == 2 and "nope.txt: no such data file" in err


def test_cli_defaults_are_the_trainers():
    from fm2onnx.cli import train_cmds
    from fm2onnx.train import TrainConfig

    config = TrainConfig()
    cli_defaults = (train_cmds.DEFAULT_LR, train_cmds.DEFAULT_EPOCHS, train_cmds.DEFAULT_PATIENCE,
                    train_cmds.DEFAULT_MIN_STEPS)
    assert cli_defaults == (config.learning_rate, config.epochs, config.patience, config.min_steps)
    assert train_cmds.DEFAULT_L2 == config.l2_embeddings == config.l2_field_matrices == config.l2_linear


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_rows_filling_every_split_is_the_fewest_leading_rows_with_each_split(seed):
    n = rows_filling_every_split(seed)
    assert set(assign_split(np.arange(n), seed, DEFAULT_SPLIT)) == {0, 1, 2}
    assert len(set(assign_split(np.arange(n - 1), seed, DEFAULT_SPLIT))) < 3
    assert rows_filling_every_split(seed, (0.5, 0.5, 0.0)) <= n  # a split with no share needs no row
