"""Streaming encoder: agreement with a pure-Python reference, malformed rows with exact line numbers,
splits, given preprocessors, output-directory safety and the encode cache."""

from __future__ import annotations

import csv
import json
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from fm2onnx.data import EncodedDataset, encode_file, get_format, hour_tokens, load_or_encode, numeric_token
from fm2onnx.data.splits import assign_split
from fm2onnx.data.synth import synthesize
from fm2onnx.errors import DataError, Fm2OnnxError

SMALL = {"block_size": 8192, "chunk_rows": 300}  # several chunks, to cross chunk boundaries
TINY = {"block_size": 2048, "chunk_rows": 20}  # for the line-number tests on small files


# ----------------------------------------------------------------------------- helpers


ALL_TRAIN = (1.0, 0.0, 0.0)  # every row counted into the vocabulary (only training rows are)


def reference_encode(path, fmt, min_count, split=(0.8, 0.1, 0.1), seed=0):
    """Pure-Python encoding by the documented rules: (ids [rows, fields], labels); the vocabularies
    count the rows of the training split only."""
    with open(path, newline="") as f:
        lines = f.read().splitlines()
    rows = list(csv.reader(lines, delimiter=fmt.delimiter)) if fmt.quoting else [ln.split(fmt.delimiter) for ln in lines]
    if fmt.header:
        names, rows = rows[0], rows[1:]
    else:
        names = list(fmt.column_names) if fmt.column_names else [str(i) for i in range(len(rows[0]))]
    col = {n: i for i, n in enumerate(names)}

    memo = {}

    def token(spec, row):
        v = row[col[spec.source]]
        if v == "":
            return None
        if spec.kind == "numeric":
            key = (v, spec.integer)
            if key not in memo:
                memo[key] = numeric_token(v, integer=spec.integer)
            return memo[key]
        if spec.kind == "categorical":
            return v
        dow, hour = hour_tokens(v)
        return dow if spec.kind == "day_of_week" else hour

    toks = [[token(spec, r) for spec in fmt.fields] for r in rows]
    counted = [t for t, s in zip(toks, assign_split(np.arange(len(toks)), seed, split)) if s == 0]
    vocabs = []
    for j in range(len(fmt.fields)):
        cnt = Counter(t[j] for t in counted if t[j] is not None)
        kept = sorted((t for t, c in cnt.items() if c >= min_count), key=lambda t: (-cnt[t], t.encode()))
        vocabs.append({t: i + 1 for i, t in enumerate(kept)})
    ids = np.array([[vocabs[j].get(t[j], 0) if t[j] is not None else 0 for j in range(len(t))] for t in toks])
    labels = np.array([float(r[col[fmt.label]]) for r in rows], np.float32)
    return ids.reshape(len(rows), len(fmt.fields)), labels, vocabs


def criteo_line(label="0", ints=None, cats=None):
    ints = ints if ints is not None else [str(i % 5) for i in range(13)]
    cats = cats if cats is not None else [f"{i:08x}" for i in range(26)]
    return "\t".join([label, *ints, *cats])


def write_lines(path, lines, end="\n"):
    Path(path).write_text(end.join(lines) + end)
    return path


def one_line_error(excinfo, path, line, rest):
    msg = str(excinfo.value)
    assert "\n" not in msg
    assert msg == f"{path}:{line}: {rest}", msg


def synthesized(tmp_path_factory, fmt: str, name: str, seed: int):
    path = tmp_path_factory.mktemp(fmt) / name
    synthesize(path, rows=3000, fmt=fmt, seed=seed, progress=False)
    return path


@pytest.fixture(scope="module")
def criteo_small(tmp_path_factory):
    return synthesized(tmp_path_factory, "criteo", "train.txt", seed=3)


@pytest.fixture(scope="module")
def avazu_small(tmp_path_factory):
    return synthesized(tmp_path_factory, "avazu", "train.csv", seed=4)


# ----------------------------------------------------------------------------- agreement with the reference


