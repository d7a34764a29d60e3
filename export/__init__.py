"""FM-family checkpoints to ONNX: the traced uncached graph, the cached forms as passes over it, FLOPs, parity.

    export_uncached(model)          torch serving module -> uncached onnx_ir graph   (to_onnx.py)
    make_cached(graph, options)     the cached graph, a pipeline of passes           (cached_form.py, passes/)
    count_flops(graph)              static FLOPs per row                            (flops.py)
    export_checkpoint(ckpt, out)    the whole `fm2onnx export` pipeline             (pipeline.py)
    check_graphs(ckpt, [graphs])    torch vs onnxruntime, FLOPs, table bytes        (check.py)
"""

from .cached_form import CachedFormOptions, CachedGraph, make_cached
from .check import GraphCheck, check_graphs
from .flops import FlopsCount, count_flops, flops_by_batch
from .model_io import load_model, save_model
from .passes import RewriteReport
from .pipeline import ExportResult, export_checkpoint
from .to_onnx import export_uncached

__all__ = ["CachedFormOptions", "CachedGraph", "ExportResult", "FlopsCount", "GraphCheck", "RewriteReport",
           "check_graphs", "count_flops", "export_checkpoint", "export_uncached", "flops_by_batch", "load_model",
           "make_cached", "save_model"]
