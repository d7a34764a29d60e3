"""Raw-feature graphs: the checkpoint's preprocessing, as standard ONNX ops, in front of an id graph.

Contract of a raw graph (also in the README, "Raw-feature graphs"):

    numeric      float64 [batch, N]  one column per numeric field (metadata ``numeric_columns``);
                                     NaN = missing. Absent when the format has no numeric fields.
    categorical  string  [batch, C]  one column per string source column (``categorical_columns``):
                                     categorical fields, and Avazu's ``hour`` (YYMMDDHH, read into
                                     day_of_week and hour_of_day); "" = missing.
    ->  probability, logit  float32 [batch]   as the id graph
        feature_ids         int64 [batch, n]  the ids the preprocessing produced (for logging)

Every value the checkpoint's Preprocessor maps to the unknown row (missing, malformed, rare at
vocabulary time, never seen) reads row 0 here too. Only the default domain (opset >= 20, for
RegexFullMatch) and ``ai.onnx.ml`` 4 (LabelEncoder) are used.
"""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from fm2onnx.data import Preprocessor
from fm2onnx.errors import Fm2OnnxError

from .raw_tables import bucket_edge, day_of_week_ids, hour_of_day_ids, numeric_table
from .contract import INPUT_NAME
from .graph_writer import GraphWriter, tensor
from .to_onnx import check_opset

NUMERIC_INPUT = "numeric"
CATEGORICAL_INPUT = "categorical"
IDS_OUTPUT = INPUT_NAME  # the id graph's input becomes an output of the raw graph
MIN_OPSET = 20  # RegexFullMatch
ML_OPSET = 4  # LabelEncoder with double keys
RAW_INPUT_VERSION = "1"  # of the raw inputs' contract; bump on any change

# Python's str.strip() removes every character for which str.isspace() holds; onnxruntime's Cast from
# string (std::stoll) skips only the C locale's six. An hour value may carry the former at its end,
# the latter in front: anything else in front reads as unknown (see README).
_C_SPACE = r"[\x{9}-\x{d}\x{20}]"


def check_raw_opset(opset: int) -> None:
    check_opset(opset)
    if opset < MIN_OPSET:
        raise Fm2OnnxError(f"opset {opset} is not supported with --input raw: its RegexFullMatch needs opset "
                           f"{MIN_OPSET} or newer")


@functools.cache
def hour_pattern() -> str:
    """RE2 pattern of an hour value the graph reads: eight ASCII digits, padded as above."""
    py_space = "".join(f"\\x{{{c:x}}}" for c in range(sys.maxunicode + 1) if chr(c).isspace())
    return f"{_C_SPACE}*[0-9]{{8}}[{py_space}]*"


