"""``fm2onnx export``: checkpoint -> uncached graph -> cached graph -> parity gate -> files.

Each step reports one line. Files are written and checked in a scratch directory beside the
destination and moved into place only when every written graph passes parity with torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from fm2onnx.checkpoint import load_checkpoint
from fm2onnx.errors import Fm2OnnxError

from . import metadata
from .model_io import (DEFAULT_EXTERNAL_DATA_THRESHOLD, move_into_place, refuse_overwrite, save_model,
                       sidecar_path, staged_directory)
from .parity import compare, ort_outputs, parity_ids, session, torch_logits
from .rewrite import RewriteReport, rewrite_to_cached
from .to_onnx import DEFAULT_OPSET, check_opset, export_uncached

EXPORT_FORMS = ("cached", "uncached", "both")


@dataclass
class ExportResult:
    written: list[Path] = field(default_factory=list)
    rewrite: RewriteReport | None = None
    log: list[str] = field(default_factory=list)


def output_paths(checkpoint: Path, output: Path | None, form: str) -> dict[str, Path]:
    """form -> path. ``-o`` names the cached model; with ``both`` the uncached one sits beside it."""
    main = Path(output) if output else checkpoint.with_suffix(".onnx")
    if form == "both":
        return {"cached": main, "uncached": main.with_name(main.name.removesuffix(".onnx") + ".uncached.onnx")}
    return {form: main}


def export_checkpoint(checkpoint: str | Path, output: str | Path | None = None, *, form: str = "cached",
                      force: bool = False, external_data_threshold: int = DEFAULT_EXTERNAL_DATA_THRESHOLD,
                      opset: int = DEFAULT_OPSET, pair_major: bool = False, parity_rows: int = 512,
                      echo: Callable[[str], None] = lambda line: None) -> ExportResult:
    if form not in EXPORT_FORMS:
        raise Fm2OnnxError(f"unknown form {form!r}; expected one of {', '.join(EXPORT_FORMS)}")
    check_opset(opset)
    checkpoint = Path(checkpoint)
    targets = output_paths(checkpoint, output, form)
    refuse_overwrite(*targets.values(), force=force)
    result = ExportResult()

    def report(line: str) -> None:
        result.log.append(line)
        echo(line)

    ckpt = load_checkpoint(checkpoint)
    report(f"loaded {checkpoint}: {ckpt.spec.kind}, {ckpt.spec.num_fields} fields, "
           f"{sum(ckpt.spec.vocab_sizes):,} features")
    torch_model = ckpt.model()
    ckpt.state_dict.clear()  # the model holds its own copy; at Criteo scale one copy is gigabytes
    # torch's answers first, so the torch model is gone before onnxruntime loads the tables again.
    ids = parity_ids(ckpt.spec, parity_rows)
    want = torch_logits(torch_model, ids)

    model = export_uncached(torch_model, opset=opset)
    del torch_model  # the graph's initializers share its tensors
    metadata.stamp(model, metadata.describe(ckpt.spec, form="uncached",
                                            checkpoint_sha256=metadata.file_sha256(checkpoint)))
    report(f"exported uncached graph: {len(model.graph)} nodes (opset {opset})")

    final_dir = next(iter(targets.values())).parent
    if any(p.parent != final_dir for p in targets.values()):
        raise Fm2OnnxError("the cached and uncached models must go to one directory")
    with staged_directory(final_dir) as scratch:
        staged: dict[str, list[Path]] = {}
        if "uncached" in targets:
            staged["uncached"] = save_model(model, scratch / targets["uncached"].name,
                                            external_data_threshold=external_data_threshold)
        if "cached" in targets:
            result.rewrite = rewrite_to_cached(model, pair_major=pair_major)
            for line in result.rewrite.lines():
                report(line)
            staged["cached"] = save_model(model, scratch / targets["cached"].name,
                                          external_data_threshold=external_data_threshold)
        del model

        for form_name, files in staged.items():
            parity = compare(want, ort_outputs(session(files[0]), ids)["logit"])
            if not parity.ok:
                raise Fm2OnnxError(f"{targets[form_name]}: not written: the {form_name} graph disagrees with "
                                   f"torch ({parity.describe()}, tolerance 1e-4 + 1e-4·|logit|)")
            report(f"parity {form_name}: {parity.describe()} over {len(ids)} rows (incl. unknown, negative, "
                   "out-of-range ids)")
        for form_name, files in staged.items():
            stale = sidecar_path(targets[form_name])
            if stale.exists() and len(files) == 1:
                stale.unlink()  # left by an earlier, larger model under the same name
            result.written += move_into_place(files, final_dir)
    for path in result.written:
        report(f"wrote {path} ({path.stat().st_size:,} bytes)")
    return result
