"""``fm2onnx package``: ONNX models -> ORT-format files for onnxruntime's minimal and reduced-operator
builds (Android, iOS, WebAssembly), one required-operators config covering them all, and a summary.

onnxruntime's own converter (``onnxruntime.tools.convert_onnx_models_to_ort``, *Fixed* optimization
style) runs once on a scratch directory holding a link to every model (and to its external-data
sidecar, which the converter reads beside the model), so it writes one ``.ort`` per model and one
combined ``required_operators.config``. Each ``.ort`` file is then loaded from a directory without
the sidecar (an ORT-format file holds its weights inside) and held to parity with its ``.onnx`` on
onnxruntime, fed in serving batches so every batch-size branch runs. Only when every file passes are
they moved into place (export/staging.py).

Package layout: ``<name>.ort`` per ``<name>.onnx``, ``required_operators.config``, ``summary.json``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import onnx_ir as ir
import onnxruntime as ort

from fm2onnx.errors import Fm2OnnxError
from fm2onnx.files import refuse_overwrite

from .contract import INPUT_NAME, spec_of
from .model_io import load_model, tensor_bytes
from .ort import session
from .parity import ATOL, RTOL, compare, outputs_in_serving_batches, parity_ids, require_rows
from .raw_input import CATEGORICAL_INPUT, NUMERIC_INPUT
from .raw_rows import HOUR_EDGE_CASES
from .staging import move_into_place, staged_directory

CONFIG_NAME = "required_operators.config"  # what the converter names the config of a directory
SUMMARY_NAME = "summary.json"
OPTIMIZATION_STYLE = "Fixed"  # optimizations baked in at conversion: what a minimal build (no optimizer) needs
# Flatbuffers address 32-bit offsets, so an ORT-format file, which holds every weight inside, stops at 2 GiB.
ORT_FORMAT_LIMIT = 2**31 - 1
# The converter skips these names (its own earlier outputs), so such a model would silently go missing.
SKIPPED_SUFFIX = ".optimized.onnx"
# Ops whose result is not a string even when they read one (the rest pass strings through).
STRING_CONSUMERS = {"LabelEncoder", "Cast", "RegexFullMatch", "Equal", "Shape", "Size"}

Operators = dict[str, dict[int, list[str]]]  # domain -> opset -> op types


@dataclass
class Source:
    """One model to package, with what the gate and the summary need; the graph itself is not kept."""

    path: Path
    ort_name: str
    props: dict[str, str]
    weight_bytes: int
    sidecars: list[Path]
    feeds: dict[str, np.ndarray]
    string_ops: list[str]

    @property
    def raw(self) -> bool:
        return self.props.get("input") == "raw"


@dataclass
class PackageResult:
    written: list[Path] = field(default_factory=list)
    summary: dict = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)


def package_models(models: list[str | Path], output: str | Path, *, force: bool = False, rows: int = 512,
                   echo: Callable[[str], None] = lambda line: None) -> PackageResult:
    """Convert ``models`` into ``output`` (see the module docstring); nothing is written unless every
    ``.ort`` file loads and matches its ``.onnx``, and nothing is replaced unless ``force``."""
    if not models:
        raise Fm2OnnxError("no models to package")
    require_rows(rows, "the parity gate")
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise Fm2OnnxError(f"{output}: not a directory (-o names the package directory)")
    sources = [read_source(Path(m), rows) for m in models]
    check_names(sources)
    refuse_overwrite(*[output / s.ort_name for s in sources], output / CONFIG_NAME, output / SUMMARY_NAME,
                     force=force)
    result = PackageResult()

    def report(line: str) -> None:
        result.lines.append(line)
        echo(line)

    with staged_directory(output) as scratch:
        link_sources(sources, scratch / "in")
        convert(scratch / "in", scratch / "out")
        config = check_converted(sources, scratch / "out")
        ort_files = [scratch / "out" / s.ort_name for s in sources]
        parities = [gate(s, f) for s, f in zip(sources, ort_files)]  # all pass before any op listing
        operators = ort_operators(ort_files, scratch / "ops")
        entries = [describe(*args, report) for args in zip(sources, ort_files, parities, operators)]
        combined = read_config(config)
        check_config_covers(config, combined, entries)
        result.summary = summary(entries, combined)
        (scratch / "out" / SUMMARY_NAME).write_text(json.dumps(result.summary, indent=2) + "\n")
        for line in operator_lines(CONFIG_NAME, combined):
            report(line)
        result.written = move_into_place([*ort_files, config, scratch / "out" / SUMMARY_NAME], output)
    for path in result.written:
        report(f"wrote {path} ({path.stat().st_size:,} bytes)")
    return result


def read_source(path: Path, rows: int) -> Source:
    """The model's metadata, weight bytes, sidecars and parity feeds; refused early when the ORT format
    cannot hold it or the converter would skip it."""
    if not path.name.endswith(".onnx") or path.name.endswith(SKIPPED_SUFFIX):
        raise Fm2OnnxError(f"{path}: expected a .onnx file (not {SKIPPED_SUFFIX}, which the converter skips)")
    model = load_model(path)
    weights = tensor_bytes(model)
    if weights > ORT_FORMAT_LIMIT:
        raise Fm2OnnxError(f"{path}: {weights:,} bytes of weights; an ORT-format file holds its weights inside "
                           "and stops at 2 GiB (flatbuffers): serve this model as .onnx with its sidecar")
    props = dict(model.metadata_props)
    feeds = raw_feeds(model, rows) if props.get("input") == "raw" else {
        INPUT_NAME: parity_ids(spec_of(model, str(path)), rows)}
    return Source(path=path, ort_name=path.name.removesuffix(".onnx") + ".ort", props=props, weight_bytes=weights,
                  sidecars=external_files(model, path), feeds=feeds, string_ops=string_ops(model))


def external_files(model: ir.Model, path: Path) -> list[Path]:
    """The files the model's external tensors live in (fm2onnx writes one, ``<model>.onnx.data``)."""
    locations = {value.const_value.location for graph in model.graphs() for value in graph.initializers.values()
                 if isinstance(value.const_value, ir.ExternalTensor)}
    return [path.parent / location for location in sorted(locations)]  # load_model saw them all there


