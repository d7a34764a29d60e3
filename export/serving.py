"""Torch "serving modules": the uncached ONNX graphs, one module per graph form.

Every module follows the serving contract: ``feature_ids`` int64 [B, n] (field-local ids, 0 the
unknown row) -> ``probability``, ``logit`` float32 [B]. Out-of-range and negative ids read row 0.
Each keeps one table per field (``Gather(table_f, ids[:, f])``) and builds the pair interaction in
the shape that makes caching a local fold (see export/passes/rules) and its FLOPs match Table 4:

    FmFM  per field a and partner dim d: MatMul(v_a, [M_ab ...]) -> Reshape [B, c, d]; Concat over a,
          times the partners v_b, ReduceSum -> [B, P_d]; Concat over d -> ReduceSum over pairs.
    FvFM  per field a: Unsqueeze(v_a) * [d_ab ...] -> [B, c, K]; then as FmFM.
    FwFM  per field a: ReduceSum(Unsqueeze(v_a) * v_{b>a}) -> [B, c] dots, times [r_ab ...].
    FM    ((sum v)^2 - sum v^2) / 2, O(nK).    FFM  slot products per pair.    LR  linear only.

Tensors are shared with the source model (no copies): a Criteo-scale table is exported once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from models import FMFamilyModel, ModelSpec
from models.embeddings import sanitize_ids

from .field_order import PairLayout, canonical_order


class ServingModule(nn.Module):
    """bias + linear term + interaction; subclasses supply the interaction."""

    def __init__(self, model: FMFamilyModel):
        super().__init__()
        spec = model.spec
        self.spec = spec
        self.order = canonical_order(spec)
        self.register_buffer("vocab_sizes", torch.tensor(spec.vocab_sizes, dtype=torch.int64))
        self.register_buffer("bias", model.bias.detach())
        self.linear_form = spec.linear
        if spec.linear == "feature":  # Eq. 2: one scalar per feature, [V_f, 1] per field
            tables = [model.linear.weights[f].weight.detach() for f in range(spec.num_fields)]
            self.linear_weights = buffer_list(tables)
        else:  # Eq. 12: <v_f, w_f>, w_f a [d_f, 1] column so it folds like a field matrix
            w = model.linear.field_vectors.detach()
            self.linear_weights = buffer_list([w[o:o + d].reshape(d, 1) for o, d in zip(spec.offsets, spec.dims)])
        if model.embeddings is not None:
            self.embeddings = buffer_list([t.weight.detach() for t in model.embeddings.tables])

    def forward(self, feature_ids: torch.Tensor):
        ids = sanitize_ids(feature_ids, self.vocab_sizes)  # in-graph, so the runtime never fails or wraps
        vectors = self.look_up(ids)
        logit = self.bias + self.linear_term(ids, vectors)
        pairs = self.interaction(vectors)
        if pairs is not None:
            logit = logit + pairs
        return torch.sigmoid(logit), logit

    def look_up(self, ids: torch.Tensor) -> dict[int, torch.Tensor]:
        """Original field index -> its embedding [B, width]."""
        if not hasattr(self, "embeddings"):
            return {}
        # select, not ids[:, f]: the same Gather, without a full-range slice that torch.onnx would trace,
        # translate and fold away again for every field (a third of a 39-field model's export time)
        return {f: F.embedding(ids.select(1, f), self.embeddings[f]) for f in self.order}

    def linear_term(self, ids: torch.Tensor, vectors: dict[int, torch.Tensor]) -> torch.Tensor:
        if self.linear_form == "feature":
            terms = [F.embedding(ids.select(1, f), self.linear_weights[f]) for f in self.order]
        else:
            terms = [vectors[f] @ self.linear_weights[f] for f in self.order]
        return torch.cat(terms, dim=1).sum(dim=1)

    def interaction(self, vectors: dict[int, torch.Tensor]) -> torch.Tensor | None:
        return None  # LR: the linear term is the whole model


class LRServing(ServingModule):
    pass


class FMServing(ServingModule):
    def interaction(self, vectors):
        stacked = torch.stack([vectors[f] for f in self.order], dim=1)  # [B, n, K]
        total = stacked.sum(dim=1)
        return 0.5 * (total * total - (stacked * stacked).sum(dim=1)).sum(dim=1)


class FFMServing(ServingModule):
    """Field f's table row holds v_{i,g} for the other fields g in increasing order (models/)."""

    def __init__(self, model: FMFamilyModel):
        super().__init__(model)
        n = self.spec.num_fields
        pairs = self.spec.field_pairs
        self.register_buffer("left_slots", torch.tensor([a * (n - 1) + b - 1 for a, b in pairs]))
        self.register_buffer("right_slots", torch.tensor([b * (n - 1) + a for a, b in pairs]))

    def interaction(self, vectors):
        n, k = self.spec.num_fields, self.spec.uniform_dim
        slots = torch.cat([vectors[f] for f in range(n)], dim=1).reshape(-1, n * (n - 1), k)
        left = torch.index_select(slots, 1, self.left_slots)
        right = torch.index_select(slots, 1, self.right_slots)
        return (left * right).sum(dim=2).sum(dim=1)


