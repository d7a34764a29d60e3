"""The GEMM form as a pass: uncached FmFM graph -> one MatMul per width group over the embedding row
(export/gemm_form.py). ``fm2onnx export --serve-batch`` and the bench time it as a graph of its own."""

from __future__ import annotations

import onnx_ir as ir

from ..gemm_form import build_gemm_graph
from .manager import ReplacingPass
from .read_weights import read_field_weights


class GemmFormPass(ReplacingPass):
    name = "gemm_form"

    def apply(self, model: ir.Model) -> tuple[ir.Model, str]:
        weights = read_field_weights(model)
        built = build_gemm_graph(weights, dict(model.metadata_props))
        return built, f"{weights.spec.num_fields} fields in width groups, one MatMul per group"
