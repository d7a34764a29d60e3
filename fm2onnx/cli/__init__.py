"""``fm2onnx`` command line. Each ``*_cmds`` module registers its commands on the shared app."""

from __future__ import annotations

import importlib
import sys

from .app import app, run, say

COMMAND_MODULES = ("data_cmds", "train_cmds", "export_cmds", "dims_cmds", "bench_cmds", "import_cmds",
                   "package_cmds")


def register_commands() -> None:
    """Import every command module: each registers its commands on ``app``."""
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}")


def main() -> None:
    try:
        register_commands()
    except KeyboardInterrupt:  # Ctrl-C in the seconds the command modules take to import, before run() holds signals
        say("interrupted")
        sys.exit(130)
    run()


__all__ = ["app", "main", "register_commands"]