@pytest.mark.parametrize("sizes", [{}, SMALL], ids=["one-chunk", "many-chunks"])
def test_criteo_matches_reference(criteo_small, tmp_path, sizes):
    fmt = get_format("criteo")
    ds = encode_file(criteo_small, fmt, tmp_path / "enc", min_count=2, progress=False, **sizes)
    ids, labels, vocabs = reference_encode(criteo_small, fmt, 2)
    assert ds.ids.dtype == np.int32 and ds.ids.shape == (3000, 39)
    assert ds.labels.dtype == np.float32 and ds.split.dtype == np.uint8
    assert ds.vocab_sizes == [len(v) + 1 for v in vocabs]
    np.testing.assert_array_equal(ds.ids, ids)
    np.testing.assert_array_equal(ds.labels, labels)
    assert ds.preprocessor.tokens("C1") == list(vocabs[13])
    ds.check()
    assert ds.meta["rows"] == 3000 and ds.meta["min_count"] == 2 and ds.meta["format"] == {"name": "criteo"}
    assert ds.meta["source"]["size"] == os.path.getsize(criteo_small)


def test_avazu_matches_reference(avazu_small, tmp_path):
    fmt = get_format("avazu")
    ds = encode_file(avazu_small, fmt, tmp_path / "enc", min_count=3, progress=False, **SMALL)
    ids, labels, vocabs = reference_encode(avazu_small, fmt, 3)
    np.testing.assert_array_equal(ds.ids, ids)
    np.testing.assert_array_equal(ds.labels, labels)
    assert ds.field_names[:2] == ["day_of_week", "hour_of_day"]
    assert set(ds.preprocessor.tokens("day_of_week")) <= {str(i) for i in range(7)}
    assert len(ds.preprocessor.tokens("day_of_week")) == 7  # synthetic hours span 10 days
    assert len(ds.preprocessor.tokens("hour_of_day")) == 24


def test_avazu_hour_fields_by_hand(tmp_path):
    header = "id,click,hour," + ",".join(get_format("avazu").field_names[2:])
    rest = ",".join(["a"] * 21)
    lines = [header,
             f"1,0,14102100,{rest}",  # Tue 00
             f"2,1,14102623,{rest}",  # Sun 23
             f"3,0,14102623,{rest}",  # Sun 23
             f"4,0,14102712,{rest}"]  # Mon 12
    p = write_lines(tmp_path / "a.csv", lines)
    ds = encode_file(p, get_format("avazu"), tmp_path / "enc", min_count=1, split=ALL_TRAIN, progress=False)
    pre = ds.preprocessor
    assert pre.tokens("day_of_week") == ["6", "0", "1"]  # Sunday twice, then ties by token
    assert pre.tokens("hour_of_day") == ["23", "0", "12"]
    dow = [pre.tokens("day_of_week")[i - 1] for i in ds.ids[:, 0]]
    hour = [pre.tokens("hour_of_day")[i - 1] for i in ds.ids[:, 1]]
    assert dow == ["1", "6", "6", "0"] and hour == ["0", "23", "23", "12"]
    assert ds.labels.tolist() == [0, 1, 0, 0]


def test_generic_csv_and_headerless_tsv(tmp_path):
    rng = np.random.default_rng(0)
    rows = [(int(rng.random() < 0.3), f"s{rng.integers(0, 9)}", rng.choice(["0.5", "3", "", "-1", "1e3", "2.0"]),
             f"ad{rng.integers(0, 4)}") for _ in range(400)]
    csv_path = write_lines(tmp_path / "d.csv", ["clicked,site,price,ad"] + [",".join(map(str, r)) for r in rows])
    fmt = get_format("csv", {"label": "clicked", "categorical": ["site", "ad"], "numeric": ["price"]})
    ds = encode_file(csv_path, fmt, tmp_path / "e1", progress=False, **SMALL)
    ids, labels, _ = reference_encode(csv_path, fmt, 1)
    np.testing.assert_array_equal(ds.ids, ids)
    assert ds.field_names == ["price", "site", "ad"] and ds.meta["min_count"] == 1
    assert set(ds.preprocessor.tokens("price")) == {"0.5", "L1", "-1", "L47", "2"}

    tsv_path = write_lines(tmp_path / "d.tsv", ["\t".join(map(str, r)) for r in rows])
    fmt2 = get_format("tsv", {"label": "0", "categorical": ["1", "3"], "numeric": ["2"], "header": False})
    ds2 = encode_file(tsv_path, fmt2, tmp_path / "e2", progress=False)
    np.testing.assert_array_equal(ds2.ids, ds.ids)
    np.testing.assert_array_equal(ds2.labels, labels)


