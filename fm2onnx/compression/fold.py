"""Compress without retraining: project each field onto its top principal components and fold the bases
into the field matrices, so the result is an ordinary FmFM with smaller dims.

With v_a ≈ μ_a + u_a P_aᵀ (P_a: [K_a, d_a] orthonormal, u_a = (v_a - μ_a) P_a):

    <v_a M_ab, v_b> = u_a (P_aᵀ M_ab P_b) u_bᵀ  +  u_a·P_aᵀ M_ab μ_bᵀ  +  u_b·P_bᵀ M_abᵀ μ_aᵀ  +  μ_a M_ab μ_bᵀ

Every sample has exactly one feature per field, so the terms linear in u_a sum to u_a·g_a with one g_a
per field, and the constants sum into the bias. g_a folds exactly into the linear term:
field vectors (Eq. 12) become w'_a = P_aᵀ w_a + g_a (and w_a·μ_a goes to the bias); per-feature
weights (Eq. 2) become w'_a[i] = w_a[i] + u_a(i)·g_a. The linear form is kept as it was.
So the compressed model equals the full model evaluated at the projected embeddings; with every
component kept (P_a square) it equals the full model.
FM, FwFM and FvFM are FmFM with identity, scalar and diagonal M_ab; their output is an FmFM too.
"""

from __future__ import annotations

import numpy as np
import torch

from models import FMFamilyModel, ModelSpec, build_model

from ..errors import Fm2OnnxError
from .dims import embedding_tables, require_field_matrices
from .pca import FieldPCA


def compress_model(model: FMFamilyModel, dims, pcas: list[FieldPCA]) -> FMFamilyModel:
    spec = model.spec
    require_field_matrices(spec)
    dims = [int(d) for d in dims]
    for name, d, k in zip(spec.field_names, dims, spec.dims):
        if not 1 <= d <= k:
            raise Fm2OnnxError(f"field {name!r}: compressed dim {d} must be between 1 and its current dim {k}")
    n = spec.num_fields
    tables = embedding_tables(model)
    means = [p.mean for p in pcas]
    bases = [p.components[:, :d] for p, d in zip(pcas, dims)]
    matrices = model.interaction.field_matrices
    bias = float(model.bias.detach().double()[0])
    u_linear = [np.zeros(d) for d in dims]  # g_a
    new_matrices = {}
    for a, b in spec.field_pairs:
        m = matrices.pair_matrix(a, b).detach().double().numpy()
        new_matrices[a, b] = bases[a].T @ m @ bases[b]
        u_linear[a] += bases[a].T @ (m @ means[b])
        u_linear[b] += bases[b].T @ (m.T @ means[a])
        bias += means[a] @ m @ means[b]
    coordinates = [(t - mu) @ p for t, mu, p in zip(tables, means, bases)]

    small = build_model(ModelSpec("fmfm", spec.field_names, spec.vocab_sizes, tuple(dims), spec.linear))
    with torch.no_grad():
        for a in range(n):
            small.embeddings.tables[a].weight.copy_(torch.from_numpy(coordinates[a]))
        for a in range(n - 1):
            small.interaction.field_matrices.rows[a].copy_(
                torch.from_numpy(np.concatenate([new_matrices[a, b] for b in range(a + 1, n)], axis=1)))
        if spec.linear == "field_vector":
            vectors = model.linear.field_vectors.detach().double().numpy()
            offsets = spec.offsets
            folded = []
            for a in range(n):
                w = vectors[offsets[a]:offsets[a] + spec.dims[a]]
                bias += w @ means[a]
                folded.append(bases[a].T @ w + u_linear[a])
            small.linear.field_vectors.copy_(torch.from_numpy(np.concatenate(folded)))
        else:
            for a in range(n):
                w = model.linear.weights[a].weight.detach().double().numpy()[:, 0]
                small.linear.weights[a].weight.copy_(torch.from_numpy((w + coordinates[a] @ u_linear[a])[:, None]))
        small.bias.fill_(bias)
    small.eval()
    return small
