"""Working memory per row of a model, and how many rows fit a memory budget.

Scoring and training hold a chunk's intermediate tensors at once, so a fixed row count cannot bound
memory across kinds: FFM's per-row vectors are n(n-1)K wide, LR's are n. The estimates count the
float tensors each forward creates (the widths below), times a margin measured on Criteo-shaped
models (docs/training.md, "Memory and speed"); training also keeps what backward needs plus the
gradients and the sparse optimizers' coalesced copies.
"""

from __future__ import annotations

import math
import re

from fm2onnx.errors import Fm2OnnxError

from .spec import ModelSpec

DEFAULT_MEMORY_BUDGET = 2 << 30
# A budget below this cannot hold the interpreter's own temporaries for one chunk: a typo, not a setting.
MIN_MEMORY_BUDGET = 1 << 20
FLOAT_BYTES = 4
ID_BYTES = 8
# Interaction temporaries in units of the concatenated embedding width: FM's squares and sum, the
# FwFM/FvFM [n, n] products' copy/product/elementwise terms, FmFM's E @ W and its product, FFM's two
# pair gathers and their product (each half the n(n-1)K slots).
INTERACTION_WIDTHS = {"identity": 2.0, "scalar": 3.0, "diagonal": 3.0, "full": 2.0, "ffm": 1.5}
# Id copies per row: the numpy chunk, its tensor, the sanitizing mask and where.
ID_COPIES = 4
# Measured peak over the counted tensors, scoring: allocator slack and per-field lookups alive at once.
SCORING_MARGIN = 1.5
# Training over scoring: autograd keeps the forward's tensors, backward makes their gradients, and
# the sparse optimizers coalesce the embedding gradients and gather their moment rows (measured:
# 1.0-1.6x scoring's peak on Criteo-shaped models).
TRAINING_FACTOR = 2.0

_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_memory_budget(text: str | int, option: str = "--memory-budget") -> int:
    """'2G', '512M', '1.5g', '3000000' (bytes) -> bytes; K/M/G/T are powers of 1024."""
    match = _SIZE.match(str(text))
    if match is None:
        raise Fm2OnnxError(f"{option} {text!r}: expected a size such as 512M, 2G or a number of bytes")
    value = float(match.group(1)) * _UNITS[match.group(2).lower()]
    if not math.isfinite(value) or value < MIN_MEMORY_BUDGET:
        raise Fm2OnnxError(f"{option} {text!r}: at least 1M is needed to score anything")
    return int(value)


def format_size(size: int) -> str:
    """Bytes as the largest whole K/M/G/T unit parse_memory_budget reads back exactly, e.g. '2G'."""
    for unit in "TGMK":
        if size % _UNITS[unit.lower()] == 0:
            return f"{size // _UNITS[unit.lower()]}{unit}"
    return str(size)


def embedding_width(spec: ModelSpec) -> int:
    """Floats one row looks up: n(n-1)K for FFM (a vector per other field), sum(dims) otherwise."""
    if spec.kind == "ffm":
        n = spec.num_fields
        return n * (n - 1) * spec.uniform_dim
    return sum(spec.dims)


def forward_floats(spec: ModelSpec) -> float:
    """Float32 values one row's forward creates: lookups, their concatenation, linear term, interaction."""
    width = embedding_width(spec)
    linear = 2 * spec.num_fields if spec.linear == "feature" else 0
    interaction = INTERACTION_WIDTHS.get("ffm" if spec.kind == "ffm" else spec.field_matrix_kind, 0.0)
    return 2 * width + linear + interaction * width + 4


def scoring_bytes_per_row(spec: ModelSpec) -> int:
    """Peak working bytes per scored row (no gradients)."""
    counted = forward_floats(spec) * FLOAT_BYTES + ID_COPIES * ID_BYTES * spec.num_fields + 16
    return math.ceil(SCORING_MARGIN * counted)


def training_bytes_per_row(spec: ModelSpec) -> int:
    """Peak working bytes per row of a training step (forward, backward, optimizer step)."""
    return math.ceil(TRAINING_FACTOR * scoring_bytes_per_row(spec))


def accumulated_gradient_bytes_per_row(spec: ModelSpec) -> int:
    """What one row adds to the sparse embedding gradients that micro-batches accumulate until the
    step: its looked-up values, its per-feature linear weights and the ids indexing both, twice,
    because adding a micro-batch's sparse gradient to the sum so far copies both into a new one."""
    linear = spec.num_fields if spec.linear == "feature" else 0
    return 2 * ((embedding_width(spec) + linear) * FLOAT_BYTES + 2 * ID_BYTES * spec.num_fields)


def micro_batch_rows(spec: ModelSpec, batch_size: int, budget: int) -> int:
    """Rows per forward/backward pass so a step of ``batch_size`` rows fits ``budget``: the whole batch
    when it fits, else what is left after the batch's accumulated gradients, divided per row."""
    per_row = training_bytes_per_row(spec)
    if batch_size * per_row <= budget:
        return batch_size
    left = budget - batch_size * accumulated_gradient_bytes_per_row(spec)
    if left < per_row:
        need = batch_size * accumulated_gradient_bytes_per_row(spec) + per_row
        raise Fm2OnnxError(f"--memory-budget {budget:,} bytes: a batch of {batch_size} {spec.kind} rows accumulates "
                           f"{need - per_row:,} bytes of gradients; give at least {need:,} or a smaller --batch-size")
    return min(batch_size, left // per_row)


def rows_within(budget: int, bytes_per_row: int) -> int:
    """Rows whose working memory fits ``budget`` (at least one: a row is the smallest unit of work)."""
    return max(1, int(budget) // max(1, int(bytes_per_row)))
