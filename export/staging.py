"""Stage -> parity gate -> move into place: how every command that writes models writes them.

Files are written in a scratch directory beside the destination and held to the gate there; only
when every staged file passed are they moved under their real names, sidecars first, so a model
failing a check, or an interrupted export, never appears under a real name.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import onnx_ir as ir
from onnxruntime import InferenceSession

from fm2onnx.errors import Fm2OnnxError
from fm2onnx.files import reported_write_errors

from .model_io import save_model, sidecar_path
from .ort import session
from .parity import compare, ort_outputs


NOTHING_LEFT = "the staged files were removed, nothing new is left there"


@contextmanager
def staged_directory(final_dir: Path):
    """A scratch directory beside the destination, removed whatever happens; a full disk or an unwritable
    folder is one line naming the destination folder."""
    with reported_write_errors(final_dir, NOTHING_LEFT):
        final_dir.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".fm2onnx-", dir=final_dir))
    try:
        with reported_write_errors(final_dir, NOTHING_LEFT):
            yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def move_into_place(files: list[Path], final_dir: Path) -> list[Path]:
    """Sidecars first, so the model file never points at a missing or stale sidecar."""
    moved = []
    for src in sorted(files, key=lambda p: p.suffix != ".data"):
        dst = final_dir / src.name
        os.replace(src, dst)
        moved.append(dst)
    return sorted(moved, key=lambda p: p.suffix == ".data")


@dataclass
class Stager:
    """Saves graphs in ``scratch`` and holds each to parity with the reference logits ``want`` on ``ids``
    (graphs with another gate, such as raw-input graphs, are checked by their writer and ``adopt``-ed)."""

    scratch: Path
    want: np.ndarray | None
    ids: np.ndarray | None
    external_data_threshold: int
    report: Callable[[str], None]
    reference: str = "torch"  # what ``want`` came from, for the gate's message
    files: dict[str, list[Path]] = field(default_factory=dict)  # form -> staged files to move into place
    # a staged graph's logits on ``ids``: the rows in serving batches, or (request graphs) as requests
    score: Callable[[InferenceSession, np.ndarray], np.ndarray] = lambda sess, ids: ort_outputs(sess, ids)["logit"]

    def save(self, model: ir.Model, name: str, tolerance: tuple[float, float], what: str, *,
             target: Path | None = None, form: str | None = None) -> list[Path]:
        with reported_write_errors(self.scratch.parent / name, NOTHING_LEFT):  # named as the user will see it
            files = save_model(model, self.scratch / name, external_data_threshold=self.external_data_threshold)
        self.gate(files[0], tolerance, what, target or name)
        if form is not None:
            self.files[form] = files
        return files

    def gate(self, path: Path, tolerance: tuple[float, float], what: str, target) -> None:
        atol, rtol = tolerance
        parity = compare(self.want, self.score(session(path), self.ids), atol=atol, rtol=rtol)
        if not parity.ok:
            raise Fm2OnnxError(f"{target}: not written: the {what} graph disagrees with {self.reference} "
                               f"({parity.describe()}, tolerance {atol:g} + {rtol:g}·|logit|)")
        self.report(f"parity {what}: {parity.describe()} over {len(self.ids)} rows (incl. unknown, negative, "
                    "out-of-range ids)")

    def adopt(self, form: str, files: list[Path]) -> None:
        self.files[form] = files

    def discard(self, form: str) -> None:
        self.files.pop(form, None)

    def move_into_place(self, final_dir: Path, targets: dict[str, Path]) -> list[Path]:
        written = []
        for form, files in self.files.items():
            stale = sidecar_path(targets[form])
            if stale.exists() and len(files) == 1:
                stale.unlink()  # left by an earlier, larger model under the same name
            written += move_into_place(files, final_dir)
        return written
