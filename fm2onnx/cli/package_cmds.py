"""``fm2onnx package``: ORT-format files and a reduced-build operator config for edge builds (logic in
export/package.py)."""

from __future__ import annotations

from pathlib import Path
from typing import List

import typer

from .app import app


@app.command()
def package(
    models: List[Path] = typer.Argument(..., help="fm2onnx ONNX models (id, raw-input or request graphs); a model's "
                                        "<model>.onnx.data sidecar is read beside it."),
    output: Path = typer.Option(..., "-o", "--output", help="Directory for <name>.ort per model, "
                                "required_operators.config and summary.json."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing files of the package."),
    rows: int = typer.Option(512, help="Parity rows per model (random ids, or raw rows made from the graph)."),
) -> None:
    """Convert models to onnxruntime's ORT format (Fixed optimization style) for minimal and
    reduced-operator builds (Android, iOS, WebAssembly), with one required-operators config for all
    of them and a size/ops summary; written only if every .ort file matches its .onnx on onnxruntime."""
    from export.package import package_models

    package_models(models, output, force=force, rows=rows, echo=typer.echo)
