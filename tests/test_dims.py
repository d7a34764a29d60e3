"""PCA dims selection: planted ranks are found, the unknown row is ignored, weighting counts, CSV round-trips."""

import numpy as np
import pytest

from fm2onnx.compression import cached_flops, cross_field_dims, feature_counts, fit_field_pca, select_dims
from fm2onnx.compression.dims import write_dims_csv
from fm2onnx.dims_file import read_dims
from fm2onnx.errors import Fm2OnnxError
from models import ModelSpec, build_model
from models.paper_shapes import CRITEO_TABLE3_DIMS

import torch


def planted_table(rows, k, rank, seed, noise=1e-3):
    """Rows = offset + rank-``rank`` signal + tiny isotropic noise; row 0 is a wild unknown row."""
    rng = np.random.default_rng(seed)
    table = 3.0 + rng.normal(size=(rows, rank)) @ rng.normal(size=(rank, k)) + noise * rng.normal(size=(rows, k))
    table[0] = 100.0 * rng.normal(size=k)
    return table


@pytest.mark.parametrize("rank", [1, 3, 6])
def test_planted_rank_is_found_and_the_unknown_row_is_ignored(rank):
    pca = fit_field_pca(planted_table(400, 8, rank, seed=rank))
    assert pca.dim_for_variance(0.95) <= rank
    assert pca.dim_for_variance(0.9999) == rank
    assert pca.explained_ratio[rank - 1] > 0.9999


def test_components_are_orthonormal_and_sorted():
    pca = fit_field_pca(np.random.default_rng(0).normal(size=(50, 6)))
    np.testing.assert_allclose(pca.components.T @ pca.components, np.eye(6), atol=1e-12)
    assert np.all(np.diff(pca.variances) <= 0)
    assert pca.explained_ratio[-1] == pytest.approx(1.0)


def test_fewest_components_reaching_the_threshold():
    # Variances 6, 3, 1 along the axes: cumulative 0.6, 0.9, 1.0.
    rng = np.random.default_rng(1)
    signs = rng.choice([-1.0, 1.0], size=(20000, 3))
    table = np.vstack([np.zeros(3), signs * np.sqrt([6.0, 3.0, 1.0])])
    pca = fit_field_pca(table)
    assert [pca.dim_for_variance(t) for t in (0.5, 0.6, 0.85, 0.9, 0.95, 1.0)] == [1, 1, 2, 2, 3, 3]


def test_at_least_one_dim_and_all_dims_at_threshold_one():
    constant = np.ones((10, 5))
    assert fit_field_pca(constant).dim_for_variance(0.95) == 1
    assert fit_field_pca(np.ones((1, 5))).dim_for_variance(0.95) == 1  # only the unknown row
    assert fit_field_pca(planted_table(100, 5, 1, seed=2)).dim_for_variance(1.0) == 5


def test_frequency_weighting_follows_the_frequent_rows():
    rng = np.random.default_rng(3)
    frequent = np.zeros((50, 4))
    frequent[:, 0] = rng.normal(size=50)  # frequent features vary along one axis
    rare = rng.normal(size=(200, 4)) * 2.0  # the long tail varies along all four
    table = np.vstack([np.zeros((1, 4)), frequent, rare])
    counts = np.concatenate([[0], np.full(50, 1000), np.ones(200)])
    assert fit_field_pca(table).dim_for_variance(0.95) == 4
    assert fit_field_pca(table, counts).dim_for_variance(0.95) == 1


def test_bad_threshold_is_refused():
    pca = fit_field_pca(np.random.default_rng(0).normal(size=(10, 3)))
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(Fm2OnnxError, match="variance threshold"):
            pca.dim_for_variance(bad)


def test_cached_flops_reproduce_the_papers_table3_count():
    assert cached_flops(CRITEO_TABLE3_DIMS) == 8960
    assert cached_flops([16] * 39) == 741 * 33 + 39
    assert cached_flops([2, 5, 3]) == (5 + 5 + 7) + 3
    np.testing.assert_array_equal(cross_field_dims([2, 5, 3]), [[2, 2, 2], [2, 5, 3], [2, 3, 3]])