class PairServing(ServingModule):
    """Shared-embedding kinds built in the canonical order (export/field_order.py)."""

    def __init__(self, model: FMFamilyModel):
        super().__init__(model)
        self.layout = PairLayout.of(self.spec)
        self.field_matrices = model.interaction.field_matrices

    def pair_matrix(self, a: int, b: int) -> torch.Tensor:
        """M between canonical positions a < b, as [d_a, d_b]; M_ba^T when the order flips the pair (Eq. 10)."""
        fa, fb = self.layout.order[a], self.layout.order[b]
        m = self.field_matrices.pair_matrix(fa, fb) if fa < fb else self.field_matrices.pair_matrix(fb, fa).T
        return m.detach()


class FmFMServing(PairServing):
    """Per field a and partner dim d, one MatMul by W_a,d = [M_ab ...]: folded by fold_field_matrix."""

    def __init__(self, model: FMFamilyModel):
        super().__init__(model)
        layout = self.layout
        self.blocks = []  # (group dim d, position a, number of partners c)
        for d in layout.group_dims:
            for a in range(len(layout.order)):
                partners = layout.partners(a, d)
                if partners:
                    w = torch.cat([self.pair_matrix(a, b) for b in partners], dim=1).contiguous()
                    self.register_buffer(f"field_matrix_{layout.order[a]}_to_d{d}", w)
                    self.blocks.append((d, a, len(partners)))
            members = layout.group_members(d)
            right = [members.index(b) for _, b in layout.pairs(d)]
            self.register_buffer(f"partners_d{d}", torch.tensor(right, dtype=torch.int64))

    def interaction(self, vectors):
        order, dots = self.layout.order, []
        for d in self.layout.group_dims:
            projected = [
                (vectors[order[a]] @ getattr(self, f"field_matrix_{order[a]}_to_d{d}")).reshape(-1, c, d)
                for gd, a, c in self.blocks if gd == d
            ]
            left = torch.cat(projected, dim=1)  # [B, P_d, d]: v_a M_ab for every pair of the group
            members = torch.stack([vectors[order[p]] for p in self.layout.group_members(d)], dim=1)
            right = torch.index_select(members, 1, getattr(self, f"partners_d{d}"))
            dots.append((left * right).sum(dim=2))  # [B, P_d]
        return torch.cat(dots, dim=1).sum(dim=1)


class FvFMServing(PairServing):
    """v_a ⊙ d_ab for all b > a as one broadcast Mul per field: folded by fold_pair_vectors."""

    def __init__(self, model: FMFamilyModel):
        super().__init__(model)
        n = len(self.layout.order)
        for a in range(n - 1):
            diagonals = torch.stack([torch.diagonal(self.pair_matrix(a, b)) for b in range(a + 1, n)])
            self.register_buffer(f"pair_vectors_{self.layout.order[a]}", diagonals.contiguous())  # [c, K]
        partners = [b for a in range(n) for b in range(a + 1, n)]
        self.register_buffer("partners", torch.tensor(partners, dtype=torch.int64))

    def interaction(self, vectors):
        order = self.layout.order
        scaled = [vectors[order[a]].unsqueeze(1) * getattr(self, f"pair_vectors_{order[a]}")
                  for a in range(len(order) - 1)]
        left = torch.cat(scaled, dim=1)  # [B, P, K]: v_a ⊙ d_ab
        stacked = torch.stack([vectors[f] for f in order], dim=1)
        right = torch.index_select(stacked, 1, self.partners)
        return (left * right).sum(dim=2).sum(dim=1)


class FwFMServing(PairServing):
    """r_ab multiplies the dot products (P FLOPs, not PK: Table 4), per field so fold_pair_scalars stays local."""

    def __init__(self, model: FMFamilyModel):
        super().__init__(model)
        n = len(self.layout.order)
        for a in range(n - 1):
            r = torch.stack([self.pair_matrix(a, b)[0, 0] for b in range(a + 1, n)])
            self.register_buffer(f"pair_weights_{self.layout.order[a]}", r.contiguous())  # [c]

    def interaction(self, vectors):
        order = self.layout.order
        stacked = torch.stack([vectors[f] for f in order], dim=1)  # [B, n, K]
        weighted = []
        for a in range(len(order) - 1):
            dots = (vectors[order[a]].unsqueeze(1) * stacked[:, a + 1:]).sum(dim=2)  # [B, c] <v_a, v_b>
            weighted.append(dots * getattr(self, f"pair_weights_{order[a]}"))
        return torch.cat(weighted, dim=1).sum(dim=1)


SERVING_MODULES = {"lr": LRServing, "fm": FMServing, "ffm": FFMServing,
                   "fwfm": FwFMServing, "fvfm": FvFMServing, "fmfm": FmFMServing}


def serving_module(model: FMFamilyModel) -> ServingModule:
    return SERVING_MODULES[model.spec.kind](model).eval()


def buffer_list(tensors) -> nn.Module:
    """A ParameterList of frozen tensors (no grad, storage shared with the source model)."""
    return nn.ParameterList(nn.Parameter(t, requires_grad=False) for t in tensors)
