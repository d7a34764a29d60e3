"""``fm2onnx synth`` and ``fm2onnx encode``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import app

JOBS_HELP = ("Worker processes counting parts of a large uncompressed file (default: one per physical "
             "core); the encoding is the same for any number.")


def parse_int_list(text: Optional[str], what: str) -> list[int] | None:
    from fm2onnx.errors import Fm2OnnxError

    if not text:
        return None
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise Fm2OnnxError(f"--{what}: expected comma-separated integers, got {text!r}") from None


@app.command()
def synth(
    rows: int = typer.Option(1_000_000, help="Rows to generate."),
    format: str = typer.Option("criteo", "--format", help="criteo (TSV) | avazu (CSV) | ids (encoded directory)."),
    output: Path = typer.Option(..., "-o", "--output"),
    seed: int = typer.Option(0),
    field_dims: Optional[str] = typer.Option(None, help="Planted per-field dims, comma-separated (default: mixed 2..12)."),
    cardinalities: Optional[str] = typer.Option(None, help="Features per field, comma-separated."),
    zipf: float = typer.Option(1.1, help="Zipf exponent of feature frequencies."),
    planted_out: Optional[Path] = typer.Option(None, help="Also write the planted logits (.npz)."),
    force: bool = typer.Option(False),
    quiet: bool = typer.Option(False),
):
    """Synthetic CTR data with Zipf feature frequencies and labels from a planted FmFM."""
    from fm2onnx.data import synthesize

    info = synthesize(output, rows=rows, fmt=format, seed=seed, field_dims=parse_int_list(field_dims, "field-dims"),
                      cardinalities=parse_int_list(cardinalities, "cardinalities"), zipf=zipf,
                      planted_out=planted_out, force=force, progress=not quiet)
    if not quiet:
        typer.echo(f"wrote {output}: {rows:,} rows, positive rate {info.positive_rate:.3f}, "
                   f"planted model AUC {info.planted_auc:.4f}")


@app.command()
def encode(
    data: Path = typer.Argument(..., help="Criteo / Avazu / CSV / TSV text file."),
    format: str = typer.Option("criteo", "--format"),
    schema: Optional[Path] = typer.Option(None, help="Schema JSON for csv/tsv."),
    output: Path = typer.Option(..., "-o", "--output", help="Encoded dataset directory."),
    min_count: Optional[int] = typer.Option(None, help="Rarer features map to unknown (criteo 8, avazu 5)."),
    seed: int = typer.Option(0, help="Seed of the random 80/10/10 split."),
    skip_bad_rows: bool = typer.Option(False, help="Count and report malformed rows instead of failing."),
    jobs: Optional[int] = typer.Option(None, help=JOBS_HELP),
    force: bool = typer.Option(False),
    quiet: bool = typer.Option(False),
):
    """Two-pass streaming encode (vocabularies, then ids) into a compact directory that training streams from."""
    from fm2onnx.data import encode_file, get_format

    dataset = encode_file(data, get_format(format, str(schema) if schema else None), output, min_count=min_count,
                          seed=seed, skip_bad_rows=skip_bad_rows, progress=not quiet, force=force, jobs=jobs)
    timing = dataset.meta["timing"]
    typer.echo(f"wrote {output}: {dataset.rows:,} rows, {dataset.n_fields} fields, "
               f"{sum(dataset.vocab_sizes):,} features, {dataset.bad_rows} bad rows skipped; "
               f"{timing['rows_per_s']:,.0f} rows/s with {timing['jobs']} job{'s' if timing['jobs'] > 1 else ''}")
