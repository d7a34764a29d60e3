"""Serving module -> uncached ONNX graph (onnx_ir), through torch.onnx's dynamo exporter.

The dynamo exporter gives plain Gather/MatMul/Mul/ReduceSum graphs whose tables and field matrices
are initializers under their module names, constant-folds the rest, and names the batch dim.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings

import onnx
import onnx_ir as ir
import torch

from fm2onnx.errors import Fm2OnnxError
from models import FMFamilyModel

from .contract import INPUT_NAME, OUTPUT_NAMES
from .serving import serving_module

DEFAULT_OPSET = 18
MIN_OPSET = 18  # torch.onnx's dynamo exporter emits opset 18 or newer; the hand-built Splits need 18's num_outputs
# torch.onnx's version converter, onnx.checker and onnxruntime know no opset newer than the installed onnx's
# (torch.onnx silently keeps opset 18 when asked for one it cannot convert to)
MAX_OPSET = onnx.defs.onnx_opset_version()


def check_opset(opset: int, of: str = "") -> None:
    """Every graph export/ writes declares the opset it was asked for: the traced ops and the hand-built
    ones (export/graph_writer.py) mean the same at each opset from MIN_OPSET to MAX_OPSET."""
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise Fm2OnnxError(f"{of}opset {opset} is not supported: the exporter writes opsets {MIN_OPSET} to "
                           f"{MAX_OPSET}")


def export_uncached(model: FMFamilyModel, *, opset: int = DEFAULT_OPSET) -> ir.Model:
    check_opset(opset)
    module = serving_module(model)
    example = torch.zeros(2, model.spec.num_fields, dtype=torch.int64)
    batch = torch.export.Dim("batch")
    try:
        with quiet_exporter(), torch.no_grad():
            program = torch.onnx.export(
                module, (example,), dynamo=True, opset_version=opset,
                input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                dynamic_shapes=({0: batch},), optimize=True, verbose=False,
            )
    except Exception as exc:  # the exporter's errors are pages long; the CLI shows one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise Fm2OnnxError(f"torch.onnx could not export the {model.spec.kind} model at opset {opset}: {first}") from exc
    exported = program.model
    if exported.opset_imports.get("") != opset:
        raise Fm2OnnxError(f"torch.onnx exported the {model.spec.kind} model at opset "
                           f"{exported.opset_imports.get('')}, not the requested {opset}")
    strip_trace_metadata(exported)
    return exported


def strip_trace_metadata(model: ir.Model) -> None:
    """Drop the exporter's per-node provenance (stack traces with local paths, FX node dumps):
    it is most of a small model's bytes and says nothing to a server."""
    for node in model.graph:
        node.metadata_props.clear()
        for value in node.outputs:
            value.metadata_props.clear()


@contextlib.contextmanager
def quiet_exporter():
    """torch.onnx reports progress and optional-dependency warnings on stdout/logging: keep the CLI clean."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch._export", "torch.export", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