def test_quoted_csv_values(tmp_path):
    p = write_lines(tmp_path / "q.csv", ['y,a,b', '1,"x,1",2', '0,"",3', '1,"x,1",'])
    ds = encode_file(p, get_format("csv", {"label": "y", "categorical": ["a", "b"]}), tmp_path / "e", progress=False)
    assert ds.preprocessor.tokens("a") == ["x,1"]
    assert ds.ids[:, 0].tolist() == [1, 0, 1]  # a quoted empty string is missing too
    assert ds.ids[:, 1].tolist() == [1, 2, 0]


def test_crlf_file_encodes_like_lf(tmp_path):
    lines = [criteo_line(str(i % 2), [str(i % 7)] * 13, [f"{i % 3:08x}"] * 26) for i in range(30)]
    a = encode_file(write_lines(tmp_path / "lf.txt", lines), "criteo", tmp_path / "a", min_count=1, progress=False)
    b = encode_file(write_lines(tmp_path / "crlf.txt", lines, "\r\n"), "criteo", tmp_path / "b", min_count=1,
                    progress=False)
    np.testing.assert_array_equal(a.ids, b.ids)
    assert a.preprocessor == b.preprocessor


# ----------------------------------------------------------------------------- thresholds and given preprocessors


def test_min_count_thresholds(tmp_path):
    cats = lambda v: [v] + [f"{i:08x}" for i in range(25)]  # noqa: E731
    lines = [criteo_line("0", None, cats("aaaaaaaa")) for _ in range(8)]
    lines += [criteo_line("1", None, cats("bbbbbbbb")) for _ in range(7)]
    p = write_lines(tmp_path / "t.txt", lines)
    ds = encode_file(p, "criteo", tmp_path / "default", split=ALL_TRAIN, progress=False)  # criteo default: 8
    assert ds.meta["min_count"] == 8 and ds.preprocessor.tokens("C1") == ["aaaaaaaa"]
    assert ds.ids[:, 13].tolist() == [1] * 8 + [0] * 7
    ds7 = encode_file(p, "criteo", tmp_path / "seven", min_count=7, split=ALL_TRAIN, progress=False)
    assert ds7.preprocessor.tokens("C1") == ["aaaaaaaa", "bbbbbbbb"]
    assert ds7.ids[:, 13].tolist() == [1] * 8 + [2] * 7
    assert get_format("avazu").default_min_count == 5
    with pytest.raises(Fm2OnnxError, match="min_count"):
        encode_file(p, "criteo", tmp_path / "zero", min_count=0, progress=False)


