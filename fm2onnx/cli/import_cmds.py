"""``fm2onnx import fuxictr | torch``: checkpoints from models trained elsewhere (logic in fm2onnx/importers)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fm2onnx.files import check_output_file

from .app import app

import_app = typer.Typer(no_args_is_help=True, help="Turn a model trained elsewhere into an fm2onnx checkpoint "
                         "(then `fm2onnx export` it). Formats: docs/import.md.")
app.add_typer(import_app, name="import")


def _write(parts, preprocessor, output: Path, force: bool) -> None:
    from fm2onnx.checkpoint import save_checkpoint
    from fm2onnx.importers import to_checkpoint

    ckpt = to_checkpoint(parts, preprocessor)
    save_checkpoint(ckpt, output, force=force)
    spec = ckpt.spec
    dims = "" if spec.kind == "lr" else f", dims {spec.dims[0] if len(set(spec.dims)) == 1 else list(spec.dims)}"
    origin = {"fuxictr": "FuxiCTR", "torch": "PyTorch"}.get(parts.source.get("format"), "")
    typer.echo(f"imported {origin} {parts.source.get('model', 'model')} as fm2onnx {spec.kind} (linear {spec.linear}): "
               f"{spec.num_fields} fields, {sum(spec.vocab_sizes):,} features{dims}"
               + (", with its vocabularies" if preprocessor else ""))
    typer.echo(f"wrote {output}")


@import_app.command("fuxictr")
def fuxictr(
    model_file: Path = typer.Argument(..., help="FuxiCTR's saved weights, <model_id>.model (a state dict)."),
    data_dir: Path = typer.Option(..., "--data-dir", help="FuxiCTR's data directory with feature_map.json and "
                                  "feature_vocab.json (feature_processor.pkl is never read)."),
    model: Optional[str] = typer.Option(None, "--model", help="LR | FM | FwFM | FmFM | FFM | FFMv2 "
                                        "(default: told from the tensors' names and shapes)."),
    linear_type: Optional[str] = typer.Option(None, "--linear-type", help="FwFM only: FiLV | FeLV | LW "
                                              "(default: told from the tensors)."),
    output: Path = typer.Option(..., "-o", "--output", help="The checkpoint to write."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output."),
) -> None:
    """Import a FuxiCTR LR, FM, FwFM, FmFM (matrixed -> fmfm, vectorized -> fvfm) or FFM model."""
    from fm2onnx.importers import import_fuxictr
    from fm2onnx.importers.fuxictr import data_files

    check_output_file(output, force=force, inputs=[model_file, *data_files(data_dir)])  # before the import's work
    parts, preprocessor = import_fuxictr(model_file, data_dir, model=model, linear_type=linear_type)
    _write(parts, preprocessor, output, force)


@import_app.command("torch")
def torch_state_dict(
    state_dict: Path = typer.Argument(..., help="A torch.save'd state dict (read with weights_only=True)."),
    mapping: Path = typer.Option(..., "--mapping", help="JSON naming which tensor holds what (docs/import.md)."),
    output: Path = typer.Option(..., "-o", "--output", help="The checkpoint to write."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output."),
) -> None:
    """Import any PyTorch FM-family model described by a JSON mapping."""
    from fm2onnx.importers import import_torch

    check_output_file(output, force=force, inputs=[state_dict, mapping])  # before the import's work
    parts, preprocessor = import_torch(state_dict, mapping)
    _write(parts, preprocessor, output, force)
