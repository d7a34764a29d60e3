"""Real rows for ``fm2onnx check --data``: encoded through the checkpoint's own vocabularies."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from fm2onnx.checkpoint import load_checkpoint
from fm2onnx.errors import Fm2OnnxError


def encoded_rows(checkpoint: str | Path, data: str | Path, fmt_name: str | None, rows: int,
                 schema: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(ids int64 [rows, n], labels float [rows]) of the first ``rows`` rows of ``data``, read in the
    checkpoint's own format (its csv/tsv schema included) unless ``fmt_name``/``schema`` say otherwise.
    The encoding lives in a temporary folder: nothing is written beside the data."""
    from fm2onnx import data as fdata
    from fm2onnx.data.encode import format_for

    ckpt = load_checkpoint(checkpoint)
    if ckpt.preprocessor is None:
        raise Fm2OnnxError(f"{checkpoint}: has no vocabularies, so the rows of {data} cannot be encoded for it")
    pre = fdata.Preprocessor.from_dict(ckpt.preprocessor, where=str(checkpoint))
    fmt = format_for(pre, fmt_name, schema, where=str(checkpoint))
    with tempfile.TemporaryDirectory(prefix="fm2onnx-check-") as tmp:
        dataset = fdata.encode_file(data, fmt, Path(tmp) / "encoded", preprocessor=pre, split=(0.0, 0.0, 1.0),
                                    progress=False)
        ids = np.array(dataset.ids[:rows], dtype=np.int64)  # copies out of the memory map before cleanup
        labels = np.array(dataset.labels[:rows], dtype=np.float64)
    if len(ids) == 0:
        raise Fm2OnnxError(f"{data}: no rows to score")
    return ids, labels
