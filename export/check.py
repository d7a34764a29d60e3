"""``fm2onnx check``: torch model vs each ONNX graph on onnxruntime, plus FLOPs and table bytes."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fm2onnx.checkpoint import Checkpoint, load_checkpoint
from fm2onnx.errors import Fm2OnnxError

from .contract import FieldRoles, file_sha256
from .flops import flops_by_batch
from .model_io import load_model, tensor_bytes
from .ort import session
from .request_parity import as_requests
from .parity import (ATOL, RTOL, TOLERANCES, compare, ort_outputs, outputs_in_serving_batches, parity_ids, require_rows,
                     torch_logits)


@dataclass
class GraphCheck:
    path: str
    form: str
    max_abs_logit_error: float
    max_rel_logit_error: float
    within_tolerance: bool
    flops_one_request: int
    table_bytes: int
    table_dtype: str = "float32"
    atol: float = ATOL
    rtol: float = RTOL
    auc: float | None = None
    log_loss: float | None = None
    torch_auc: float | None = None
    torch_log_loss: float | None = None
    flops_batches: int | None = None  # per row of a batch of 2 or more

    def flops_text(self) -> str:
        """'10,858 / 164,687' (one request / per row of a batch) when a graph's batch-size branches
        differ (one request on the cached tables, batches on the GEMM form), else the one count."""
        batches = self.flops_batches
        if batches in (None, self.flops_one_request):
            return f"{self.flops_one_request:,}"
        return f"{self.flops_one_request:,} / {batches:,}"


def check_graphs(checkpoint: str | Path, graphs: list[str | Path], *, rows: int = 2048, seed: int = 0,
                 atol: float | None = None, rtol: float | None = None, ids: np.ndarray | None = None,
                 labels: np.ndarray | None = None) -> list[GraphCheck]:
    """Random ids (incl. 0, negative, out-of-range) unless ``ids`` (and ``labels``, for AUC/log loss) are given.
    Tolerances default to each graph's table dtype (export/parity.py TOLERANCES)."""
    require_rows(rows, "a parity check")
    ckpt, sha = load_checkpoint(checkpoint), file_sha256(checkpoint)
    random_ids = ids is None
    if ids is None:
        ids = parity_ids(ckpt.spec, rows, seed)
    torch_model = ckpt.model()
    want = torch_logits(torch_model, ids)
    results = []
    for path in graphs:
        model = load_model(path)
        ensure_same_model(ckpt, model.metadata_props, path, sha)
        flops = flops_by_batch(model)
        stats = dict(flops_one_request=flops.one_request, flops_batches=flops.batches,
                     table_bytes=tensor_bytes(model, float_only=True))
        form = model.metadata_props.get("form", "?")
        dtype = model.metadata_props.get("table_dtype", "float32")
        raw_input = model.metadata_props.get("input") == "raw"
        widths = {v.name: v.shape[1] for v in model.graph.inputs if v.shape is not None and len(v.shape) == 2}
        roles = FieldRoles.of_props(model.metadata_props, str(path), widths) if form == "request" else None
        del model
        graph_want, graph_ids = want, ids
        if raw_input:  # original columns in, so the reference is torch on Python's preprocessing of them
            form = f"raw {form}"
            raw_ids, got = run_raw_graph(ckpt, path, len(ids))
            graph_want = torch_logits(torch_model, raw_ids)
        else:
            if roles is not None and random_ids:  # random rows cut into requests of 0 to 144 candidates
                graph_ids = as_requests(ids, roles)
                graph_want = torch_logits(torch_model, graph_ids)
            got = ort_outputs(session(path), graph_ids)["logit"]
        default_atol, default_rtol = TOLERANCES.get(dtype, (ATOL, RTOL))
        graph_atol, graph_rtol = default_atol if atol is None else atol, default_rtol if rtol is None else rtol
        parity = compare(graph_want, got, atol=graph_atol, rtol=graph_rtol)
        check = GraphCheck(str(path), form, parity.max_abs, parity.max_rel, parity.ok, **stats, table_dtype=dtype,
                           atol=graph_atol, rtol=graph_rtol)
        if labels is not None and not raw_input:
            check.auc, check.log_loss = quality(labels, got)
            check.torch_auc, check.torch_log_loss = quality(labels, want)
        results.append(check)
    return results


def run_raw_graph(ckpt: Checkpoint, path, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Probe rows (known, rare, unseen, missing and malformed values) through a raw-feature graph:
    (the ids Python's preprocessing gives them, the graph's logits)."""
    from .raw_input import RawContract, preprocessor_of
    from .raw_rows import graph_feeds, probe_rows, python_ids

    pre = preprocessor_of(ckpt)
    probe = probe_rows(pre, rows)
    logits = outputs_in_serving_batches(session(path), graph_feeds(RawContract.of(pre), probe))["logit"]
    return python_ids(pre, probe), logits


def ensure_same_model(ckpt: Checkpoint, props: dict[str, str], path, checkpoint_sha256: str = "") -> None:
    """A graph of another model would 'fail parity' for a confusing reason: say what differs instead."""
    expected = {"model_kind": ckpt.spec.kind, "field_names": list(ckpt.spec.field_names),
                "vocab_sizes": list(ckpt.spec.vocab_sizes), "dims": list(ckpt.spec.dims)}
    for key, want in expected.items():
        raw = props.get(key)
        if raw is None:
            raise Fm2OnnxError(f"{path}: no {key!r} metadata: not an fm2onnx model")
        got = raw if key == "model_kind" else json.loads(raw)
        if got != want:
            raise Fm2OnnxError(f"{path}: {key} {got} does not match the checkpoint's {want}")
    source = props.get("source_checkpoint_sha256", "")
    if source and checkpoint_sha256 and source != checkpoint_sha256:
        raise Fm2OnnxError(f"{path}: exported from another checkpoint (its source_checkpoint_sha256 is "
                           f"{source[:12]}…, this checkpoint's {checkpoint_sha256[:12]}…)")


def quality(labels: np.ndarray, logits: np.ndarray) -> tuple[float, float]:
    from fm2onnx.data.metrics import auc, log_loss

    logits = np.asarray(logits, np.float64)
    return float(auc(labels, logits)), float(log_loss(labels, 1.0 / (1.0 + np.exp(-logits))))


def as_json(checks: list[GraphCheck]) -> str:
    """An undefined AUC (rows of one class) is null."""
    from fm2onnx.data.metrics import metrics_json

    return metrics_json({"graphs": [asdict(c) for c in checks],
                         "ok": all(c.within_tolerance for c in checks)}, indent=2)


def as_table(checks: list[GraphCheck]) -> list[str]:
    from fm2onnx.data.metrics import auc_text

    header = (f"{'graph':<40}{'form':<14}{'tables':<9}{'max |Δlogit|':>14}{'max rel':>10}{'tolerance':>11}"
              f"{'FLOPs 1 req / batch row':>25}{'table bytes':>16}")
    lines = [header]
    for c in checks:
        verdict = "" if c.within_tolerance else "  EXCEEDS TOLERANCE"
        lines.append(f"{Path(c.path).name:<40}{c.form:<14}{c.table_dtype:<9}{c.max_abs_logit_error:>14.2e}"
                     f"{c.max_rel_logit_error:>10.1e}{c.atol:>11.0e}{c.flops_text():>25}{c.table_bytes:>16,}{verdict}")
        if c.auc is not None:
            lines.append(f"{'':<54}AUC {auc_text(c.auc, 5)} (torch {auc_text(c.torch_auc, 5)}), "
                         f"log loss {c.log_loss:.5f} (torch {c.torch_log_loss:.5f})")
    return lines
