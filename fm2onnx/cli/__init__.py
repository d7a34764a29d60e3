"""``fm2onnx`` command line. Each ``*_cmds`` module registers its commands on the shared app."""

from __future__ import annotations

import importlib

from .app import app, run

COMMAND_MODULES = ("data_cmds", "train_cmds", "export_cmds", "dims_cmds", "bench_cmds", "import_cmds")
COMMAND_MODULES += ("package_cmds",)


def main() -> None:
    for name in COMMAND_MODULES:
        try:
            importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":  # a missing command module is fine, a broken import is not
                raise
    run()


__all__ = ["app", "main"]
