"""Every cache plan, laid out in the fields layout from the weights read back out of the traced uncached
graph (what ``export`` ships), agrees with the float64 brute-force reference in every subgraph."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
import torch

from export.contract import describe, stamp
from export.fields_graph import build_fields_graph
from export.fields_layout import FieldsLayout, FieldsLayoutConfig
from export.flops import count_flops
from export.folds import FieldWeights
from export.parity import compare, parity_ids, tolerance_of, torch_logits
from export.ort import session
from export.passes.read_weights import read_field_weights
from export.to_onnx import export_uncached
from export.plan import FIELDS_KINDS, frontier, min_plan, plan_for_budget, unlimited_plan
from models import ModelSpec, build_model
from models.paper_shapes import CRITEO_FEATURES_PER_FIELD, CRITEO_FIELD_NAMES, CRITEO_TABLE3_DIMS, vocab_sizes

from .conftest import VARIABLE_DIMS, randomized_model
from .reference import reference_logits

BATCHES = (1, 5, 9, 300)  # the small subgraph takes batches up to 8


def ort_logits(model, ids: np.ndarray) -> np.ndarray:
    import onnx_ir as ir

    return session(ir.to_proto(model).SerializeToString()).run(["logit"], {"feature_ids": ids})[0]


def traced_weights(model) -> FieldWeights:
    """The weights as ``export`` reads them: out of the traced uncached graph."""
    graph = export_uncached(model)
    stamp(graph, describe(model.spec, form="uncached", checkpoint_sha256=""))
    return read_field_weights(graph, kinds=FIELDS_KINDS)


def reference(model, ids: np.ndarray) -> np.ndarray:
    return reference_logits(model.spec, model.state_dict(), ids)


PADDINGS = {"no runs": FieldsLayoutConfig(max_table_zeros=0), "default": FieldsLayoutConfig(),
            "few runs": FieldsLayoutConfig(max_table_zeros=10, values_per_run=10_000)}


# FwFM and FvFM: FmFM with diagonal field matrices, uniform dims; Eq. 2's linear term as well as Eq. 12's
KINDS = {"fmfm": ("fmfm", VARIABLE_DIMS, None), "fwfm": ("fwfm", None, "feature"), "fvfm": ("fvfm", None, None)}


@pytest.mark.parametrize("kind", KINDS.values(), ids=KINDS.keys())
@pytest.mark.parametrize("config", PADDINGS.values(), ids=PADDINGS.keys())
def test_every_frontier_plan_matches_the_reference(config, kind):
    model = randomized_model(kind[0], kind[1], seed=11, vocab=[7, 30, 11, 2, 50, 9], linear=kind[2])
    plans = frontier(model.spec)
    plans = plans[::max(1, len(plans) // 8)] + [plans[-1], min_plan(model.spec)]  # a spread of budgets
    computed = {p.pair_counts["compute"] for p in plans}
    # FmFM trades bytes for computed pairs; FwFM's and FvFM's plans cache every pair
    assert len(plans) > 5 and computed > {0} if kind[0] == "fmfm" else computed == {0}
    weights = traced_weights(model)
    for plan in plans:
        graph = build_fields_graph(weights, plan, config)
        for batch in BATCHES:
            ids = parity_ids(model.spec, batch, seed=batch)
            parity = compare(reference(model, ids), ort_logits(graph, ids))
            assert parity.ok, f"{plan.describe()}, batch {batch}: {parity.describe()}"


@pytest.mark.parametrize("kind", KINDS.values(), ids=KINDS.keys())
@pytest.mark.parametrize("table_dtype", ["float32", "float16", "int8"])
@pytest.mark.parametrize("batched", ["cached", "gemm"])
def test_every_subgraph_and_table_dtype_matches_the_reference(table_dtype, batched, kind):
    """One request, small batches, large batches (cached or on the GEMM form), out-of-range ids included,
    for the unlimited and the min plan, within each table dtype's documented tolerance."""
    model = randomized_model(kind[0], kind[1], seed=7, vocab=[7, 30, 11, 2, 50, 9], linear=kind[2])
    atol, rtol = tolerance_of(table_dtype)
    weights = traced_weights(model)
    for plan in (unlimited_plan(model.spec), min_plan(model.spec)):
        graph = build_fields_graph(weights, plan, FieldsLayoutConfig(table_dtype=table_dtype, batched=batched))
        assert graph.metadata_props["batched"] == batched
        for batch in BATCHES:
            ids = parity_ids(model.spec, batch, seed=batch + 1)
            parity = compare(reference(model, ids), ort_logits(graph, ids), atol=atol, rtol=rtol)
            assert parity.ok, f"{plan.describe()}, batch {batch}: {parity.describe()}"


@pytest.mark.parametrize("range_cost", [0, 2_500], ids=["a range per group", "ranges merged"])
@pytest.mark.parametrize("groups", [1, 3, 100])
def test_gemm_form_matches_the_reference(groups, range_cost, monkeypatch):
    """The GEMM form, its fields in width groups (one, some, one group per field), each group its own
    product range or the first ones merged."""
    import export.gemm_form as gemm_form

    monkeypatch.setattr(gemm_form, "RANGE_COST", range_cost)
    pairs = gemm_form.gemm_pairs
    monkeypatch.setattr(gemm_form, "gemm_pairs", lambda *a, **k: pairs(*a, **k, groups=groups))
    model = randomized_model("fmfm", VARIABLE_DIMS, seed=3, vocab=[7, 30, 11, 2, 50, 9])
    graph = gemm_form.build_gemm_graph(traced_weights(model), {})
    for batch in (1, 300):
        ids = parity_ids(model.spec, batch, seed=batch)
        parity = compare(reference(model, ids), ort_logits(graph, ids))
        assert parity.ok, f"{groups} groups, batch {batch}: {parity.describe()}"