def check_names(sources: list[Source]) -> None:
    """One ``.ort`` per model, named after it: two models of one name would overwrite each other."""
    seen: dict[str, Path] = {}
    for s in sources:
        if s.ort_name in seen and seen[s.ort_name].resolve() == s.path.resolve():
            raise Fm2OnnxError(f"{s.path}: given twice")
        if s.ort_name in seen:
            raise Fm2OnnxError(f"{s.path}: same file name as {seen[s.ort_name]}; both would become {s.ort_name}")
        seen[s.ort_name] = s.path


def link_sources(sources: list[Source], directory: Path) -> None:
    """Each model, and its sidecars at the paths it names them by (relative to the model)."""
    directory.mkdir()
    for s in sources:
        for file in [s.path, *s.sidecars]:
            relative = Path(os.path.relpath(file, s.path.parent))
            if relative.parts[0] == os.pardir:
                raise Fm2OnnxError(f"{s.path}: its external data {file} lies outside the model's directory")
            link = directory / relative
            if link.exists():
                raise Fm2OnnxError(f"{file}: another packaged model uses a file of the same name ({relative})")
            link.parent.mkdir(parents=True, exist_ok=True)
            try:
                link.symlink_to(file.resolve())
            except OSError:  # filesystems without symlinks: a copy does as well
                shutil.copy2(file, link)


def convert(models_dir: Path, out_dir: Path) -> None:
    """onnxruntime's converter on ``models_dir``, as a child process: its prints and native log stay
    out of ours, and a crash in the converter cannot take this process with it."""
    env = {k: v for k, v in os.environ.items() if k != "ORT_CONVERT_ONNX_MODELS_TO_ORT_OPTIMIZATION_LEVEL"}
    command = [sys.executable, "-m", "onnxruntime.tools.convert_onnx_models_to_ort", "--optimization_style",
               OPTIMIZATION_STYLE, "--output_dir", str(out_dir), str(models_dir)]
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise Fm2OnnxError(conversion_error(done.stdout + done.stderr, models_dir))


