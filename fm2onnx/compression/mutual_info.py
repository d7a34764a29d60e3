"""Mutual information between each field pair and the label (the paper's Figure 6).

I((X_a, X_b); Y) from counts of the joint feature pair, in bits. Pairs of large fields have many rare
combinations, which inflates the plug-in estimate, so the Miller-Madow bias correction is applied to
each entropy (and the result clipped at 0). The diagonal is a field's own I(X_a; Y).
"""

from __future__ import annotations

import numpy as np


def label_mutual_information(keys: np.ndarray, labels: np.ndarray) -> float:
    """I(key; label) in bits for int64 keys and 0/1 labels, Miller-Madow corrected."""
    _, inverse = np.unique(keys, return_inverse=True)
    positives = np.bincount(inverse, weights=labels)
    totals = np.bincount(inverse).astype(np.float64)
    joint = np.stack([totals - positives, positives], axis=1)  # [distinct keys, 2]
    rows = float(len(keys))
    p_joint = joint / rows
    p_key = totals / rows
    p_label = joint.sum(axis=0) / rows
    nz = p_joint > 0
    plug_in = float((p_joint[nz] * np.log2(p_joint[nz] / np.outer(p_key, p_label)[nz])).sum())
    # H(K) + H(Y) - H(K, Y), each with (bins - 1) / (2N ln 2) added.
    correction = ((len(totals) - 1) + (np.count_nonzero(p_label) - 1) - (np.count_nonzero(nz) - 1)) / (2 * rows * np.log(2))
    return max(plug_in + correction, 0.0)


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
