"""The look every bench plot shares: a grid of log-log panels, written as a PNG."""

from __future__ import annotations

from pathlib import Path

from fm2onnx.errors import Fm2OnnxError
from fm2onnx.files import check_output_file, written_atomically


def check_plot_file(path: Path | None, *, force: bool, inputs=()) -> None:
    """Before any timing: ``--plot`` names a file matplotlib can write (by its extension) that the command
    may write (see ``check_output_file``)."""
    if path is None:
        return
    from matplotlib.backend_bases import FigureCanvasBase

    check_output_file(path, force=force, inputs=inputs)
    kind = plot_format(path)
    if kind not in FigureCanvasBase.get_supported_filetypes():
        raise Fm2OnnxError(f"--plot {path}: matplotlib cannot write .{kind} files; name a .png, .svg or .pdf")


def plot_format(path: Path) -> str:
    return Path(path).suffix.lstrip(".").lower() or "png"


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
        fig.savefig(tmp, dpi=110, format=plot_format(path))
    plt.close(fig)
    return path
