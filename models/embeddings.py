"""Per-field embedding tables. Row 0 of every table is the field's unknown feature."""

from __future__ import annotations

import torch
from torch import nn


def sanitize_ids(ids: torch.Tensor, vocab_sizes: torch.Tensor) -> torch.Tensor:
    """Map negative or past-the-vocabulary ids to row 0 instead of failing or wrapping around.

    The serving contract's id rule: traced, it is the exported graphs' clamp too."""
    bad = (ids < 0) | (ids >= vocab_sizes)
    return torch.where(bad, torch.zeros_like(ids), ids)


class FieldEmbeddings(nn.Module):
    """One table per field, ``widths[a]`` columns each (FFM stores n-1 vectors side by side)."""

    def __init__(self, vocab_sizes, widths, *, sparse: bool = False, init_std: float = 0.01):
        super().__init__()
        self.tables = nn.ModuleList(nn.Embedding(v, w, sparse=sparse) for v, w in zip(vocab_sizes, widths))
        for table in self.tables:
            nn.init.normal_(table.weight, std=init_std)

    def forward(self, ids: torch.Tensor) -> list[torch.Tensor]:
        """ids [B, n] -> list of n tensors [B, widths[a]]."""
        return [table(ids[:, a]) for a, table in enumerate(self.tables)]
