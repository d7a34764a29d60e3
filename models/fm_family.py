"""The FM family as one module: embeddings + linear term + interaction, chosen by the spec."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .embeddings import FieldEmbeddings, sanitize_ids
from .interactions import FFMInteraction, FieldMatrixInteraction
from .linear import FeatureLinear, FieldVectorLinear
from .spec import ModelSpec


@dataclass(frozen=True)
class L2Config:
    """L2 weights. Embedding and per-feature weights are penalized on the rows a batch looks up."""

    embeddings: float = 0.0
    field_matrices: float = 0.0
    linear: float = 0.0


class FMFamilyModel(nn.Module):
    """Logit = bias + linear term + second-order interactions; input: field-local ids [B, n]."""

    def __init__(self, spec: ModelSpec, *, sparse: bool = False):
        super().__init__()
        self.spec = spec
        n = spec.num_fields
        self.register_buffer("vocab_sizes", torch.tensor(spec.vocab_sizes, dtype=torch.long), persistent=False)
        self.bias = nn.Parameter(torch.zeros(1))
        self.embeddings = None
        self.interaction = None
        if spec.kind == "ffm":
            k = spec.uniform_dim
            self.embeddings = FieldEmbeddings(spec.vocab_sizes, [(n - 1) * k] * n, sparse=sparse)
            self.interaction = FFMInteraction(n, k)
        elif spec.kind != "lr":
            self.embeddings = FieldEmbeddings(spec.vocab_sizes, spec.dims, sparse=sparse)
            self.interaction = FieldMatrixInteraction(spec.field_matrix_kind, spec.dims)
        if spec.linear == "feature":
            self.linear = FeatureLinear(spec.vocab_sizes, sparse=sparse)
        else:
            self.linear = FieldVectorLinear(spec.dims)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.forward_with_penalty(ids)[0]

    def forward_with_penalty(self, ids: torch.Tensor, l2: L2Config | None = None):
        """Returns (logits [B], L2 penalty scalar). Out-of-range ids read the unknown row."""
        ids = sanitize_ids(ids, self.vocab_sizes)
        # The per-field lookups die with the concatenation: everything after reads ``row``, so a
        # chunk's peak holds one copy of the looked-up vectors (n(n-1)K floats a row for FFM), not two.
        row = torch.cat(self.embeddings(ids), dim=1) if self.embeddings is not None else None
        linear, linear_rows = self.linear(ids, row)
        logits = self.bias + linear
        if self.interaction is not None:
            logits = logits + self.interaction(row)
        penalty = logits.new_zeros(())
        if l2 is not None:
            batch = ids.shape[0]
            if l2.embeddings and row is not None:
                penalty = penalty + l2.embeddings * (row * row).sum() / batch
            if l2.linear:
                if linear_rows is not None:
                    penalty = penalty + l2.linear * (linear_rows * linear_rows).sum() / batch
                else:
                    penalty = penalty + l2.linear * (self.linear.field_vectors ** 2).sum()
            if l2.field_matrices and isinstance(self.interaction, FieldMatrixInteraction):
                penalty = penalty + l2.field_matrices * self.interaction.field_matrices.squared_norm()
        return logits, penalty

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def build_model(spec: ModelSpec, *, sparse: bool = False, seed: int | None = None) -> FMFamilyModel:
    if seed is not None:
        torch.manual_seed(seed)
    return FMFamilyModel(spec, sparse=sparse)
