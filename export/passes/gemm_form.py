"""The GEMM form as a pass: uncached FwFM, FvFM or FmFM graph -> MatMuls over the embedding rows
(export/gemm_form.py). ``fm2onnx export --serve-batch`` and the bench time it as a graph of its own."""

from __future__ import annotations

import onnx_ir as ir

from ..coordinate_form import DIAGONAL_KINDS
from ..gemm_form import build_gemm_graph
from .manager import ReplacingPass
from .read_weights import read_field_weights


class GemmFormPass(ReplacingPass):
    name = "gemm_form"

    def apply(self, model: ir.Model) -> tuple[ir.Model, str]:
        weights = read_field_weights(model)
        built = build_gemm_graph(weights, dict(model.metadata_props))
        how = ("one MatMul, a matrix per coordinate" if weights.spec.kind in DIAGONAL_KINDS
               else "in width groups, one MatMul per group")
        return built, f"{weights.spec.num_fields} fields {how}"
