"""Real rows for ``fm2onnx check --data``: encoded through the checkpoint's own vocabularies."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from fm2onnx.checkpoint import load_checkpoint
from fm2onnx.errors import Fm2OnnxError


def encoded_rows(checkpoint: str | Path, data: str | Path, fmt_name: str | None,
                 rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids int64 [rows, n], labels float [rows]) of the first ``rows`` rows of ``data``."""
    from fm2onnx import data as fdata

    ckpt = load_checkpoint(checkpoint)
    if ckpt.preprocessor is None:
        raise Fm2OnnxError(f"{checkpoint}: has no vocabularies, so the rows of {data} cannot be encoded for it")
    pre = fdata.Preprocessor.from_dict(ckpt.preprocessor)
    fmt = fdata.get_format(fmt_name or pre.format_name)
    if list(fmt.field_names) != list(pre.field_names):
        raise Fm2OnnxError(f"{data}: format {fmt.name!r} has fields that differ from the checkpoint's")
    with tempfile.TemporaryDirectory(prefix="fm2onnx-check-") as tmp:
        dataset = fdata.encode_file(data, fmt, Path(tmp) / "encoded", preprocessor=pre, split=(0.0, 0.0, 1.0),
                                    progress=False)
        ids = np.array(dataset.ids[:rows], dtype=np.int64)  # copies out of the memory map before cleanup
        labels = np.array(dataset.labels[:rows], dtype=np.float64)
    if len(ids) == 0:
        raise Fm2OnnxError(f"{data}: no rows to score")
    return ids, labels
