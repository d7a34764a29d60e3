"""Synthetic generator: determinism, formats, the planted model's AUC, recoverable features."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest
import torch

from fm2onnx.data import EncodedDataset, encode_file, get_format, synthesize
from fm2onnx.data.formats import AVAZU_COLUMNS
from fm2onnx.data.metrics import auc
from fm2onnx.data.synth import default_cardinalities
from fm2onnx.errors import Fm2OnnxError


@pytest.fixture(scope="module")
def criteo_planted(tmp_path_factory):
    d = tmp_path_factory.mktemp("synth")
    info = synthesize(d / "c.txt", rows=40_000, fmt="criteo", seed=11, planted_out=d / "p.npz", progress=False)
    ds = encode_file(d / "c.txt", get_format("criteo"), d / "enc", seed=11, progress=False)
    return info, ds, np.load(d / "p.npz")


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    for fmt, name in (("criteo", "x.txt"), ("avazu", "x.csv")):
        a = synthesize(tmp_path / f"a{name}", rows=3000, fmt=fmt, seed=5, progress=False)
        synthesize(tmp_path / f"b{name}", rows=3000, fmt=fmt, seed=5, progress=False)
        synthesize(tmp_path / f"c{name}", rows=3000, fmt=fmt, seed=6, progress=False)
        assert (tmp_path / f"a{name}").read_bytes() == (tmp_path / f"b{name}").read_bytes()
        assert (tmp_path / f"a{name}").read_bytes() != (tmp_path / f"c{name}").read_bytes()
        assert a.rows == 3000 and a.fmt == fmt


def test_shorter_file_is_a_prefix(tmp_path):
    synthesize(tmp_path / "short.txt", rows=700, fmt="criteo", seed=2, progress=False)
    synthesize(tmp_path / "long.txt", rows=70_000, fmt="criteo", seed=2, progress=False)  # crosses a chunk
    short = (tmp_path / "short.txt").read_text().splitlines()
    long = (tmp_path / "long.txt").read_text().splitlines()
    assert len(short) == 700 and len(long) == 70_000 and long[:700] == short


def test_criteo_text_shape(tmp_path):
    info = synthesize(tmp_path / "c.txt", rows=5000, fmt="criteo", seed=0, progress=False)
    lines = (tmp_path / "c.txt").read_text().splitlines()
    assert len(lines) == 5000
    cols = [ln.split("\t") for ln in lines]
    assert {len(c) for c in cols} == {40}
    assert {c[0] for c in cols} == {"0", "1"}
    ints = [v for c in cols for v in c[1:14] if v]
    assert all(v.lstrip("-").isdigit() for v in ints)
    assert "-1" in {c[2] for c in cols}  # I2 has negatives
    cats = [v for c in cols for v in c[14:] if v]
    assert all(len(v) == 8 and int(v, 16) >= 0 for v in cats)
    empty_share = np.mean([c[12] == "" for c in cols])  # I12 is mostly empty in the real data
    assert 0.7 < empty_share < 0.85
    assert info.field_names == get_format("criteo").field_names
    assert len(info.dims) == 39 and all(2 <= d <= 12 for d in info.dims) and len(set(info.dims)) > 3


def test_avazu_text_shape(tmp_path):
    synthesize(tmp_path / "a.csv", rows=5000, fmt="avazu", seed=0, progress=False)
    lines = (tmp_path / "a.csv").read_text().splitlines()
    assert lines[0] == ",".join(AVAZU_COLUMNS)
    assert lines[0].startswith("id,click,hour,C1,banner_pos,site_id,") and lines[0].endswith(",C20,C21")
    rows = [ln.split(",") for ln in lines[1:]]
    assert {len(r) for r in rows} == {24}
    hours = {r[2] for r in rows}
    days = {h[:6] for h in hours}
    assert len(days) == 10 and all(len(h) == 8 and h.isdigit() for h in hours)
    weekdays = {dt.date(2000 + int(d[:2]), int(d[2:4]), int(d[4:6])).weekday() for d in days}
    assert weekdays == set(range(7))
    assert {int(h[6:]) for h in hours} == set(range(24))
    assert {r[1] for r in rows} == {"0", "1"}


def test_planted_auc_and_positive_rate(criteo_planted):
    info, ds, planted = criteo_planted
    assert 0.2 <= info.positive_rate <= 0.3
    assert 0.75 <= info.planted_auc <= 0.82
    logits = planted["logits"]
    assert logits.dtype == np.float32 and logits.shape == (ds.rows,)
    assert list(planted["dims"]) == info.dims
    test = ds.indices("test")
    a = auc(ds.labels[test], logits[test])
    assert 0.73 <= a <= 0.84, a
    a_all = auc(ds.labels, logits)
    assert abs(a_all - info.planted_auc) < 0.015
    # labels in the file are Bernoulli(sigmoid(logit))
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    assert abs(p.mean() - ds.labels.mean()) < 0.01


def test_planted_features_are_recoverable(criteo_planted):
    info, ds, _ = criteo_planted
    pre = ds.preprocessor
    # numeric fields: the written values fall exactly into the planted tokens: small values and buckets
    for j in range(13):
        card = info.cardinalities[j]
        raws = ["0", "1", "2"] + (["-1"] if j == 1 else [])
        allowed = set(raws) | {f"L{b}" for b in range(1, card - len(raws) + 1)}
        assert set(pre.tokens(j)) <= allowed, j
    assert "-1" in pre.tokens("I2")
    # small categorical fields: every planted feature is frequent and gets its own id
    for j, name in enumerate(ds.field_names):
        card = info.cardinalities[j]
        if j >= 13 and card <= 30:
            assert len(pre.tokens(name)) == card, name
        assert ds.vocab_sizes[j] <= card + 1
    # large fields: frequent features known, the rare tail unknown
    big = ds.field_names.index("C3")  # 20,000 planted features
    assert 200 < ds.vocab_sizes[big] < 20_000
    assert 0 < (ds.ids[:, big] == 0).mean() < 0.5


def test_ids_format_writes_an_encoded_dataset(tmp_path):
    cards = [5, 30, 200, 7]
    info = synthesize(tmp_path / "ids", rows=4000, fmt="ids", seed=1, cardinalities=cards, field_dims=3,
                      planted_out=tmp_path / "p.npz", progress=False)
    ds = EncodedDataset.open(tmp_path / "ids")
    assert ds.rows == 4000 and ds.field_names == ["f0", "f1", "f2", "f3"]
    assert ds.vocab_sizes == [c + 1 for c in cards]
    assert ds.preprocessor.format is None and ds.preprocessor.format_name == "ids"
    assert ds.preprocessor.lookup("f2", "17") == 17  # identity vocabulary
    ds.check()
    assert info.dims == [3, 3, 3, 3]
    assert abs(ds.labels.mean() - info.positive_rate) < 1e-9
    assert auc(ds.labels, np.load(tmp_path / "p.npz")["logits"]) > 0.7
    fr = np.bincount(ds.split, minlength=3) / ds.rows
    assert np.allclose(fr, [0.8, 0.1, 0.1], atol=0.03)
    assert (ds.ids[:, 0] >= 1).all()  # no missing values in ids data


def test_arguments_are_checked(tmp_path):
    with pytest.raises(Fm2OnnxError, match="unknown synthetic format"):
        synthesize(tmp_path / "x", rows=10, fmt="parquet", progress=False)
    with pytest.raises(Fm2OnnxError, match="rows"):
        synthesize(tmp_path / "x", rows=0, progress=False)
    with pytest.raises(Fm2OnnxError, match="39 fields"):
        synthesize(tmp_path / "x", rows=10, cardinalities=[5, 5], progress=False)
    with pytest.raises(Fm2OnnxError, match="field_dims"):
        synthesize(tmp_path / "x", rows=10, field_dims=[2, 3], progress=False)
    with pytest.raises(Fm2OnnxError, match="7 and 24"):
        synthesize(tmp_path / "x", rows=10, fmt="avazu", cardinalities=[6] + default_cardinalities("avazu")[1:],
                   progress=False)
    with pytest.raises(Fm2OnnxError, match="at least two fields"):
        synthesize(tmp_path / "x", rows=10, fmt="ids", cardinalities=[5], progress=False)
    target = tmp_path / "exists.txt"
    target.write_text("user data")
    with pytest.raises(Fm2OnnxError, match=r"exists.txt: already exists \(pass --force to overwrite\)"):
        synthesize(target, rows=10, progress=False)
    assert target.read_text() == "user data"
    synthesize(target, rows=10, progress=False, force=True)
    assert len(target.read_text().splitlines()) == 10
    assert not [p for p in Path(tmp_path).iterdir() if p.name.startswith(".")]  # no temp files left


def test_the_planted_logits_never_replace_the_data(tmp_path):
    out = tmp_path / "d.txt"
    with pytest.raises(Fm2OnnxError, match=r"d.txt: named by both -o and --planted-out; give each its own file"):
        synthesize(out, rows=100, fmt="criteo", planted_out=tmp_path / "." / "d.txt", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_custom_cardinalities_and_zipf(tmp_path):
    cards = [3] * 13 + [4] * 26
    info = synthesize(tmp_path / "c.txt", rows=3000, fmt="criteo", seed=0, cardinalities=cards, zipf=0.5,
                      progress=False)
    ds = encode_file(tmp_path / "c.txt", "criteo", tmp_path / "enc", min_count=1, progress=False)
    assert info.cardinalities == cards
    assert all(v <= c + 1 for v, c in zip(ds.vocab_sizes, cards))
    assert ds.vocab_sizes[13:] == [5] * 26  # every hash seen


def test_decay_keeps_calibration(tmp_path):
    info = synthesize(tmp_path / "d.txt", rows=2000, fmt="criteo", seed=0, decay=1.0, progress=False)
    assert info.decay == 1.0 and abs(info.planted_auc - 0.785) < 0.005
    with pytest.raises(Fm2OnnxError, match="decay"):
        synthesize(tmp_path / "e.txt", rows=10, decay=-1, progress=False)


def test_the_planted_model_leaves_the_torch_generator_alone(tmp_path):
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    synthesize(tmp_path / "ids", rows=100, fmt="ids", cardinalities=[5, 5], field_dims=2, progress=False)
    assert torch.equal(torch.rand(3), expected)
