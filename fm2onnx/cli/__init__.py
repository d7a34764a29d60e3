"""``fm2onnx`` command line. Each ``*_cmds`` module registers its commands on the shared app."""

from __future__ import annotations

import importlib

from .app import app, run

COMMAND_MODULES = ("data_cmds", "train_cmds", "export_cmds", "dims_cmds", "bench_cmds", "import_cmds",
                   "package_cmds")


def register_commands() -> None:
    """Import every command module: each registers its commands on ``app``."""
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}")


def main() -> None:
    register_commands()
    run()


__all__ = ["app", "main", "register_commands"]
