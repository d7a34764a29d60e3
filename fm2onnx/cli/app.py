"""The typer app every command module registers on, and the one place errors become one-liners."""

from __future__ import annotations

import signal
import sys

import typer
from typer.core import TyperGroup

from fm2onnx.errors import Fm2OnnxError
from fm2onnx.interrupt import Interrupted, handled_signals

class CommandGroup(TyperGroup):
    """Typer turns a KeyboardInterrupt from a command into a silent exit 130; raised as Interrupted instead,
    it reaches :func:`run`, which says so in one line (signals already raise Interrupted)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            raise Interrupted(signal.SIGINT) from None


app = typer.Typer(
    name="fm2onnx",
    cls=CommandGroup,
    help="Train FM-family CTR models and ship them to ONNX in the cached FmFM form.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def fail(message: str, code: int = 2) -> None:
    say(f"error: {message}")
    raise typer.Exit(code)


def say(message: str) -> None:
    """One line on stderr; on a terminal it first clears a progress line that was being redrawn in place."""
    clear = "\r\x1b[K" if sys.stderr.isatty() else ""
    typer.echo(f"{clear}fm2onnx: {message}", err=True)


def run() -> None:
    """Typer reports usage errors itself; our own errors become one line and exit status 2, and SIGINT
    or SIGTERM one line and 128 + the signal number (130, 143).

    Signals raise fm2onnx's Interrupted, not KeyboardInterrupt, which typer would turn into a silent exit
    130 before it reached this handler."""
    try:
        with handled_signals():
            app()
    except Interrupted as exc:
        say(str(exc))
        sys.exit(exc.exit_code)
    except Fm2OnnxError as exc:
        say(f"error: {exc}")
        sys.exit(2)
    except OSError as exc:  # a full disk, an unwritable folder: which file, and what the system said
        where = f"{exc.filename}: " if exc.filename else ""
        say(f"error: {where}{exc.strerror or exc}")
        sys.exit(2)
    except KeyboardInterrupt:  # raised by code, not by a signal (those raise Interrupted)
        say("interrupted")
        sys.exit(130)
