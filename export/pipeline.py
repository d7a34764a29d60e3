"""``fm2onnx export``: checkpoint -> traced uncached graph -> passes -> parity gate -> files.

The checkpoint's model is traced once; every cached graph is a pipeline of passes over that trace
(export/passes), exactly what ``fm2onnx rewrite`` runs on an uncached ``.onnx`` file. Each step
reports; files are written and checked in a scratch directory beside the destination and moved into
place only when every written graph passes parity with torch (export/staging.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np
import onnx_ir as ir

from fm2onnx.checkpoint import load_checkpoint
from fm2onnx.errors import Fm2OnnxError
from models import ModelSpec

from .cached_form import CachedFormOptions, make_cached
from .contract import describe, file_sha256, spec_of, stamp
from .model_io import DEFAULT_EXTERNAL_DATA_THRESHOLD, check_model_file, load_model
from .ort import session
from .parity import ATOL, RTOL, ort_outputs, parity_ids, torch_logits
from .passes import GemmFormPass, RewriteReport, require_uncached, rewrite
from .plan import CachePlan
from .serve_choice import choose_fastest, serve_candidates
from .staging import Stager, staged_directory
from .to_onnx import DEFAULT_OPSET, check_opset, export_uncached

T = TypeVar("T")  # what trace's check returns

EXPORT_FORMS = ("cached", "uncached", "both")
UNCACHED_TOLERANCE = (ATOL, RTOL)


@dataclass
class ExportResult:
    written: list[Path] = field(default_factory=list)
    rewrite: RewriteReport | None = None  # the cached graph's pass report
    log: list[str] = field(default_factory=list)
    plan: CachePlan | None = None  # the fields layout's cache plan
    serve_choice: str | None = None  # with serve_batch: the candidate written


def output_paths(checkpoint: Path, output: Path | None, form: str) -> dict[str, Path]:
    """form -> path. ``-o`` names the cached model; with ``both`` the uncached one sits beside it."""
    main = Path(output) if output else checkpoint.with_suffix(".onnx")
    if form == "both":
        return {"cached": main, "uncached": main.with_name(main.name.removesuffix(".onnx") + ".uncached.onnx")}
    return {form: main}


def check_targets(checkpoint: Path, targets: dict[str, Path], force: bool) -> Path:
    """The one directory the models go to; never the checkpoint itself, nothing replaced unasked."""
    for target in targets.values():
        check_model_file(target, force=force, inputs=[checkpoint])
    final_dir = next(iter(targets.values())).parent
    if any(p.parent != final_dir for p in targets.values()):
        raise Fm2OnnxError("the cached and uncached models must go to one directory")
    return final_dir


def export_checkpoint(checkpoint: str | Path, output: str | Path | None = None, *, form: str = "cached",
                      force: bool = False, external_data_threshold: int = DEFAULT_EXTERNAL_DATA_THRESHOLD,
                      opset: int = DEFAULT_OPSET, pair_major: bool = False, parity_rows: int = 512,
                      cached: CachedFormOptions | None = None, serve_batch: int | None = None,
                      echo: Callable[[str], None] = lambda line: None) -> ExportResult:
    """``cached``: layout, cache budget and table dtype of the cached graph (``pair_major`` implies the
    pairs layout). ``serve_batch``: time the uncached graph and the cached candidates at that batch
    size here and write the fastest as the main model, the figures in its metadata."""
    if form not in EXPORT_FORMS:
        raise Fm2OnnxError(f"unknown form {form!r}; expected one of {', '.join(EXPORT_FORMS)}")
    check_opset(opset)
    checkpoint = Path(checkpoint)
    targets = output_paths(checkpoint, output, form)
    final_dir = check_targets(checkpoint, targets, force)
    options = cached or CachedFormOptions(layout="pairs" if pair_major else "fields", pair_major=pair_major)
    if serve_batch is not None and (serve_batch < 1 or form == "uncached"):
        raise Fm2OnnxError("--serve-batch needs a batch size >= 1 and a cached form to choose for")
    result = ExportResult()

    def report(line: str) -> None:
        result.log.append(line)
        echo(line)

    uncached, stager_inputs, options = trace(checkpoint, opset, parity_rows, report,
                                             options.for_spec)
    with staged_directory(final_dir) as scratch:
        stage = Stager(scratch, *stager_inputs, external_data_threshold, report)
        if "uncached" in targets or serve_batch:
            name = targets["uncached"].name if "uncached" in targets else "candidate-uncached.onnx"
            stage.save(uncached, name, UNCACHED_TOLERANCE, "uncached", target=targets.get("uncached"),
                       form="uncached")
        if "cached" in targets:
            if serve_batch:
                write_fastest(stage, uncached, options, serve_batch, targets["cached"], result)
            else:
                made = make_cached(uncached, options)
                report_rewrite(made, report)
                result.plan, result.rewrite = made.plan, made.report
                stage.save(made.model, targets["cached"].name, options.tolerance, "cached", form="cached")
        if "uncached" not in targets:
            stage.discard("uncached")
        result.written = stage.move_into_place(final_dir, targets)
    for path in result.written:
        report(f"wrote {path} ({path.stat().st_size:,} bytes)")
    return result


def trace(checkpoint: Path, opset: int, parity_rows: int, report: Callable[[str], None],
          check: Callable[[ModelSpec], T], arrange: Callable[[np.ndarray, T], np.ndarray] | None = None):
    """(the checkpoint's model traced to the uncached graph, (torch's logits, the parity ids), what ``check``
    returned). ``check`` sees the checkpoint's spec before any slow work, so options that do not fit the
    model fail at once; ``arrange`` gets the parity ids (a request graph's come in requests) with what
    ``check`` returned. The torch model is gone before onnxruntime loads the tables again."""
    ckpt = load_checkpoint(checkpoint)
    spec = ckpt.spec
    report(f"loaded {checkpoint}: {spec.kind}, {spec.num_fields} fields, {sum(spec.vocab_sizes):,} features")
    checked = check(spec)
    torch_model = ckpt.model()
    ckpt.state_dict.clear()  # the model holds its own copy; at Criteo scale one copy is gigabytes
    ids = parity_ids(spec, parity_rows)
    ids = arrange(ids, checked) if arrange is not None else ids
    want = torch_logits(torch_model, ids)
    report("tracing it with torch.onnx (the export's slowest step)")
    started = time.monotonic()
    model = export_uncached(torch_model, opset=opset)
    stamp(model, describe(spec, form="uncached", checkpoint_sha256=file_sha256(checkpoint)))
    report(f"exported uncached graph: {len(model.graph)} nodes (opset {model.opset_imports['']}), traced in "
           f"{time.monotonic() - started:.1f} s")
    return model, (want, ids), checked


def report_rewrite(made, report: Callable[[str], None], label: str = "") -> None:
    for line in made.lines:
        report(f"[{label}] {line}" if label else line)


def write_fastest(stage: Stager, uncached: ir.Model, options: CachedFormOptions, batch: int, target: Path,
                  result: ExportResult) -> None:
    """Time the uncached graph and every cached candidate at ``batch`` and stage the fastest as ``target``."""
    built = {"uncached": stage.files["uncached"]}
    for i, (label, candidate) in enumerate(serve_candidates(options, batch).items()):
        made = make_cached(uncached, candidate)
        report_rewrite(made, stage.report, label)
        result.plan, result.rewrite = result.plan or made.plan, result.rewrite or made.report
        built[label] = stage.save(made.model, f"candidate-{i}.onnx", candidate.tolerance, label)
        del made
    if options.layout == "fields":  # one GEMM over the embedding row: what large batches may want
        gemm, _ = rewrite(uncached, [GemmFormPass()])
        built["uncached gemm"] = stage.save(gemm, "candidate-gemm.onnx", UNCACHED_TOLERANCE, "uncached gemm")
    choice = choose_fastest(built, spec_of(uncached), batch, stage.report)
    result.serve_choice = choice.label
    stage.adopt("cached", choice.write(stage.scratch / target.name, stage.external_data_threshold))


def rewrite_file(model_path: str | Path, output: str | Path | None = None, *, options: CachedFormOptions,
                 force: bool = False, external_data_threshold: int = DEFAULT_EXTERNAL_DATA_THRESHOLD,
                 parity_rows: int = 512, echo: Callable[[str], None] = lambda line: None) -> ExportResult:
    """``fm2onnx rewrite``: the cached graph of an uncached ``.onnx`` file, built by the same passes as
    ``export``'s, held to parity with the uncached graph on onnxruntime before it is written."""
    model_path = Path(model_path)
    target = Path(output) if output else model_path.with_name(
        model_path.name.removesuffix(".onnx").removesuffix(".uncached") + ".cached.onnx")
    check_model_file(target, force=force, inputs=[model_path])
    uncached = load_model(model_path)
    require_uncached(uncached, str(model_path))
    made = make_cached(uncached, options)
    result = ExportResult(rewrite=made.report, plan=made.plan, log=made.lines)
    ids = parity_ids(spec_of(uncached, str(model_path)), parity_rows)
    want = ort_outputs(session(model_path), ids)["logit"]  # the uncached graph is the reference
    tolerance = options.for_kind(uncached.metadata_props.get("model_kind", "")).tolerance
    with staged_directory(target.parent) as scratch:
        stage = Stager(scratch, want, ids, external_data_threshold, echo, reference="the uncached graph")
        stage.save(made.model, target.name, tolerance, "cached", target=target, form="cached")
        result.written = stage.move_into_place(target.parent, {"cached": target})
    return result