def conversion_error(log: str, models_dir: Path) -> str:
    """One line from the converter's output: the model it failed on and why."""
    for scratch in {str(models_dir.resolve()), str(models_dir)}:  # paths that are gone by the time one reads this
        log = log.replace(scratch + os.sep, "")
    failed = re.search(r"Error converting (\S+): (.*)", log)
    if failed:
        name = Path(failed.group(1)).name
        return f"{name}: onnxruntime's converter failed: {failed.group(2).strip()[:300]}"
    last = [line for line in log.strip().splitlines() if line.strip()][-1:] or ["no output"]
    names = ", ".join(sorted(p.name for p in models_dir.glob("*.onnx")))  # which one failed is not known
    return f"{names}: onnxruntime's converter failed: {last[0].strip()[:300]}"


def check_converted(sources: list[Source], out_dir: Path) -> Path:
    """The converter writes ``<name>.ort`` per model and one config; anything missing is an error."""
    for s in sources:
        if not (out_dir / s.ort_name).is_file():
            raise Fm2OnnxError(f"{s.path}: onnxruntime's converter wrote no {s.ort_name}")
    config = out_dir / CONFIG_NAME
    if not config.is_file():
        raise Fm2OnnxError(f"{out_dir.parent.parent / CONFIG_NAME}: onnxruntime's converter wrote no config")
    # its header lists the models by their scratch paths, which are gone once the files are in place
    lines = config.read_text().splitlines()
    config.write_text("".join(f"# - {Path(line[4:]).name}\n" if line.startswith("# - ") else line + "\n"
                              for line in lines))
    return config


# ----------------------------------------------------------------------------- parity of the .ort files


def describe(source: Source, ort_path: Path, parity: dict, operators: Operators,
             report: Callable[[str], None]) -> dict:
    """The summary entry of one packaged model, and its printed lines."""
    entry = {"onnx": str(source.path), "onnx_bytes": source.path.stat().st_size,
             "sidecar_bytes": sum(f.stat().st_size for f in source.sidecars), "ort": source.ort_name,
             "ort_bytes": ort_path.stat().st_size, "model_kind": source.props.get("model_kind"),
             "form": source.props.get("form"), "input": "raw" if source.raw else "ids",
             "table_dtype": source.props.get("table_dtype"), "weight_bytes": source.weight_bytes,
             "operators": operators_json(operators), "string_ops": source.string_ops, "parity": parity}
    sidecar = f" + sidecar {entry['sidecar_bytes']:,} bytes" if source.sidecars else ""
    report(f"{source.path.name} ({entry['onnx_bytes']:,} bytes{sidecar}) -> {source.ort_name} "
           f"({entry['ort_bytes']:,} bytes): {entry['model_kind']}, {entry['form']}, {entry['input']} input")
    for line in operator_lines("  ops", operators):
        report(line)
    if source.raw:  # what a reduced build must keep for these graphs
        report(f"  raw input: ai.onnx.ml LabelEncoder and string tensors (ops on strings: "
               f"{', '.join(source.string_ops)}); build without --disable_ml_ops")
    report(f"  parity {source.ort_name} vs {source.path.name}: {parity['describe']}")
    return entry


def gate(source: Source, ort_path: Path) -> dict:
    """Every output of the .ort file against the .onnx's on the same feeds, in serving batches (single
    requests, a small batch, the rest), so every batch-size branch runs: floats within the uncached
    tolerance, integers (a raw graph's ids) identical."""
    where = f"{ort_path.name}: not written"
    try:
        got = outputs_in_serving_batches(session(ort_path), source.feeds)
    except Exception as exc:  # onnxruntime raises its own exception types for unloadable or failing files
        reason = first_line(exc).replace(str(ort_path.parent) + os.sep, "")  # the scratch directory is gone
        raise Fm2OnnxError(f"{where}: onnxruntime cannot run it ({reason})") from None
    want = outputs_in_serving_batches(session(source.path), source.feeds)
    if list(got) != list(want):
        raise Fm2OnnxError(f"{where}: its outputs {list(got)} differ from {source.path.name}'s {list(want)}")
    max_abs = {}
    for name, expected in want.items():
        if expected.dtype.kind in "iub":
            if expected.shape != got[name].shape or not np.array_equal(expected, got[name]):
                raise Fm2OnnxError(f"{where}: output {name!r} differs from {source.path.name}'s")
            continue
        parity = compare(expected, got[name], atol=ATOL, rtol=RTOL)
        if not parity.ok:
            raise Fm2OnnxError(f"{where}: output {name!r} disagrees with {source.path.name} ({parity.describe()}, "
                               f"tolerance {ATOL:g} + {RTOL:g}·|value|)")
        max_abs[name] = parity.max_abs
    rows = len(next(iter(source.feeds.values())))
    what = "raw rows made from the graph's vocabularies" if source.raw else \
        "random ids (incl. 0, negative, out-of-range)"
    ids = ""
    if source.raw:  # how many cells the rows spent on known features rather than the unknown row
        ids = f", ids identical ({100 * np.mean(got[INPUT_NAME] != 0):.0f}% of cells known features)"
    return {"rows": rows, "max_abs": max_abs, "feeds": what,
            "describe": f"max |Δlogit| {max_abs.get('logit', 0.0):.2e}{ids} over {rows} {what}, "
                        "in serving batches"}


