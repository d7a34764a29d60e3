"""PNG figures for dims reports and sweeps. Figures are drawn on the Agg canvas directly (no pyplot state),
so they work headless and from any thread."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def field_heatmap(matrix: np.ndarray, names, title: str, colorbar_label: str, path: Path, *,
                  integer: bool = False) -> Path:
    """A symmetric field x field matrix; values are written in the cells when they stay legible
    (integers up to 40 fields, decimals up to 16)."""
    n = len(names)
    size = max(5.0, 0.22 * n + 2.5)
    fig = Figure(figsize=(size + 1.2, size))
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="viridis", origin="upper")
    ax.set_xticks(range(n), names, rotation=90, fontsize=7 if n > 20 else 9)
    ax.set_yticks(range(n), names, fontsize=7 if n > 20 else 9)
    ax.set_title(title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label=colorbar_label)
    if n <= (40 if integer else 16):
        top = np.nanmax(matrix) if np.isfinite(matrix).any() else 0
        for a in range(n):
            for b in range(n):
                value = matrix[a, b]
                if np.isfinite(value):
                    text = f"{int(value)}" if integer else f"{value:.2g}"
                    ax.text(b, a, text, ha="center", va="center", fontsize=5 if n > 20 else 8,
                            color="black" if value > 0.6 * top else "white")
    return _save(fig, path)


def field_dims_bars(names, dims, original, path: Path, features=None) -> Path:
    """Per-field dims against the trained model's dims, with field sizes on a log axis if given."""
    n = len(names)
    fig = Figure(figsize=(max(6.0, 0.3 * n + 2), 4))
    ax = fig.add_subplot()
    x = np.arange(n)
    ax.bar(x, original, color="#d0d7e2", label="trained model")
    ax.bar(x, dims, color="#2a6fb0", label="selected")
    ax.set_xticks(x, names, rotation=90, fontsize=7 if n > 20 else 9)
    ax.set_ylabel("embedding dim")
    ax.set_title(f"Per-field embedding dims (mean {np.mean(dims):.2f})", pad=24)
    legend = {"loc": "lower center", "bbox_to_anchor": (0.5, 1.0), "ncol": 3, "frameon": False, "fontsize": 8}
    if features is not None:
        twin = ax.twinx()
        twin.plot(x, np.maximum(features, 1), "o", color="#d9822b", markersize=3, label="features in field")
        twin.set_yscale("log")
        twin.set_ylabel("features in field", color="#d9822b")
        ax.legend(handles=ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0], **legend)
    else:
        ax.legend(**legend)
    return _save(fig, path)


def auc_against_flops(full: dict, series: dict[str, list[dict]], path: Path, title: str) -> Path:
    """Figure 8's axes: cached FLOPs per prediction vs test AUC, one line per method, labelled by variance.

    ``full``: {"flops", "auc"}; ``series``: method -> [{"flops", "auc", "threshold"}].
    """
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    markers = iter(["o", "s", "^", "D"])
    for method, points in series.items():
        points = [p for p in points if p.get("auc") is not None]
        if not points:
            continue
        points = sorted(points, key=lambda p: p["flops"])
        ax.plot([p["flops"] for p in points], [p["auc"] for p in points], marker=next(markers), label=method)
        for p in points:
            ax.annotate(f"{100 * p['threshold']:g}%", (p["flops"], p["auc"]), textcoords="offset points",
                        xytext=(4, -10), fontsize=7)
    ax.scatter([full["flops"]], [full["auc"]], marker="*", s=160, color="black", zorder=3,
               label=f"full model ({full['flops']:,} FLOPs)")
    ax.axhline(full["auc"], color="black", linewidth=0.6, linestyle=":")
    ax.set_xlabel("cached FLOPs per prediction")
    ax.set_ylabel("test AUC")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)
