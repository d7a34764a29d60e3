"""Exact AUC and log loss (numpy, float64)."""

from __future__ import annotations

import json
import math

import numpy as np

__all__ = ["auc", "auc_text", "log_loss", "metrics_json"]


def _labels(labels) -> np.ndarray:
    y = np.asarray(labels, dtype=np.float64).ravel()
    if y.size and not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    return y


def auc(labels, scores) -> float:
    """Area under the ROC curve: P(score of a random positive > that of a random negative), ties
    counting one half. Rank-based (Mann-Whitney U with average ranks), exact, O(n log n).

    Returns NaN when there are no positives or no negatives.
    """
    y = _labels(labels)
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length ({y.size} vs {s.size})")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN")
    n_pos = float(y.sum())
    n_neg = float(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    s_sorted = s[order]
    # average rank (1-based) of each group of tied scores
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    ends = np.r_[starts[1:], s_sorted.size]
    avg_rank = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.repeat(avg_rank, ends - starts)
    rank_sum_pos = float(ranks[y[order] == 1.0].sum())
    u = rank_sum_pos - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


def log_loss(labels, probs, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy of probabilities ``probs`` (clipped to [eps, 1 - eps])."""
    y = _labels(labels)
    p = np.asarray(probs, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"labels and probabilities differ in length ({y.size} vs {p.size})")
    if y.size == 0:
        return float("nan")
    p = np.clip(p, eps, 1.0 - eps)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def auc_text(value: float | None, digits: int = 4) -> str:
    """An AUC for a table: undefined (NaN, or null as JSON holds it) when the rows hold one class only."""
    return "n/a (one class)" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def metrics_json(value, **dumps_options) -> str:
    """``json.dumps`` that strict parsers accept: an undefined metric (NaN, such as the AUC of rows of
    one class) or an infinite error is null."""
    return json.dumps(_finite_or_none(value), allow_nan=False, **dumps_options)


def _finite_or_none(value):
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite_or_none(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value
