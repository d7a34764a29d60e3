"""Real rows for ``fm2onnx check --data``: encoded through the checkpoint's own vocabularies."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from fm2onnx.checkpoint import Checkpoint, load_checkpoint
from fm2onnx.errors import Fm2OnnxError

if TYPE_CHECKING:
    from fm2onnx.data import EncodedDataset


@contextlib.contextmanager
def encoded_through(checkpoint: str | Path, data: str | Path, fmt_name: str | None, schema: str | Path | None = None,
                    **encode_options) -> Iterator[tuple[Checkpoint, "EncodedDataset"]]:
    """(the checkpoint, ``data`` encoded through its vocabularies and format, its csv/tsv schema included
    unless ``fmt_name``/``schema`` say otherwise). The encoding lives in a temporary folder, removed on
    exit: nothing is written beside the data."""
    from fm2onnx import data as fdata
    from fm2onnx.data.encode import format_for

    ckpt = load_checkpoint(checkpoint)
    if ckpt.preprocessor is None:
        raise Fm2OnnxError(f"{checkpoint}: has no vocabularies, so the rows of {data} cannot be encoded for it")
    pre = fdata.Preprocessor.from_dict(ckpt.preprocessor, where=str(checkpoint))
    fmt = format_for(pre, fmt_name, schema, where=str(checkpoint))
    with tempfile.TemporaryDirectory(prefix="fm2onnx-rows-") as tmp:
        yield ckpt, fdata.encode_file(data, fmt, Path(tmp) / "encoded", preprocessor=pre, split=(0.0, 0.0, 1.0),
                                      **encode_options)


def encoded_rows(checkpoint: str | Path, data: str | Path, fmt_name: str | None, rows: int,
                 schema: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(ids int64 [rows, n], labels float [rows]) of the first ``rows`` rows of ``data`` (``encoded_through``)."""
    with encoded_through(checkpoint, data, fmt_name, schema, progress=False) as (_, dataset):
        ids = np.array(dataset.ids[:rows], dtype=np.int64)  # copies out of the memory map before cleanup
        labels = np.array(dataset.labels[:rows], dtype=np.float64)
    if len(ids) == 0:
        raise Fm2OnnxError(f"{data}: no rows to score")
    return ids, labels
