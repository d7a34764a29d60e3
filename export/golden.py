"""Golden outputs: what a served model file returns on fixed rows, recorded once and checked again
later, so a CI job notices when an onnxruntime or fm2onnx upgrade moves a prediction.

    fm2onnx check model.onnx --golden golden.npz --write    record (write_golden)
    fm2onnx check model.onnx --golden golden.npz            re-run and compare (check_golden)

The npz (read with ``np.load``; no pickles):

    meta               0-d str: JSON -- golden_version, the model file's metadata, its inputs and
                       outputs, recorded_with (fm2onnx, onnxruntime), tolerance, rows
    feed.<input>       the rows, one array per graph input (strings as a numpy str array)
    served.<output>    every output, the rows fed in serving batches (``serving_batches``)
    served_batch_size  int64 [rows]: size of the request that scored each row in served.*
    alone.<output>     every output, each row fed as a request of its own

A cached graph branches on the batch size, and with compact tables (float16, int8) the same row
scores slightly differently alone (the compact tables) and in a batch (the float32 GEMM form). So
every row is recorded both ways and each way is compared with itself: like with like.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from fm2onnx import __version__
from fm2onnx.errors import Fm2OnnxError
from fm2onnx.files import check_output_file, require_file, written_atomically

from .contract import CONTEXT_INPUT, INPUT_NAME, FieldRoles, spec_of
from .ort import session
from .parity import ATOL, parity_ids, require_rows, require_tolerance, serving_batches
from .raw_input import CATEGORICAL_INPUT, RawContract
from .raw_rows import HOUR_EDGE_CASES, _numeric_pool, _random_hour, graph_feeds
from .raw_tables import bucket_edge
from .request_parity import as_requests, request_groups, request_outputs, request_roles

GOLDEN_VERSION = 1
DEFAULT_ROWS = 512
# Same file, same rows: only the runtime's arithmetic can move an output, whatever the table dtype,
# so the float32 parity tolerance (|Δlogit| <= tol + tol·|logit|) suits every file.
DEFAULT_TOLERANCE = ATOL
LOGIT = "logit"
# The model file's metadata kept in the golden file: what it was recorded on, and what to compare.
MODEL_KEYS = ("form", "table_dtype", "fm2onnx_version", "model_kind", "field_names", "input", "layout",
              "batched", "small_batch_max", "serving_schema_version", "source_checkpoint_sha256", "field_roles")
STRING_CASES = ["", "never-seen", "ünïcødé", "0", " 1"]


@dataclass(frozen=True)
class Worst:
    row: int
    how: str  # "alone" or "served in a batch of N"
    recorded: float
    now: float

    @property
    def delta(self) -> float:
        delta = abs(self.now - self.recorded)
        return delta if np.isfinite(delta) else float("inf")


@dataclass
class GoldenCheck:
    golden: str
    model: str
    rows: int
    atol: float
    rtol: float
    past: int  # scorings (rows x the two ways) past the tolerance
    scorings: int
    max_abs_logit_delta: float
    worst: Worst | None  # the scoring furthest past the tolerance (relative to it)
    other_outputs: str  # "" or where an integer output (a raw graph's feature_ids) differs
    recorded_with: str
    now_with: str

    @property
    def ok(self) -> bool:
        return self.past == 0 and not self.other_outputs

    def tolerance_text(self) -> str:
        return f"|Δlogit| <= {self.atol:.0e} + {self.rtol:.0e}·|logit|"

    def describe(self) -> str:
        """One line: the summary, or the worst row when the check fails."""
        runtimes = (f"{self.now_with}, as recorded" if self.now_with == self.recorded_with
                    else f"recorded on {self.recorded_with}, now {self.now_with}")
        if self.ok:
            return (f"{self.golden}: {self.model} matches: {self.rows:,} rows, alone and in serving batches, "
                    f"max |Δlogit| {self.max_abs_logit_delta:.2e} ({self.tolerance_text()}; {runtimes})")
        parts = []
        if self.past:
            w = self.worst
            parts.append(f"{self.past:,} of {self.scorings:,} scorings past {self.tolerance_text()}; worst row "
                         f"{w.row} ({w.how}): logit recorded {w.recorded:.6f}, now {w.now:.6f}, |Δ| {w.delta:.2e}")
        if self.other_outputs:
            parts.append(self.other_outputs)
        return f"{self.golden}: {self.model} moved: " + "; ".join(parts) + f" ({runtimes})"

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok, "describe": self.describe()}


# ----------------------------------------------------------------------------- the model file

def open_model(path: str | Path) -> tuple[ort.InferenceSession, dict[str, str]]:
    """(session, metadata) of a model file; a missing or unreadable file is one line naming it (``session``)."""
    sess = session(path)
    request_roles(sess, str(path))  # a request graph's roles must fit its inputs before any row is scored
    return sess, dict(sess.get_modelmeta().custom_metadata_map)


def input_signature(sess: ort.InferenceSession) -> dict[str, list]:
    """input name -> [type, shape] with dynamic dims as None."""
    return {i.name: [i.type, [d if isinstance(d, int) else None for d in i.shape]] for i in sess.get_inputs()}


def runtime_text(fm2onnx_version: str, ort_version: str) -> str:
    return f"onnxruntime {ort_version}, fm2onnx {fm2onnx_version}"


# ----------------------------------------------------------------------------- rows

def random_feeds(path: Path, props: dict[str, str], rows: int, seed: int) -> dict[str, np.ndarray]:
    """Seeded rows: ids (incl. 0, negative, out of range) for an id graph, probe rows for a raw one."""
    if props.get("input") == "raw":
        return raw_probe_feeds(path, props, rows, seed)
    # spec_of reads nothing but metadata_props, which onnxruntime gave without loading the graph twice
    spec = spec_of(SimpleNamespace(metadata_props=props), str(path))
    ids = parity_ids(spec, rows, seed)
    if props.get("form") == "request":  # full rows in requests of 0 to 144 candidates
        ids = as_requests(ids, FieldRoles.of_props(props, str(path)))
    return {INPUT_NAME: ids}


def raw_contract(props: dict[str, str]) -> RawContract:
    return RawContract(tuple(json.loads(props.get("numeric_columns", "[]"))),
                       tuple(json.loads(props.get("categorical_columns", "[]"))))


def graph_vocabularies(path: Path) -> tuple[list[float], dict[int, list[str]]]:
    """The keys of a raw graph's LabelEncoders: (every numeric key, string column -> its tokens), so that
    probe rows need no checkpoint. A string LabelEncoder reads one column of a Split of the string input."""
    graph = onnx.load(str(path), load_external_data=False).graph
    column_of = {CATEGORICAL_INPUT: 0}
    for node in graph.node:
        if node.op_type == "Split" and node.input[0] == CATEGORICAL_INPUT:
            column_of.update({name: j for j, name in enumerate(node.output)})
    numbers: list[float] = []
    tokens: dict[int, list[str]] = {}
    for node in graph.node:
        keys = next((a.t for a in node.attribute if a.name == "keys_tensor"), None)
        if node.op_type != "LabelEncoder" or keys is None:
            continue
        values = numpy_helper.to_array(keys)
        if values.dtype.kind in "OSU":
            tokens.setdefault(column_of.get(node.input[0], -1), []).extend(str(v) for v in values)
        else:
            numbers.extend(float(v) for v in values)
    return numbers, tokens


def raw_probe_feeds(path: Path, props: dict[str, str], rows: int, seed: int) -> dict[str, np.ndarray]:
    """Rows like ``raw_rows.probe_rows``, from the graph alone: each string column draws from its own
    tokens, unseen, missing and odd values (a column without tokens, such as Avazu's hour, from hour
    values valid and not); numeric columns from the graph's keys, bucket edges and their neighbours,
    and missing, infinite, negative and malformed numbers. Each cell is drawn independently."""
    rng = np.random.default_rng(seed)
    contract = raw_contract(props)
    numbers, tokens = graph_vocabularies(path)
    edges = bucket_edge(np.arange(48))
    edges = edges[np.isfinite(edges)]
    number_pool = _numeric_pool([], integer=False) + numbers + [float(x) for x in edges]
    number_pool += [float(x) for x in np.nextafter(edges, 0)] + [float(np.floor(x)) for x in edges]
    out: dict[str, list] = {}
    for column in contract.numeric_columns:
        out[column] = [number_pool[i] for i in rng.integers(0, len(number_pool), rows)]
    for j, column in enumerate(contract.categorical_columns):
        own = (tokens.get(j) or tokens.get(-1, []))[:200]  # -1: keys of a column the Split tracing missed
        pool = own + STRING_CASES if own else HOUR_EDGE_CASES + [_random_hour(rng) for _ in range(40)] + STRING_CASES
        out[column] = [pool[i] for i in rng.integers(0, len(pool), rows)]
    return graph_feeds(contract, out)


def data_feeds(path: Path, props: dict[str, str], checkpoint: Path, data: Path, fmt: str | None,
               rows: int) -> dict[str, np.ndarray]:
    """The first ``rows`` rows of ``data``, as ``fm2onnx check --data`` encodes them (an id graph) or
    as a caller passes them (a raw graph): both need the checkpoint's vocabularies."""
    from fm2onnx.checkpoint import load_checkpoint

    from .check import ensure_same_model

    ckpt = load_checkpoint(checkpoint)
    ensure_same_model(ckpt, props, path)
    if props.get("input") != "raw":
        from .data_rows import encoded_rows

        return {INPUT_NAME: encoded_rows(checkpoint, data, fmt, rows)[0]}
    from .raw_input import preprocessor_of
    from .raw_rows import read_rows

    pre = preprocessor_of(ckpt)
    if RawContract.of(pre) != raw_contract(props):
        raise Fm2OnnxError(f"{path}: its raw columns differ from the preprocessing of {checkpoint}")
    return graph_feeds(raw_contract(props), read_rows(data, pre, rows, fmt))


