"""Each distinct model is traced by torch.onnx once per test process.

torch.onnx's dynamo exporter takes about ten seconds for even a six-field model, nearly all of an
export, and the tests export the same few fixture models many times over. ``export_uncached`` is
deterministic in the model's class, spec and weights, so a repeat gets a copy of the first trace's
graph (through its serialized proto, the path ``fm2onnx rewrite`` takes from an uncached file), and
everything after the trace (the rewrite passes, the parity gate, the written files) still runs.
"""

from __future__ import annotations

import json
import sys

_traces: dict[tuple, bytes] = {}


def trace_each_model_once() -> None:
    """Swap ``export.to_onnx.export_uncached`` for its memoized self, in every module that holds it."""
    import export.to_onnx as to_onnx

    original = to_onnx.export_uncached

    def export_uncached(model, *, opset: int = to_onnx.DEFAULT_OPSET):
        import onnx
        import onnx_ir as ir

        from fm2onnx.checkpoint import tensors_sha256

        key = (type(model).__qualname__, json.dumps(model.spec.to_dict(), sort_keys=True),
               tensors_sha256(model.state_dict()), opset)
        if key not in _traces:
            _traces[key] = ir.serde.serialize_model(original(model, opset=opset)).SerializeToString()
        return ir.serde.deserialize_model(onnx.ModelProto.FromString(_traces[key]))

    for module in list(sys.modules.values()):
        if getattr(module, "export_uncached", None) is original:
            module.export_uncached = export_uncached
