"""The architecture of one FM-family model: which kind, which fields, how wide each embedding is.

A spec is plain data (str/int/list) so it can live inside a ``weights_only`` checkpoint.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from itertools import combinations

from fm2onnx.errors import Fm2OnnxError
from fm2onnx.field_names import check_field_name

# kind -> field-matrix kind (Table 1 of the paper); None: no shared-embedding interaction.
FIELD_MATRIX_KIND = {
    "lr": None,
    "fm": "identity",
    "fwfm": "scalar",
    "fvfm": "diagonal",
    "fmfm": "full",
    "ffm": None,
}
MODEL_KINDS = tuple(FIELD_MATRIX_KIND)
LINEAR_FORMS = ("feature", "field_vector")
# Eq. 12 (field vectors) is the paper's default for FwFM, FvFM and FmFM.
DEFAULT_LINEAR = {"lr": "feature", "fm": "feature", "ffm": "feature",
                  "fwfm": "field_vector", "fvfm": "field_vector", "fmfm": "field_vector"}


def check_field_count(n: int, where: str = "") -> None:
    """Interactions are between fields: a model has two at least."""
    if n < 2:
        raise Fm2OnnxError(f"{where + ': ' if where else ''}a model needs at least 2 fields, got {n}")


@dataclass(frozen=True)
class ModelSpec:
    kind: str
    field_names: tuple[str, ...]
    vocab_sizes: tuple[int, ...]  # per field, including the unknown row 0
    dims: tuple[int, ...]  # per field embedding width (all equal except for FmFM); LR: zeros
    linear: str = field(default="")

    def __post_init__(self) -> None:
        object.__setattr__(self, "field_names", tuple(self.field_names))
        object.__setattr__(self, "vocab_sizes", tuple(int(v) for v in self.vocab_sizes))
        object.__setattr__(self, "dims", tuple(int(d) for d in self.dims))
        if not self.linear and self.kind in DEFAULT_LINEAR:
            object.__setattr__(self, "linear", DEFAULT_LINEAR[self.kind])
        self.validate()

    @classmethod
    def create(cls, kind: str, field_names, vocab_sizes, dim: int | None = 16,
               dims=None, linear: str | None = None) -> "ModelSpec":
        """Uniform ``dim`` for every field unless per-field ``dims`` are given (FmFM only)."""
        n = len(field_names)
        if kind == "lr":
            dims = (0,) * n
        elif dims is None:
            dims = (dim,) * n
        return cls(kind, tuple(field_names), tuple(vocab_sizes), tuple(dims), linear or "")

    def validate(self) -> None:
        n = len(self.field_names)
        if self.kind not in FIELD_MATRIX_KIND:
            raise Fm2OnnxError(f"unknown model kind {self.kind!r}; expected one of {', '.join(MODEL_KINDS)}")
        if self.linear not in LINEAR_FORMS:
            raise Fm2OnnxError(f"unknown linear form {self.linear!r}; expected one of {', '.join(LINEAR_FORMS)}")
        check_field_count(n)
        for name in self.field_names:
            check_field_name(name)
        repeated = sorted({name for name in self.field_names if self.field_names.count(name) > 1})
        if repeated:
            raise Fm2OnnxError(f"field names must be unique: {', '.join(map(repr, repeated))} named twice or more")
        if len(self.vocab_sizes) != n or len(self.dims) != n:
            raise Fm2OnnxError(f"{n} fields but {len(self.vocab_sizes)} vocabulary sizes and {len(self.dims)} dims")
        for name, v in zip(self.field_names, self.vocab_sizes):
            if v < 1:
                raise Fm2OnnxError(f"field {name!r}: vocabulary size {v} < 1 (row 0 is the unknown feature)")
        if self.kind == "lr":
            if any(self.dims) or self.linear != "feature":
                raise Fm2OnnxError("LR has no embeddings: dims must be 0 and the linear form 'feature'")
            return
        if self.kind == "ffm" and self.linear != "feature":
            raise Fm2OnnxError("FFM keeps n-1 vectors per feature, so it has no field-vector linear term; use 'feature'")
        for name, d in zip(self.field_names, self.dims):
            if d < 1:
                raise Fm2OnnxError(f"field {name!r}: embedding dim {d} < 1")
        if self.kind != "fmfm" and len(set(self.dims)) != 1:
            raise Fm2OnnxError(f"per-field dims need rectangular field matrices: only FmFM supports them, not {self.kind}")

    @property
    def num_fields(self) -> int:
        return len(self.field_names)

    @property
    def field_pairs(self) -> list[tuple[int, int]]:
        """All pairs a < b in row-major order; every pair-indexed parameter uses this order."""
        return list(combinations(range(self.num_fields), 2))

    @property
    def field_matrix_kind(self) -> str | None:
        return FIELD_MATRIX_KIND[self.kind]

    @property
    def uniform_dim(self) -> int:
        if len(set(self.dims)) != 1:
            raise Fm2OnnxError(f"{self.kind} has per-field dims, no single K")
        return self.dims[0]

    @property
    def offsets(self) -> list[int]:
        """Start of each field's slice in the concatenated embedding row."""
        out, acc = [], 0
        for d in self.dims:
            out.append(acc)
            acc += d
        return out

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> "ModelSpec":
        try:
            return cls(d["kind"], d["field_names"], d["vocab_sizes"], d["dims"], d.get("linear", ""))
        except (KeyError, TypeError) as exc:
            raise Fm2OnnxError(f"malformed model spec: {exc}") from None
