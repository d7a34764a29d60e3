"""Where synthetic rows go: a Criteo / Avazu text file, or an encoded dataset directory of ids."""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.csv as pv

from ..dataset import DatasetWriter, write_dataset_files
from ..formats import AVAZU_COLUMNS, FieldSpec
from ..preprocessor import Preprocessor
from .layout import AVAZU_DAYS, AVAZU_START, Layout
from .sampling import Streams

__all__ = ["TextSink", "IdsSink"]


class TextSink:
    """Rows rendered as text in the layout's format (tab-separated Criteo, or Avazu CSV with a header)."""

    def __init__(self, path: Path, layout: Layout):
        self.layout = layout
        self._file = open(path, "wb")
        self._writer: pv.CSVWriter | None = None
        if layout.fmt == "avazu":
            self._file.write((",".join(AVAZU_COLUMNS) + "\n").encode())
            self._hours = _avazu_hour_strings()

    def write(self, feats: np.ndarray, day: np.ndarray | None, y: np.ndarray, rng: Streams) -> None:
        if self.layout.fmt == "criteo":
            table, delimiter = _criteo_table(self.layout, feats, y, rng), "\t"
        else:
            table, delimiter = _avazu_table(self.layout, self._hours, feats, day, y, rng), ","
        if self._writer is None:
            opts = pv.WriteOptions(include_header=False, delimiter=delimiter, quoting_style="none")
            self._writer = pv.CSVWriter(self._file, table.schema, write_options=opts)
        self._writer.write_table(table)

    def finish(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._file.close()

    def abort(self) -> None:
        self._file.close()


class IdsSink:
    """Rows as planted ids in an encoded dataset directory, with an identity vocabulary per field."""

    def __init__(self, directory: Path, layout: Layout, seed: int, split: Sequence[float], zipf: float):
        self.layout = layout
        self.source = {"synthetic": True, "fmt": "ids", "seed": seed, "zipf": zipf}
        self._writer = DatasetWriter(directory, len(layout.cards), seed, split)

    def write(self, feats: np.ndarray, day: np.ndarray | None, y: np.ndarray, rng: Streams) -> None:
        self._writer.write(self.layout.ids(feats), y)

    def finish(self) -> None:
        """Close the arrays and write the preprocessor and meta.json."""
        self._writer.close()
        pre = Preprocessor(
            [FieldSpec(name, "categorical", name) for name in self.layout.names],
            [[str(i) for i in range(1, c + 1)] for c in self.layout.cards],  # token "k" has id k
            format_spec={"name": "ids"},
            min_count=1,
            label="label",
        )
        meta = self._writer.meta(pre, source=self.source, format={"name": "ids"}, skip_bad_rows=False,
                                 bad_rows=0, bad_row_lines=[], bad_row_examples=[], preprocessor_given=False)
        write_dataset_files(self._writer.directory, pre, meta)

    def abort(self) -> None:
        self._writer.abort()


def _avazu_hour_strings() -> pa.Array:
    """The ``YYMMDDHH`` value of every (day, hour), indexed by ``day * 24 + hour``."""
    return pa.array([
        (AVAZU_START + _dt.timedelta(days=d)).strftime("%y%m%d") + f"{h:02d}"
        for d in range(AVAZU_DAYS)
        for h in range(24)
    ])


def _criteo_table(layout: Layout, feats: np.ndarray, y: np.ndarray, rng: Streams) -> pa.Table:
    cols: dict[str, pa.Array] = {"label": pa.array(y.astype(np.int8))}
    for f, name in enumerate(layout.names):
        k = feats[:, f]
        missing = k == layout.cards[f]
        if f in layout.numeric:
            vals = layout.numeric[f].values(np.where(missing, 0, k), rng(rng.VALUE, f))
            cols[name] = pa.array(vals, pa.int64(), mask=missing)
        else:
            cols[name] = layout.strings(f).take(pa.array(np.where(missing, 0, k), mask=missing))
    return pa.table(cols)


def _avazu_table(layout: Layout, hours: pa.Array, feats: np.ndarray, day: np.ndarray, y: np.ndarray,
                 rng: Streams) -> pa.Table:
    ids = rng(rng.ID).integers(0, np.iinfo(np.uint64).max, len(y), dtype=np.uint64, endpoint=True)
    cols: dict[str, pa.Array] = {
        "id": pa.array(ids, pa.uint64()),
        "click": pa.array(y.astype(np.int8)),
        "hour": hours.take(pa.array(day * 24 + feats[:, 1])),
    }
    for f in range(2, len(layout.names)):
        cols[layout.names[f]] = layout.strings(f).take(pa.array(feats[:, f]))
    return pa.table(cols)
