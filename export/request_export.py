"""``fm2onnx export --context-fields|--item-fields``: checkpoint -> traced uncached graph -> the
request graph pass -> parity gate on requests of every size -> file.

The gate scores the parity ids cut into requests (export/request_parity.py) with torch on the full
rows and with the request graph one request at a time; nothing is written unless they agree.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable

from .contract import FieldRoles
from .folds import check_table_dtype
from .model_io import DEFAULT_EXTERNAL_DATA_THRESHOLD
from .parity import tolerance_of
from .plan import parse_budget
from .passes import rewrite
from .passes.request_graph import RequestGraphPass, check_request_options
from .pipeline import ExportResult, check_targets, trace
from .request_parity import as_requests, request_logits
from .staging import Stager, staged_directory
from .to_onnx import DEFAULT_OPSET, check_opset


def request_path(checkpoint: Path, output: Path | None) -> Path:
    return Path(output) if output else checkpoint.with_name(checkpoint.stem + ".request.onnx")


def export_request(checkpoint: str | Path, output: str | Path | None = None, *, context: list[str] | None,
                   items: list[str] | None, table_dtype: str = "float32", cache_budget: str | None = None,
                   force: bool = False,
                   external_data_threshold: int = DEFAULT_EXTERNAL_DATA_THRESHOLD, opset: int = DEFAULT_OPSET,
                   parity_rows: int = 512, echo: Callable[[str], None] = lambda line: None) -> ExportResult:
    """Write the request graph of ``checkpoint`` with the named context (or item) fields."""
    check_opset(opset)
    check_table_dtype(table_dtype)
    if cache_budget is not None:
        parse_budget(cache_budget)
    checkpoint = Path(checkpoint)
    target = request_path(checkpoint, output)
    final_dir = check_targets(checkpoint, {"request": target}, force)
    result = ExportResult()

    def report(line: str) -> None:
        result.log.append(line)
        echo(line)

    def roles_of(spec) -> FieldRoles:
        roles = FieldRoles.of_names(spec, context, items)
        check_request_options(spec.kind, table_dtype, cache_budget)
        return roles

    uncached, (want, ids), roles = trace(checkpoint, opset, parity_rows, report, roles_of, arrange=as_requests)
    made, result.rewrite = rewrite(uncached, [RequestGraphPass(roles, table_dtype, cache_budget)])
    for line in result.rewrite.lines():
        report(line)
    with staged_directory(final_dir) as scratch:
        stage = Stager(scratch, want, ids, external_data_threshold, report,
                       score=partial(request_logits, roles=roles))
        stage.save(made, target.name, tolerance_of(table_dtype), "request", target=target, form="request")
        result.written = stage.move_into_place(final_dir, {"request": target})
    for path in result.written:
        report(f"wrote {path} ({path.stat().st_size:,} bytes)")
    return result