def test_given_preprocessor_single_pass(criteo_small, tmp_path):
    fmt = get_format("criteo")
    base = encode_file(criteo_small, fmt, tmp_path / "base", min_count=2, progress=False)
    # the single-pass path must reproduce the two-pass result exactly
    again = encode_file(criteo_small, fmt, tmp_path / "again", preprocessor=base.preprocessor, progress=False, **SMALL)
    np.testing.assert_array_equal(again.ids, base.ids)
    np.testing.assert_array_equal(again.split, base.split)
    assert again.meta["preprocessor_given"] and again.meta["min_count"] == 2
    # another file: same vocabularies, unseen values -> 0
    other = tmp_path / "other.txt"
    synthesize(other, rows=500, fmt="criteo", seed=99, progress=False)
    enc = encode_file(other, fmt, tmp_path / "other", preprocessor=base.preprocessor, progress=False)
    assert enc.vocab_sizes == base.vocab_sizes
    ref_ids, _, ref_vocabs = reference_encode(other, fmt, 1, split=(1, 0, 0))
    pre = base.preprocessor
    for j in (0, 13, 20):
        # map this file's own tokens back to the base vocabulary by hand
        toks = pre.tokens(j)
        inv = {i: t for t, i in ref_vocabs[j].items()}
        expect = [toks.index(inv[i]) + 1 if i and inv[i] in toks else 0 for i in ref_ids[:, j]]
        assert enc.ids[:, j].tolist() == expect, j
    assert (enc.ids == 0).mean() > (base.ids == 0).mean()  # many unseen hashes
    with pytest.raises(Fm2OnnxError, match="conflicts"):
        encode_file(other, fmt, tmp_path / "x", preprocessor=pre, min_count=5, progress=False)
    with pytest.raises(Fm2OnnxError, match="do not match"):
        encode_file(other, get_format("avazu"), tmp_path / "y", preprocessor=pre, progress=False)


# ----------------------------------------------------------------------------- malformed rows


def _criteo_with(tmp_path, bad: dict[int, str], n=12, name="bad.txt"):
    lines = [criteo_line(str(i % 2)) for i in range(n)]
    for line_no, text in bad.items():
        lines[line_no - 1] = text
    return write_lines(tmp_path / name, lines)


@pytest.mark.parametrize(
    "line, text, rest",
    [
        (4, criteo_line(ints=["1"] * 12), "expected 40 columns, found 39"),
        (7, criteo_line() + "\textra", "expected 40 columns, found 41"),
        (5, criteo_line(ints=["1", "2", "3", "4", "abc"] + ["0"] * 8), "column I5: expected an integer, found 'abc'"),
        (9, criteo_line(ints=["1.5"] + ["0"] * 12), "column I1: expected an integer, found '1.5'"),
        (3, criteo_line(label="2"), "column label: label must be 0 or 1, found '2'"),
        (12, criteo_line(label=""), "column label: label must be 0 or 1, found ''"),
        (6, "", "empty line"),
        (1, "0,1,2", "expected 40 columns, found 1"),
    ],
)
@pytest.mark.parametrize("sizes", [{}, TINY], ids=["one-chunk", "many-chunks"])
def test_malformed_row_messages(tmp_path, line, text, rest, sizes):
    p = _criteo_with(tmp_path, {line: text}, n=200 if sizes else 12)
    with pytest.raises(DataError) as e:
        encode_file(p, "criteo", tmp_path / "out", progress=False, **sizes)
    one_line_error(e, p, line, rest)
    assert not (tmp_path / "out").exists()  # nothing left behind
    assert not [q for q in tmp_path.iterdir() if q.name.startswith(".out")]


def test_first_malformed_line_wins_across_kinds_and_chunks(tmp_path):
    bad = {150: criteo_line(label="x"), 97: criteo_line(ints=["1"] * 12), 120: criteo_line(ints=["z"] * 13)}
    p = _criteo_with(tmp_path, bad, n=300)
    for sizes in ({}, TINY, {"block_size": 2048, "chunk_rows": 1}):
        with pytest.raises(DataError) as e:
            encode_file(p, "criteo", tmp_path / "out", progress=False, **sizes)
        one_line_error(e, p, 97, "expected 40 columns, found 39")
    # the value error comes first once the short row is fixed
    del bad[97]
    p = _criteo_with(tmp_path, bad, n=300, name="bad2.txt")
    with pytest.raises(DataError) as e:
        encode_file(p, "criteo", tmp_path / "out", progress=False, **TINY)
    one_line_error(e, p, 120, "column I1: expected an integer, found 'z'")


