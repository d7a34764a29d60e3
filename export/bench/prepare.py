"""The files a bench measures for one checkpoint: the uncached graph, the cached variants, the floor."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import onnx_ir as ir

from fm2onnx.checkpoint import load_checkpoint

from ..cached_form import CachedFormOptions, batched_label, make_cached
from ..contract import describe, stamp
from ..flops import count_flops
from ..model_io import DEFAULT_EXTERNAL_DATA_THRESHOLD, save_model
from ..parity import parity_ids, torch_logits
from ..passes import GemmFormPass, rewrite
from ..plan import FIELDS_KINDS
from ..staging import Stager
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


def file_bytes(files: list[Path]) -> int:
    return sum(f.stat().st_size for f in files)


def write(model: ir.Model, path: Path) -> int:
    """Save ``model`` (a sidecar past the export threshold) and return its bytes on disk."""
    return file_bytes(save_model(model, path))


def prepare(checkpoint: Path, workdir: Path, name: str, variants: list[CachedVariant],
            echo=lambda line: None) -> Prepared:
    """Export each form into ``workdir`` from one trace, each held to parity with torch on a few rows."""
    ckpt = load_checkpoint(checkpoint)
    spec = ckpt.spec
    if spec.kind not in FIELDS_KINDS:
        variants = [v for v in variants if v.layout == "pairs"] or [CachedVariant(layout="pairs")]
    torch_model = ckpt.model()
    ids = parity_ids(spec, 64)
    out = Prepared(name, Path(checkpoint), list(spec.vocab_sizes))
    workdir.mkdir(parents=True, exist_ok=True)
    stage = Stager(workdir, torch_logits(torch_model, ids), ids, DEFAULT_EXTERNAL_DATA_THRESHOLD, lambda line: None)

    def keep(label: str, model: ir.Model, tolerance=(1e-4, 1e-4)) -> None:
        path = workdir / f"{label.replace(' ', '-')}.onnx"
        if label.startswith("floor"):  # the floor reads the rows and computes nothing: no logits to compare
            files = save_model(model, path)
        else:
            files = stage.save(model, path.name, tolerance, label, target=f"{name}: {label}")
        out.file_bytes[label], out.flops[label], out.files[label] = file_bytes(files), count_flops(model).total, path
        echo(f"  {label:<24} {out.file_bytes[label]:>15,} bytes  {out.flops[label]:>10,} FLOPs/row")

    uncached = export_uncached(torch_model)
    del torch_model
    stamp(uncached, describe(spec, form="uncached", checkpoint_sha256=""))
    keep("uncached", uncached)
    if spec.kind in FIELDS_KINDS:
        keep("uncached gemm", rewrite(uncached, [GemmFormPass()])[0])
    for i, variant in enumerate(variants):
        made = make_cached(uncached, variant.options())
        keep(variant.label, made.model, variant.options().for_kind(spec.kind).tolerance)
        if made.plan is not None:
            out.plans[variant.label] = made.plan.describe()
        if i == 0 and made.plan is not None:  # the floor of the main cached graph: same tables, same rows
            for shape in FLOOR_SHAPES:
                keep(f"floor {shape}", floor_graph(made.model, shape))
        del made
    return out