_DAYS_IN_MONTH = [0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
_DAYS_BEFORE_MONTH = [0, 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334]
_WEEKDAY_OF_2000_01_01 = 5  # a Saturday; Monday = 0 as datetime.date.weekday()


@dataclass(frozen=True)
class RawContract:
    numeric_columns: tuple[str, ...]
    categorical_columns: tuple[str, ...]

    @classmethod
    def of(cls, pre: Preprocessor) -> "RawContract":
        numeric = tuple(f.source for f in pre.fields if f.kind == "numeric")
        strings: list[str] = []
        for f in pre.fields:
            if f.kind != "numeric" and f.source not in strings:
                strings.append(f.source)
        return cls(numeric, tuple(strings))

    def metadata(self, pre: Preprocessor) -> dict[str, str]:
        return {"input": "raw", "raw_input_version": RAW_INPUT_VERSION,
                "numeric_columns": json.dumps(list(self.numeric_columns)),
                "categorical_columns": json.dumps(list(self.categorical_columns)),
                "raw_format": pre.format_name, "raw_min_count": str(pre.min_count)}


def preprocessor_of(checkpoint) -> Preprocessor:
    """The checkpoint's Preprocessor, checked against its model fields."""
    where = str(checkpoint.path or "checkpoint")
    if checkpoint.preprocessor is None:
        raise Fm2OnnxError(f"{where}: has no preprocessor (vocabularies), so it cannot take raw features; "
                           "train it from a data file, or export with --input ids")
    pre = Preprocessor.from_dict(checkpoint.preprocessor, where=where)
    if pre.format_name == "ids":
        raise Fm2OnnxError(f"{where}: was trained on encoded ids (no raw format), so it cannot take raw features")
    spec = checkpoint.spec
    if list(pre.field_names) != list(spec.field_names):
        raise Fm2OnnxError(f"{where}: preprocessor fields {pre.field_names[:5]}... differ from the model's")
    for name, have, want in zip(spec.field_names, pre.vocab_sizes, spec.vocab_sizes):
        if have != want:
            raise Fm2OnnxError(f"{where}: field {name!r}: vocabulary of {have} rows but the model has {want}")
    return pre


def label_encoder(w: GraphWriter, x: ir.Value, keys: np.ndarray, ids: np.ndarray, placeholder) -> ir.Value:
    """keys -> ids, anything else -> 0 (an empty vocabulary gets one placeholder key mapped to 0)."""
    if len(keys) == 0:  # LabelEncoder needs at least one key
        keys, ids = np.asarray([placeholder], dtype=keys.dtype), np.zeros(1, np.int64)
    return w.op("LabelEncoder", [x], domain="ai.onnx.ml", keys_tensor=tensor(keys),
                values_tensor=ir.tensor(np.asarray(ids, np.int64)),
                default_tensor=ir.tensor(np.zeros(1, np.int64)))


def _columns(w: GraphWriter, x: ir.Value, n: int) -> list[ir.Value]:
    """[batch, n] -> n values [batch, 1]."""
    if n == 1:
        return [x]
    return w.ops("Split", [x], "column", n, axis=1, num_outputs=n)


def _numeric_ids(w: GraphWriter, x: ir.Value, pre: Preprocessor, fields: list[int]) -> list[ir.Value]:
    """Ids [batch, 1] of the numeric fields (all columns at once, then one value lookup per field)."""
    tables = [numeric_table(pre.tokens(j), pre.fields[j].integer) for j in fields]
    top = max(t.top_bucket for t in tables)  # buckets 0..top; top + 1 stands for "any larger bucket"
    bucket_ids = np.zeros((len(fields), top + 2), np.int64)
    for r, t in enumerate(tables):
        bucket_ids[r, :len(t.bucket_ids)] = t.bucket_ids
    edges = bucket_edge(np.arange(top + 3))
    edges[-1] = np.inf  # an estimate of top + 1 (or more, clipped) is never raised
    integer = np.array([pre.fields[j].integer for j in fields])

    zero = w.const(np.float64(0.0), "zero")
    finite = w.op("Less", [w.op("Abs", [x]), w.const(np.float64(np.inf), "inf")])  # NaN and ±inf: missing
    integral = w.op("Or", [w.op("Equal", [w.op("Floor", [x]), x]), w.const(~integer, "not_integer_field")])
    valid = w.op("And", [finite, integral])  # Criteo's integer columns: 2.5 is malformed, so unknown
    clean = w.op("Where", [valid, w.op("Add", [x, zero]), zero])  # x + 0.0: -0.0 -> 0.0, as the vocabulary
    above_2 = w.op("Greater", [clean, w.const(np.float64(2.0), "two")])

    # bucket: estimate floor(ln(x)^2) with the runtime's Log, then correct it by one against exact edges
    big = w.op("Where", [above_2, clean, w.const(np.float64(3.0), "three")])  # Log only sees values > 2
    log = w.op("Log", [big])
    estimate = w.op("Min", [w.op("Floor", [w.op("Mul", [log, log])]), w.const(np.float64(top + 1), "top")])
    k = w.op("Cast", [estimate], to=ir.DataType.INT64)
    edge_table = w.const(edges, "bucket_edges")
    lower = w.op("Gather", [edge_table, k])
    upper = w.op("Gather", [edge_table, w.op("Add", [k, w.const(np.int64(1), "one")])])
    as_int = lambda cond: w.op("Cast", [cond], to=ir.DataType.INT64)  # noqa: E731
    k = w.op("Add", [w.op("Sub", [k, as_int(w.op("Less", [big, lower]))]),
                     as_int(w.op("GreaterOrEqual", [big, upper]))])
    flat = w.op("Add", [k, w.const(np.arange(len(fields), dtype=np.int64) * (top + 2), "bucket_offset")])
    bucket_ids = w.op("Gather", [w.const(bucket_ids.reshape(-1), "bucket_ids"), flat])

    small = [label_encoder(w, col, t.small_keys, t.small_ids, placeholder=3.0)  # 3.0 never takes this branch
             for col, t in zip(_columns(w, clean, len(fields)), tables)]
    small_ids = small[0] if len(small) == 1 else w.op("Concat", small, axis=1)
    ids = w.op("Where", [valid, w.op("Where", [above_2, bucket_ids, small_ids]), w.const(np.int64(0), "zero_id")])
    return _columns(w, ids, len(fields))


def _hour_ids(w: GraphWriter, s: ir.Value, dow_ids: np.ndarray, hour_ids: np.ndarray) -> tuple[ir.Value, ir.Value]:
    """(day_of_week id, hour_of_day id) [batch, 1] of YYMMDDHH strings, 0 unless a real date and hour."""
    i64 = lambda v, stem="int": w.const(np.int64(v), stem)  # noqa: E731
    digits = w.op("RegexFullMatch", [s], pattern=hour_pattern())
    safe = w.op("Where", [digits, s, w.const(np.array("00010100", dtype=object), "safe_hour")])  # Cast throws on "x"
    v = w.op("Cast", [safe], to=ir.DataType.INT64)
    yy = w.op("Div", [v, i64(1_000_000)])
    mm = w.op("Mod", [w.op("Div", [v, i64(10_000)]), i64(100)])
    dd = w.op("Mod", [w.op("Div", [v, i64(100)]), i64(100)])
    hh = w.op("Mod", [v, i64(100)])
    month_ok = w.op("And", [w.op("GreaterOrEqual", [mm, i64(1)]), w.op("LessOrEqual", [mm, i64(12)])])
    month = w.op("Where", [month_ok, mm, i64(1)])
    leap = w.op("Equal", [w.op("Mod", [yy, i64(4)]), i64(0)])  # years 2000..2099: every fourth
    leap_day = lambda cond: w.op("Cast", [w.op("And", [leap, cond])], to=ir.DataType.INT64)  # noqa: E731
    days_in_month = w.const(np.array(_DAYS_IN_MONTH, np.int64), "days_in_month")
    month_days = w.op("Add", [w.op("Gather", [days_in_month, month]), leap_day(w.op("Equal", [month, i64(2)]))])
    day_ok = w.op("And", [w.op("GreaterOrEqual", [dd, i64(1)]), w.op("LessOrEqual", [dd, month_days])])
    valid = w.op("And", [w.op("And", [digits, month_ok]),
                         w.op("And", [day_ok, w.op("LessOrEqual", [hh, i64(23)])])])
    days = w.op("Mul", [yy, i64(365)])
    days = w.op("Add", [days, w.op("Div", [w.op("Add", [yy, i64(3)]), i64(4)])])  # + the leap days of the years before
    days_before = w.const(np.array(_DAYS_BEFORE_MONTH, np.int64), "days_before")
    days = w.op("Add", [days, w.op("Gather", [days_before, month])])
    days = w.op("Add", [days, w.op("Add", [leap_day(w.op("Greater", [month, i64(2)])), dd])])
    weekday = w.op("Mod", [w.op("Add", [days, i64(_WEEKDAY_OF_2000_01_01 - 1)]), i64(7)])
    hour = w.op("Where", [valid, hh, i64(0)])
    zero = i64(0, "zero_id")
    dow = w.op("Where", [valid, w.op("Gather", [w.const(dow_ids, "day_of_week_ids"), weekday]), zero])
    hod = w.op("Where", [valid, w.op("Gather", [w.const(hour_ids, "hour_of_day_ids"), hour]), zero])
    return dow, hod


def _hour_tables(pre: Preprocessor, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Ids of the day-of-week and hour-of-day tokens of the fields read from ``source``."""
    dow, hod = np.zeros(7, np.int64), np.zeros(24, np.int64)
    for j, f in enumerate(pre.fields):
        if f.source == source and f.kind == "day_of_week":
            dow = day_of_week_ids(pre, j)
        elif f.source == source and f.kind == "hour_of_day":
            hod = hour_of_day_ids(pre, j)
    return dow, hod


def attach_raw_input(model: ir.Model, pre: Preprocessor) -> RawContract:
    """Replace the id graph's ``feature_ids`` input by the preprocessing of raw columns (in place)."""
    graph = model.graph
    ids_input = next((v for v in graph.inputs if v.name == INPUT_NAME), None)
    if ids_input is None:
        raise Fm2OnnxError(f"the graph has no {INPUT_NAME!r} input: not an fm2onnx id graph")
    contract = RawContract.of(pre)
    batch = ids_input.shape[0] if ids_input.shape is not None else "batch"
    w = GraphWriter("raw/")
    per_field: dict[int, ir.Value] = {}
    inputs = []

    numeric_fields = [j for j, f in enumerate(pre.fields) if f.kind == "numeric"]
    if numeric_fields:
        x = ir.Value(name=NUMERIC_INPUT, type=ir.TensorType(ir.DataType.DOUBLE),
                     shape=ir.Shape([batch, len(numeric_fields)]))
        inputs.append(x)
        per_field.update(zip(numeric_fields, _numeric_ids(w, x, pre, numeric_fields)))

    if contract.categorical_columns:
        s = ir.Value(name=CATEGORICAL_INPUT, type=ir.TensorType(ir.DataType.STRING),
                     shape=ir.Shape([batch, len(contract.categorical_columns)]))
        inputs.append(s)
        columns = dict(zip(contract.categorical_columns, _columns(w, s, len(contract.categorical_columns))))
        hours: dict[str, tuple[ir.Value, ir.Value]] = {}
        for j, f in enumerate(pre.fields):
            if f.kind == "categorical":
                tokens = np.array(pre.tokens(j), dtype=object)
                per_field[j] = label_encoder(w, columns[f.source], tokens, np.arange(1, len(tokens) + 1),
                                             placeholder="")
            elif f.kind in ("day_of_week", "hour_of_day"):
                if f.source not in hours:
                    hours[f.source] = _hour_ids(w, columns[f.source], *_hour_tables(pre, f.source))
                per_field[j] = hours[f.source][0 if f.kind == "day_of_week" else 1]

    ids = w.op("Concat", [per_field[j] for j in range(pre.n_fields)], axis=1) if pre.n_fields > 1 else per_field[0]
    w.insert_into(graph, before=graph.node(0))
    ids_input.replace_all_uses_with(ids)
    graph.inputs.clear()
    graph.inputs.extend(inputs)
    ids.name, ids.dtype, ids.shape = IDS_OUTPUT, ir.DataType.INT64, ir.Shape([batch, pre.n_fields])
    graph.outputs.append(ids)
    model.opset_imports[""] = max(model.opset_imports.get("", MIN_OPSET), MIN_OPSET)
    model.opset_imports["ai.onnx.ml"] = ML_OPSET
    model.graph.opset_imports.update(model.opset_imports)
    model.metadata_props.update(contract.metadata(pre))
    return contract
