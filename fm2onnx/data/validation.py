"""Finding malformed rows in a chunk: a bad label, a value its field cannot parse, a wrong column count.

Without ``skip_bad_rows`` the first malformed line (in file order) raises ``DataError("path:line: ...")``;
with it, malformed rows are left out, counted and the first few kept as examples (:class:`BadRows`).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import pyarrow.compute as pc

from ..errors import DataError
from .arrow import to_numpy
from .chunk_view import ChunkView
from .formats import FieldSpec, TableFormat
from .reader import Chunk, ChunkReader

__all__ = ["BadRows", "MAX_EXAMPLES", "field_problems", "check_chunk", "collect_rejected_lines"]

MAX_EXAMPLES = 20

# (bad row mask, row -> message) of one kind of problem in one chunk
Problem = tuple[np.ndarray, Callable[[int], str]]


class BadRows:
    """Count of malformed rows plus the first few (line, reason) examples."""

    def __init__(self) -> None:
        self.count = 0
        self.examples: list[tuple[int, str]] = []

    def add(self, line: int, msg: str) -> None:
        self.count += 1
        if len(self.examples) < MAX_EXAMPLES or line < self.examples[-1][0]:
            self.examples.append((line, msg))
            self.examples.sort()
            del self.examples[MAX_EXAMPLES:]

    def add_many(self, n: int, examples: Sequence[tuple[int, str]]) -> None:
        self.count += n - len(examples)
        for line, msg in examples:
            self.add(line, msg)

    @property
    def lines(self) -> list[int]:
        return [ln for ln, _ in self.examples]

    def to_meta(self) -> dict:
        """The ``meta.json`` entries describing the skipped rows."""
        return {
            "bad_rows": self.count,
            "bad_row_lines": self.lines,
            "bad_row_examples": [f"{ln}: {msg}" for ln, msg in self.examples],
        }


def short_repr(v: Any) -> str:
    """``repr`` of a raw value cut to fit in a one-line message."""
    r = repr(v)
    return r if len(r) <= 42 else r[:39] + "...'"


def field_problems(view: ChunkView, spec: FieldSpec) -> Problem | None:
    """Rows of ``view`` whose value of this field is malformed, or None if there are none."""
    if spec.kind == "categorical":
        return None
    if spec.kind == "numeric":
        if spec.integer and view.int_keys(spec.source) is not None:
            return None
        _, bad, codes, values = view.numeric(spec.source, spec.integer)
        what = "an integer" if spec.integer else "a number"
    else:
        _, _, bad, codes, values = view.hour(spec.source)
        what = "YYMMDDHH"
    if not bad.any():
        return None

    def describe(row: int) -> str:
        return f"column {spec.source}: expected {what}, found {short_repr(values[int(codes[row])].as_py())}"

    return bad[codes], describe


def _label_problem(view: ChunkView, fmt: TableFormat) -> tuple[np.ndarray, Problem | None]:
    """(label of every row as bool, the rows whose label is not 0/1 or None)."""
    lab = view.column(fmt.label)
    is1 = pc.fill_null(pc.equal(lab, "1"), False)
    ok = to_numpy(pc.or_(is1, pc.fill_null(pc.equal(lab, "0"), False)))
    if ok.all():
        return to_numpy(is1), None
    sources = [fmt.label] + list(dict.fromkeys(f.source for f in fmt.fields))

    def describe(row: int) -> str:
        value = lab[row].as_py()
        if not value and all(not view.column(s)[row].as_py() for s in sources):
            return "empty line"
        return f"column {fmt.label}: label must be 0 or 1, found {short_repr(value or '')}"

    return to_numpy(is1), (~ok, describe)


def _chunk_problems(view: ChunkView, fmt: TableFormat) -> tuple[np.ndarray, list[Problem]]:
    """(labels as bool, problems): each source column is checked once, however many fields read it."""
    is1, label_problem = _label_problem(view, fmt)
    problems = [label_problem] if label_problem else []
    checked: set[tuple[str, str]] = set()
    for spec in fmt.fields:
        key = (spec.source, "hour" if spec.kind in ("day_of_week", "hour_of_day") else spec.kind)
        if key not in checked:
            checked.add(key)
            problem = field_problems(view, spec)
            if problem is not None:
                problems.append(problem)
    return is1, problems


def _raise_first(chunk: Chunk, problems: list[Problem]) -> None:
    """Raise for the chunk's first malformed line, a bad value or a row the reader rejected."""
    candidates = chunk.reader.bad_lines_upto(chunk.last_line)[:1]
    if problems:
        mask, describe = min(problems, key=lambda p: int(np.flatnonzero(p[0])[0]))
        row = int(np.flatnonzero(mask)[0])
        candidates.append((int(chunk.lines(np.array([row]))[0]), describe(row)))
    if candidates:
        line, msg = min(candidates)
        raise DataError(f"{chunk.reader.path}:{line}: {msg}")


def _record_bad_rows(chunk: Chunk, problems: list[Problem], bad: BadRows | None) -> np.ndarray:
    """Mask of the rows to keep; the others are counted into ``bad`` (with the first examples)."""
    mask = np.zeros(chunk.rows, bool)
    for m, _ in problems:
        mask |= m
    if bad is not None:
        rows = np.flatnonzero(mask)[:MAX_EXAMPLES]
        examples = [
            (int(line), next(describe(int(r)) for m, describe in problems if m[r]))
            for r, line in zip(rows, chunk.lines(rows))
        ]
        bad.add_many(int(mask.sum()), examples)
    return ~mask


def check_chunk(chunk: Chunk, view: ChunkView, fmt: TableFormat, skip: bool,
                bad: BadRows | None) -> tuple[np.ndarray | None, np.ndarray]:
    """Validate a chunk. Returns (mask of the rows to keep or None for all, labels of all rows as bool).

    Raises DataError for the first malformed line (in file order) unless ``skip``; with ``skip`` the
    malformed rows are recorded into ``bad`` (if given) and excluded via the mask.
    """
    is1, problems = _chunk_problems(view, fmt)
    if not skip:
        _raise_first(chunk, problems)
        return None, is1
    if not problems:
        return None, is1
    return _record_bad_rows(chunk, problems, bad), is1


def collect_rejected_lines(reader: ChunkReader, skip: bool, bad: BadRows) -> None:
    """Rows the reader rejected (wrong column count): raise for the first unless ``skip``, else count them."""
    rejected = reader.bad_lines_upto(None)
    if rejected and not skip:
        line, msg = rejected[0]
        raise DataError(f"{reader.path}:{line}: {msg}")
    for line, msg in rejected:
        bad.add(line, msg)