@pytest.mark.parametrize("sizes", [{}, TINY], ids=["one-chunk", "many-chunks"])
def test_skip_bad_rows_counts_and_reports_them(tmp_path, sizes):
    bad_lines = {3: criteo_line(label="7"), 40: "", 41: criteo_line(ints=["1"] * 5), 77: criteo_line(ints=["q"] * 13),
                 150: criteo_line() + "\tx", 199: criteo_line(label="")}
    p = _criteo_with(tmp_path, bad_lines, n=200)
    ds = encode_file(p, "criteo", tmp_path / "out", min_count=1, skip_bad_rows=True, progress=False, **sizes)
    assert ds.rows == 194 and ds.bad_rows == 6 and ds.meta["bad_rows"] == 6
    assert ds.bad_row_lines == sorted(bad_lines)
    assert ds.meta["bad_row_examples"][0] == "3: column label: label must be 0 or 1, found '7'"
    assert ds.meta["bad_row_examples"][1] == "40: empty line"
    # identical to encoding the file with the bad lines removed
    good = [ln for i, ln in enumerate(Path(p).read_text().splitlines(), 1) if i not in bad_lines]
    clean = encode_file(write_lines(tmp_path / "clean.txt", good), "criteo", tmp_path / "clean", min_count=1,
                        progress=False)
    np.testing.assert_array_equal(ds.ids, clean.ids)
    np.testing.assert_array_equal(ds.labels, clean.labels)
    # and with a given preprocessor (single pass) too
    again = encode_file(p, "criteo", tmp_path / "again", preprocessor=clean.preprocessor, skip_bad_rows=True,
                        progress=False, **sizes)
    np.testing.assert_array_equal(again.ids, clean.ids)
    assert again.bad_row_lines == sorted(bad_lines)


def test_avazu_malformed_rows_count_the_header(avazu_small, tmp_path):
    lines = Path(avazu_small).read_text().splitlines()[:60]
    cols = lines[9].split(",")
    cols[2] = "14133100"  # no 33rd of January
    lines[9] = ",".join(cols)  # line 10 of the file (header = line 1)
    p = write_lines(tmp_path / "a.csv", lines)
    with pytest.raises(DataError) as e:
        encode_file(p, "avazu", tmp_path / "o", progress=False)
    one_line_error(e, p, 10, "column hour: expected YYMMDDHH, found '14133100'")
    lines[20] = lines[20] + ",extra"
    p = write_lines(tmp_path / "a2.csv", lines)
    ds = encode_file(p, "avazu", tmp_path / "o2", skip_bad_rows=True, progress=False)
    assert ds.bad_row_lines == [10, 21] and ds.rows == 57


def test_header_and_file_errors(tmp_path):
    p = write_lines(tmp_path / "h.csv", ["id,click,C1", "1,0,5"])
    with pytest.raises(DataError, match=re.escape(f"{p}:1: header lacks column(s) 'hour'")):
        encode_file(p, "avazu", tmp_path / "o", progress=False)
    tsv = write_lines(tmp_path / "t.csv", ["\t".join(["id", "click", "hour"] + [f"C{i}" for i in range(30)]), "1"])
    with pytest.raises(DataError) as e:  # a TSV read as Avazu: the header is one long column
        encode_file(tsv, "avazu", tmp_path / "o", progress=False)
    assert str(e.value).endswith(" ...'; it is separated by tabs: is --format right?)")
    assert len(str(e.value)) - len(str(tsv)) < 250  # the header shown is cut short
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(DataError) as e:
        encode_file(empty, "criteo", tmp_path / "o", progress=False)
    one_line_error(e, empty, 1, "file is empty")
    with pytest.raises(Fm2OnnxError, match=re.escape(f"{tmp_path / 'nope.txt'}: no such file")):
        encode_file(tmp_path / "nope.txt", "criteo", tmp_path / "o", progress=False)
    header_only = write_lines(tmp_path / "ho.csv", ["y,a"])
    with pytest.raises(DataError) as e:
        encode_file(header_only, get_format("csv", {"label": "y", "categorical": ["a"]}), tmp_path / "o",
                    progress=False)
    one_line_error(e, header_only, 2, "no valid data rows")
    schema = {"label": "0", "categorical": ["5"], "header": False}
    with pytest.raises(DataError, match=":1: schema refers to column 5 but the first line has 3 columns"):
        encode_file(write_lines(tmp_path / "n.tsv", ["1\ta\tb"]), get_format("tsv", schema), tmp_path / "o",
                    progress=False)
    latin = tmp_path / "latin.txt"
    latin.write_bytes((criteo_line() + "\n").encode() * 3 + criteo_line().replace("00000001", "\xe9\xe9").encode("latin-1") + b"\n")
    with pytest.raises(DataError) as e:
        encode_file(latin, "criteo", tmp_path / "o", min_count=1, progress=False)
    one_line_error(e, latin, 4, "not valid UTF-8 text")


