"""Each distinct model is traced by torch.onnx once per test run.

torch.onnx's dynamo exporter takes about ten seconds for even a six-field model, nearly all of an
export, and the tests export the same few fixture models many times over. ``export_uncached`` is
deterministic in the model's class, spec and weights, so a repeat gets a copy of the first trace's
graph (through its serialized proto, the path ``fm2onnx rewrite`` takes from an uncached file), and
everything after the trace (the rewrite passes, the parity gate, the written files) still runs.

The traces are kept in a folder the pytest-xdist workers share (``FOLDER_VARIABLE``), so a model
traced by one worker is not traced again by the other. ``FM2ONNX_TRACE_LOG=FILE`` appends each
trace's seconds and test to FILE: what the suite's time goes to.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from .replace_function import replace_everywhere

FOLDER_VARIABLE = "FM2ONNX_TEST_TRACES"
WAIT_SECONDS = 600  # for another worker tracing the same model: a 39-field model takes under a minute


def start(config) -> None:
    """In the run's first process: the shared folder (the workers inherit it); in every process: the
    memoized exporter."""
    if not hasattr(config, "workerinput") and FOLDER_VARIABLE not in os.environ:
        os.environ[FOLDER_VARIABLE] = tempfile.mkdtemp(prefix="fm2onnx-traces-")
        config._fm2onnx_traces = os.environ[FOLDER_VARIABLE]
    trace_each_model_once(Path(os.environ[FOLDER_VARIABLE]))
    build_the_onnx_registry_once()


def finish(config) -> None:
    folder = getattr(config, "_fm2onnx_traces", None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
        os.environ.pop(FOLDER_VARIABLE, None)


def trace_each_model_once(folder: Path) -> None:
    """Swap ``export.to_onnx.export_uncached`` for its memoized self, in every module that holds it."""
    import export.to_onnx as to_onnx

    original = to_onnx.export_uncached

    def export_uncached(model, *, opset: int = to_onnx.DEFAULT_OPSET):
        import onnx
        import onnx_ir as ir

        path = folder / f"{model_key(model, opset)}.onnx"
        if not path.exists() and claim(path):
            try:
                started = time.monotonic()
                proto = ir.serde.serialize_model(original(model, opset=opset))
                if os.environ.get("FM2ONNX_TRACE_LOG"):
                    with open(os.environ["FM2ONNX_TRACE_LOG"], "a") as log:
                        log.write(f"{time.monotonic() - started:6.1f} {os.environ.get('PYTEST_CURRENT_TEST')}\n")
                tmp = path.with_suffix(f".tmp-{os.getpid()}")
                tmp.write_bytes(proto.SerializeToString())
                os.replace(tmp, path)
            finally:
                path.with_suffix(".lock").unlink(missing_ok=True)
        wait_for(path)
        return ir.serde.deserialize_model(onnx.load_model_from_string(path.read_bytes()))

    replace_everywhere(original, export_uncached)


def build_the_onnx_registry_once() -> None:
    """torch.onnx builds its table of ATen-to-ONNX functions anew for every export (a third of a small
    model's trace); it depends only on the opset and an export without custom functions leaves it as
    built, so one table per opset serves every trace of the run. Without that internal, traces are slower."""
    try:
        from torch.onnx._internal.exporter import _registration
    except ImportError:
        return
    registry = getattr(_registration, "ONNXRegistry", None)
    if registry is None or not hasattr(registry, "from_torchlib"):
        return
    build, built = registry.from_torchlib.__func__, {}

    def from_torchlib(cls, *args, **kwargs):
        key = (args, tuple(sorted(kwargs.items())))
        if key not in built:
            built[key] = build(cls, *args, **kwargs)
        return built[key]

    registry.from_torchlib = classmethod(from_torchlib)


def model_key(model, opset: int) -> str:
    from fm2onnx.checkpoint import tensors_sha256

    spec = json.dumps(model.spec.to_dict(), sort_keys=True)
    text = f"{type(model).__qualname__}|{spec}|{tensors_sha256(model.state_dict())}|{opset}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def claim(path: Path) -> bool:
    """True if this process traces the model; False if another one already does."""
    try:
        os.close(os.open(path.with_suffix(".lock"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def wait_for(path: Path) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not path.exists():
        if not path.with_suffix(".lock").exists() and not path.exists():
            raise RuntimeError(f"{path}: the process tracing this model failed; see its test")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path}: not traced within {WAIT_SECONDS} s")
        time.sleep(0.05)
