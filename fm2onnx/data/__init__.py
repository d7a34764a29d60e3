"""Data pipeline: formats, preprocessing + vocabularies, streaming encoding, synthetic data, metrics.

    fmt = get_format("criteo")                       # or "avazu", or get_format("csv", "schema.json")
    ds = load_or_encode("train.txt", fmt)            # EncodedDataset: ids, labels, split, preprocessor
    synthesize("synth.txt", rows=300_000, fmt="criteo", seed=0)
"""

from .encode import EncodedDataset, encode_file, load_or_encode
from .formats import FieldSpec, TableFormat, get_format
from .metrics import auc, log_loss
from .synth import SynthInfo, default_cardinalities, synthesize
from .vocab import Preprocessor, hour_tokens, log2_bucket, numeric_token

__all__ = [
    "EncodedDataset",
    "FieldSpec",
    "Preprocessor",
    "SynthInfo",
    "TableFormat",
    "auc",
    "default_cardinalities",
    "encode_file",
    "get_format",
    "hour_tokens",
    "load_or_encode",
    "log2_bucket",
    "log_loss",
    "numeric_token",
    "synthesize",
]
