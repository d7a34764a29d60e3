"""Fixtures shared by tests/ and runtime_tests/."""

import sys

import pytest


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run ``fm2onnx ARGS`` in-process -> (exit code, stdout, stderr)."""
    from fm2onnx.cli import main

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["fm2onnx", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
        out, err = capsys.readouterr()
        return code, out, err

    return run
