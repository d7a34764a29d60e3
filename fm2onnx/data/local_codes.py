"""Chunk-local codes: how the counting pass writes ids before the vocabularies exist, and how the
second pass turns them into vocabulary ids in place without parsing the text again.

For field j of a chunk, pass 1 writes ``base_j + 1 + code`` (``base_j`` for a missing value), the
fields' code ranges laid end to end, so pass 2 maps a whole chunk with one lookup table. Integer
fields are coded by their token keys (an offset and a size); the others by the chunk's distinct
tokens, which are spilled to a temporary Arrow stream in field order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa

from ..errors import Fm2OnnxError
from ..progress import Progress
from .chunk_view import ChunkView, FieldCodes
from .counting import VocabCounter
from .formats import TableFormat
from .npy import NpyRows
from .preprocessor import Preprocessor, transpose_into

__all__ = ["LocalCodes"]

_EMPTY = np.zeros(0, np.int32)
# per field of a chunk: (integer key offset, or None when its tokens were spilled; number of codes)
FieldPlan = list[tuple[int | None, int]]


class LocalCodes:
    """Pass 1 (:meth:`encode_chunk`, counting tokens as it goes) and pass 2 (:meth:`remap`)."""

    def __init__(self, source: str, fmt: TableFormat, spill_path: Path,
                 chunks: list[tuple[int, int, FieldPlan]] | None = None):
        """``chunks``: reopen the finished pass 1 of another process, whose tokens ``spill_path`` holds."""
        self.source = source
        self.fmt = fmt
        self.counter = VocabCounter(fmt.n_fields)
        self.spill_path = spill_path
        self._spill = None
        if chunks is None:
            self._spill = pa.ipc.new_stream(str(spill_path), pa.schema([("v", pa.string())]))
        self.chunks: list[tuple[int, int, FieldPlan]] = chunks or []  # (first row, rows, field plan)

    def encode_chunk(self, view: ChunkView, keep: np.ndarray | None, row0: int) -> np.ndarray:
        """Count the kept rows' tokens and return their local codes, int32 [rows, n_fields]."""
        n = view.rows if keep is None else int(keep.sum())
        cols = np.empty((self.fmt.n_fields, n), np.int32)
        plan: FieldPlan = []
        base = 0
        for j, spec in enumerate(self.fmt.fields):
            fc = view.field_codes(spec, keep)
            self.counter.add(j, *fc.counts())
            if base + fc.size + 1 >= 2**31:
                raise Fm2OnnxError(f"{self.source}: chunk too large to encode; pass a smaller chunk_rows")
            np.add(fc.codes, base + 1, out=cols[j])
            base += fc.size + 1
            plan.append((fc.offset if fc.tokens is None else None, fc.size))
            if fc.tokens is not None:
                self._spill.write_batch(pa.record_batch([fc.tokens], names=["v"]))
        self.chunks.append((row0, n, plan))
        ids = np.empty((n, self.fmt.n_fields), np.int32)
        transpose_into(ids, cols)
        return ids

    def close(self) -> None:
        """End the spill stream (pass 1 is over, or failed)."""
        if self._spill is not None:
            self._spill.close()
            self._spill = None

    def remap(self, ids_path: Path, pre: Preprocessor, prog: Progress) -> None:
        """Pass 2: local codes in ``ids_path`` -> vocabulary ids, in place, one table per chunk."""
        with NpyRows(str(ids_path), writable=True) as ids:
            for row0, n, table in self.chunk_tables(pre):
                block = ids.read(row0, n)
                ids.write(row0, np.take(table, block, out=block))
                prog.update(row0 + n, (row0 + n) / ids.shape[0])
        self.spill_path.unlink()

    def chunk_tables(self, pre: Preprocessor, group_tokens: int = 1 << 22) -> Iterator[tuple[int, int, np.ndarray]]:
        """(first row, rows, local code -> id table) of each chunk, in order.

        The spilled tokens of several chunks are looked up together (one hash of each vocabulary per
        group of chunks holding up to ``group_tokens`` tokens), so large vocabularies stay cheap.
        """
        self.close()
        with pa.memory_map(str(self.spill_path)) as src:
            stream = pa.ipc.open_stream(src)
            for group in self._groups(group_tokens):
                spilled_ids = _spilled_ids(group, stream, pre)
                for row0, n, plan in group:
                    yield row0, n, _chunk_table(plan, spilled_ids, pre)

    def _groups(self, group_tokens: int):
        """Consecutive chunks, each group holding at least ``group_tokens`` spilled tokens (the last fewer)."""
        group, held = [], 0
        for chunk in self.chunks:
            group.append(chunk)
            held += sum(size for offset, size in chunk[2] if offset is None)
            if held >= group_tokens:
                yield group
                group, held = [], 0
        if group:
            yield group


def _spilled_ids(group, stream, pre: Preprocessor) -> list[list[np.ndarray]]:
    """Per field, the vocabulary ids of each chunk's spilled tokens (in chunk order), one lookup per field."""
    spilled: list[list[pa.Array]] = [[] for _ in range(pre.n_fields)]
    for _, _, plan in group:
        for j, (offset, _) in enumerate(plan):
            if offset is None:
                spilled[j].append(stream.read_next_batch().column(0))
    per_field = []
    for j, arrays in enumerate(spilled):
        if not arrays:
            per_field.append([])
            continue
        ids = pre.value_ids(j, FieldCodes(pa.concat_arrays(arrays), 0, _EMPTY))
        per_field.append(np.split(ids, np.cumsum([len(a) for a in arrays])[:-1]))
    return per_field


def _chunk_table(plan: FieldPlan, spilled_ids: list[list[np.ndarray]], pre: Preprocessor) -> np.ndarray:
    """Local code -> id for one chunk; consumes the chunk's entries of ``spilled_ids``."""
    table = np.zeros(sum(size + 1 for _, size in plan), np.int32)
    base = 0
    for j, (offset, size) in enumerate(plan):
        if offset is None:
            ids = spilled_ids[j].pop(0)
        else:
            ids = pre.value_ids(j, FieldCodes(None, offset, _EMPTY, size))
        table[base + 1:base + 1 + size] = ids
        base += size + 1
    return table
