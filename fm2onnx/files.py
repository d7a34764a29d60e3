"""Rules for the files fm2onnx writes: a user's file is never replaced without ``--force``."""

from __future__ import annotations

from pathlib import Path

from .errors import Fm2OnnxError


def refuse_overwrite(*paths: str | Path | None, force: bool) -> None:
    """Refuse, in one line naming the file, to replace any existing path unless ``force``."""
    for path in paths:
        if path is not None and Path(path).exists() and not force:
            raise Fm2OnnxError(f"{path}: already exists (pass --force to overwrite)")
