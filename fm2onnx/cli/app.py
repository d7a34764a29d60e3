"""The typer app every command module registers on, and the one place errors become one-liners."""

from __future__ import annotations

import sys

import typer

from fm2onnx.errors import Fm2OnnxError

app = typer.Typer(
    name="fm2onnx",
    help="Train FM-family CTR models and ship them to ONNX in the cached FmFM form.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"fm2onnx: error: {message}", err=True)
    raise typer.Exit(code)


def run() -> None:
    """Typer reports usage errors itself; our own errors become one line and exit status 2."""
    try:
        app()
    except Fm2OnnxError as exc:
        typer.echo(f"fm2onnx: error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:  # a full disk, an unwritable folder: which file, and what the system said
        where = f"{exc.filename}: " if exc.filename else ""
        typer.echo(f"fm2onnx: error: {where}{exc.strerror or exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("fm2onnx: interrupted", err=True)
        sys.exit(130)
