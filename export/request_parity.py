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
