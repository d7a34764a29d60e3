"""``fm2onnx report``: one offline HTML page (images inlined) with the cross-field dims heatmap (Figure 7),
the field-pair mutual information heatmap (Figure 6, when data is given) and the per-field dims."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .checkpoint import Checkpoint
from .compression import cached_flops, cross_field_dims, require_field_matrices, select_dims
from .compression.mutual_info import pair_mutual_information, spearman
from .compression.plots import field_dims_bars, field_heatmap
from .errors import Fm2OnnxError
from .files import check_output_folder

DEFAULT_VARIANCE = 0.95


@dataclass
class ReportDims:
    dims: list[int]
    source: str  # how the dims were chosen, said on the page
    explained: list[float] | None = None


def choose_dims(ckpt: Checkpoint, variance: float | None, counts=None) -> ReportDims:
    """The checkpoint's own dims if they vary by field; PCA dims for a uniform-K model or when asked."""
    spec = ckpt.spec
    require_field_matrices(spec, str(ckpt.path or "checkpoint"))
    if variance is None and len(set(spec.dims)) > 1:
        return ReportDims(list(spec.dims), "the checkpoint's own per-field dims")
    threshold = DEFAULT_VARIANCE if variance is None else variance
    selection = select_dims(ckpt.model(), threshold, counts)
    return ReportDims(selection.dims, f"PCA of the trained embeddings, {100 * threshold:g}% variance kept "
                                      f"({selection.weighting} weighting of features)",
                      [f.explained for f in selection.fields])


def prepare_out_dir(out_dir: Path, force: bool) -> None:
    check_output_folder(out_dir, "-o", force=force)
    out_dir.mkdir(parents=True, exist_ok=True)


def check_max_rows(max_rows: int) -> None:
    if max_rows < 1:
        raise Fm2OnnxError(f"--max-rows {max_rows}: must be >= 1 (the rows sampled for mutual information)")


def sample_rows(total: int, max_rows: int, seed: int) -> np.ndarray:
    if total <= max_rows:
        return np.arange(total)
    return np.sort(np.random.default_rng(seed).choice(total, size=max_rows, replace=False))


def build_report(ckpt: Checkpoint, out_dir: Path, *, dims: ReportDims, ids=None, labels=None,
                 data_name: str = "", max_rows: int = 200_000, seed: int = 0, force: bool = False) -> Path:
    """Writes PNGs and ``index.html`` into ``out_dir``; ``ids``/``labels`` (encoded rows) add Figure 6."""
    check_max_rows(max_rows)
    prepare_out_dir(out_dir, force)
    spec = ckpt.spec
    names = list(spec.field_names)
    cross = cross_field_dims(dims.dims)
    field_heatmap(cross.astype(float), names, "Cross-field dims min(d_a, d_b)", "cache width of the pair",
                  out_dir / "cross_field_dims.png", integer=True)
    field_dims_bars(names, dims.dims, list(spec.dims), out_dir / "field_dims.png",
                    features=[v - 1 for v in spec.vocab_sizes])
    images = [("Cross-field dims (Figure 7)", "cross_field_dims.png",
               "Per field pair, the smaller of the two dims: the length of the cached intermediate vector and "
               "so the pair's FLOPs and memory.")]
    notes = []
    if ids is not None:
        rows = sample_rows(len(ids), max_rows, seed)
        mi = pair_mutual_information(np.asarray(ids[rows]), np.asarray(labels[rows]), spec.vocab_sizes)
        field_heatmap(mi, names, "Mutual information of field pairs with the label", "bits",
                      out_dir / "mutual_information.png")
        off = ~np.eye(len(names), dtype=bool)
        rho = spearman(mi[off], cross[off])
        images.insert(0, ("Mutual information between field pairs and the label (Figure 6)",
                          "mutual_information.png",
                          f"I((X_a, X_b); Y) in bits over {len(rows):,} rows of {html.escape(data_name)} "
                          "(estimated on held-out rows; the diagonal is a field alone)."))
        notes.append(f"Spearman rank correlation between pair mutual information and cross-field dims: "
                     f"<b>{rho:.2f}</b> (the paper finds the two heatmaps closely related).")
    images.append(("Per-field dims", "field_dims.png", "Selected dims against the trained model's dims; dots: "
                                                        "features in the field (log scale)."))
    page = render_html(ckpt, dims, images, notes, out_dir)
    index = out_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    return index


def render_html(ckpt: Checkpoint, dims: ReportDims, images, notes, out_dir: Path) -> str:
    spec = ckpt.spec
    full = cached_flops(spec.dims)
    selected = cached_flops(dims.dims)
    summary = (f"{spec.kind.upper()} with {spec.num_fields} fields, {sum(spec.vocab_sizes):,} features; dims: "
               f"{html.escape(dims.source)}. Mean dim <b>{np.mean(dims.dims):.2f}</b> "
               f"(trained: {np.mean(spec.dims):.2f}); cached FLOPs per prediction <b>{selected:,}</b> "
               f"({100 * selected / full:.1f}% of the trained model's {full:,}).")
    figures = []
    for title, name, caption in images:
        data = base64.b64encode((out_dir / name).read_bytes()).decode("ascii")
        figures.append(f"<h2>{html.escape(title)}</h2>\n<figure><img src=\"data:image/png;base64,{data}\" "
                       f"alt=\"{html.escape(title)}\"><figcaption>{caption}</figcaption></figure>")
    header = "<tr><th>#</th><th>field</th><th>features</th><th>trained dim</th><th>dim</th>"
    header += "<th>variance kept</th></tr>" if dims.explained else "</tr>"
    rows = []
    for i, (name, vocab, k, d) in enumerate(zip(spec.field_names, spec.vocab_sizes, spec.dims, dims.dims)):
        cells = [str(i + 1), html.escape(name), f"{vocab - 1:,}", str(k), str(d)]
        if dims.explained:
            cells.append(f"{100 * dims.explained[i]:.1f}%")
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    source = html.escape(str(ckpt.path)) if ckpt.path else "checkpoint"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>fm2onnx dims report: {source}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }}
img {{ max-width: 100%; }} figcaption {{ color: #555; font-size: 0.9em; }}
table {{ border-collapse: collapse; font-size: 0.9em; }} td, th {{ border: 1px solid #ccc; padding: 2px 8px; text-align: right; }}
td:nth-child(2) {{ text-align: left; }}
</style></head><body>
<h1>Variable embedding dims: {source}</h1>
<p>{summary}</p>
{''.join(f'<p>{n}</p>' for n in notes)}
{chr(10).join(figures)}
<h2>Dims per field</h2>
<table>{header}
{chr(10).join(rows)}
</table>
</body></html>
"""
