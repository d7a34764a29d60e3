"""The foundation commands end to end on generated data, and their one-line errors."""

import errno
import json
import os

import pytest
import torch


@pytest.fixture(scope="module")
def criteo_file(tmp_path_factory):
    from fm2onnx.data import synthesize

    path = tmp_path_factory.mktemp("cli") / "data.txt"
    synthesize(path, rows=6000, fmt="criteo", seed=3, progress=False)
    return path


def test_synth_train_info_evaluate(cli, criteo_file, tmp_path):
    ckpt = tmp_path / "ckpt.pt"
    code, out, err = cli("train", "--data", criteo_file, "--model", "fmfm", "--dim", "4", "--epochs", "1",
                         "--min-count", "2", "--cache-dir", tmp_path / "cache", "-o", ckpt, "--quiet")
    assert code == 0, err
    assert "test" in out and ckpt.exists() and (tmp_path / "ckpt.pt.log.jsonl").exists()

    code, out, err = cli("info", ckpt, "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["model"]["kind"] == "fmfm" and len(info["model"]["field_names"]) == 39
    assert info["parameters"] == sum(t.numel() for t in torch.load(ckpt, weights_only=True)["state_dict"].values())

    code, out, err = cli("evaluate", ckpt, "--data", criteo_file, "--json", "--quiet")
    assert code == 0, err
    scores = json.loads(out)
    assert scores["rows"] == 6000 and 0.5 < scores["auc"] < 1.0 and scores["logloss"] > 0


def test_train_with_per_field_dims(cli, criteo_file, tmp_path):
    dims = tmp_path / "dims.csv"
    dims.write_text("field,dim\n" + "".join(f"{i},{1 + i % 4}\n" for i in range(1, 40)))
    code, _, err = cli("train", "--data", criteo_file, "--dims", dims, "--epochs", "1", "--min-count", "2",
                       "--cache-dir", tmp_path / "cache", "-o", tmp_path / "v.pt", "--quiet")
    assert code == 0, err
    assert torch.load(tmp_path / "v.pt", weights_only=True)["model"]["dims"][:5] == [2, 3, 4, 1, 2]


def test_train_refuses_to_overwrite(cli, criteo_file, tmp_path):
    out = tmp_path / "ckpt.pt"
    out.write_text("precious")
    code, _, err = cli("train", "--data", criteo_file, "-o", out, "--quiet")
    assert code == 2 and err.strip() == f"fm2onnx: error: {out}: already exists (pass --force to overwrite)"
    assert out.read_text() == "precious"


@pytest.mark.parametrize("target", ["data", "log", "link"])
def test_train_never_writes_over_its_own_data_even_with_force(cli, criteo_file, tmp_path, target):
    data = tmp_path / "data.txt"
    data.write_bytes(criteo_file.read_bytes())
    os.symlink(data, tmp_path / "link.txt")
    output = {"data": ["-o", data], "log": ["-o", tmp_path / "m.pt", "--log", data],
              "link": ["-o", tmp_path / "link.txt"]}[target]
    code, _, err = cli("train", "--data", data, *output, "--force", "--quiet")
    named = output[1] if target != "log" else data
    assert code == 2 and err.strip() == f"fm2onnx: error: {named}: is also this command's input; write the output " \
                                        "to another file"
    assert data.read_bytes() == criteo_file.read_bytes() and not (tmp_path / "m.pt").exists()


def test_train_refuses_a_schema_of_one_field_before_encoding(cli, tmp_path):
    (tmp_path / "d.csv").write_text("y,a\n1,x\n0,z\n")
    (tmp_path / "s.json").write_text('{"label": "y", "categorical": ["a"]}')
    code, _, err = cli("train", "--data", tmp_path / "d.csv", "--format", "csv", "--schema", tmp_path / "s.json",
                       "--cache-dir", tmp_path / "cache", "-o", tmp_path / "m.pt", "--quiet")
    assert code == 2 and err.strip() == f"fm2onnx: error: {tmp_path / 's.json'}: a model needs at least 2 fields, got 1"
    assert not (tmp_path / "cache").exists() and not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize("log, named", [("m.pt", "-o and --log"), ("m.pt.resume.pt", "--log and the resume file")])
def test_train_refuses_two_outputs_in_one_file_before_training(cli, criteo_file, tmp_path, log, named):
    code, _, err = cli("train", "--data", criteo_file, "-o", tmp_path / "m.pt", "--log", tmp_path / log, "--quiet")
    assert code == 2 and err.strip() == f"fm2onnx: error: {tmp_path / log}: named by both {named}; give each its " \
                                        "own file"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, message", [
    (["train", "--data", "/nonexistent/data.txt"], "/nonexistent/data.txt: no such data file"),
    (["train", "--data", "{data}", "--model", "deepfm"], "unknown model kind 'deepfm'"),
    (["train", "--data", "{data}", "--model", "fm", "--dims", "{dims}"], "only FmFM supports"),
    (["train", "--data", "{data}", "--optimizer", "sgd"], "unknown optimizer 'sgd'"),
    (["train", "--data", "{data}", "--epochs", "0"], "--epochs 0: must be >= 1"),
    (["train", "--data", "{data}", "--seed", "-1"], "--seed -1: must be >= 0"),
    (["train", "--data", "{data}", "--jobs", "0"], "--jobs must be a positive integer, got 0"),
    (["demo", "--seed", "-1", "--out", "{tmp}/demo"], "--seed -1: must be >= 0"),
    (["info", "{data}"], "truncated or not a torch checkpoint"),
])
def test_errors_are_one_line(cli, criteo_file, tmp_path, args, message):
    dims = tmp_path / "dims.csv"
    dims.write_text("field,dim\n" + "".join(f"{i},{2 + i % 2}\n" for i in range(1, 40)))
    args = [a.format(data=criteo_file, dims=dims, tmp=tmp_path) for a in args]
    code, _, err = cli(*args, "-o", tmp_path / "x.pt", "--quiet") if args[0] == "train" else cli(*args)
    assert code == 2
    assert err.startswith("fm2onnx: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "demo").exists()  # refused before any step


def test_malformed_row_names_file_and_line(cli, criteo_file, tmp_path):
    bad = tmp_path / "bad.txt"
    lines = criteo_file.read_text().splitlines()[:50]
    lines[41] = "1\tnot-a-number" + lines[41][lines[41].index("\t", 2):]
    bad.write_text("\n".join(lines) + "\n")
    code, _, err = cli("train", "--data", bad, "-o", tmp_path / "x.pt", "--quiet", "--cache-dir", tmp_path / "c")
    assert code == 2 and f"{bad}:42:" in err and err.count("\n") == 1


def test_train_to_a_directory_is_refused_before_any_work(cli, tmp_path):
    folder = tmp_path / "adir"
    folder.mkdir()
    code, out, err = cli("train", "--data", tmp_path / "not-read.txt", "-o", folder, "--force", "--quiet")
    assert (code, out, err) == (2, "", f"fm2onnx: error: {folder}: is a directory, not a file\n")
    assert [p.name for p in tmp_path.iterdir()] == ["adir"] and list(folder.iterdir()) == []


def test_demo_into_a_file_is_refused_before_any_work(cli, tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("keep")
    code, out, err = cli("demo", "--out", plain, "--rows", "1000")
    assert (code, out, err) == (2, "", f"fm2onnx: error: {plain}: is a file, not a directory (--out names a "
                                       "folder to write into)\n")
    assert [p.name for p in tmp_path.iterdir()] == ["plain.txt"] and plain.read_text() == "keep"


@pytest.mark.parametrize("rows", [10, -1])
def test_demo_with_too_few_rows_is_refused_before_any_work(cli, tmp_path, rows):
    from fm2onnx.data.splits import rows_filling_every_split

    out = tmp_path / "dm"
    code, stdout, err = cli("demo", "--out", out, "--rows", rows, "--epochs", "1")
    minimum = rows_filling_every_split(0)
    assert (code, stdout, err) == (2, "", f"fm2onnx: error: --rows {rows}: the demo needs at least {minimum:,} rows "
                                          "with --seed 0 (fewer leave its train, valid or test split empty)\n")
    assert not out.exists()


def test_a_failing_demo_leaves_no_empty_folder_and_keeps_finished_files(cli, tmp_path, monkeypatch):
    import fm2onnx.cli.train_cmds as train_cmds
    from fm2onnx.errors import Fm2OnnxError

    def half_done(out, *args):
        raise Fm2OnnxError("the training split is empty")

    monkeypatch.setattr(train_cmds, "run_demo", half_done)
    out = tmp_path / "dm"
    code, _, err = cli("demo", "--out", out)
    assert (code, err) == (2, "fm2onnx: error: the training split is empty\n") and not out.exists()

    def failing_after_a_finished_step(out, *args):
        (out / "ckpt.pt").write_text("a finished step's file")
        raise Fm2OnnxError("torch.onnx could not export")

    monkeypatch.setattr(train_cmds, "run_demo", failing_after_a_finished_step)
    code, _, _ = cli("demo", "--out", out)
    assert code == 2 and [p.name for p in out.iterdir()] == ["ckpt.pt"]  # what was finished is kept


def test_synth_write_failures_name_the_output_and_leave_nothing(cli, tmp_path, monkeypatch):
    import fm2onnx.data.synth.sinks as sinks
    import fm2onnx.files

    def read_only(*args, dir=None, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.path.join(dir, "probe"))

    def full_disk(self, *args):
        self._file.write(b"half a row")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    out = tmp_path / "new" / "s.txt"
    with monkeypatch.context() as patch:
        patch.setattr(fm2onnx.files.tempfile, "mkstemp", read_only)
        code, out_text, err = cli("synth", "--rows", "10", "-o", out, "--quiet")
    assert (code, out_text, err) == (2, "", f"fm2onnx: error: {out}: cannot write: Read-only file system "
                                            "(checked before any work was done)\n")
    monkeypatch.setattr(sinks.TextSink, "write", full_disk)
    code, _, err = cli("synth", "--rows", "10", "-o", out, "--quiet")
    assert (code, err) == (2, f"fm2onnx: error: {out}: cannot write: No space left on device (nothing "
                              "half-written is left)\n")
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_while_the_commands_load_is_one_line(monkeypatch, capsys):
    import fm2onnx.cli as cli_package

    def interrupted(name):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_package.importlib, "import_module", interrupted)
    with pytest.raises(SystemExit) as exit_:
        cli_package.main()
    assert exit_.value.code == 130 and capsys.readouterr().err == "fm2onnx: interrupted\n"
