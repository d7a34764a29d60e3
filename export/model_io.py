"""Reading and writing ONNX files: one-line errors, external data past a size threshold, full check.

A model whose tensors pass ``external_data_threshold`` bytes (default 1.5 GB, under protobuf's 2 GB
limit) is written as ``model.onnx`` + one sidecar ``model.onnx.data`` referenced by relative name,
so the pair loads from any working directory.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import onnx_ir as ir

from fm2onnx.errors import Fm2OnnxError
from fm2onnx.files import check_output_file, require_file

DEFAULT_EXTERNAL_DATA_THRESHOLD = 1_500_000_000


def tensor_bytes(model: ir.Model, *, float_only: bool = False) -> int:
    """Bytes of the initializers of every graph, subgraphs included."""
    total = 0
    for value in (v for graph in model.graphs() for v in graph.initializers.values()):
        tensor = value.const_value
        if tensor is None or (float_only and not tensor.dtype.is_floating_point()):
            continue
        total += tensor.nbytes
    return total


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".data")


def check_model_file(path: Path, *, force: bool, inputs=()) -> None:
    """Before any work: ``path`` and its sidecar may be written (``check_output_file``). The sidecar is
    checked whether or not the model will need one: a stale one beside a new model is removed."""
    for file in (path, sidecar_path(path)):
        check_output_file(file, force=force, inputs=inputs)


def load_model(path: str | Path) -> ir.Model:
    path = Path(path)
    require_file(path, "ONNX")
    try:
        model = ir.load(path)
    except Exception as exc:  # protobuf's DecodeError and friends
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise Fm2OnnxError(f"{path}: not a readable ONNX model ({first})") from None
    if not model.graph.outputs:  # an empty file parses as an empty model
        raise Fm2OnnxError(f"{path}: not an ONNX model (no graph outputs)")
    fault = external_data_fault(model, path)
    if fault:
        raise Fm2OnnxError(f"{path}: {fault}")
    return model


def external_data_fault(model: ir.Model, path: Path) -> str:
    """'' or why the external tensors of ``model`` (read from ``path``) cannot be read: a sidecar that
    is missing or shorter than the bytes its tensors take. Only sizes are read, not the data."""
    sizes: dict[Path, int | None] = {}
    for value in (v for graph in model.graphs() for v in graph.initializers.values()):
        tensor = value.const_value
        if not isinstance(tensor, ir.ExternalTensor):
            continue
        file = path.parent / tensor.location
        if file not in sizes:
            sizes[file] = file.stat().st_size if file.is_file() else None
        if sizes[file] is None:
            return f"its external data file {file} is missing"
        end = (tensor.offset or 0) + (tensor.length if tensor.length is not None else tensor.nbytes)
        if end > sizes[file]:
            return (f"its external data file {file} is truncated: {sizes[file]:,} bytes, but tensor "
                    f"{value.name!r} ends at byte {end:,}")
    return ""


def save_model(model: ir.Model, path: str | Path, *,
               external_data_threshold: int = DEFAULT_EXTERNAL_DATA_THRESHOLD) -> list[Path]:
    """Write ``model`` (and its sidecar when large), then run the full ONNX checker on the file."""
    path = Path(path)
    sidecar = sidecar_path(path)
    external = tensor_bytes(model) > external_data_threshold
    if external:
        save_with_sidecar(model, path, sidecar)
    else:
        ir.save(model, path)
    onnx.checker.check_model(str(path), full_check=True)
    return [path, sidecar] if external else [path]


def save_with_sidecar(model: ir.Model, path: Path, sidecar: Path, min_bytes: int = 1024) -> None:
    """The main graph's tensors of ``min_bytes`` or more go to ``sidecar``; a subgraph's stay in the
    file (small ones, such as the cached branches' index arrays), as onnxruntime-web cannot resolve
    external data inside subgraphs ("external data path could not be canonicalized")."""
    large = [v for v in model.graph.initializers.values() if v.const_value.nbytes >= min_bytes]
    originals = [v.const_value for v in large]
    externals = ir.external_data.convert_tensors_to_external(originals, path.parent, sidecar.name)
    try:
        for value, tensor in zip(large, externals):
            value.const_value = tensor
        ir.save(model, path)
    finally:  # the caller's model keeps its tensors in memory
        for value, tensor in zip(large, originals):
            value.const_value = tensor
