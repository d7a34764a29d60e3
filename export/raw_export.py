"""``fm2onnx export --input raw``: the id graphs of ``export_checkpoint``, each given the checkpoint's
preprocessing in front, and written only if the raw graph agrees with the id graph on the Python
preprocessing of the same rows: identical ids on every row, and the id graph's logits.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from fm2onnx.checkpoint import load_checkpoint
from fm2onnx.data import Preprocessor
from fm2onnx.errors import Fm2OnnxError

from .contract import INPUT_NAME

from .model_io import DEFAULT_EXTERNAL_DATA_THRESHOLD, check_model_file, load_model, save_model
from .ort import session
from .parity import compare, outputs_in_serving_batches
from .pipeline import ExportResult, export_checkpoint, output_paths
from .raw_input import MIN_OPSET as RAW_MIN_OPSET
from .raw_input import RawContract, attach_raw_input, check_raw_opset, preprocessor_of
from .raw_rows import Rows, graph_feeds, probe_rows, python_ids, read_rows
from .staging import Stager, staged_directory


@dataclass(frozen=True)
class RawParity:
    rows: int
    rows_with_other_ids: int
    first_difference: str  # "" when none
    max_abs_logit: float  # raw graph vs id graph
    logits_ok: bool

    @property
    def ok(self) -> bool:
        return self.rows_with_other_ids == 0 and self.logits_ok

    def describe(self) -> str:
        ids = ("ids identical" if not self.rows_with_other_ids
               else f"ids differ on {self.rows_with_other_ids:,} rows ({self.first_difference})")
        return f"{self.rows:,} rows, {ids}, max |Δlogit| vs the id graph {self.max_abs_logit:.2e}"


def raw_parity(raw_session, id_session, pre: Preprocessor, contract: RawContract, rows: Rows) -> RawParity:
    """The raw graph on ``rows`` vs the id graph on the Python preprocessing of the same rows."""
    got = outputs_in_serving_batches(raw_session, graph_feeds(contract, rows))
    want_ids = python_ids(pre, rows)
    want = outputs_in_serving_batches(id_session, {INPUT_NAME: want_ids})
    differs = np.flatnonzero((got[INPUT_NAME] != want_ids).any(axis=1))
    first = ""
    if len(differs):
        r = int(differs[0])
        j = int(np.flatnonzero(got[INPUT_NAME][r] != want_ids[r])[0])
        field = pre.fields[j]
        first = (f"first: row {r}, field {field.name} = {rows[field.source][r]!r}: graph id "
                 f"{got[INPUT_NAME][r, j]}, Python id {want_ids[r, j]}")
    logits = compare(want["logit"], got["logit"])
    return RawParity(len(want_ids), len(differs), first, logits.max_abs, logits.ok)


def _unless_scratch(report: Callable[[str], None]) -> Callable[[str], None]:
    """The id pipeline's log, less its lines about files in the scratch directory."""
    return lambda line: None if line.startswith("wrote ") else report(line)


def raw_output_paths(checkpoint: Path, output: Path | None, form: str) -> dict[str, Path]:
    """As for id graphs, but the default name is ``<checkpoint stem>.raw.onnx``."""
    return output_paths(checkpoint, output or checkpoint.with_suffix(".raw.onnx"), form)


def export_raw_checkpoint(checkpoint: str | Path, output: str | Path | None = None, *, form: str = "cached",
                          force: bool = False,
                          external_data_threshold: int = DEFAULT_EXTERNAL_DATA_THRESHOLD,
                          parity_rows: int = 512, parity_data: str | Path | None = None,
                          parity_data_rows: int = 10_000, parity_format: str | None = None,
                          opset: int = RAW_MIN_OPSET, echo: Callable[[str], None] = lambda line: None,
                          **export_options) -> ExportResult:
    """``export_options`` go to ``export_checkpoint`` as they are (pair_major, ...)."""
    check_raw_opset(opset)
    checkpoint = Path(checkpoint)
    targets = raw_output_paths(checkpoint, Path(output) if output else None, form)
    for target in targets.values():
        check_model_file(target, force=force, inputs=[checkpoint, parity_data])
    pre = preprocessor_of(load_checkpoint(checkpoint))
    row_sets = [("probe rows", probe_rows(pre, parity_rows))]
    if parity_data is not None:
        row_sets.append((Path(parity_data).name, read_rows(parity_data, pre, parity_data_rows, parity_format)))

    result = ExportResult()

    def report(line: str) -> None:
        result.log.append(line)
        echo(line)

    final_dir = next(iter(targets.values())).parent
    with staged_directory(final_dir) as scratch:
        ids = export_checkpoint(checkpoint, scratch / "ids.onnx", form=form, force=True,
                                external_data_threshold=external_data_threshold, opset=opset,
                                echo=_unless_scratch(report), **export_options)
        result.rewrite = ids.rewrite
        stage = Stager(scratch, None, None, external_data_threshold, report)
        for form_name, id_path in output_paths(checkpoint, scratch / "ids.onnx", form).items():
            stage.adopt(form_name, stage_raw_graph(id_path, scratch, targets[form_name], pre, row_sets,
                                                   external_data_threshold, report, form_name))
        result.written = stage.move_into_place(final_dir, targets)
    for path in result.written:
        report(f"wrote {path} ({path.stat().st_size:,} bytes)")
    return result


def stage_raw_graph(id_path: Path, scratch: Path, target: Path, pre: Preprocessor, row_sets,
                    external_data_threshold: int, report: Callable[[str], None], what: str) -> list[Path]:
    """The id graph at ``id_path`` with the raw input in front, staged in ``scratch`` under ``target``'s
    name and held to the id graph on every row set."""
    model = load_model(id_path)
    contract = attach_raw_input(model, pre)
    files = save_model(model, scratch / target.name, external_data_threshold=external_data_threshold)
    del model
    report(f"raw input {what}: {len(contract.numeric_columns)} numeric + "
           f"{len(contract.categorical_columns)} string columns -> {pre.n_fields} field ids")
    raw_sess, id_sess = session(files[0]), session(id_path)
    for label, rows in row_sets:
        parity = raw_parity(raw_sess, id_sess, pre, contract, rows)
        if not parity.ok:
            raise Fm2OnnxError(f"{target}: not written: the raw {what} graph disagrees with "
                               f"the Python preprocessing on {label} ({parity.describe()})")
        report(f"parity raw {what} on {label}: {parity.describe()}")
    return files


INPUT_KINDS = ("ids", "raw")


def raw_exporter(input_kind: str, parity_data: Path | None, parity_format: str | None) -> Callable | None:
    """For the CLI: ``export_raw_checkpoint`` bound to its options for ``--input raw``, None for ids."""
    if input_kind not in INPUT_KINDS:
        raise Fm2OnnxError(f"unknown --input {input_kind!r}; expected one of {', '.join(INPUT_KINDS)}")
    if input_kind == "ids":
        if parity_data is not None or parity_format is not None:
            raise Fm2OnnxError("--parity-data and --parity-format go with --input raw")
        return None
    return functools.partial(export_raw_checkpoint, parity_data=parity_data, parity_format=parity_format)
