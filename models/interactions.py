"""Second-order interaction layers: sum over field pairs a < b of <v_a M_ab, v_b> (or FFM's lookup)."""

from __future__ import annotations

import torch
from torch import nn

from .field_matrices import FieldMatrices


class FieldMatrixInteraction(nn.Module):
    """One layer for FM, FwFM, FvFM and FmFM; they differ only in the field-matrix kind."""

    def __init__(self, kind: str, dims):
        super().__init__()
        self.field_matrices = FieldMatrices(kind, dims)
        self.dims = list(dims)
        pairs = self.field_matrices.pairs
        self.register_buffer("left", torch.tensor([a for a, _ in pairs], dtype=torch.long), persistent=False)
        self.register_buffer("right", torch.tensor([b for _, b in pairs], dtype=torch.long), persistent=False)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """embeddings: the concatenated row [B, sum(dims)] -> [B]."""
        kind = self.field_matrices.kind
        if kind == "full":
            return ((embeddings @ self.field_matrices.block_matrix()) * embeddings).sum(dim=1)
        stacked = embeddings.view(embeddings.shape[0], len(self.dims), self.dims[0])
        if kind == "identity":
            return sum_of_squares(stacked)
        if kind == "scalar":
            return scalar_pairs(stacked, self.pair_grid(self.field_matrices.weights))
        return diagonal_pairs(stacked, self.pair_grid(self.field_matrices.weights))

    def pair_grid(self, pair_weights: torch.Tensor) -> torch.Tensor:
        """Per-pair weights [P, ...] scattered into a strictly upper-triangular [n, n, ...] grid, so the
        pair sum becomes a matrix product instead of gathering the [B, P, K] pair products."""
        n = len(self.dims)
        grid = pair_weights.new_zeros((n, n) + pair_weights.shape[1:])
        return grid.index_put((self.left, self.right), pair_weights)

    def grouped_forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """The same value computed pair by pair through M_ab; used to cross-check the fast forms."""
        fm = self.field_matrices
        out = embeddings.new_zeros(embeddings.shape[0])
        for a, b in fm.pairs:
            va = embeddings[:, fm.offsets[a]:fm.offsets[a] + self.dims[a]]
            vb = embeddings[:, fm.offsets[b]:fm.offsets[b] + self.dims[b]]
            out = out + ((va @ fm.pair_matrix(a, b)) * vb).sum(dim=1)
        return out


def scalar_pairs(stacked: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """FwFM: sum_{a<b} r_ab <v_a, v_b> = sum_k x_k^T R x_k with x_k the n fields' k-th components.

    One [B*K, n] x [n, n] product: O(nK) memory and n^2 K work per row instead of the pairs' P*K."""
    batch, n, k = stacked.shape
    columns = stacked.transpose(1, 2).reshape(batch * k, n)
    return ((columns @ grid) * columns).view(batch, k * n).sum(dim=1)


def diagonal_pairs(stacked: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """FvFM: sum_{a<b} sum_k w_abk v_ak v_bk = sum_k x_k^T W_k x_k, one [B, n] x [n, n] product per k."""
    # contiguous: bmm on the strided permutation runs about twice as slowly, forward and backward
    columns = stacked.permute(2, 0, 1).contiguous()  # [K, B, n]
    return (torch.bmm(columns, grid.permute(2, 0, 1)) * columns).sum(dim=(0, 2))


def sum_of_squares(stacked: torch.Tensor) -> torch.Tensor:
    """FM's O(nK) identity: sum_{a<b} <v_a, v_b> = ((sum v)^2 - sum v^2) / 2, summed over K."""
    total = stacked.sum(dim=1)
    return 0.5 * (total * total - (stacked * stacked).sum(dim=1)).sum(dim=1)


class FFMInteraction(nn.Module):
    """FFM (Eq. 5): feature i keeps one K-vector per other field; pair (a, b) uses v_{i,b} . v_{j,a}.

    Field a's table row holds its n-1 vectors side by side, for the other fields in increasing order.
    """

    def __init__(self, num_fields: int, dim: int):
        super().__init__()
        self.num_fields, self.dim = num_fields, dim
        pairs = [(a, b) for a in range(num_fields) for b in range(a + 1, num_fields)]
        # Flattened [n * (n-1)] slot index of v_{i_a, F=b} (slot b-1 since b > a) and v_{i_b, F=a} (slot a).
        left = [a * (num_fields - 1) + (b - 1) for a, b in pairs]
        right = [b * (num_fields - 1) + a for a, b in pairs]
        self.register_buffer("left", torch.tensor(left, dtype=torch.long), persistent=False)
        self.register_buffer("right", torch.tensor(right, dtype=torch.long), persistent=False)

    def forward(self, field_aware: torch.Tensor) -> torch.Tensor:
        """field_aware: the n fields' tables' rows side by side, [B, n(n-1)K] -> [B]."""
        slots = field_aware.view(field_aware.shape[0], self.num_fields * (self.num_fields - 1), self.dim)
        return (slots[:, self.left] * slots[:, self.right]).sum(dim=(1, 2))
