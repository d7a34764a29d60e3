"""Running commands in-process with typer's runner: the result, or the one-line error it raised."""

from __future__ import annotations

from typer.testing import CliRunner

from fm2onnx.cli import app, register_commands
from fm2onnx.errors import Fm2OnnxError

register_commands()


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def error_of(result) -> str:
    """The Fm2OnnxError a command raised: one line."""
    assert isinstance(result.exception, Fm2OnnxError), (result.output, result.exception)
    message = str(result.exception)
    assert "\n" not in message
    return message
