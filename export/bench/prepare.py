"""The files a bench measures for one checkpoint: the uncached graph, the cached variants, the floor."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import onnx_ir as ir

from fm2onnx.checkpoint import load_checkpoint
from fm2onnx.errors import Fm2OnnxError

from .. import metadata
from ..cached_form import CachedFormOptions, batched_label, make_cached
from ..flops import count_flops
from ..gemm_form import build_gemm_graph
from ..model_io import DEFAULT_EXTERNAL_DATA_THRESHOLD, tensor_bytes
from ..parity import compare, ort_outputs, parity_ids, session, torch_logits
from ..to_onnx import export_uncached
from .floor import FLOOR_SHAPES, floor_graph


@dataclass(frozen=True)
class CachedVariant:
    table_dtype: str = "float32"
    cache_budget: str = "unlimited"
    layout: str = "fields"
    batched: str = "cached"

    @property
    def label(self) -> str:
        parts = ["cached"]
        if self.layout != "fields":
            parts.append(self.layout)
        if self.cache_budget != "unlimited":
            parts.append(self.cache_budget if self.cache_budget == "min" else f"budget {self.cache_budget}")
        if self.table_dtype != "float32":
            parts.append(self.table_dtype)
        return " ".join(parts) + batched_label(self.batched)

    def options(self) -> CachedFormOptions:
        return CachedFormOptions(layout=self.layout, cache_budget=self.cache_budget, table_dtype=self.table_dtype,
                                 batched=self.batched)


@dataclass
class Prepared:
    name: str
    checkpoint: Path
    vocab_sizes: list[int]
    files: dict[str, Path] = field(default_factory=dict)  # variant label -> ONNX file
    file_bytes: dict[str, int] = field(default_factory=dict)  # model + sidecar
    flops: dict[str, int] = field(default_factory=dict)
    plans: dict[str, str] = field(default_factory=dict)


def write(model: ir.Model, path: Path) -> int:
    """Bench files skip the exporter's full checker (they are scratch); big tensors go to a sidecar."""
    sidecar = path.with_name(path.name + ".data")
    if tensor_bytes(model) > DEFAULT_EXTERNAL_DATA_THRESHOLD:
        ir.save(model, path, external_data=sidecar.name, size_threshold_bytes=1024)
    else:
        ir.save(model, path)
    return path.stat().st_size + (sidecar.stat().st_size if sidecar.exists() else 0)


def prepare(checkpoint: Path, workdir: Path, name: str, variants: list[CachedVariant],
            echo=lambda line: None) -> Prepared:
    """Export each form into ``workdir`` and hold it to parity with torch on a few rows first."""
    ckpt = load_checkpoint(checkpoint)
    spec = ckpt.spec
    if spec.kind != "fmfm":
        variants = [v for v in variants if v.layout == "pairs"] or [CachedVariant(layout="pairs")]
    torch_model = ckpt.model()
    ids = parity_ids(spec, 64)
    want = torch_logits(torch_model, ids)
    out = Prepared(name, Path(checkpoint), list(spec.vocab_sizes))
    workdir.mkdir(parents=True, exist_ok=True)

    def keep(label: str, model: ir.Model, tolerance=(1e-4, 1e-4)) -> None:
        path = workdir / f"{label.replace(' ', '-')}.onnx"
        out.file_bytes[label] = write(model, path)
        out.flops[label] = count_flops(model).total
        if not label.startswith("floor"):
            atol, rtol = tolerance
            parity = compare(want, ort_outputs(session(path), ids)["logit"], atol=atol, rtol=rtol)
            if not parity.ok:
                raise Fm2OnnxError(f"{name}: the {label} graph disagrees with torch ({parity.describe()})")
        out.files[label] = path
        echo(f"  {label:<24} {out.file_bytes[label]:>15,} bytes  {out.flops[label]:>10,} FLOPs/row")

    uncached = export_uncached(torch_model)
    metadata.stamp(uncached, metadata.describe(spec, form="uncached", checkpoint_sha256=""))
    keep("uncached", uncached)
    if spec.kind == "fmfm":
        keep("uncached gemm", build_gemm_graph(torch_model))
    for i, variant in enumerate(sorted(variants, key=lambda v: v.layout == "pairs")):  # pairs rewrites in place
        made = make_cached(torch_model, uncached, variant.options())
        keep(variant.label, made.model, variant.options().for_kind(spec.kind).tolerance)
        if made.plan is not None:
            out.plans[variant.label] = made.plan.describe()
        if i == 0 and made.plan is not None:  # the floor of the main cached graph: same tables, same rows
            for shape in FLOOR_SHAPES:
                keep(f"floor {shape}", floor_graph(made.model, shape))
        del made
    return out
