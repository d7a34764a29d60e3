"""Checkpoints with real vocabularies for the raw-feature tests: synthetic Criteo / Avazu rows are
encoded (vocabularies counted as in training) and a randomized model is built on those fields.

``raw_models(fmt)`` (session fixture, shared by test_raw_graphs.py and test_js_client.py) exports the
id graphs of such a checkpoint and puts the raw input in front of each.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from fm2onnx.checkpoint import Checkpoint, save_checkpoint
from fm2onnx.data import Preprocessor, encode_file, get_format, synthesize

from .conftest import randomized_model

# Small min_count so that the vocabularies hold many numeric buckets and small values; rows enough
# for values seen fewer times to exist and map to the unknown row.
SYNTH_ROWS = {"criteo": 4000, "avazu": 3000}
MIN_COUNT = 3
# The model kind only matters after the ids; these two export fastest among the interesting ones.
RAW_KINDS = {"criteo": "fm", "avazu": "fmfm"}


def synthetic_rows(fmt: str, root: Path, rows: int | None = None, seed: int = 0) -> Path:
    path = root / f"{fmt}.{'txt' if fmt == 'criteo' else 'csv'}"
    synthesize(path, rows=rows or SYNTH_ROWS[fmt], fmt=fmt, seed=seed, progress=False)
    return path


def checkpoint_with_vocabulary(fmt: str, kind: str, root: Path, *, seed: int = 0) -> tuple[Path, Path]:
    """(checkpoint, the synthetic data file its vocabularies were counted on)."""
    data = synthetic_rows(fmt, root, seed=seed)
    dataset = encode_file(data, get_format(fmt), root / f"{fmt}.enc", min_count=MIN_COUNT, progress=False)
    pre = dataset.preprocessor
    model = randomized_model(kind, None, seed=seed, fields=pre.field_names, vocab=pre.vocab_sizes)
    ckpt = save_checkpoint(Checkpoint.from_model(model, preprocessor=pre.to_dict()), root / f"{fmt}-{kind}.pt")
    return ckpt, data


@dataclass
class RawModels:
    checkpoint: Path
    data: Path  # the synthetic rows the vocabularies came from
    preprocessor: Preprocessor
    ids: dict[str, Path]  # form -> id graph
    raw: dict[str, Path]  # form -> raw-feature graph


# Built once per test session: the fixture is imported by two test modules, and pytest would build an
# imported session fixture once per module.
_BUILT: dict[str, RawModels] = {}


@pytest.fixture(scope="session")
def raw_models(tmp_path_factory):
    from export import export_checkpoint, load_model, save_model
    from export.raw_input import attach_raw_input, preprocessor_of
    from fm2onnx.checkpoint import load_checkpoint

    cache = _BUILT

    def get(fmt: str) -> RawModels:
        if fmt not in cache:
            root = tmp_path_factory.mktemp(f"raw-{fmt}")
            ckpt, data = checkpoint_with_vocabulary(fmt, RAW_KINDS[fmt], root)
            export_checkpoint(ckpt, root / "model.onnx", form="both")
            pre = preprocessor_of(load_checkpoint(ckpt))
            ids = {"cached": root / "model.onnx", "uncached": root / "model.uncached.onnx"}
            raw = {}
            for form, path in ids.items():
                graph = load_model(path)
                attach_raw_input(graph, pre)
                raw[form] = save_model(graph, root / f"model.raw.{form}.onnx")[0]
            cache[fmt] = RawModels(ckpt, data, pre, ids, raw)
        return cache[fmt]

    return get

