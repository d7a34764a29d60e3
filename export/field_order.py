"""The field order the serving graphs are built in, and the pair layout that follows from it.

Caching v_a·M_ab is cheapest on the side that projects into the smaller space (Section 4.3), and
on equal dims on the field with fewer features (its cached table is the smaller one). Sorting the
fields by (dim descending, vocabulary ascending) makes "the earlier field of a pair" always that
side, so every fold in export/passes/rules is the same local rule: cache on the left.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from models import ModelSpec

# Kinds whose interaction is <v_a M_ab, v_b> with a foldable M_ab: built in the canonical order.
FOLDABLE_KINDS = ("fwfm", "fvfm", "fmfm")


def canonical_order(spec: ModelSpec) -> list[int]:
    """Original field indices, sorted by (dim descending, vocabulary ascending, index)."""
    if spec.kind not in FOLDABLE_KINDS:
        return list(range(spec.num_fields))
    return sorted(range(spec.num_fields), key=lambda f: (-spec.dims[f], spec.vocab_sizes[f], f))


@dataclass(frozen=True)
class PairLayout:
    """Field pairs (a, b), a before b in ``order``, grouped by the partner's dim d = d_b.

    Positions are indices into ``order``; pairs are listed a-major, b ascending, within each group.
    """

    order: tuple[int, ...]
    dims: tuple[int, ...]  # per position

    @classmethod
    def of(cls, spec: ModelSpec) -> "PairLayout":
        order = tuple(canonical_order(spec))
        return cls(order, tuple(spec.dims[f] for f in order))

    @cached_property
    def group_dims(self) -> list[int]:
        """The distinct partner dims, descending (the order groups appear in the graph)."""
        return sorted({d for d in self.dims[1:]}, reverse=True)

    def group_members(self, d: int) -> list[int]:
        """Positions of the fields whose dim is d (contiguous: the order sorts by dim)."""
        return [p for p, dp in enumerate(self.dims) if dp == d]

    def partners(self, a: int, d: int) -> list[int]:
        """Positions b > a with dim d: the pairs whose cached vector v_a·M_ab lives in field a."""
        return [b for b in self.group_members(d) if b > a]

    def pairs(self, d: int) -> list[tuple[int, int]]:
        return [(a, b) for a in range(len(self.order)) for b in self.partners(a, d)]
