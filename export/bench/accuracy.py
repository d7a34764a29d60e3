"""What compact tables cost in accuracy: an FmFM trained on generated data, exported with float32,
float16 and int8 tables, scored on the held-out (test) split by onnxruntime.

Targets: |ΔAUC| <= 0.0005 and |Δlog loss| <= 0.0005 against the float32 tables.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fm2onnx.data import EncodedDataset, default_cardinalities, synthesize
from fm2onnx.data.metrics import auc, log_loss
from fm2onnx.train import TrainConfig, train
from models import ModelSpec
from models.paper_shapes import CRITEO_TABLE3_DIMS

from ..fields_graph import build_fields_graph
from ..fields_layout import FieldsLayoutConfig
from ..folds import TABLE_DTYPES, FieldWeights
from ..ort import session
from ..plan import unlimited_plan
from .prepare import write

MAX_DELTA = 0.0005


@dataclass
class DtypeAccuracy:
    table_dtype: str
    file_bytes: int
    auc: float
    log_loss: float
    delta_auc: float  # against float32 tables
    delta_log_loss: float
    max_abs_logit_delta: float

    @property
    def within_target(self) -> bool:
        return abs(self.delta_auc) <= MAX_DELTA and abs(self.delta_log_loss) <= MAX_DELTA


def held_out_logits(path: Path, ids: np.ndarray, batch: int = 4096) -> np.ndarray:
    sess = session(path)
    return np.concatenate([sess.run(["logit"], {"feature_ids": ids[i:i + batch]})[0]
                           for i in range(0, len(ids), batch)]).astype(np.float64)


def compact_accuracy(workdir: Path, *, rows: int = 500_000, epochs: int = 2, seed: int = 0,
                     max_features: int | None = None, learning_rate: float = 3e-3,
                     echo=lambda line: None) -> list[DtypeAccuracy]:
    """Generated Criteo-like ids (39 fields, at most ``max_features`` per field), FmFM with Table 3's
    dims, the test split held out."""
    data = workdir / "data"
    cardinalities = [min(c, max_features or c) for c in default_cardinalities("ids")]
    # decay: rare features carry less signal, so the planted model is learnable from these rows
    synthesize(data, rows=rows, fmt="ids", seed=seed, cardinalities=cardinalities, decay=1.0, progress=False,
               force=True)
    dataset = EncodedDataset.open(data)
    spec = ModelSpec.create("fmfm", dataset.field_names, dataset.vocab_sizes, dims=CRITEO_TABLE3_DIMS)
    echo(f"training FmFM (Table 3 dims) on {len(dataset.indices('train')):,} generated rows")
    trained = train(spec, dataset, TrainConfig(epochs=epochs, seed=seed, learning_rate=learning_rate), progress=False)
    model = trained.model
    echo(f"  torch test AUC {trained.metrics['test']['auc']:.5f}, log loss {trained.metrics['test']['logloss']:.5f}")
    test = dataset.indices("test")
    ids = np.asarray(dataset.ids[test], np.int64)
    labels = np.asarray(dataset.labels[test], np.float64)
    scores = {}
    plan, weights = unlimited_plan(spec), FieldWeights.of_model(model)
    for dtype in TABLE_DTYPES:
        path = workdir / f"model.{dtype}.onnx"
        size = write(build_fields_graph(weights, plan, FieldsLayoutConfig(table_dtype=dtype)), path)
        scores[dtype] = (size, held_out_logits(path, ids))
    base = scores["float32"][1]
    base_auc, base_loss = auc(labels, base), log_loss(labels, 1 / (1 + np.exp(-base)))
    out = []
    for dtype, (size, logits) in scores.items():
        a, l = auc(labels, logits), log_loss(labels, 1 / (1 + np.exp(-logits)))
        out.append(DtypeAccuracy(dtype, size, a, l, a - base_auc, l - base_loss, float(np.abs(logits - base).max())))
        echo(f"  {dtype:<8} {size:>14,} bytes  AUC {a:.5f} (Δ {a - base_auc:+.5f})  log loss {l:.5f} "
             f"(Δ {l - base_loss:+.5f})  max |Δlogit| {out[-1].max_abs_logit_delta:.2e}  on {len(test):,} held-out rows")
    return out


def as_dicts(items: list[DtypeAccuracy]) -> list[dict]:
    return [asdict(i) | {"within_target": i.within_target} for i in items]
