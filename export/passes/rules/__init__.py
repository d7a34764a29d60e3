"""The cache folds as declarative rewrite rules, one per file: target pattern, condition, replacement.

Each rule recognises a per-field projection of a looked-up embedding, ``f(Gather(T, ids), W)`` with
T and W initializers, and replaces it by a lookup in a precomputed table, ``Gather(f(T, W), ids)``.
The folds are exact (the same products, summed in float64 and stored as float32). Rules keep the
matched nodes (``remove_nodes=False``) because the looked-up embedding is shared with the partner
side and the linear term; the cleanup pass drops whatever became dead.
"""

from . import fold_field_matrix, fold_pair_scalars, fold_pair_vectors

# Applied in this order. FFM, FM and LR graphs match none of them: only merge_lookups re-lays their lookups.
CACHE_RULES = (fold_field_matrix.rule, fold_pair_scalars.rule, fold_pair_vectors.rule)

__all__ = ["CACHE_RULES"]