def storable(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """String columns as a numpy str array (an object array would need pickles to load); a value the
    str array cannot hold as it is (a trailing NUL) is refused rather than recorded altered."""
    out = {}
    for name, array in feeds.items():
        if array.dtype == object:
            as_str = array.astype(str)
            if not np.array_equal(as_str.astype(object), array):
                raise Fm2OnnxError(f"input {name!r}: a value ends in NUL, which an npz str array drops")
            array = as_str
        out[name] = array
    return out


def runnable(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """onnxruntime takes strings as an object array."""
    return {name: a.astype(object) if a.dtype.kind == "U" else a for name, a in feeds.items()}


# ----------------------------------------------------------------------------- scoring

def score_both_ways(sess: ort.InferenceSession, feeds: dict[str, np.ndarray],
                    cuts: list[slice] | None = None) -> dict[str, np.ndarray]:
    """served.* (in ``cuts``, by default serving batches: single requests, a small batch, the rest),
    served_batch_size, and alone.* (every row a request of its own), so every batch-size branch is
    pinned for some rows and every row is pinned on the one-request branch."""
    names = [o.name for o in sess.get_outputs()]
    feeds = runnable(feeds)
    rows = len(next(iter(feeds.values())))
    roles = request_roles(sess)
    if roles is not None:  # a request graph: full rows in, scored as the requests they stand for
        cuts = request_groups(feeds[INPUT_NAME], roles)
        run = lambda cut: list(request_outputs(sess, feeds[INPUT_NAME][cut], roles).values())  # noqa: E731
    else:
        cuts = serving_batches(rows) if cuts is None else cuts
        run = lambda cut: sess.run(None, {k: v[cut] for k, v in feeds.items()})  # noqa: E731
    served = [run(cut) for cut in cuts]
    alone = [run(slice(i, i + 1)) for i in range(rows)]
    out = {f"served.{n}": np.concatenate([run[i] for run in served]) for i, n in enumerate(names)}
    out.update({f"alone.{n}": np.concatenate([run[i] for run in alone]) for i, n in enumerate(names)})
    out["served_batch_size"] = np.concatenate([np.full(c.stop - c.start, c.stop - c.start, np.int64) for c in cuts])
    return out


def recorded_cuts(golden: Path, batch_size: np.ndarray) -> list[slice]:
    """The requests the rows were served in, read back from served_batch_size: a check re-runs them as
    recorded, whatever ``serving_batches`` has become since."""
    cuts, start = [], 0
    while start < len(batch_size):
        size = int(batch_size[start])
        if size < 1 or np.any(batch_size[start:start + size] != size) or start + size > len(batch_size):
            raise Fm2OnnxError(f"{golden}: malformed served_batch_size at row {start}")
        cuts.append(slice(start, start + size))
        start += size
    return cuts


# ----------------------------------------------------------------------------- write

def write_golden(model: str | Path, golden: str | Path, *, rows: int = DEFAULT_ROWS, seed: int = 0,
                 data: str | Path | None = None, data_format: str | None = None,
                 checkpoint: str | Path | None = None, tolerance: float | None = None,
                 force: bool = False) -> dict:
    """Record ``model``'s outputs on seeded random rows (+ the first ``rows`` rows of ``data``, which
    need the ``checkpoint``) in ``golden``; returns the file's meta."""
    model, golden = Path(model), Path(golden)
    if data is not None and checkpoint is None:
        raise Fm2OnnxError(f"{data}: encoding its rows needs the checkpoint's vocabularies (--checkpoint)")
    if checkpoint is not None and data is None:
        raise Fm2OnnxError(f"{checkpoint}: --checkpoint encodes --data rows; without --data it has no use")
    require_rows(rows, "a golden file")
    require_tolerance(tolerance)
    check_output_file(golden, force=force, inputs=[model, data, checkpoint])
    sess, props = open_model(model)
    parts = [random_feeds(model, props, rows, seed)]
    if data is not None:
        parts.append(data_feeds(model, props, Path(checkpoint), Path(data), data_format, rows))
    feeds = storable({name: np.concatenate([p[name] for p in parts]) for name in parts[0]})
    outputs = score_both_ways(sess, feeds)
    tol = DEFAULT_TOLERANCE if tolerance is None else tolerance
    meta = {"golden_version": GOLDEN_VERSION, "model_file": model.name,
            "model": {k: props[k] for k in MODEL_KEYS if k in props},
            "inputs": input_signature(sess), "outputs": [o.name for o in sess.get_outputs()],
            "recorded_with": {"fm2onnx": __version__, "onnxruntime": ort.__version__},
            "tolerance": {"atol": tol, "rtol": tol},
            "rows": {"random": rows, "seed": seed, "data": len(feeds[next(iter(feeds))]) - rows,
                     "data_file": Path(data).name if data is not None else None},
            "branch_gap": branch_gap(outputs)}
    arrays = {"meta": np.array(json.dumps(meta)), **{f"feed.{k}": v for k, v in feeds.items()}, **outputs}
    with written_atomically(golden) as tmp, open(tmp, "wb") as f:  # np.savez would add ".npz" to the name
        np.savez_compressed(f, **arrays)
    return meta


def branch_gap(outputs: dict[str, np.ndarray]) -> float:
    """max |Δlogit| between a row scored inside a batch and the same row alone (0 without branches)."""
    batched = outputs["served_batch_size"] > 1
    served, alone = (outputs[f"{way}.{LOGIT}"].astype(np.float64) for way in ("served", "alone"))
    return float(np.abs(served - alone)[batched].max(initial=0.0))


def describe_written(golden: Path, meta: dict) -> str:
    rows, tol = meta["rows"], meta["tolerance"]
    data = f" + {rows['data']:,} rows of {rows['data_file']}" if rows["data_file"] else ""
    dtype = meta["model"].get("table_dtype", "float32")
    return (f"wrote {golden}: {rows['random']:,} random rows (seed {rows['seed']}){data}, each scored alone "
            f"and in serving batches; tolerance |Δlogit| <= {tol['atol']:.0e} + {tol['rtol']:.0e}·|logit|; "
            f"a row in a batch vs alone: max |Δlogit| {meta['branch_gap']:.2e} ({dtype} tables)")


# ----------------------------------------------------------------------------- check

def load_golden(golden: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(meta, arrays) of a golden file; anything else is one line naming it."""
    require_file(golden, "golden", hint=f"record one with --golden {golden} --write")
    if not zipfile.is_zipfile(golden):  # np.load would try a text file as pickled data
        raise Fm2OnnxError(f"{golden}: not an npz file")
    try:
        with np.load(golden, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # a damaged zip, or pickled entries
        raise Fm2OnnxError(f"{golden}: not a readable npz file ({exc})") from None
    if "meta" not in arrays:
        raise Fm2OnnxError(f"{golden}: no 'meta' entry: not an fm2onnx golden file")
    try:
        meta = json.loads(str(arrays.pop("meta")))
        version = int(meta["golden_version"])
    except (ValueError, KeyError, TypeError) as exc:
        raise Fm2OnnxError(f"{golden}: malformed 'meta' ({exc})") from None
    if version > GOLDEN_VERSION:
        raise Fm2OnnxError(f"{golden}: golden format version {version}; this fm2onnx reads up to {GOLDEN_VERSION}")
    missing = [k for k in [*(f"{w}.{LOGIT}" for w in ("served", "alone")), "served_batch_size"] if k not in arrays]
    if missing:
        raise Fm2OnnxError(f"{golden}: lacks {', '.join(missing)}: not an fm2onnx golden file")
    rows = len(arrays["served_batch_size"])
    uneven = [name for name, a in arrays.items() if a.ndim == 0 or len(a) != rows]
    if uneven:
        raise Fm2OnnxError(f"{golden}: {uneven[0]} does not have the {rows:,} rows of served_batch_size")
    return meta, arrays


def ensure_recorded_for(golden: Path, meta: dict, feeds: dict[str, np.ndarray], model: Path,
                      sess: ort.InferenceSession, props: dict[str, str]) -> None:
    """A golden file of another model would 'move' for a confusing reason: say what differs instead."""
    recorded, now = meta.get("inputs", {}), input_signature(sess)
    expected = expected_feeds(sess, now)
    if sorted(recorded) != sorted(now) or sorted(feeds) != sorted(expected):
        raise Fm2OnnxError(f"{golden}: recorded for inputs {sorted(recorded)}, but {model} takes {sorted(now)}")
    for name, (kind, shape) in now.items():
        if recorded[name][0] != kind:
            raise Fm2OnnxError(f"{golden}: input {name!r} recorded as {recorded[name][0]}, but {model} takes "
                               f"{kind} {dims_text(shape)}")
    ensure_feeds_fit(golden, feeds, expected, request=CONTEXT_INPUT in now)
    roles = meta.get("model", {}).get("field_roles")
    if roles is not None and roles != props.get("field_roles"):
        raise Fm2OnnxError(f"{golden}: recorded with field roles {roles}, {model} has {props.get('field_roles')}")
    want, have = meta.get("model", {}).get("field_names"), props.get("field_names")
    if want is not None and have is not None and json.loads(want) != json.loads(have):
        want, have = json.loads(want), json.loads(have)
        at = next((i for i, (a, b) in enumerate(zip(want, have)) if a != b), min(len(want), len(have)))
        raise Fm2OnnxError(f"{golden}: recorded for {len(want)} fields, {model} has {len(have)}; field {at} is "
                           f"{(want + [None])[at]!r} in the recording, {(have + [None])[at]!r} in the model")


def expected_feeds(sess: ort.InferenceSession, signature: dict[str, list]) -> dict[str, list]:
    """feed.<input> name -> [type, shape] that runs on ``sess``: its inputs (``signature``), or for a
    request graph the full rows of ids its requests are cut from."""
    roles = request_roles(sess)
    if roles is None:
        return signature
    return {INPUT_NAME: [signature[CONTEXT_INPUT][0], [None, len(roles.context) + len(roles.items)]]}


def ensure_feeds_fit(golden: Path, feeds: dict[str, np.ndarray], expected: dict[str, list], *,
                     request: bool = False) -> None:
    """Each recorded feed has the type and shape its input takes (a request graph: the full rows its
    requests are cut from): an entry re-saved as another dtype would otherwise fail inside onnxruntime."""
    for name, (kind, shape) in expected.items():
        array, takes = feeds[name], numpy_type(kind)
        wants = "the request graph's full rows take" if request else f"the model's input {name} takes"
        have = "str" if array.dtype.kind in "UO" else str(array.dtype)
        if have != takes:
            raise Fm2OnnxError(f"{golden}: feed.{name} is {have}, {wants} {takes}")
        if array.ndim != len(shape) or any(d is not None and d != h for d, h in zip(shape, array.shape)):
            raise Fm2OnnxError(f"{golden}: feed.{name} is {dims_text([None, *array.shape[1:]])}, {wants} "
                               f"{dims_text(shape)}")


def numpy_type(ort_type: str) -> str:
    """'tensor(int64)' -> 'int64', 'tensor(float)' -> 'float32', 'tensor(string)' -> 'str'."""
    inner = ort_type.removeprefix("tensor(").removesuffix(")")
    return {"float": "float32", "double": "float64", "string": "str"}.get(inner, inner)


def dims_text(shape: list) -> str:
    return "[" + ", ".join("batch" if d is None else str(d) for d in shape) + "]"


def worst_of(recorded: dict[str, np.ndarray], now: dict[str, np.ndarray], batch_size: np.ndarray,
             atol: float, rtol: float) -> tuple[int, int, float, Worst | None]:
    """(scorings past tolerance, scorings, max |Δlogit|, the scoring furthest past it) over both ways."""
    past = scorings = 0
    max_delta, worst, worst_excess = 0.0, None, -1.0
    for way in ("served", "alone"):
        want = recorded[f"{way}.{LOGIT}"].astype(np.float64)
        got = now[f"{way}.{LOGIT}"].astype(np.float64)
        delta = np.abs(got - want)
        delta = np.where(np.isfinite(delta) | (np.isnan(want) & np.isnan(got)), np.nan_to_num(delta), np.inf)
        bound = atol + rtol * np.abs(np.nan_to_num(want))
        excess = delta / np.maximum(bound, np.finfo(np.float64).tiny)  # --tolerance 0 divides by no zero
        past += int(np.count_nonzero(delta > bound))
        scorings += len(want)
        max_delta = max(max_delta, float(delta.max(initial=0.0)))
        if len(want) and excess.max() > worst_excess:
            row = int(np.argmax(excess))
            worst_excess = float(excess[row])
            how = "alone" if way == "alone" else f"served in a batch of {int(batch_size[row])}"
            worst = Worst(row, how, float(want[row]), float(got[row]))
    return past, scorings, max_delta, worst


def integer_outputs_differ(recorded: dict[str, np.ndarray], now: dict[str, np.ndarray]) -> str:
    """Integer outputs (a raw graph's feature_ids) are compared exactly: where the first one differs."""
    for key, want in recorded.items():
        if want.dtype.kind not in "iu" or key == "served_batch_size" or key not in now:
            continue
        rows = np.flatnonzero((want != now[key]).reshape(len(want), -1).any(axis=1))
        if len(rows):
            way, name = key.split(".", 1)
            return f"{name} differs on {len(rows):,} rows ({way}), first row {int(rows[0])}"
    return ""


def check_golden(model: str | Path, golden: str | Path, *, tolerance: float | None = None) -> GoldenCheck:
    """Re-run ``golden``'s rows on ``model`` both ways, and compare with the recording; ``tolerance``
    (atol = rtol) replaces the file's."""
    model, golden = Path(model), Path(golden)
    meta, arrays = load_golden(golden)
    sess, props = open_model(model)
    feeds = {name[len("feed."):]: a for name, a in arrays.items() if name.startswith("feed.")}
    ensure_recorded_for(golden, meta, feeds, model, sess, props)
    now = score_both_ways(sess, feeds, recorded_cuts(golden, arrays["served_batch_size"]))
    missing = [k for k in arrays if (k.startswith("served.") or k.startswith("alone.")) and k not in now]
    if missing:
        raise Fm2OnnxError(f"{golden}: recorded outputs {missing} that {model} does not have")
    tol = meta.get("tolerance", {})
    atol = tol.get("atol", DEFAULT_TOLERANCE) if tolerance is None else tolerance
    rtol = tol.get("rtol", DEFAULT_TOLERANCE) if tolerance is None else tolerance
    past, scorings, max_delta, worst = worst_of(arrays, now, arrays["served_batch_size"], atol, rtol)
    was = meta.get("recorded_with", {})
    return GoldenCheck(str(golden), str(model), len(arrays["served_batch_size"]), atol, rtol, past, scorings,
                       max_delta, worst, integer_outputs_differ(arrays, now),
                       runtime_text(was.get("fm2onnx", "?"), was.get("onnxruntime", "?")),
                       runtime_text(__version__, ort.__version__))