# ----------------------------------------------------------------------------- splits


def test_split_proportions_and_seed(tmp_path):
    p = tmp_path / "s.txt"
    synthesize(p, rows=20_000, fmt="criteo", seed=0, progress=False)
    a = encode_file(p, "criteo", tmp_path / "a", seed=5, progress=False)
    b = encode_file(p, "criteo", tmp_path / "b", seed=5, progress=False, **{"chunk_rows": 1000})
    c = encode_file(p, "criteo", tmp_path / "c", seed=6, preprocessor=a.preprocessor, progress=False)
    np.testing.assert_array_equal(a.split, b.split)  # independent of chunking
    np.testing.assert_array_equal(a.ids, b.ids)
    assert (a.split != c.split).mean() > 0.2
    fr = np.bincount(a.split, minlength=3) / a.rows
    assert np.allclose(fr, [0.8, 0.1, 0.1], atol=0.015), fr
    parts = [a.indices(n) for n in ("train", "valid", "test")]
    assert sum(len(x) for x in parts) == a.rows
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), a.indices("all"))
    assert all(np.all(np.diff(x) > 0) for x in parts)
    assert a.meta["split_counts"] == {"train": len(parts[0]), "valid": len(parts[1]), "test": len(parts[2])}
    only = encode_file(p, "criteo", tmp_path / "d", split=(0, 0, 1), preprocessor=a.preprocessor, progress=False)
    assert len(only.indices("test")) == only.rows
    with pytest.raises(Fm2OnnxError, match="split"):
        encode_file(p, "criteo", tmp_path / "e", split=(0.5, 0.2, 0.2), progress=False)
    with pytest.raises(Fm2OnnxError, match="unknown split"):
        a.indices("holdout")


# ----------------------------------------------------------------------------- output and cache


def test_output_directory_safety(criteo_small, tmp_path):
    out = tmp_path / "enc"
    ds = encode_file(criteo_small, "criteo", out, progress=False)
    assert sorted(x.name for x in out.iterdir()) == ["ids.npy", "labels.npy", "meta.json", "preprocessor.json",
                                                      "split.npy"]
    with pytest.raises(Fm2OnnxError, match=r"enc: already exists \(pass --force to overwrite\)"):
        encode_file(criteo_small, "criteo", out, progress=False)
    ds2 = encode_file(criteo_small, "criteo", out, seed=1, force=True, progress=False)
    assert ds2.meta["seed"] == 1 and ds.rows == ds2.rows
    user = tmp_path / "mine"
    user.mkdir()
    (user / "precious.txt").write_text("keep me")
    with pytest.raises(Fm2OnnxError, match="refusing"):
        encode_file(criteo_small, "criteo", user, force=True, progress=False)
    assert (user / "precious.txt").read_text() == "keep me"
    arr = np.load(out / "ids.npy", mmap_mode="r")
    assert arr.shape == (3000, 39) and arr.dtype == np.int32
    json.loads((out / "meta.json").read_text())
    with pytest.raises(Fm2OnnxError, match="not an encoded dataset"):
        EncodedDataset.open(user)


