"""Raw rows for raw-feature graphs: probe rows made from a vocabulary, rows read from a data file, and
the two views of one row set -- the graph's input tensors and the Preprocessor's string columns.

A row set is ``{source column: list}``: floats for numeric columns (NaN = missing), strings for the
others ("" = missing), as a Java or C++ caller would hold them after parsing its own input.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fm2onnx.data import Preprocessor, get_format
from fm2onnx.data.reader import ChunkReader
from fm2onnx.errors import Fm2OnnxError

from .raw_input import CATEGORICAL_INPUT, NUMERIC_INPUT, RawContract
from .raw_tables import bucket_edge

Rows = dict[str, list]


def graph_feeds(contract: RawContract, rows: Rows) -> dict[str, np.ndarray]:
    """The raw graph's inputs for ``rows``."""
    feeds = {}
    if contract.numeric_columns:
        feeds[NUMERIC_INPUT] = np.array([rows[c] for c in contract.numeric_columns], np.float64).T.copy()
    if contract.categorical_columns:
        feeds[CATEGORICAL_INPUT] = np.array([rows[c] for c in contract.categorical_columns], dtype=object).T.copy()
    return feeds


def _number_as_text(x: float, integer: bool) -> str | None:
    """How a data file would spell ``x`` (None: missing). A non-integral value in an integer column
    is spelled as it is, which the Preprocessor rejects as malformed, as the graph does."""
    if math.isnan(x):
        return None
    if integer and x.is_integer() and abs(x) < 2**63:
        return str(int(x))
    return repr(x)


def python_ids(pre: Preprocessor, rows: Rows) -> np.ndarray:
    """int64 ids [rows, n] from the checkpoint's own Preprocessor (malformed values -> unknown)."""
    columns: dict[str, list] = {}
    for f in pre.fields:
        values = rows[f.source]
        if f.kind == "numeric":
            columns[f.source] = [_number_as_text(float(x), f.integer) for x in values]
        else:
            columns[f.source] = [v if v != "" else None for v in values]
    return pre.encode_table(columns, errors="unknown").astype(np.int64)


def numbers_of(texts: list[str | None], integer: bool) -> list[float]:
    """A caller's parse of numeric text as the Preprocessor reads it: unparseable or empty -> NaN."""
    target = pa.int64() if integer else pa.float64()
    try:
        parsed = pc.cast(pa.array([t or None for t in texts], pa.string()), target).to_pylist()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # some value is malformed: one at a time
        parsed = [None if not t else _parse_or_none(t, target) for t in texts]
    return [math.nan if v is None else float(v) for v in parsed]


def _parse_or_none(text: str, target: pa.DataType):
    try:
        return pc.cast(pa.array([text], pa.string()), target)[0].as_py()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None


def read_rows(path: str | Path, pre: Preprocessor, rows: int, fmt_name: str | None = None) -> Rows:
    """The first ``rows`` rows of a data file in the checkpoint's format, as a caller would pass them."""
    fmt = get_format(fmt_name) if fmt_name else pre.format
    if [f.to_dict() for f in fmt.fields] != [f.to_dict() for f in pre.fields]:
        raise Fm2OnnxError(f"{path}: format {fmt.name!r} has fields that differ from the checkpoint's")
    tables = []
    have = 0
    for chunk in ChunkReader(path, fmt, chunk_rows=min(rows, 1 << 16)):
        tables.append(chunk.table)
        have += chunk.rows
        if have >= rows:
            break
    if not have:
        raise Fm2OnnxError(f"{path}: no rows to score")
    table = pa.concat_tables(tables).slice(0, rows)
    out: Rows = {}
    for f in pre.fields:
        if f.source in out:
            continue
        texts = table.column(f.source).to_pylist()
        out[f.source] = numbers_of(texts, f.integer) if f.kind == "numeric" else [t or "" for t in texts]
    return out


# ----------------------------------------------------------------------------- probe rows

# Hour values around every rule of YYMMDDHH (valid dates, leap days, bad months/days/hours, lengths,
# letters, padding). Leading non-ASCII whitespace and non-ASCII digits are left out on purpose:
# Python accepts them and the graph does not (README, "Raw-feature graphs").
HOUR_EDGE_CASES = ["14102100", "14102123", "14102124", "00022900", "01022900", "04022923", "99123123",
                   "14130100", "14003100", "14100000", "14103200", "14093100", "1410210", "141021000",
                   " 14102105", "14102105 ", "\t14102105\n", "14102105\u00a0", "14102105\u3000", "1410 100",
                   "abcdefgh", "-1410210", "+1410210", "", "x"]


def probe_rows(pre: Preprocessor, rows: int, seed: int = 0) -> Rows:
    """Rows that visit every kind of value: known tokens, bucket edges, unseen and missing values,
    malformed numbers and hours. Each cell is drawn independently."""
    rng = np.random.default_rng(seed)
    out: Rows = {}
    for j, f in enumerate(pre.fields):
        if f.source in out:
            continue
        if f.kind == "numeric":
            pool = _numeric_pool(pre.tokens(j), f.integer)
        elif f.kind == "categorical":
            pool = pre.tokens(j)[:200] + ["", "never-seen", " " + (pre.tokens(j) or ["a"])[0], "ünïcødé", "0"]
        else:
            pool = HOUR_EDGE_CASES + [_random_hour(rng) for _ in range(40)]
        picks = rng.integers(0, len(pool), rows)
        out[f.source] = [pool[i] for i in picks]
    return out


def _random_hour(rng: np.random.Generator) -> str:
    day = dt.date(2000, 1, 1) + dt.timedelta(days=int(rng.integers(0, 36524)))
    return day.strftime("%y%m%d") + f"{int(rng.integers(0, 24)):02d}"


def _numeric_pool(tokens: list[str], integer: bool) -> list[float]:
    pool = [math.nan, math.inf, -math.inf, -0.0, 0.0, 1.0, 2.0, -1.0, -7.0, 1e15, 1e300, -1e300, 2.5, 7.5]
    if not integer:
        pool += [0.5, 1e-7, 2.0000000000000004, 1.9999999999999998]
    for token in tokens:
        if token.startswith("L") and token[1:].isdigit():
            k = int(token[1:])
            lo, hi = bucket_edge(np.array([k, k + 1], np.float64))
            if integer:  # the first and last integers of the bucket, and the ones just outside
                first, last = math.ceil(lo), math.ceil(hi) - 1 if math.isfinite(hi) else math.ceil(lo)
                pool += [float(first), float(first - 1), float(last), float(last + 1)]
            else:  # the edges and their neighbours
                pool += [lo, float(np.nextafter(lo, 0)), float(np.nextafter(hi, 0)) if math.isfinite(hi) else lo]
        else:
            try:
                pool.append(float(token))
            except ValueError:
                pass
    return pool
