"""The GEMM form's product ranges against the rule that picks them (not a test; RANGE_COST in
export/gemm_form.py).

    python bench/product_ranges.py [--shape criteo --dims table3 | --checkpoint CKPT] [--items 13]
                                   [--rows 100,1000] [--rounds 9] [--seconds 0.2]

Two sets of graphs from one model, one graph per way of cutting X·W's columns that the rule chooses
among (the first k + 1 width groups merged into one range, each later group its own range):

* the request graph, with the ``--items`` fields that have the most features as items: its candidates'
  X is narrow (Criteo, Table 3 dims: 148 columns), so its passes weigh against few multiply-adds;
* full rows on the GEMM form, the default export's batches (Criteo, Table 3 dims: 367 columns).

Every graph is checked against the rule's own pick on the same rows, then all are timed on one thread in
interleaved rounds (each round runs every graph for ``--seconds`` per row count); the table gives per
option the rule's cost (multiply-adds per row + RANGE_COST per range), the median over rounds of each
round's p50 per call, and its ratio to the rule's pick (> 1: slower than the pick).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from export.bench.child import measure  # noqa: E402
from export.bench.request import item_fields  # noqa: E402
from export.bench.request_forms import request_pool  # noqa: E402
from export.bench.shapes import make_checkpoint, shape_spec  # noqa: E402
from export.contract import CANDIDATES_INPUT, CONTEXT_INPUT, INPUT_NAME, FieldRoles  # noqa: E402
from export.folds import FieldWeights  # noqa: E402
from export.gemm_form import GROUPS, RANGE_COST, GemmTables, build_gemm_graph, gemm_tables  # noqa: E402
from export.model_io import save_model  # noqa: E402
from export.ort import session  # noqa: E402
from export.request_graph import build_request_graph, request_layout  # noqa: E402
from export.traffic import request_ids  # noqa: E402
from fm2onnx.checkpoint import load_checkpoint  # noqa: E402
from fm2onnx.errors import Fm2OnnxError  # noqa: E402

POOL = 8  # distinct inputs per row count, cycled through


@contextlib.contextmanager
def forced_ranges(option: int):
    """Every GemmTables built inside cuts its columns as option ``option`` (or its last, if it has fewer)."""
    chosen = GemmTables.product_ranges
    GemmTables.product_ranges = lambda tables: tables.range_options()[min(option, len(tables.group_ends()) - 1)]
    try:
        yield
    finally:
        GemmTables.product_ranges = chosen


def graphs(weights: FieldWeights, roles: FieldRoles, folder: Path) -> dict[str, list[tuple[str, Path]]]:
    """Per form, (option label, graph file) for every option; the rule's pick is labelled with a *."""
    items = request_layout(weights, roles, None, "float32").items
    forms = {"request": (items, lambda: build_request_graph(weights, roles, {})),
             "full rows": (gemm_tables(weights, GROUPS), lambda: build_gemm_graph(weights, {}))}
    out = {}
    for form, (tables, build) in forms.items():
        pick, out[form] = tables.product_ranges(), []
        for k, ranges in enumerate(tables.range_options()):
            with forced_ranges(k):
                path = folder / f"{form.replace(' ', '_')}-{k}.onnx"
                save_model(build(), path)
            label = (f"{'*' if ranges == pick else ' '} first {k + 1} of {len(ranges) + k} groups merged: "
                     f"{len(ranges)} range{'s' * (len(ranges) > 1)}, cost {tables.ranges_cost(ranges):,}")
            out[form].append((label, path))
    return out


def feeds(form: str, spec, roles: FieldRoles, rows: int) -> list[dict]:
    if form == "request":
        return [{CONTEXT_INPUT: r.context, CANDIDATES_INPUT: r.candidates}
                for r in request_pool(spec, roles, rows, "zipf")[:POOL]]
    return [{INPUT_NAME: request_ids(spec.vocab_sizes, rows, "zipf", seed=s)} for s in range(POOL)]


def time_options(files: list[tuple[str, Path]], inputs: dict[int, list[dict]], rounds: int,
                 seconds: float) -> dict[tuple[str, int], float]:
    """(label, rows) -> median over rounds of each round's p50 per call, µs; outputs checked first."""
    sessions = {label: session(path, 1) for label, path in files}
    pick = next(sess for label, sess in sessions.items() if label.startswith("*"))
    for rows, batch in inputs.items():
        want = pick.run(["logit"], batch[0])[0]
        for label, sess in sessions.items():
            got = sess.run(["logit"], batch[0])[0]
            assert np.allclose(got, want, atol=1e-4, rtol=1e-4), f"{label}: logits differ at {rows} rows"
    medians: dict[tuple[str, int], list[float]] = {}
    for round_ in range(rounds):
        for rows, batch in inputs.items():
            for label, sess in sessions.items():
                times = measure(lambda feed: sess.run(None, feed), batch, seconds, 5, warmup=0)
                medians.setdefault((label, rows), []).append(float(np.median(times)) * 1e6)
        print(f"  round {round_ + 1}/{rounds} done", file=sys.stderr)
    return {key: float(np.median(values)) for key, values in medians.items()}


def report(form: str, files: list[tuple[str, Path]], timed: dict[tuple[str, int], float], rows: list[int]) -> None:
    pick = next(label for label, _ in files if label.startswith("*"))
    print(f"\n{form} (RANGE_COST {RANGE_COST:,}; * the rule's pick)")
    print("| option | " + " | ".join(f"{n:,} rows: p50 µs (÷ pick)" for n in rows) + " |")
    print("|---|" + "---|" * len(rows))
    for label, _ in files:
        cells = [f"{timed[label, n]:,.0f} ({timed[label, n] / timed[pick, n]:.3f})" for n in rows]
        print(f"| {label} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--shape", default="criteo")
    parser.add_argument("--dims", default="table3")
    parser.add_argument("--items", type=int, default=13, help="item fields: this many with the most features")
    parser.add_argument("--rows", default="100,1000", help="candidates per request, and rows per full-row batch")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--seconds", type=float, default=0.2)
    args = parser.parse_args()
    try:
        rows = [int(n) for n in args.rows.split(",")]
    except ValueError:
        raise SystemExit(f"error: --rows {args.rows!r}: expected row counts such as 100,1000") from None
    try:
        run(args, rows)
    except Fm2OnnxError as error:
        raise SystemExit(f"error: {error}") from None


def run(args: argparse.Namespace, rows: list[int]) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = args.checkpoint or make_checkpoint(shape_spec(args.shape, args.dims), Path(scratch) / "shape.pt")
        ckpt = load_checkpoint(checkpoint)
        weights = FieldWeights.of_model(ckpt.model())
        roles = FieldRoles.of_names(ckpt.spec, None, item_fields(ckpt.spec, args.items, "largest"))
        for form, files in graphs(weights, roles, Path(scratch)).items():
            print(f"{form}: timing {len(files)} graphs", file=sys.stderr)
            inputs = {n: feeds(form, ckpt.spec, roles, n) for n in rows}
            report(form, files, time_options(files, inputs, args.rounds, args.seconds), rows)


if __name__ == "__main__":
    main()
