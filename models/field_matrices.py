"""The field matrix M_ab between fields a < b, in the four kinds of Table 1.

identity (FM) has no parameters; scalar (FwFM) stores r per pair; diagonal (FvFM) stores a K-vector
per pair; full (FmFM) stores, for each field a, the matrices of all its pairs b > a side by side:
``rows[a]`` is [d_a, sum_{b>a} d_b] = [M_a,a+1 | M_a,a+2 | ...]. That grouping is what makes training
fast (one matmul per field, or one block matrix) and is the layout the ONNX export starts from.
"""

from __future__ import annotations

import torch
from torch import nn

KINDS = ("identity", "scalar", "diagonal", "full")


class FieldMatrices(nn.Module):
    def __init__(self, kind: str, dims):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown field-matrix kind {kind!r}")
        self.kind = kind
        self.dims = list(dims)
        n = len(self.dims)
        self.pairs = [(a, b) for a in range(n) for b in range(a + 1, n)]
        self.offsets = [sum(self.dims[:a]) for a in range(n)]
        if kind != "full" and len(set(self.dims)) != 1:
            raise ValueError(f"{kind} field matrices need one dim for all fields")
        # Follows .double()/.float() so the identity matrix has the model's dtype.
        self.register_buffer("identity_dtype", torch.zeros(()), persistent=False)
        if kind == "scalar":
            self.weights = nn.Parameter(torch.ones(len(self.pairs)))
        elif kind == "diagonal":
            self.weights = nn.Parameter(torch.ones(len(self.pairs), self.dims[0]))
        elif kind == "full":
            # Start at FM (identity blocks, truncated when rectangular) plus noise to break symmetry.
            self.rows = nn.ParameterList()
            for a in range(n - 1):
                blocks = [torch.eye(self.dims[a], self.dims[b]) + 0.01 * torch.randn(self.dims[a], self.dims[b])
                          for b in range(a + 1, n)]
                self.rows.append(nn.Parameter(torch.cat(blocks, dim=1)))

    def pair_matrix(self, a: int, b: int) -> torch.Tensor:
        """M_ab as a dense [d_a, d_b] matrix, for a < b."""
        if not 0 <= a < b < len(self.dims):
            raise IndexError(f"need 0 <= a < b < {len(self.dims)}, got ({a}, {b})")
        if self.kind == "full":
            start = sum(self.dims[a + 1:b])
            return self.rows[a][:, start:start + self.dims[b]]
        k = self.dims[0]
        if self.kind == "identity":
            return torch.eye(k, dtype=self.identity_dtype.dtype)
        p = self.pairs.index((a, b))
        if self.kind == "scalar":
            return self.weights[p] * torch.eye(k, dtype=self.weights.dtype)
        return torch.diag(self.weights[p])

    def block_matrix(self) -> torch.Tensor:
        """The strictly block-upper-triangular [D, D] matrix W with W[a-block, b-block] = M_ab.

        The whole interaction is then sum((E @ W) * E) for the concatenated embedding row E.
        """
        if self.kind != "full":
            raise ValueError("block_matrix is the training form of full field matrices")
        total = sum(self.dims)
        row_blocks = []
        for a, rows in enumerate(self.rows):
            lead = self.offsets[a] + self.dims[a]
            row_blocks.append(torch.cat([rows.new_zeros(self.dims[a], lead), rows], dim=1))
        row_blocks.append(self.rows[0].new_zeros(self.dims[-1], total))  # the last field has no b > a
        return torch.cat(row_blocks, dim=0)

    def squared_norm(self) -> torch.Tensor:
        if self.kind == "identity":
            return torch.zeros(())
        if self.kind == "full":
            return sum((r * r).sum() for r in self.rows)
        return (self.weights * self.weights).sum()
