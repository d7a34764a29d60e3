"""``fm2onnx export``: checkpoint -> uncached graph -> cached graph -> parity gate -> files.

Each step reports one line. Files are written and checked in a scratch directory beside the
destination and moved into place only when every written graph passes parity with torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from fm2onnx.checkpoint import load_checkpoint
from fm2onnx.errors import Fm2OnnxError

from . import metadata
from .cached_form import CachedFormOptions, make_cached
from .gemm_form import build_gemm_graph
from .model_io import (DEFAULT_EXTERNAL_DATA_THRESHOLD, move_into_place, refuse_overwrite, save_model,
                       sidecar_path, staged_directory)
from .parity import ATOL, RTOL, compare, ort_outputs, parity_ids, session, torch_logits
from .plan import CachePlan
from .rewrite import RewriteReport
from .serve_choice import choose_fastest, serve_candidates
from .to_onnx import DEFAULT_OPSET, check_opset, export_uncached

EXPORT_FORMS = ("cached", "uncached", "both")
UNCACHED_TOLERANCE = (ATOL, RTOL)


@dataclass
class ExportResult:
    written: list[Path] = field(default_factory=list)
    rewrite: RewriteReport | None = None  # the pairs layout's rewrite report
    log: list[str] = field(default_factory=list)
    plan: CachePlan | None = None  # the fields layout's cache plan
    serve_choice: str | None = None  # with serve_batch: the candidate written


def output_paths(checkpoint: Path, output: Path | None, form: str) -> dict[str, Path]:
    """form -> path. ``-o`` names the cached model; with ``both`` the uncached one sits beside it."""
    main = Path(output) if output else checkpoint.with_suffix(".onnx")
    if form == "both":
        return {"cached": main, "uncached": main.with_name(main.name.removesuffix(".onnx") + ".uncached.onnx")}
    return {form: main}


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
    refuse_overwrite(*targets.values(), force=force)
    options = cached or CachedFormOptions(layout="pairs" if pair_major else "fields", pair_major=pair_major)
    if serve_batch is not None and (serve_batch < 1 or form == "uncached"):
        raise Fm2OnnxError("--serve-batch needs a batch size >= 1 and a cached form to choose for")
    result = ExportResult()

    def report(line: str) -> None:
        result.log.append(line)
        echo(line)

    ckpt = load_checkpoint(checkpoint)
    report(f"loaded {checkpoint}: {ckpt.spec.kind}, {ckpt.spec.num_fields} fields, "
           f"{sum(ckpt.spec.vocab_sizes):,} features")
    options = options.for_kind(ckpt.spec.kind)
    torch_model = ckpt.model()
    ckpt.state_dict.clear()  # the model holds its own copy; at Criteo scale one copy is gigabytes
    # torch's answers first, so the torch model is gone before onnxruntime loads the tables again.
    ids = parity_ids(ckpt.spec, parity_rows)
    want = torch_logits(torch_model, ids)

    model = export_uncached(torch_model, opset=opset)
    sha = metadata.file_sha256(checkpoint)
    metadata.stamp(model, metadata.describe(ckpt.spec, form="uncached", checkpoint_sha256=sha))
    report(f"exported uncached graph: {len(model.graph)} nodes (opset {opset})")
    if options.layout == "pairs":
        del torch_model  # the graph's initializers share its tensors; the fields layout reads the model

    final_dir = next(iter(targets.values())).parent
    if any(p.parent != final_dir for p in targets.values()):
        raise Fm2OnnxError("the cached and uncached models must go to one directory")
    with staged_directory(final_dir) as scratch:
        stage = Stager(scratch, want, ids, external_data_threshold, report)
        staged: dict[str, list[Path]] = {}
        if "uncached" in targets or serve_batch:
            name = targets["uncached"].name if "uncached" in targets else "candidate-uncached.onnx"
            staged["uncached"] = stage.save(model, name, UNCACHED_TOLERANCE, targets.get("uncached"), "uncached")
        if "cached" in targets:
            labelled = serve_candidates(options, serve_batch) if serve_batch else {"cached": options}
            built = {}
            for i, (label, candidate) in enumerate(labelled.items()):  # a pairs candidate comes last: it rewrites
                made = make_cached(torch_model if candidate.layout == "fields" else None, model, candidate,
                                   checkpoint_sha256=sha)
                for line in made.lines:
                    report(line if not serve_batch else f"[{label}] {line}")
                name = targets["cached"].name if not serve_batch else f"candidate-{i}.onnx"
                built[label] = stage.save(made.model, name, candidate.tolerance, targets["cached"], label)
                result.plan, result.rewrite = result.plan or made.plan, result.rewrite or made.report
                del made
            if serve_batch:
                built["uncached"] = staged["uncached"]
                if options.layout == "fields":  # one GEMM over the embedding row: what large batches may want
                    built["uncached gemm"] = stage.save(build_gemm_graph(torch_model, checkpoint_sha256=sha),
                                                        "candidate-gemm.onnx", UNCACHED_TOLERANCE,
                                                        targets["cached"], "uncached gemm")
                choice = choose_fastest(built, ckpt.spec, serve_batch, report)
                result.serve_choice = choice.label
                staged["cached"] = choice.write(scratch / targets["cached"].name, external_data_threshold)
                if "uncached" not in targets:
                    del staged["uncached"]
            else:
                staged["cached"] = built["cached"]
        del model

        for form_name, files in staged.items():
            stale = sidecar_path(targets[form_name])
            if stale.exists() and len(files) == 1:
                stale.unlink()  # left by an earlier, larger model under the same name
            result.written += move_into_place(files, final_dir)
    for path in result.written:
        report(f"wrote {path} ({path.stat().st_size:,} bytes)")
    return result


@dataclass
class Stager:
    """Saves a graph in the scratch directory and holds it to parity with torch before anything else."""

    scratch: Path
    want: np.ndarray
    ids: np.ndarray
    external_data_threshold: int
    report: Callable[[str], None]

    def save(self, model, name: str, tolerance: tuple[float, float], target: Path | None, what: str) -> list[Path]:
        files = save_model(model, self.scratch / name, external_data_threshold=self.external_data_threshold)
        atol, rtol = tolerance
        parity = compare(self.want, ort_outputs(session(files[0]), self.ids)["logit"], atol=atol, rtol=rtol)
        if not parity.ok:
            raise Fm2OnnxError(f"{target or name}: not written: the {what} graph disagrees with torch "
                               f"({parity.describe()}, tolerance {atol:g} + {rtol:g}·|logit|)")
        self.report(f"parity {what}: {parity.describe()} over {len(self.ids)} rows (incl. unknown, negative, "
                    "out-of-range ids)")
        return files
