"""Data pipeline: formats, token rules + vocabularies, streaming encoding, synthetic data, metrics.

    fmt = get_format("criteo")                       # or "avazu", or get_format("csv", "schema.json")
    ds = load_or_encode("train.txt", fmt)            # EncodedDataset: ids, labels, split, preprocessor
    synthesize("synth.txt", rows=300_000, fmt="criteo", seed=0)

Modules, from raw text to ids:

* :mod:`.formats` -- which columns become which fields; :mod:`.reader` -- text -> chunks of strings
* :mod:`.buckets` -- the log² bucket rule; :mod:`.tokens` -- raw value -> token;
  :mod:`.int_keys` -- the integer fast path
* :mod:`.chunk_view` -- a chunk's tokens, shared by :mod:`.validation`, :mod:`.counting` and encoding
* :mod:`.preprocessor` -- the vocabularies: tokens -> ids
* :mod:`.encode` -- the two passes (:mod:`.local_codes`), writing a :mod:`.dataset` via :mod:`.staging`
  (with :mod:`.npy` and :mod:`.splits`); :mod:`.cache` -- reuse of earlier encodings
* :mod:`.synth` -- synthetic data; :mod:`.metrics` -- AUC and log loss
"""

from .buckets import log2_bucket
from .cache import load_or_encode
from .dataset import EncodedDataset
from .encode import encode_file
from .formats import FieldSpec, TableFormat, get_format
from .metrics import auc, log_loss
from .preprocessor import Preprocessor
from .synth import SynthInfo, default_cardinalities, synthesize
from .tokens import hour_tokens, numeric_token

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