@pytest.mark.parametrize("kind", ["fwfm", "fvfm"])
@pytest.mark.parametrize("linear", ["feature", "field_vector"])
def test_diagonal_field_matrices_pair_one_coordinate_at_a_time(kind, linear):
    """The GEMM form of FwFM and FvFM: one strictly upper-triangular [n, n] matrix per coordinate of the
    rows [lin | v], the linear value's zero; on an empty batch, one row and many."""
    model = randomized_model(kind, seed=5, vocab=[7, 30, 11, 2, 50, 9], linear=linear)
    graph = gemm_form_graph(model)
    products = [node for node in graph.graph if node.op_type == "MatMul"]
    (matrices,) = [graph.graph.initializers[node.inputs[1].name].const_value.numpy() for node in products]
    assert matrices.shape == (1 + 4, 6, 6) and not matrices[0].any() and not np.tril(matrices).any()
    assert np.all(matrices[1:][:, *np.triu_indices(6, 1)] != 0)
    for batch in (0, 1, 300):
        ids = parity_ids(model.spec, batch, seed=batch)
        parity = compare(reference(model, ids), ort_logits(graph, ids))
        assert parity.ok, f"batch {batch}: {parity.describe()}"


def gemm_form_graph(model):
    from export.gemm_form import build_gemm_graph

    return build_gemm_graph(traced_weights(model), {})


@pytest.mark.slow  # traces a model per example
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dims=st.lists(st.integers(1, 5), min_size=2, max_size=6), data=st.data())
def test_random_shapes_match_the_reference(dims, data):
    """Random field counts, dims and vocabularies (down to a single unknown row), both plans, both
    batched forms, any run padding: every subgraph agrees with torch, out-of-range ids included."""
    vocab = data.draw(st.lists(st.integers(1, 40), min_size=len(dims), max_size=len(dims)))
    config = FieldsLayoutConfig(batched=data.draw(st.sampled_from(["cached", "gemm"])),
                                max_table_zeros=data.draw(st.sampled_from([0.0, 0.1, 10.0])),
                                values_per_run=data.draw(st.sampled_from([0, 500, 100_000])))
    model = randomized_model("fmfm", tuple(dims), seed=len(dims), fields=[f"f{i}" for i in range(len(dims))],
                             vocab=vocab)
    plan = data.draw(st.sampled_from([unlimited_plan, min_plan]))(model.spec)
    graph = build_fields_graph(traced_weights(model), plan, config)
    for batch in (1, 3, 12):
        ids = parity_ids(model.spec, batch, seed=batch)
        parity = compare(reference(model, ids), ort_logits(graph, ids))
        assert parity.ok, f"{plan.describe()}, {config}, batch {batch}: {parity.describe()}"


def test_graph_flops_follow_the_layout():
    """The graph counts its larger subgraph: one request's (every value a request reads, cached vectors,
    linear terms and the zeros under own vectors and run padding, plus the computed pairs) or, on small
    models, the large batches' (U's adds, its product with Y, and <v_p, v_p> taken off)."""
    model = randomized_model("fmfm", VARIABLE_DIMS, seed=2)
    for config in PADDINGS.values():
        for plan in (unlimited_plan(model.spec), plan_for_budget(model.spec, 100), plan_for_budget(model.spec, 0)):
            layout = FieldsLayout(plan, config)
            counted = count_flops(build_fields_graph(FieldWeights.of_model(model), plan, config))
            assert not counted.uncounted
            # the larger subgraph counts: one request's, or the large batches' (U, and <v_p, v_p> taken off)
            assert layout.graph_flops() - plan.num_fields <= counted.total <= layout.graph_flops() + 6 * layout.width_e
            assert counted.total >= plan.flops_per_row


def test_default_export_against_table4():
    """Table 4's cached FLOPs (8,960 for Table 3's dims, 24,531 for K = 16) are the plan's; the default
    graph adds the zeros it multiplies (own vectors, run padding), within the configured share."""
    fields = list(CRITEO_FIELD_NAMES)
    vocab = [min(f, 20) + 1 for f in CRITEO_FEATURES_PER_FIELD]  # FLOPs do not depend on vocabulary sizes
    for dims, table4 in ((CRITEO_TABLE3_DIMS, 8960), (None, 24531)):
        model = randomized_model("fmfm", dims, fields=fields, vocab=vocab, dim=16)
        plan = unlimited_plan(model.spec)
        assert plan.flops_per_row == pytest.approx(table4, rel=0.005)
        counted = count_flops(build_fields_graph(FieldWeights.of_model(model), plan)).total
        own_vectors = 2 * sum(plan.position_dims)
        assert plan.flops_per_row < counted <= (plan.flops_per_row + own_vectors) * 1.5


def test_table3_min_plan_at_criteo_cardinalities():
    """The min plan on Table 3's fields (24.8M cached floats), built and checked at full size."""
    spec = ModelSpec.create("fmfm", CRITEO_FIELD_NAMES, vocab_sizes(CRITEO_FEATURES_PER_FIELD), dims=CRITEO_TABLE3_DIMS)
    model = build_model(spec, seed=0)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    plan = min_plan(spec)
    graph = build_fields_graph(FieldWeights.of_model(model), plan)
    for batch in (1, 64):
        ids = parity_ids(spec, batch, seed=batch)
        parity = compare(torch_logits(model, ids), ort_logits(graph, ids))
        assert parity.ok, parity.describe()
    assert not count_flops(graph).uncounted  # standard ops only: every op known and in the default domain
