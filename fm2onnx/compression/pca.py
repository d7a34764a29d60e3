"""PCA of one field's embedding table (Section 4.1): how many directions hold most of its variance.

The unknown row 0 is left out of the fit (it stands for missing and rare values, not a feature).
Rows may be weighted, e.g. by how often each feature occurs, so that the fit describes the rows the
model actually reads rather than the long tail of rare features.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fm2onnx.errors import Fm2OnnxError


@dataclass(frozen=True)
class FieldPCA:
    mean: np.ndarray  # [K] (weighted) mean of the known rows
    components: np.ndarray  # [K, K] orthonormal columns, by decreasing variance
    variances: np.ndarray  # [K] variance along each component, decreasing

    @property
    def explained_ratio(self) -> np.ndarray:
        """Cumulative fraction of variance kept by the first 1..K components (all 1.0 if there is none)."""
        total = self.variances.sum()
        if total <= 0:
            return np.ones_like(self.variances)
        return np.cumsum(self.variances) / total

    def dim_for_variance(self, threshold: float) -> int:
        """The fewest components whose cumulative explained variance reaches ``threshold`` (at least 1).

        A threshold of 1.0 keeps all K, so the projection is exact for every row, the unknown row included.
        """
        check_threshold(threshold)
        k = len(self.variances)
        if threshold >= 1.0:
            return k
        # A hair of slack so that e.g. exactly 95% still counts as reaching 0.95 after rounding.
        reached = np.nonzero(self.explained_ratio >= threshold - 1e-12)[0]
        return int(min(reached[0] + 1, k)) if len(reached) else k

    def coordinates(self, table: np.ndarray, dim: int) -> np.ndarray:
        """u = (v - mean) P for every row (row 0 too), on the first ``dim`` components."""
        return (np.asarray(table, dtype=np.float64) - self.mean) @ self.components[:, :dim]


def check_threshold(threshold: float) -> None:
    if not 0.0 < threshold <= 1.0:
        raise Fm2OnnxError(f"variance threshold {threshold} must be in (0, 1]")


def fit_field_pca(table: np.ndarray, weights: np.ndarray | None = None) -> FieldPCA:
    """``table``: [V, K] with row 0 the unknown feature; ``weights``: [V] (row 0 ignored) or None."""
    table = np.asarray(table, dtype=np.float64)
    known = table[1:]
    k = table.shape[1]
    w = np.ones(len(known)) if weights is None else np.asarray(weights, dtype=np.float64)[1:]
    if w.sum() <= 0:  # no known feature seen (or none at all): fall back to every known row equally
        w = np.ones(len(known))
    if len(known) == 0:
        return FieldPCA(table[0].copy(), np.eye(k), np.zeros(k))
    w = w / w.sum()
    mean = w @ known
    centered = known - mean
    covariance = (centered * w[:, None]).T @ centered
    variances, vectors = np.linalg.eigh(covariance)  # ascending
    order = np.argsort(variances)[::-1]
    return FieldPCA(mean, vectors[:, order], np.clip(variances[order], 0.0, None))
