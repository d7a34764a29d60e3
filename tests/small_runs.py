"""A small data set and a ``train`` command line, for the tests that train from the command line."""

from __future__ import annotations

from fm2onnx import data as fdata


def synthesize_ids(folder):
    """8,000 rows of six id fields, skewed like real ids (Zipf), written as an ids file in ``folder``."""
    path = folder / "ids"
    fdata.synthesize(path, rows=8000, fmt="ids", seed=7, field_dims=[2, 4, 6, 3, 5, 2],
                     cardinalities=[10, 20, 40, 60, 15, 30], zipf=1.0, progress=False)
    return path


def train_args(data, output, *extra, batch_size=512, epochs=3):
    """An FmFM run of a few seconds: one thread, no early stopping floor, no progress output."""
    return ("train", "--data", data, "--model", "fmfm", "--dim", "4", "--epochs", epochs, "--batch-size", batch_size,
            "--min-steps", "0", "--threads", "1", "--quiet", "-o", output, *extra)
