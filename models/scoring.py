"""Logits for many rows in chunks sized by a memory budget, not by a fixed row count."""

from __future__ import annotations

import numpy as np
import torch

from .fm_family import FMFamilyModel
from .memory import DEFAULT_MEMORY_BUDGET, rows_within, scoring_bytes_per_row


def scoring_chunk_rows(model: FMFamilyModel, memory_budget: int = DEFAULT_MEMORY_BUDGET) -> int:
    return rows_within(memory_budget, scoring_bytes_per_row(model.spec))


@torch.no_grad()
def score_rows(model: FMFamilyModel, ids: np.ndarray, rows: np.ndarray | None = None,
               memory_budget: int = DEFAULT_MEMORY_BUDGET) -> np.ndarray:
    """float64 logits of ``ids[rows]`` (all of ``ids`` if rows is None), in the order of ``rows``.

    ``ids`` may be a memory-mapped file: only one chunk of it is read into memory at a time, and
    each chunk's rows are read in increasing order so the reads stay mostly sequential."""
    model.eval()
    total = len(ids) if rows is None else len(rows)
    out = np.empty(total, dtype=np.float64)
    chunk_rows = scoring_chunk_rows(model, memory_budget)
    for start in range(0, total, chunk_rows):
        if rows is None:
            chunk = ids[start:start + chunk_rows]
        else:
            chunk = read_in_order(ids, rows[start:start + chunk_rows])
        out[start:start + len(chunk)] = model(torch.from_numpy(np.asarray(chunk, dtype=np.int64))).double().numpy()
    return out


def read_in_order(ids: np.ndarray, picked: np.ndarray) -> np.ndarray:
    """``ids[picked]``, read in increasing row order (sequential on a memory-mapped file)."""
    if np.all(picked[1:] >= picked[:-1]):
        return ids[picked]
    order = np.argsort(picked, kind="stable")
    chunk = np.empty((len(picked),) + ids.shape[1:], dtype=ids.dtype)
    chunk[order] = ids[picked[order]]
    return chunk
