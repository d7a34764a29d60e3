"""Encoding in worker processes (--jobs): the same vocabularies, ids, labels, splits and bad-row reports
as the serial encoder, bit for bit, whatever the file's shape (header, bad rows, several spans)."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys

import numpy as np
import pytest

import fm2onnx.data.parallel as parallel
from fm2onnx.data import EncodedDataset, encode_file
from fm2onnx.data.parallel import line_spans
from fm2onnx.data.synth import synthesize
from fm2onnx.errors import DataError

SMALL = {"block_size": 8192, "chunk_rows": 300}  # several chunks per span


@pytest.fixture(autouse=True)
def small_spans(monkeypatch):
    """Cut even a small test file into spans (real runs leave files under 16 MB whole)."""
    monkeypatch.setattr(parallel, "MIN_SPAN_BYTES", 1)


@pytest.fixture(scope="module")
def criteo_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("par") / "criteo.txt"
    synthesize(path, rows=2500, fmt="criteo", seed=3, progress=False)
    return path


def assert_same_encoding(a, b):
    assert a.preprocessor == b.preprocessor
    for name in ("ids", "labels", "split"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), name
    same = ("rows", "split_counts", "positive_rate", "bad_rows", "bad_row_lines", "bad_row_examples")
    assert {k: a.meta.get(k) for k in same} == {k: b.meta.get(k) for k in same}


def test_line_spans_cut_at_line_starts(criteo_file, tmp_path):
    data = criteo_file.read_bytes()
    spans = line_spans(str(criteo_file), 4)
    assert len(spans) == 4 and spans[0][0] == 0 and spans[-1][1] == len(data)
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert end == start and data[start - 1:start] == b"\n"
    packed = tmp_path / "criteo.txt.gz"
    with open(criteo_file, "rb") as src, gzip.open(packed, "wb") as dst:
        shutil.copyfileobj(src, dst)
    assert line_spans(str(packed), 4) == [(0, packed.stat().st_size)]  # compressed bytes cannot be cut


def test_parallel_encoding_equals_serial(criteo_file, tmp_path):
    serial = encode_file(criteo_file, "criteo", tmp_path / "serial", min_count=2, progress=False, **SMALL)
    parts = encode_file(criteo_file, "criteo", tmp_path / "parts", min_count=2, progress=False, jobs=3, **SMALL)
    assert parts.meta["timing"]["jobs"] == 3 and serial.meta["timing"]["jobs"] == 1
    assert_same_encoding(serial, parts)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no part folders left


def test_bad_rows_before_a_span_shift_its_rows(criteo_file, tmp_path):
    """Skipped rows in the first span move every later row's index (and so its split): the later span
    is counted again, and the result is still the serial one."""
    lines = criteo_file.read_text().splitlines(keepends=True)
    for i in (5, 17, 900):
        lines[i] = "x\t" + lines[i]  # a column too many
    lines[1000] = "\n"  # an empty line
    lines[2200] = "x" + lines[2200][1:]  # a bad label, in the second span
    bad = tmp_path / "bad.txt"
    bad.write_text("".join(lines))
    serial = encode_file(bad, "criteo", tmp_path / "serial", progress=False, skip_bad_rows=True, **SMALL)
    parts = encode_file(bad, "criteo", tmp_path / "parts", progress=False, skip_bad_rows=True, jobs=2, **SMALL)
    assert serial.bad_rows == 5 and serial.bad_row_lines == [6, 18, 901, 1001, 2201]
    assert_same_encoding(serial, parts)


def test_the_first_bad_line_in_file_order_is_reported(criteo_file, tmp_path):
    """Whichever worker fails first in time, the error is the serial one: the file's first bad line."""
    lines = criteo_file.read_text().splitlines(keepends=True)
    lines[2000] = "1\tabc" + lines[2000][2:]  # I1 not an integer, line 2001, in the second of 2 spans
    lines[2300] = "1\t2\n"  # too few columns, later still
    lines[800] = "1\t2\n"  # too few columns, line 801, in the first span
    bad = tmp_path / "bad.txt"
    bad.write_text("".join(lines))
    with pytest.raises(DataError) as serial:
        encode_file(bad, "criteo", tmp_path / "a", progress=False, **SMALL)
    with pytest.raises(DataError) as parts:
        encode_file(bad, "criteo", tmp_path / "b", progress=False, jobs=2, **SMALL)
    assert str(parts.value) == str(serial.value) and ":801: expected 40 columns, found 2" in str(serial.value)


def test_encode_command_on_a_header_file(tmp_path, cli):
    """A span past the header is read with the header's column names; the command reports jobs and speed."""
    path = tmp_path / "avazu.csv"
    synthesize(path, rows=3000, fmt="avazu", seed=1, progress=False)
    serial = encode_file(path, "avazu", tmp_path / "serial", progress=False)
    code, out, err = cli("encode", path, "--format", "avazu", "-o", tmp_path / "parts", "--jobs", "2")
    assert code == 0, err
    assert "rows/s with 2 jobs" in out and "count avazu.csv (2 jobs)" in err
    assert_same_encoding(serial, EncodedDataset.open(tmp_path / "parts"))
    code, out, err = cli("encode", path, "-o", tmp_path / "enc2", "--jobs", "0")
    assert code == 2 and err.strip() == "fm2onnx: error: --jobs must be a positive integer, got 0"


def test_workers_import_this_fm2onnx_wherever_the_command_runs(criteo_file, tmp_path):
    """The workers' server process must not import another fm2onnx found in the working directory (a
    source checkout of another version, say) instead of the one the command runs."""
    for module in ("__init__.py", "data/__init__.py", "data/encode.py"):  # importable, but not this fm2onnx
        (tmp_path / "fm2onnx" / module).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "fm2onnx" / module).write_text("")
    script = tmp_path / "bin" / "run.py"  # its folder, not the working directory, heads the command's path
    script.parent.mkdir()
    script.write_text("import sys\nimport fm2onnx.data.parallel as parallel\nfrom fm2onnx.cli import main\n"
                      "if __name__ == '__main__':\n    parallel.MIN_SPAN_BYTES = 1\n    main()\n")
    done = subprocess.run([sys.executable, str(script), "encode", str(criteo_file), "-o", str(tmp_path / "enc"),
                           "--jobs", "2"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0 and "rows/s with 2 jobs" in done.stdout, done.stderr[-2000:]
