"""A brute-force float64 FM-family logit, straight from the paper's equations.

It reads the raw state_dict (documented layout in models/) and loops over samples and field pairs;
it shares no code with models/ so the two can check each other.
"""

from __future__ import annotations

import numpy as np


def reference_logits(spec, state_dict, ids) -> np.ndarray:
    sd = {k: v.detach().double().numpy() for k, v in state_dict.items()}
    n, dims, kind = len(spec.field_names), list(spec.dims), spec.kind
    pairs = [(a, b) for a in range(n) for b in range(a + 1, n)]
    out = np.zeros(len(ids))
    for s, row in enumerate(np.asarray(ids)):
        row = [int(i) if 0 <= i < spec.vocab_sizes[f] else 0 for f, i in enumerate(row)]  # unknown row
        total = sd["bias"][0]
        emb = [sd[f"embeddings.tables.{f}.weight"][row[f]] for f in range(n)] if kind != "lr" else None
        # Linear term: Eq. 2 (per-feature w_i) or Eq. 12 (<v_i, w_F(i)>).
        if spec.linear == "feature":
            total += sum(sd[f"linear.weights.{f}.weight"][row[f], 0] for f in range(n))
        else:
            w = sd["linear.field_vectors"]
            start = 0
            for f in range(n):
                total += emb[f] @ w[start:start + dims[f]]
                start += dims[f]
        for p, (a, b) in enumerate(pairs):
            if kind == "lr":
                break
            if kind == "ffm":  # Eq. 5: v_{i,F(j)} . v_{j,F(i)}; slots skip the feature's own field
                k = dims[0]
                vi = emb[a][(b - 1) * k:b * k]
                vj = emb[b][a * k:(a + 1) * k]
                total += vi @ vj
                continue
            total += emb[a] @ field_matrix(kind, sd, dims, p, a, b) @ emb[b]  # Eqs. 4, 6, 7
        out[s] = total
    return out


def field_matrix(kind, sd, dims, p, a, b) -> np.ndarray:
    if kind == "fm":
        return np.eye(dims[a])
    if kind == "fwfm":
        return sd["interaction.field_matrices.weights"][p] * np.eye(dims[a])
    if kind == "fvfm":
        return np.diag(sd["interaction.field_matrices.weights"][p])
    rows = sd[f"interaction.field_matrices.rows.{a}"]
    start = sum(dims[a + 1:b])
    return rows[:, start:start + dims[b]]
