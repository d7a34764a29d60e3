"""The two linear terms of the paper: per-feature weights (Eq. 2) and field vectors (Eq. 12)."""

from __future__ import annotations

import torch
from torch import nn


class FeatureLinear(nn.Module):
    """sum_i x_i w_i: one scalar per feature, looked up per field."""

    def __init__(self, vocab_sizes, *, sparse: bool = False):
        super().__init__()
        self.weights = nn.ModuleList(nn.Embedding(v, 1, sparse=sparse) for v in vocab_sizes)
        for table in self.weights:
            nn.init.zeros_(table.weight)

    def forward(self, ids: torch.Tensor, embeddings: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (term [B], looked-up weights [B, n]) — the latter for the batch L2 penalty."""
        looked_up = torch.cat([w(ids[:, a]) for a, w in enumerate(self.weights)], dim=1)
        return looked_up.sum(dim=1), looked_up


class FieldVectorLinear(nn.Module):
    """sum_i <v_i, w_F(i)>: one vector per field, shared by all its features (Section 4.5)."""

    def __init__(self, dims):
        super().__init__()
        self.field_vectors = nn.Parameter(torch.zeros(sum(dims)))

    def forward(self, ids: torch.Tensor, embeddings: torch.Tensor) -> tuple[torch.Tensor, None]:
        return embeddings @ self.field_vectors, None
