"""Synthetic CTR data with a planted FmFM, in Criteo / Avazu text formats or directly as ids.

Features are drawn per field from a Zipf distribution (:mod:`.layout`), labels from a planted FmFM
(:mod:`.planted`) calibrated so that its own AUC is about 0.785 and the positive rate about 0.25
(Criteo) / 0.22 (Avazu, ids).

Generation runs in fixed chunks of 65,536 rows, each with its own seeded streams, so a file of N
rows is a prefix of a file of M > N rows made with the same seed.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ...errors import Fm2OnnxError
from ...files import check_distinct_outputs, check_output_file, refuse_overwrite, written_atomically
from ...progress import Progress
from ..staging import staged_directory, staged_file
from .layout import Layout, check_synth_format
from .sampling import Streams, Zipf, seeded_rng
from .sinks import IdsSink, TextSink

if TYPE_CHECKING:
    from .planted import PlantedFmFM

__all__ = ["synthesize", "SynthInfo"]

CHUNK = 1 << 16
TARGET_AUC = 0.785
TARGET_POS = {"criteo": 0.25, "avazu": 0.22, "ids": 0.22}
CALIBRATION_ROWS = 20_000
# Seeded streams: 1 = parameters (layout, planted weights), 2 = default dims, 3 = calibration sample,
# 1000 + c = rows of chunk c.
_PARAMS, _DIMS, _CALIBRATION, _CHUNK0 = 1, 2, 3, 1000


@dataclass
class SynthInfo:
    """What :func:`synthesize` wrote."""

    path: str
    fmt: str
    rows: int
    seed: int
    field_names: list[str]
    cardinalities: list[int]
    dims: list[int]
    zipf: float
    positive_rate: float  # of the written labels
    planted_auc: float  # expected AUC of the planted model (calibration sample)
    bias: float
    alpha: float
    seconds: float
    planted_out: str | None = None
    empty_rates: list[float] = field(default_factory=list)
    decay: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def synthesize(
    out_path: str | os.PathLike,
    *,
    rows: int,
    fmt: str = "criteo",
    seed: int = 0,
    field_dims: Sequence[int] | int | None = None,
    cardinalities: Sequence[int] | None = None,
    zipf: float = 1.1,
    planted_out: str | os.PathLike | None = None,
    force: bool = False,
    progress: bool = True,
    split: Sequence[float] = (0.8, 0.1, 0.1),
    decay: float = 0.0,
) -> SynthInfo:
    """Write ``rows`` synthetic rows to ``out_path`` (a text file, or for ``fmt="ids"`` an encoded
    dataset directory readable by ``EncodedDataset.open``).

    ``field_dims``: planted embedding dim per field (int for all; default: drawn from 2..12 by
    seed). ``cardinalities``: planted features per field (default :func:`default_cardinalities`).
    ``zipf``: exponent of the feature frequencies. ``planted_out``: a ``.npz`` receiving ``logits``
    (float32, one per row in file order), ``dims``, ``cardinalities``, ``field_names``, ``bias``,
    ``alpha``. ``split`` only matters for ``fmt="ids"`` (the encoder assigns splits otherwise).
    ``decay`` > 0 shrinks the planted embedding of the feature of frequency rank ``r`` by
    ``(1 + r/3) ** -decay``, so rare features carry less signal and the planted model is easier to
    learn from few rows (0 = every feature equally strong).
    """
    _check_arguments(fmt, rows, zipf, decay)
    rows, seed, out = int(rows), int(seed), Path(out_path)
    planted_out = None if planted_out is None else Path(planted_out)
    check_distinct_outputs({"-o": out, "--planted-out": planted_out})
    check_output_file(planted_out, force=force)
    if fmt == "ids":  # a directory: staged_directory checks what it may replace
        refuse_overwrite(out, force=force)
    else:
        check_output_file(out, force=force)
    params = seeded_rng(seed, _PARAMS)
    layout = Layout(fmt, cardinalities, params)
    dims = _field_dims(field_dims, len(layout.cards), seed)
    samplers = layout.samplers(zipf)
    planted, planted_auc = _plant(layout, dims, params, samplers, seed, decay)
    prog = Progress(f"synth {fmt} {out.name}", progress)
    if fmt == "ids":
        with staged_directory(out, force=force) as tmp:
            logits, positives = _write_rows(IdsSink(tmp, layout, seed, split, zipf), layout, samplers, planted,
                                            rows, seed, prog)
    else:
        with staged_file(out, force=force) as tmp:
            logits, positives = _write_rows(TextSink(tmp, layout), layout, samplers, planted, rows, seed, prog)
    if planted_out is not None:
        _save_planted(planted_out, logits, dims, layout, planted)
    return SynthInfo(
        path=str(out), fmt=fmt, rows=rows, seed=seed, field_names=list(layout.names),
        cardinalities=list(layout.cards), dims=dims, zipf=float(zipf), positive_rate=positives / rows,
        planted_auc=planted_auc, bias=float(planted.bias), alpha=float(planted.alpha),
        seconds=prog.done(rows), planted_out=None if planted_out is None else str(planted_out),
        empty_rates=list(layout.empty), decay=float(decay),
    )


def _check_arguments(fmt: str, rows: int, zipf: float, decay: float) -> None:
    check_synth_format(fmt)
    if isinstance(rows, bool) or not isinstance(rows, (int, np.integer)) or rows < 1:
        raise Fm2OnnxError(f"rows must be a positive integer, got {rows!r}")
    if not (zipf > 0):
        raise Fm2OnnxError(f"zipf exponent must be > 0, got {zipf!r}")
    if not (decay >= 0):
        raise Fm2OnnxError(f"decay must be >= 0, got {decay!r}")


def _field_dims(field_dims: Sequence[int] | int | None, n_fields: int, seed: int) -> list[int]:
    if field_dims is None:
        dims = [int(d) for d in seeded_rng(seed, _DIMS).integers(2, 13, n_fields)]
    elif isinstance(field_dims, (int, np.integer)):
        dims = [int(field_dims)] * n_fields
    else:
        dims = [int(d) for d in field_dims]
    if len(dims) != n_fields or any(d < 1 for d in dims):
        raise Fm2OnnxError(f"field_dims must be {n_fields} positive integers (one per field)")
    return dims


def _plant(layout: Layout, dims: list[int], rng: np.random.Generator, samplers: list[Zipf | None],
           seed: int, decay: float) -> tuple["PlantedFmFM", float]:
    """The planted model, calibrated on its own sample; returns it and its expected AUC."""
    # torch loads here rather than with fm2onnx.data: reading and encoding real data never need it
    from .planted import PlantedFmFM

    planted = PlantedFmFM(layout.names, layout.cards, dims, rng)
    if decay:
        planted.shrink_rare([layout.feature_ranks(f) for f in range(len(layout.cards))], decay)
    sample, _ = layout.draw(samplers, CALIBRATION_ROWS, Streams(seed, _CALIBRATION))
    return planted, planted.calibrate(layout.ids(sample), TARGET_AUC, TARGET_POS[layout.fmt])


def _write_rows(sink: IdsSink | TextSink, layout: Layout, samplers: list[Zipf | None], planted: "PlantedFmFM",
                rows: int, seed: int, prog: Progress) -> tuple[np.ndarray, int]:
    """Draw and write all rows chunk by chunk; returns (planted logit of each row, positives)."""
    logits = np.empty(rows, np.float32)
    positives = 0
    try:
        for c, row0 in enumerate(range(0, rows, CHUNK)):
            n = min(CHUNK, rows - row0)
            streams = Streams(seed, _CHUNK0 + c)
            feats, day = layout.draw(samplers, n, streams)
            chunk_logits, y = planted.sample_labels(layout.ids(feats), streams(streams.LABEL))
            logits[row0:row0 + n] = chunk_logits
            sink.write(feats, day, y, streams)
            positives += int(y.sum())
            prog.update(row0 + n, (row0 + n) / rows)
        sink.finish()
    except BaseException:
        sink.abort()
        raise
    return logits, positives


def _save_planted(path: Path, logits: np.ndarray, dims: list[int], layout: Layout, planted: "PlantedFmFM") -> None:
    with written_atomically(path) as tmp, open(tmp, "wb") as f:  # np.savez would add .npz to the name
        np.savez(
            f,
            logits=logits,
            dims=np.asarray(dims, np.int32),
            cardinalities=np.asarray(layout.cards, np.int64),
            field_names=np.asarray(layout.names),
            bias=np.float64(planted.bias),
            alpha=np.float64(planted.alpha),
        )
