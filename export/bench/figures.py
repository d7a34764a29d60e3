"""The look every bench plot shares: a grid of log-log panels, written as a PNG."""

from __future__ import annotations

from pathlib import Path

from fm2onnx.files import written_atomically


def panels(rows: int, cols: int, size: tuple[float, float]):
    """A figure of ``rows`` x ``cols`` panels, each ``size`` inches; matplotlib draws without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False)


def log_axes(ax, xlabel: str, ylabel: str, xbase: int = 10) -> None:
    ax.set_xscale("log", base=xbase)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)


def save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with written_atomically(path) as tmp:  # the format is the name's, not the temporary file's
        fig.savefig(tmp, dpi=110, format=Path(path).suffix.lstrip(".") or "png")
    plt.close(fig)
    return path
