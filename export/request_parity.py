"""Parity of a request graph: requests of every size, each scored as the full rows it stands for.

The parity ids (export/parity.py) are cut into requests of 0, 1, 2, 3, 5, 8, ... candidates and the
context columns of each request's rows made equal, so the torch model (or the full-row graph) scores
exactly the rows the request graph is asked for, one request at a time.
"""

from __future__ import annotations

from itertools import cycle

import numpy as np
import onnxruntime as ort

from .contract import CANDIDATES_INPUT, CONTEXT_INPUT, FieldRoles

REQUEST_SIZES = (0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144)


def request_sizes(rows: int) -> list[int]:
    """Candidates per request, ``rows`` in all: every size in REQUEST_SIZES, the last one cut short."""
    sizes, total = [], 0
    for size in cycle(REQUEST_SIZES):
        if total >= rows and sizes:
            return sizes
        sizes.append(min(size, rows - total))
        total += sizes[-1]


def as_requests(ids: np.ndarray, roles: FieldRoles) -> np.ndarray:
    """``ids`` with each request's context columns copied from its first row."""
    out, start, context = np.array(ids, copy=True), 0, list(roles.context)
    for size in request_sizes(len(ids)):
        if size:
            out[start:start + size, context] = out[start, context]
        start += size
    return out


def request_logits(sess: ort.InferenceSession, ids: np.ndarray, roles: FieldRoles) -> np.ndarray:
    """The request graph's logits for ``as_requests`` rows, one request per run; an empty request
    takes the next row's context and must answer with no rows."""
    logits, start = [], 0
    for size in request_sizes(len(ids)):
        rows = ids[start:start + size]
        context = ids[min(start, len(ids) - 1), list(roles.context)].reshape(1, -1)
        logit = sess.run(["logit"], {CONTEXT_INPUT: context, CANDIDATES_INPUT: rows[:, list(roles.items)]})[0]
        if logit.shape != (size,):
            return np.full(len(ids) + 1, np.nan)  # a wrong shape fails the comparison
        logits.append(logit)
        start += size
    return np.concatenate(logits)


def request_groups(ids: np.ndarray, roles: FieldRoles) -> list[slice]:
    """The requests full rows ``ids`` stand for: runs of consecutive rows with the same context ids."""
    context = np.asarray(ids)[:, list(roles.context)]
    starts = [0] + [r for r in range(1, len(ids)) if not np.array_equal(context[r], context[r - 1])]
    return [slice(a, b) for a, b in zip(starts, starts[1:] + [len(ids)])] if len(ids) else []


def request_outputs(sess: ort.InferenceSession, ids: np.ndarray, roles: FieldRoles) -> dict[str, np.ndarray]:
    """Every output of a request graph on full rows ``ids``, one run per ``request_groups`` request
    (``as_requests`` rows: its requests; random rows: one candidate each)."""
    ids = np.asarray(ids)
    names = [o.name for o in sess.get_outputs()]
    runs = [sess.run(None, {CONTEXT_INPUT: ids[group.start:group.start + 1, list(roles.context)],
                            CANDIDATES_INPUT: ids[group, list(roles.items)]}) for group in request_groups(ids, roles)]
    if not runs:
        runs = [sess.run(None, {CONTEXT_INPUT: np.zeros((1, len(roles.context)), np.int64),
                                CANDIDATES_INPUT: np.zeros((0, len(roles.items)), np.int64)})]
    return {name: np.concatenate([run[i] for run in runs]) for i, name in enumerate(names)}


def request_roles(sess: ort.InferenceSession, source: str = "the model") -> FieldRoles | None:
    """The field roles of a request graph's session, checked against its inputs; None for any other graph."""
    widths = {i.name: i.shape[1] for i in sess.get_inputs() if len(i.shape) == 2}
    if CONTEXT_INPUT not in widths:
        return None
    return FieldRoles.of_props(sess.get_modelmeta().custom_metadata_map, source, widths)