def test_progress_goes_to_stderr(criteo_small, tmp_path, capsys):
    encode_file(criteo_small, "criteo", tmp_path / "a", progress=True)
    captured = capsys.readouterr()
    assert captured.out == "" and "rows/s" in captured.err and "encode" in captured.err
    encode_file(criteo_small, "criteo", tmp_path / "b", progress=False)
    assert capsys.readouterr().err == ""


def test_load_or_encode_cache(tmp_path, monkeypatch):
    src = tmp_path / "data.txt"
    synthesize(src, rows=2000, fmt="criteo", seed=1, progress=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    a = load_or_encode(src, get_format("criteo"), progress=False)
    assert a.path.parent.parent == tmp_path / "xdg" / "fm2onnx"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.txt", "xdg"]  # nothing beside the data
    calls = []
    import fm2onnx.data.cache as cache

    real = cache.encode_file
    monkeypatch.setattr(cache, "encode_file", lambda *x, **k: calls.append(1) or real(*x, **k))
    b = load_or_encode(src, "criteo", progress=False)
    assert b.path == a.path and not calls  # reused
    c = load_or_encode(src, "criteo", seed=2, progress=False)
    assert c.path != a.path and len(calls) == 1  # other settings, other entry
    st = os.stat(src)
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the source changed
    d = load_or_encode(src, "criteo", progress=False)
    assert d.path == a.path and len(calls) == 2
    assert d.meta["source"]["mtime_ns"] == st.st_mtime_ns + 10**9
    e = load_or_encode(src, "criteo", cache_dir=tmp_path / "cache", progress=False)
    assert e.path.parent == tmp_path / "cache"
    np.testing.assert_array_equal(e.ids, a.ids)
    f = load_or_encode(src, "criteo", preprocessor=a.preprocessor, progress=False)
    assert f.path != a.path and f.meta["preprocessor_given"]
    assert load_or_encode(src, "criteo", preprocessor=a.preprocessor, progress=False).path == f.path
    assert src.read_bytes()[:1] in (b"0", b"1")  # the user's file is untouched


def test_load_or_encode_beside_read_only_data_uses_the_user_cache(tmp_path, monkeypatch):
    data_dir = tmp_path / "shared"
    data_dir.mkdir()
    src = data_dir / "d.txt"
    synthesize(src, rows=500, fmt="criteo", seed=1, progress=False)
    data_dir.chmod(0o555)
    try:
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        ds = load_or_encode(src, "criteo", progress=False)
        assert str(ds.path).startswith(str(tmp_path / "xdg" / "fm2onnx"))
        assert sorted(p.name for p in data_dir.iterdir()) == ["d.txt"]
        assert load_or_encode(src, "criteo", progress=False).path == ds.path
    finally:
        data_dir.chmod(0o755)


def test_extreme_integers_take_the_exact_path(tmp_path):
    """Integer fields whose keys spread widely (large negative values) use the per-value path."""
    rng = np.random.default_rng(1)
    vals = ["-5000000000", "-9223372036854775808", "9223372036854775807", "3", "2", "-1", "", "100"]
    lines = [criteo_line(str(i % 2), [str(rng.choice(vals)) for _ in range(13)]) for i in range(300)]
    p = write_lines(tmp_path / "x.txt", lines)
    fmt = get_format("criteo")
    ds = encode_file(p, fmt, tmp_path / "enc", min_count=1, progress=False, **TINY)
    ids, _, vocabs = reference_encode(p, fmt, 1)
    np.testing.assert_array_equal(ds.ids, ids)
    assert {"-9223372036854775808", "-5000000000", "L1906"} <= set(ds.preprocessor.tokens("I1"))
    again = encode_file(p, fmt, tmp_path / "again", preprocessor=ds.preprocessor, progress=False)
    np.testing.assert_array_equal(again.ids, ids)
