"""FM-family checkpoints to ONNX: the traced uncached graph, the cached forms as passes over it, FLOPs, parity.

    export_uncached(model)          torch serving module -> uncached onnx_ir graph   (to_onnx.py)
    make_cached(graph, options)     the cached graph, a pipeline of passes           (cached_form.py, passes/)
    count_flops(graph)              static FLOPs per row                            (flops.py)
    export_checkpoint(ckpt, out)    the whole `fm2onnx export` pipeline             (pipeline.py)
    check_graphs(ckpt, [graphs])    torch vs onnxruntime, FLOPs, table bytes        (check.py)
"""

from __future__ import annotations

import importlib

# name -> the submodule that defines it. Loaded on first use, so importing one submodule (a bench
# child timing an onnxruntime session, say) does not import torch and onnxscript with the rest.
_EXPORTS = {
    "CachedFormOptions": "cached_form", "CachedGraph": "cached_form", "make_cached": "cached_form",
    "GraphCheck": "check", "check_graphs": "check",
    "FlopsCount": "flops", "count_flops": "flops", "flops_by_batch": "flops",
    "load_model": "model_io", "save_model": "model_io",
    "RewriteReport": "passes",
    "ExportResult": "pipeline", "export_checkpoint": "pipeline",
    "export_uncached": "to_onnx",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
