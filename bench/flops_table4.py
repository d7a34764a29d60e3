"""Print the exported graphs' FLOPs per row next to Table 4 of the paper (n = 39, K = 16).

    python bench/flops_table4.py

Vocabularies are Table 3's capped at 20 features per field (FLOPs do not depend on them).
runtime_tests/test_flops_table4.py asserts the same numbers within 5%.
"""

from __future__ import annotations

import torch

from export import count_flops, export_uncached
from export.cached_form import CachedFormOptions, make_cached
from export.contract import describe
from models import ModelSpec, build_model
from models.paper_shapes import CRITEO_FEATURES_PER_FIELD, CRITEO_FIELD_NAMES, CRITEO_TABLE3_DIMS

TABLE4 = [("LR", "lr", None, None, False, 78), ("FM", "fm", None, None, False, 1920),
          ("FwFM", "fwfm", None, None, False, 25272), ("FwFM, per-feature linear", "fwfm", None, "feature", False, 25272),
          ("FFM", "ffm", None, None, False, 24531), ("FmFM", "fmfm", None, None, False, 403923),
          ("FmFM (cached)", "fmfm", None, None, True, 24531),
          ("FmFM (cached & 95% variance)", "fmfm", CRITEO_TABLE3_DIMS, None, True, 8960),
          ("FvFM (not in Table 4)", "fvfm", None, None, False, None),
          ("FvFM (cached)", "fvfm", None, None, True, None), ("FwFM (cached)", "fwfm", None, None, True, None)]


def flops(kind, dims, linear, cached) -> int:
    spec = ModelSpec.create(kind, CRITEO_FIELD_NAMES, [min(f, 20) + 1 for f in CRITEO_FEATURES_PER_FIELD],
                            dim=16, dims=dims, linear=linear)
    model = build_model(spec, seed=0).eval()
    with torch.no_grad():
        graph = export_uncached(model)
    if cached:
        graph.metadata_props.update(describe(spec, form="uncached", checkpoint_sha256=""))
        graph = make_cached(graph, CachedFormOptions(layout="pairs")).model
    return count_flops(graph).total


def main() -> None:
    print(f"{'model':<32}{'Table 4':>10}{'fm2onnx':>10}{'Δ':>8}")
    for name, kind, dims, linear, cached, paper in TABLE4:
        ours = flops(kind, dims, linear, cached)
        delta = f"{(ours - paper) / paper:+.1%}" if paper else ""
        print(f"{name:<32}{paper or '':>10}{ours:>10,}{delta:>8}", flush=True)


if __name__ == "__main__":
    main()
