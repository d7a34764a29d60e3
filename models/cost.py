"""FLOPs per prediction of the cached form, Table 4's conventions (Section 4.3).

A pair whose intermediate vector v_a·M_ab is cached costs one dot product with v_b (2·d_b, d_b the
partner's dim) and one add into the sum; a pair computed at serving time costs the projection
2·d_a·d_b more; each of the n linear terms, cached as one value per feature, costs one add. Caching
every pair on the side that maps into the smaller space gives the paper's 8,960 for Table 3's dims.
"""

from __future__ import annotations

from itertools import combinations

LINEAR_TERM_FLOPS = 1


def cached_pair_flops(partner_dim: int) -> int:
    return 2 * partner_dim + 1


def computed_pair_flops(dim: int, partner_dim: int) -> int:
    return 2 * dim * partner_dim + cached_pair_flops(partner_dim)


def cached_flops(dims) -> int:
    """Every pair cached on its smaller-dim side, plus the linear terms."""
    dims = [int(d) for d in dims]
    return sum(cached_pair_flops(min(a, b)) for a, b in combinations(dims, 2)) + LINEAR_TERM_FLOPS * len(dims)
