"""Mutual information between each field pair and the label (the paper's Figure 6).

I((X_a, X_b); Y) in bits, estimated on held-out rows: label rates per feature pair are counted on one
half of the rows (smoothed toward the overall rate) and their cross-entropy is measured on the other
half, both ways round; the estimate is H(Y) minus that cross-entropy (a lower bound in expectation). The plug-in estimate would
instead reward pairs of large fields for their many rare combinations (each seen once, so "perfectly
predictive"); held out, a combination only counts if it predicts clicks on rows it has not seen.
The diagonal is a field's own I(X_a; Y).
"""

from __future__ import annotations

import numpy as np


def _binary_entropy_bits(p: float) -> float:
    return float(-(p * np.log2(p) + (1 - p) * np.log2(1 - p))) if 0 < p < 1 else 0.0


SMOOTHINGS = (1.0, 10.0, 100.0, 1000.0)


def label_mutual_information(keys: np.ndarray, labels: np.ndarray, *, smoothings=SMOOTHINGS,
                             seed: int = 0) -> float:
    """I(key; label) in bits for int64 keys and 0/1 labels, 2-fold held out, clipped at 0.

    Rates are smoothed as (positives + s * overall rate) / (rows + s); of the strengths ``smoothings``
    the one that predicts the held-out halves best is used (small s suits a few frequent keys, large s
    many rare ones).
    """
    labels = np.asarray(labels, dtype=np.float64)
    prior = float(labels.mean()) if len(labels) else 0.0
    baseline = _binary_entropy_bits(prior)
    if baseline == 0.0:
        return 0.0
    _, inverse = np.unique(keys, return_inverse=True)
    distinct = int(inverse.max()) + 1
    first_half = np.random.default_rng(seed).random(len(labels)) < 0.5
    cross_entropy = np.zeros(len(smoothings))
    for fit in (first_half, ~first_half):
        held_out = ~fit
        positives = np.bincount(inverse[fit], weights=labels[fit], minlength=distinct)[inverse[held_out]]
        seen = np.bincount(inverse[fit], minlength=distinct)[inverse[held_out]]
        y = labels[held_out]
        for i, s in enumerate(smoothings):
            p = (positives + s * prior) / (seen + s)
            cross_entropy[i] -= float((y * np.log2(p) + (1 - y) * np.log2(1 - p)).sum())
    return max(baseline - float(cross_entropy.min()) / len(labels), 0.0)


def pair_mutual_information(ids: np.ndarray, labels: np.ndarray, vocab_sizes) -> np.ndarray:
    """[n, n] symmetric matrix of I((X_a, X_b); Y); ``ids`` [rows, n] field-local, ``labels`` [rows]."""
    ids = np.asarray(ids, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.float64)
    vocab = np.asarray(vocab_sizes, dtype=np.int64)
    ids = np.where((ids >= 0) & (ids < vocab), ids, 0)
    n = ids.shape[1]
    out = np.zeros((n, n))
    for a in range(n):
        out[a, a] = label_mutual_information(ids[:, a], labels)
        for b in range(a + 1, n):
            out[a, b] = out[b, a] = label_mutual_information(ids[:, a] * vocab[b] + ids[:, b], labels)
    return out


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Rank correlation (average ranks for ties): how closely cheap pairs are the uninformative ones."""
    def ranks(v):
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v), dtype=np.float64)
        _, inverse, counts = np.unique(v, return_inverse=True, return_counts=True)
        sums = np.bincount(inverse, weights=r)
        return sums[inverse] / counts[inverse]
    rx, ry = ranks(np.asarray(x, float)), ranks(np.asarray(y, float))
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])