def first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


# ----------------------------------------------------------------------------- operators

def ort_operators(ort_files: list[Path], ops_dir: Path) -> list[Operators]:
    """The operators each ORT-format file needs, as the converter's config would list them for it alone
    (onnxruntime's own helper, run on one file at a time)."""
    create_config_from_models = config_helper()
    ops_dir.mkdir(exist_ok=True)
    operators = []
    for i, ort_file in enumerate(ort_files):
        config = ops_dir / f"{i}.config"
        try:
            create_config_from_models([ort_file], config, False)
        except Exception as exc:  # the flatbuffer reader's errors have no common type
            raise Fm2OnnxError(f"{ort_file.name}: cannot list its operators ({first_line(exc)})") from None
        operators.append(read_config(config))
    return operators


def config_helper():
    """``onnxruntime.tools.ort_format_model.create_config_from_models``, imported without the side effect
    of its import: it calls ``logging.basicConfig``, which would give this process's root logger a
    handler, and it logs each config it writes at INFO."""
    handlers = logging.root.handlers[:]
    try:
        from onnxruntime.tools.ort_format_model import create_config_from_models
    finally:
        logging.root.handlers[:] = handlers
    logging.getLogger("ort_format_model.utils").setLevel(logging.WARNING)
    return create_config_from_models


def read_config(path: Path) -> Operators:
    """``domain;opset;Op1,Op2`` lines (the reduced-operator config format); ``#`` starts a comment."""
    operators: Operators = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        try:
            domain, opset, ops = line.split(";")
            operators.setdefault(domain, {})[int(opset)] = sorted(ops.split(","))
        except ValueError:
            raise Fm2OnnxError(f"{path.name}: unreadable line {line[:80]!r}") from None
    return operators


def check_config_covers(config: Path, combined: Operators, entries: list[dict]) -> None:
    """The combined config must hold every op of every packaged file, or the reduced build would lack it."""
    have = {(d, int(o), op) for d, opsets in combined.items() for o, ops in opsets.items() for op in ops}
    for entry in entries:
        need = {(d, int(o), op) for d, opsets in entry["operators"].items() for o, ops in opsets.items() for op in ops}
        if need - have:
            domain, opset, op = sorted(need - have)[0]
            raise Fm2OnnxError(f"{config.name}: lacks {domain} {opset} {op}, which {entry['ort']} needs")


def operators_json(operators: Operators) -> dict:
    return {d: {str(o): ops for o, ops in sorted(opsets.items())} for d, opsets in sorted(operators.items())}


def operator_lines(label: str, operators: Operators) -> list[str]:
    return [f"{label}: {domain} opset {opset}: {', '.join(ops)}"
            for domain, opsets in sorted(operators.items()) for opset, ops in sorted(opsets.items())]


def summary(entries: list[dict], combined: Operators) -> dict:
    return {"onnxruntime_version": ort.__version__, "optimization_style": OPTIMIZATION_STYLE,
            "config": CONFIG_NAME, "operators": operators_json(combined), "models": entries}


# ----------------------------------------------------------------------------- raw-input graphs

NUMERIC_SPECIALS = [math.nan, math.inf, -math.inf, -0.0, 0.0, 1.0, 2.0, -1.0, 2.5, 1e15, -1e300]
UNSEEN_STRINGS = ["", "never-seen", " ", "ünïcødé", "0"]


