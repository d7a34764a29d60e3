"""Fixtures shared by tests/ and runtime_tests/."""

import os
import sys

import pytest


def pytest_configure(config):
    from tests import one_core_per_worker, traced_once

    traced_once.start(config)
    one_core_per_worker.start(config)


def pytest_unconfigure(config):
    from tests import traced_once

    traced_once.finish(config)


@pytest.fixture(autouse=True, scope="session")
def private_cache_root(tmp_path_factory):
    """Encodings the commands cache go to this test run's folder, never the user's ~/.cache, so no
    test leaves files behind or passes on another run's cache (subprocesses inherit it too)."""
    before = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if before is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = before


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
