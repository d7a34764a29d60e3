"""The one way fm2onnx opens an onnxruntime session: CPU, quiet, threads as asked."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort


def session(model: str | Path | bytes, threads: int | None = None,
            profile_prefix: str | None = None) -> ort.InferenceSession:
    """``threads``: intra-op threads (None: onnxruntime's default); inter-op work stays on one.
    ``profile_prefix``: record onnxruntime's per-node profile to a file starting so (``end_profiling()``)."""
    options = ort.SessionOptions()
    options.log_severity_level = 3  # warnings about unused initializers etc. are not the user's concern
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if profile_prefix is not None:
        options.enable_profiling, options.profile_file_prefix = True, profile_prefix
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
