"""FM-family checkpoints to ONNX: uncached graphs, the cache rewrite, FLOPs, parity.

    export_uncached(model)          torch serving module -> uncached onnx_ir graph   (to_onnx.py)
    rewrite_to_cached(graph)        fold field matrices into cached tables          (rewrite/)
    count_flops(graph)              static FLOPs per row                            (flops.py)
    export_checkpoint(ckpt, out)    the whole `fm2onnx export` pipeline             (pipeline.py)
    check_graphs(ckpt, [graphs])    torch vs onnxruntime, FLOPs, table bytes        (check.py)
"""

from .check import GraphCheck, check_graphs
from .flops import FlopsCount, count_flops
from .model_io import load_model, save_model
from .pipeline import ExportResult, export_checkpoint
from .rewrite import RewriteReport, rewrite_to_cached
from .to_onnx import export_uncached

__all__ = ["ExportResult", "FlopsCount", "GraphCheck", "RewriteReport", "check_graphs", "count_flops",
           "export_checkpoint", "export_uncached", "load_model", "rewrite_to_cached", "save_model"]
