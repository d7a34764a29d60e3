"""The exported graphs' static FLOPs per row against Table 4 of the paper (n = 39, K = 16).

Vocabulary sizes are capped so the test stays small: FLOPs do not depend on them.
"""

from __future__ import annotations

import pytest

from export import count_flops, export_uncached
from export.contract import describe
from export.cached_form import CachedFormOptions, make_cached
from models.paper_shapes import CRITEO_TABLE3_DIMS

from .conftest import criteo_shaped_model

pytestmark = pytest.mark.slow  # every test reads the counts of seven exported 39-field models

# Table 4 (shared/paper/table4_flops.csv), estimated FLOPs per prediction for n = 39, K = 16.
TABLE4 = {"LR": 78, "FM": 1920, "FwFM": 25272, "FFM": 24531, "FmFM": 403923, "FmFM(cached)": 24531,
          "FmFM(cached & 95% variance)": 8960}


def flops(kind, *, dims=None, linear=None, cached=False) -> int:
    """FLOPs per row of one exported graph: the uncached one, or (``cached``) its cached form."""
    model = criteo_shaped_model(kind, dims, linear=linear)
    graph = export_uncached(model)
    if cached:
        graph.metadata_props.update(describe(model.spec, form="uncached", checkpoint_sha256=""))
        graph = make_cached(graph, CachedFormOptions(layout="pairs")).model
    count = count_flops(graph)
    assert not count.uncounted
    return count.total


@pytest.fixture(scope="module")
def counts():
    return {
        "FM": flops("fm"),
        "FwFM": flops("fwfm"),  # the paper's default field-vector linear term (2nK, not 2n)
        "FwFM/feature-linear": flops("fwfm", linear="feature"),
        "FFM": flops("ffm"),
        "FmFM": flops("fmfm"),
        "FmFM(cached)": flops("fmfm", cached=True),
        "FmFM(cached & 95% variance)": flops("fmfm", dims=CRITEO_TABLE3_DIMS, cached=True),
    }


@pytest.mark.parametrize("name", ["FM", "FwFM", "FwFM/feature-linear", "FFM", "FmFM", "FmFM(cached)",
                                  "FmFM(cached & 95% variance)"])
def test_flops_within_5_percent_of_table4(counts, name):
    paper = TABLE4[name.split("/")[0]]
    assert counts[name] == pytest.approx(paper, rel=0.05), f"{name}: {counts[name]} vs Table 4's {paper}"


def test_speedup_ratios_match_the_paper(counts):
    uncached_over_cached = TABLE4["FmFM"] / TABLE4["FmFM(cached)"]  # 16.5x
    k16_over_table3 = TABLE4["FmFM(cached)"] / TABLE4["FmFM(cached & 95% variance)"]  # 2.7x
    assert counts["FmFM"] / counts["FmFM(cached)"] == pytest.approx(uncached_over_cached, rel=0.05)
    assert counts["FmFM(cached)"] / counts["FmFM(cached & 95% variance)"] == pytest.approx(k16_over_table3, rel=0.05)


def test_cached_fmfm_costs_what_ffm_costs(counts):
    """Section 4.2: once the intermediate vectors are cached, FmFM is an FFM at inference."""
    assert counts["FmFM(cached)"] == counts["FFM"]


@pytest.mark.parametrize("dims, table4", [(CRITEO_TABLE3_DIMS, TABLE4["FmFM(cached & 95% variance)"]),
                                          (None, TABLE4["FmFM(cached)"])], ids=["table3-dims", "K=16"])
def test_default_export_one_request_is_table4_plus_what_it_reads_besides(dims, table4, tmp_path):
    """The shipped file's one-request branch does one multiply-add per value a request reads (a Gemm of
    the row values with their partners) and a Sigmoid. Besides the cached vectors, which Table 4
    counts, it reads each field's linear value and own vector, the zeros that pad a run of rows to one
    start, and, in each row of the last run, a 1 and a 0 the other values pair with. Counted here from the field order and dims."""
    import json

    from export import export_checkpoint, flops_by_batch, load_model

    from .conftest import write_checkpoint

    model = criteo_shaped_model("fmfm", dims)
    export_checkpoint(write_checkpoint(model, tmp_path / "ckpt.pt"), tmp_path / "model.onnx")
    graph = load_model(tmp_path / "model.onnx")
    spec, n = model.spec, model.spec.num_fields
    order = sorted(range(n), key=lambda f: (-spec.dims[f], spec.vocab_sizes[f], f))  # Section 4.3's sides
    offsets = [sum(spec.dims[f] for f in order[:p]) for p in range(n)]
    run_starts = [run["positions"][0] for run in json.loads(graph.metadata_props["runs"])]
    first_of = [max(s for s in run_starts if s <= p) for p in range(n)]
    padding = sum(offsets[p] - offsets[first_of[p]] for p in range(n))
    pairs = n * (n - 1) // 2
    cached_values = table4 - n - pairs  # Table 4: 2·d_b + 1 per pair, 1 per linear term
    units = 2 * (n - run_starts[-1])
    expected = cached_values + 2 * (n + sum(spec.dims) + padding + units) + 1
    got = flops_by_batch(graph).one_request
    assert got == pytest.approx(expected, rel=0.005 if dims is None else 0), (got, expected, padding)
