"""Accuracy of compact tables (not a test): FmFM with Table 3's dims trained on generated Criteo-like
ids, exported with float32 / float16 / int8 tables, scored on the held-out split.

    python bench/compact_accuracy.py [--rows 500000] [--epochs 2] [--max-features N] [--json]

Exit status 1 when a dtype misses |ΔAUC| <= 0.0005 or |Δlog loss| <= 0.0005 against float32.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from export.bench.accuracy import MAX_DELTA, as_dicts, compact_accuracy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-features", type=int, default=None, help="Cap the features per field.")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fm2onnx-compact-") as tmp:
        echo = (lambda line: print(line, file=sys.stderr)) if args.json else print
        results = compact_accuracy(Path(tmp), rows=args.rows, epochs=args.epochs, seed=args.seed,
                                   max_features=args.max_features, echo=echo)
    if args.json:
        print(json.dumps(as_dicts(results), indent=2))
    missed = [r.table_dtype for r in results if not r.within_target]
    if missed and not args.json:
        print(f"outside |Δ| <= {MAX_DELTA}: {', '.join(missed)}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
