"""``fm2onnx`` command line. Each ``*_cmds`` module registers its commands on the shared app."""

from __future__ import annotations

import importlib

from .app import app, run

COMMAND_MODULES = ("data_cmds", "train_cmds", "export_cmds", "dims_cmds", "bench_cmds", "import_cmds",
                   "package_cmds")


def main() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}")
    run()


__all__ = ["app", "main"]