def planted_model(kind="fmfm", ranks=(1, 2, 4), k=6, vocab=60, linear=None):
    spec = ModelSpec.create(kind, [f"f{i}" for i in range(len(ranks))], [vocab] * len(ranks), dim=k, linear=linear)
    model = build_model(spec, seed=0)
    with torch.no_grad():
        for a, rank in enumerate(ranks):
            model.embeddings.tables[a].weight.copy_(torch.from_numpy(planted_table(vocab, k, rank, seed=a)))
    return model


def test_select_dims_on_a_model_gives_table3_rows():
    model = planted_model()
    selection = select_dims(model, 0.999)
    assert selection.dims == [1, 2, 4]
    assert selection.weighting == "uniform"
    assert [f.features for f in selection.fields] == [59, 59, 59]
    assert selection.mean_dim == pytest.approx(7 / 3)
    assert selection.flops == cached_flops([1, 2, 4]) < selection.original_flops == cached_flops([6, 6, 6])


@pytest.mark.parametrize("text, message", [
    ("field,dim\nf0,4\nf1,2\nf0,5\n", "d.csv:4: field 'f0' listed twice (first on line 2)"),
    ("field,dim\nf0,4\n\n1,5\n", "d.csv:4: field 'f0' listed twice (first on line 2)"),  # by its number
    ("field,dim\nf0,4\nf1,4,7\n", "d.csv:3: expected 'field,dim', got 3 values"),
    ("field,dim\nf0,4\nf1\n", "d.csv:3: expected 'field,dim', got 1 value"),
])
def test_dims_csv_rows_that_repeat_a_field_or_do_not_fit_the_header_are_refused(tmp_path, text, message):
    (tmp_path / "d.csv").write_text(text)
    with pytest.raises(Fm2OnnxError) as raised:
        read_dims(tmp_path / "d.csv", ["f0", "f1"])
    assert str(raised.value) == f"{tmp_path}/{message}"


def test_dims_csv_saved_with_a_byte_order_mark_reads_and_other_encodings_are_named(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"\xef\xbb\xbffield,dim\r\nf0,4\r\nf1,2\r\n")
    assert read_dims(path, ["f0", "f1"]) == [4, 2]
    path.write_bytes("field,dim\nf0,4\nfü,2\n".encode("latin-1"))
    with pytest.raises(Fm2OnnxError) as raised:
        read_dims(path, ["f0", "fü"])
    assert str(raised.value) == f"{path}: not UTF-8 text (byte 0xfc at offset 16)"


def test_dims_csv_is_read_back_by_train_dims(tmp_path):
    model = planted_model()
    counts = [np.ones(60)] * 3
    selection = select_dims(model, 0.999, counts)
    path = write_dims_csv(selection, tmp_path / "dims.csv")
    assert read_dims(path, ["f0", "f1", "f2"]) == [1, 2, 4]
    assert "frequency" in path.read_text()
    with pytest.raises(Fm2OnnxError, match="already exists"):
        write_dims_csv(selection, path)
    write_dims_csv(selection, path, force=True)


@pytest.mark.parametrize("kind, message", [("lr", "LR has no embeddings"), ("ffm", "FFM keeps")])
def test_lr_and_ffm_are_refused(kind, message):
    model = build_model(ModelSpec.create(kind, ["a", "b"], [3, 3], dim=2))
    with pytest.raises(Fm2OnnxError, match=message):
        select_dims(model, 0.95)


def test_feature_counts_map_out_of_range_ids_to_unknown():
    ids = np.array([[1, 2], [1, 7], [-1, 0], [2, 2]], dtype=np.int32)
    counts = feature_counts(ids, [3, 3])
    np.testing.assert_array_equal(counts[0], [1, 2, 1])
    np.testing.assert_array_equal(counts[1], [2, 0, 2])
    np.testing.assert_array_equal(feature_counts(ids, [3, 3], rows=np.array([3, 0]))[0], [0, 1, 1])