def raw_feeds(model: ir.Model, rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Raw rows made from the graph itself, as a package has no checkpoint to make probe rows from: per
    categorical column the strings its LabelEncoder knows, per numeric column the float64 constants
    (bucket edges, small-value keys) and their neighbours, with missing, unseen, malformed and
    hour-shaped values mixed in."""
    props = model.metadata_props
    try:
        numeric, categorical = (json.loads(props.get(key, "[]")) for key in ("numeric_columns", "categorical_columns"))
    except ValueError as exc:
        raise Fm2OnnxError(f"the raw graph's column metadata is malformed ({exc})") from None
    by_column, shared, numbers = graph_values(model)
    rng = np.random.default_rng(seed)
    feeds = {}
    if numeric:
        pool = np.array(sorted(set(numbers)) + NUMERIC_SPECIALS, np.float64)
        feeds[NUMERIC_INPUT] = rng.choice(pool, size=(rows, len(numeric)))
    if categorical:
        columns = [rng.choice(np.array(by_column.get(j, []) + shared + UNSEEN_STRINGS + HOUR_EDGE_CASES,
                                       dtype=object), size=rows) for j in range(len(categorical))]
        feeds[CATEGORICAL_INPUT] = np.stack(columns, axis=1)
    inputs = sorted(v.name for v in model.graph.inputs)
    if inputs != sorted(feeds):
        raise Fm2OnnxError(f"the raw graph's inputs {inputs} do not match its column metadata {sorted(feeds)}")
    return feeds


def graph_values(model: ir.Model) -> tuple[dict[int, list[str]], list[str], list[float]]:
    """(strings per categorical column, strings of unknown column, numbers) the graph compares with."""
    categorical = next((v for v in model.graph.inputs if v.name == CATEGORICAL_INPUT), None)
    by_column: dict[int, list[str]] = {}
    shared: list[str] = []
    numbers: list[float] = []
    for node in ir.traversal.RecursiveGraphIterator(model.graph):
        keys = label_keys(node) if node.op_type == "LabelEncoder" else None
        if keys is None:
            continue
        if keys.dtype.kind in "OSU":
            column = column_of(node.inputs[0], categorical)
            (shared if column is None else by_column.setdefault(column, [])).extend(keys[:200].tolist())
        else:
            numbers.extend(float(k) for k in keys[:200])
    for graph in model.graphs():
        for value in graph.initializers.values():
            tensor = value.const_value
            if tensor is not None and tensor.dtype == ir.DataType.DOUBLE and tensor.size <= 10_000:
                numbers.extend(float(x) for x in tensor.numpy().ravel() if math.isfinite(x))
    numbers += [float(np.nextafter(x, -math.inf)) for x in numbers] + [float(math.ceil(x)) for x in numbers]
    return by_column, shared, numbers


def label_keys(node: ir.Node) -> np.ndarray | None:
    """A LabelEncoder's keys, from either attribute style (ai.onnx.ml 4 tensors, or the older lists)."""
    attrs = node.attributes
    if "keys_tensor" in attrs:
        keys = attrs["keys_tensor"].as_tensor().numpy()
        return np.array([k.decode() if isinstance(k, bytes) else k for k in keys.ravel()], dtype=object) \
            if keys.dtype.kind in "OSU" else keys.ravel()
    if "keys_strings" in attrs:
        return np.array(list(attrs["keys_strings"].as_strings()), dtype=object)
    for name in ("keys_floats", "keys_int64s"):
        if name in attrs:
            return np.asarray(attrs[name].value, np.float64)
    return None


def column_of(value: ir.Value | None, categorical: ir.Value | None) -> int | None:
    """The column of the categorical input ``value`` is, when it is the input or one output of a Split of it."""
    if value is None or categorical is None:
        return None
    if value is categorical:
        return 0
    producer = value.producer()
    if producer is not None and producer.op_type == "Split" and producer.inputs[0] is categorical:
        return value.index()
    return None


def string_ops(model: ir.Model) -> list[str]:
    """Op types that read a string tensor (followed forward from the string inputs and constants)."""
    strings = {v for v in model.graph.inputs if v.dtype == ir.DataType.STRING}
    strings |= {v for v in model.graph.initializers.values() if v.dtype == ir.DataType.STRING}
    ops = set()
    for node in model.graph:
        if any(v in strings for v in node.inputs if v is not None):
            ops.add(node.op_type)
            if node.op_type not in STRING_CONSUMERS:
                strings.update(node.outputs)
    return sorted(ops)
