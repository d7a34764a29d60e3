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
    try:
        app(standalone_mode=False)
    except Fm2OnnxError as exc:
        typer.echo(f"fm2onnx: error: {exc}", err=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("fm2onnx: aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("fm2onnx: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # click usage errors carry their own formatting
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
