"""The one way fm2onnx opens an onnxruntime session: CPU, quiet, threads as asked."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

from fm2onnx.errors import Fm2OnnxError
from fm2onnx.files import require_file


def session(model: str | Path | bytes, threads: int | None = None,
            profile_prefix: str | None = None) -> ort.InferenceSession:
    """``threads``: intra-op threads (None: onnxruntime's default); inter-op work stays on one.
    ``profile_prefix``: record onnxruntime's per-node profile to a file starting so (``end_profiling()``).
    A model file onnxruntime cannot load is one line naming it (or its missing or short sidecar)."""
    options = ort.SessionOptions()
    options.log_severity_level = 3  # warnings about unused initializers etc. are not the user's concern
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if profile_prefix is not None:
        options.enable_profiling, options.profile_file_prefix = True, profile_prefix
    if isinstance(model, bytes):  # built in memory by fm2onnx: a failure is a bug, its traceback wanted
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    path = Path(model)
    require_file(path, "ONNX")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own types for every kind of unreadable file
        raise Fm2OnnxError(f"{path}: {unloadable_reason(path, exc)}") from None


def unloadable_reason(path: Path, exc: Exception) -> str:
    """Why onnxruntime could not load ``path``: its sidecar when that is at fault (onnxruntime's own
    words name a C++ source line), else the first line of onnxruntime's message."""
    import onnx_ir as ir

    from .model_io import external_data_fault

    try:
        fault = external_data_fault(ir.load(path), path)
    except Exception:  # not ONNX protobuf at all (an .ort file, junk): onnxruntime's words say it
        fault = ""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return fault or f"not an ONNX model onnxruntime can load ({first})"
