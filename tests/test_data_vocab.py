"""Formats, the paper's token rules, vocabularies and the Preprocessor's (de)serialization."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import torch

from fm2onnx.data import FieldSpec, Preprocessor, get_format, hour_tokens, log2_bucket, numeric_token
from fm2onnx.data.formats import AVAZU_COLUMNS
from fm2onnx.data.counting import VocabCounter
from fm2onnx.errors import DataError, Fm2OnnxError

# ----------------------------------------------------------------------------- formats


def test_criteo_format_fields_in_order():
    fmt = get_format("criteo")
    assert fmt.name == "criteo"
    assert fmt.field_names == [f"I{i}" for i in range(1, 14)] + [f"C{i}" for i in range(1, 27)]
    assert fmt.delimiter == "\t" and not fmt.header and fmt.label == "label"
    assert [f.kind for f in fmt.fields] == ["numeric"] * 13 + ["categorical"] * 26
    assert fmt.default_min_count == 8


def test_avazu_format_fields_in_order():
    fmt = get_format("avazu")
    assert len(fmt.field_names) == 23
    assert fmt.field_names[:3] == ["day_of_week", "hour_of_day", "C1"]
    assert fmt.field_names[2:] == list(AVAZU_COLUMNS[3:])
    assert "id" not in fmt.field_names and "click" not in fmt.field_names and "hour" not in fmt.field_names
    assert fmt.label == "click" and fmt.header and fmt.default_min_count == 5
    assert {f.source for f in fmt.fields[:2]} == {"hour"}


def test_generic_schema(tmp_path):
    schema = tmp_path / "s.json"
    schema.write_text(json.dumps({"label": "y", "categorical": ["site", "ad"], "numeric": ["price"]}))
    fmt = get_format("csv", str(schema))
    assert fmt.field_names == ["price", "site", "ad"]
    assert fmt.delimiter == "," and fmt.header and fmt.default_min_count == 1
    tsv = get_format("tsv", {"label": "0", "categorical": ["2"], "numeric": ["1"], "header": False})
    assert tsv.delimiter == "\t" and tsv.field_names == ["1", "2"]


@pytest.mark.parametrize(
    "schema, needle",
    [
        ({"categorical": ["a"]}, "label"),
        ({"label": "y"}, "no numeric or categorical"),
        ({"label": "y", "categorical": ["a", "a"]}, "twice"),
        ({"label": "y", "categorical": ["y"]}, "also listed"),
        ({"label": "y", "categorical": ["a"], "delimiter": ";;"}, "delimiter"),
        ({"label": "y", "categorical": ["a"], "colour": 1}, "unknown schema key"),
        ({"label": "y", "categorical": ["a"], "header": False}, "index strings"),
        ({"label": "y", "categorical": ["a", "b,c"]}, "field name 'b,c': a name must be non-empty text without commas"),
        ({"label": "y", "numeric": [" a"], "categorical": ["b"]}, "field name ' a'"),
    ],
)
def test_bad_schemas(schema, needle):
    with pytest.raises(Fm2OnnxError, match=needle) as e:
        get_format("csv", schema)
    assert "\n" not in str(e.value)


def test_unknown_format_and_missing_schema(tmp_path):
    with pytest.raises(Fm2OnnxError, match="unknown data format"):
        get_format("parquet")
    with pytest.raises(Fm2OnnxError, match="schema"):
        get_format("csv")
    with pytest.raises(Fm2OnnxError, match="no schema|takes no schema"):
        get_format("criteo", {"label": "x"})
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(Fm2OnnxError, match=r"bad\.json:1: not valid JSON"):
        get_format("csv", str(bad))


def test_format_dict_round_trip():
    for fmt in (get_format("criteo"), get_format("avazu"), get_format("csv", {"label": "y", "numeric": ["x"]})):
        again = type(fmt).from_dict(json.loads(json.dumps(fmt.to_dict())))
        assert again == fmt


# ----------------------------------------------------------------------------- token rules


@pytest.mark.parametrize(
    "raw, token",
    [
        ("3", "L1"),  # floor(ln(3)^2) = floor(1.207) = 1
        ("100", "L21"),  # floor(ln(100)^2) = floor(21.21) = 21
        ("4", "L1"),  # ln(4)^2 = 1.92
        ("5", "L2"),  # ln(5)^2 = 2.59
        ("2", "2"),
        ("1", "1"),
        ("0", "0"),
        ("-1", "-1"),
        ("-7", "-7"),
        ("02", "2"),
        ("", None),
    ],
)
def test_numeric_token_rules(raw, token):
    assert numeric_token(raw, integer=True) == token


def test_numeric_token_float_and_errors():
    assert numeric_token("2.5") == "L0"  # ln(2.5)^2 = 0.84
    assert numeric_token("0.5") == "0.5"
    assert numeric_token("2.0") == "2"
    assert numeric_token("-0.0") == "0"
    assert numeric_token(None) is None
    for bad in ("abc", "1.5x", "nan", "inf"):
        with pytest.raises(ValueError):
            numeric_token(bad)
    with pytest.raises(ValueError):
        numeric_token("1.5", integer=True)
    assert log2_bucket(100) == 21 and log2_bucket(3) == 1


def test_first_integers_start_their_buckets():
    from fm2onnx.data.buckets import first_integers

    buckets = np.arange(1, 400)
    first = first_integers(buckets)
    assert first[0] == 3
    assert all(log2_bucket(x) >= b and (x == 3 or log2_bucket(x - 1) < b) for x, b in zip(first, buckets))


def test_int_fast_path_matches_exact_path():
    """Integer columns are tokenized by a vectorized path; it must agree with the per-value rule."""
    from fm2onnx.data.chunk_view import ChunkView
    from fm2onnx.data.int_keys import int_key_token, int_token_keys

    rng = np.random.default_rng(0)
    xs = np.concatenate([np.arange(-50, 70_000), rng.integers(-10**12, 10**12, 5000), [2**62, 10**18]])
    keys = int_token_keys(xs.astype(np.int64))
    for x, k in zip(xs[::97], keys[::97]):
        assert int_key_token(int(k)) == numeric_token(str(int(x)), integer=True), x
    view = ChunkView(pa.table({"v": pa.array(["3", None, "-1", "100", "2"])}))
    k, valid = view.int_keys("v")
    assert valid.tolist() == [True, False, True, True, True]
    assert [int_key_token(int(x)) for x in k[valid]] == ["L1", "-1", "L21", "2"]


@pytest.mark.parametrize(
    "value, dow, hour",
    [
        ("14102100", "1", "0"),  # 2014-10-21 was a Tuesday (Monday = 0)
        ("14102623", "6", "23"),  # 2014-10-26, Sunday
        ("14102712", "0", "12"),  # 2014-10-27, Monday
        ("16022918", "0", "18"),  # 2016-02-29 (leap day), Monday
        ("00010105", "5", "5"),  # 2000-01-01, Saturday
    ],
)
def test_avazu_hour_tokens(value, dow, hour):
    assert hour_tokens(value) == (dow, hour)


@pytest.mark.parametrize("value", ["1410210", "14102124", "14133100", "15022900", "1410210a", ""])
def test_avazu_hour_tokens_reject(value):
    with pytest.raises(ValueError, match="YYMMDDHH"):
        hour_tokens(value)


# ----------------------------------------------------------------------------- vocabularies


def test_vocabulary_threshold_and_order():
    c = VocabCounter(1, merge_every=3)  # force several merges
    for chunk in (["b", "a", "c"], ["a", "b", "d"], ["e", "a", "b", "c"]):
        vals, counts = np.unique(np.array(chunk), return_counts=True)
        c.add(0, pa.array(vals.tolist()), counts)
    c.add(0, pa.array(["z"]), np.array([1]))
    # counts: a 3, b 3, c 2, d 1, e 1, z 1 -> descending count, ties by token
    assert c.vocabulary(0, 1) == ["a", "b", "c", "d", "e", "z"]
    assert c.vocabulary(0, 2) == ["a", "b", "c"]
    assert c.vocabulary(0, 3) == ["a", "b"]
    assert c.vocabulary(0, 4) == []


def _small_preprocessor() -> Preprocessor:
    fmt = get_format("criteo")
    tokens = [["0", "L1", "2"]] + [[] for _ in range(12)] + [["68fd1e64", "80e26c9b"]] + [["x"] for _ in range(25)]
    return Preprocessor(fmt.fields, tokens, format_spec=fmt.to_dict(), min_count=8, label="label")


def test_preprocessor_basics():
    pre = _small_preprocessor()
    assert pre.format_name == "criteo" and pre.min_count == 8
    assert pre.vocab_sizes[:2] == [4, 1] and pre.vocab_sizes[13] == 3
    assert pre.field_names == get_format("criteo").field_names
    assert pre.lookup("I1", "L1") == 2 and pre.lookup("I1", "nope") == 0 and pre.lookup(0, None) == 0
    assert pre.format == get_format("criteo")


def test_preprocessor_round_trip_through_torch(tmp_path):
    pre = _small_preprocessor()
    d = pre.to_dict()

    def plain(x):
        if isinstance(x, dict):
            return all(isinstance(k, str) and plain(v) for k, v in x.items())
        if isinstance(x, list):
            return all(plain(v) for v in x)
        return x is None or type(x) in (str, int, float, bool)

    assert plain(d)
    torch.save({"preprocessor": d, "state": torch.zeros(2)}, tmp_path / "ck.pt")
    loaded = torch.load(tmp_path / "ck.pt", weights_only=True)
    again = Preprocessor.from_dict(loaded["preprocessor"])
    assert again == pre and again.to_dict() == d
    assert again.vocab_sizes == pre.vocab_sizes
    json.dumps(d)  # also JSON-able


@pytest.mark.parametrize(
    "mutate, needle",
    [
        (lambda d: d.update(kind="other"), "kind"),
        (lambda d: d.update(version=99), "version"),
        (lambda d: d.update(min_count=0), "min_count"),
        (lambda d: d.update(fields=[]), "fields"),
        (lambda d: d["fields"][0].update(kind="weird"), "unknown kind"),
        (lambda d: d["fields"][0].update(tokens=["a", "a"]), "duplicate tokens"),
        (lambda d: d["fields"][0].update(tokens=["a", 3]), "token"),
        (lambda d: d["fields"][0].update(tokens=[""]), "token"),
        (lambda d: d["fields"][1].update(name="I1"), "duplicate field name"),
        (lambda d: d["fields"].pop(), "do not match format"),
        (lambda d: d.update(format={"name": "parquet"}), "unknown data format"),
    ],
)
def test_preprocessor_from_dict_rejects_bad_content(mutate, needle):
    d = _small_preprocessor().to_dict()
    mutate(d)
    with pytest.raises(Fm2OnnxError, match=needle) as e:
        Preprocessor.from_dict(d, where="ck.pt")
    msg = str(e.value)
    assert msg.startswith("ck.pt: invalid preprocessor:") and "\n" not in msg
    with pytest.raises(Fm2OnnxError):
        Preprocessor.from_dict(["not", "a", "dict"])


def test_encode_records_unseen_and_missing_values_map_to_zero():
    pre = _small_preprocessor()
    rows = [
        {"I1": "3", "C1": "68fd1e64"},  # L1 -> 2, C1 first token -> 1
        {"I1": "0", "C1": "80e26c9b"},
        {"I1": "100", "C1": "deadbeef"},  # L21 unseen -> 0, unseen hash -> 0
        {"I1": "", "C1": ""},  # missing -> 0
        {"I1": "2", "C1": None},
        {},
    ]
    ids = pre.encode_records(rows)
    assert ids.dtype == np.int32 and ids.shape == (6, 39)
    assert ids[:, 0].tolist() == [2, 1, 0, 0, 3, 0]
    assert ids[:, 13].tolist() == [1, 2, 0, 0, 0, 0]
    assert (ids[:, 1:13] == 0).all()


def test_encode_table_reports_bad_values():
    pre = _small_preprocessor()
    rows = [{"I1": "1", "C1": "a"}, {"I1": "x1", "C1": "b"}]
    with pytest.raises(DataError, match=r"^rows\.txt:12: column I1: expected an integer, found 'x1'$"):
        pre.encode_records(rows, where="rows.txt", first_line=11)
    ids = pre.encode_records(rows, errors="unknown")
    assert ids[:, 0].tolist() == [0, 0]  # "1" is not in I1's vocabulary; "x1" is malformed
    with pytest.raises(Fm2OnnxError, match="no column 'I2'"):
        pre.encode_table({"I1": ["1"], "C1": ["a"]})  # a table must carry every source column


def test_ids_preprocessor_has_no_text_format():
    pre = Preprocessor([FieldSpec("f0", "categorical", "f0")], [["1", "2"]], format_spec={"name": "ids"}, min_count=1)
    assert pre.format is None and pre.format_name == "ids"
    assert Preprocessor.from_dict(pre.to_dict()) == pre
    assert pre.encode_records([{"f0": "2"}, {"f0": "7"}])[:, 0].tolist() == [2, 0]
