"""What the synthetic data of each format looks like: fields, planted features, how values are written.

Every row draws one *planted feature* per field (an index ``0..card-1``, or ``card`` = missing) from a
finite Zipf distribution. The text is written so that the paper's preprocessing recovers the planted
feature: a Criteo integer field's features are the tokens 0, 1, 2 (and -1 for I2) and the log²
buckets, each bucket rendered as a random integer inside it; categorical features are distinct
8-hex-digit strings. Frequent features therefore map to distinct ids; features rarer than the
encoder's ``min_count`` map to the unknown id 0, as with real data.
"""

from __future__ import annotations

import datetime as _dt
from typing import Sequence

import numpy as np
import pyarrow as pa

from ...errors import Fm2OnnxError
from ..buckets import first_integers
from ..formats import AVAZU_COLUMNS, CRITEO_CATEGORICAL, CRITEO_NUMERIC
from .sampling import Streams, Zipf

__all__ = ["SYNTH_FORMATS", "check_synth_format", "default_cardinalities", "Layout", "AVAZU_START", "AVAZU_DAYS"]

SYNTH_FORMATS = ("criteo", "avazu", "ids")

# Criteo-shaped but small: Table 3's feature counts (numeric fields as given, categorical capped at 20k).
_CRITEO_NUM_CARD = (62, 113, 125, 50, 223, 147, 99, 78, 103, 8, 31, 56, 81)
_CRITEO_CAT_CARD = (
    1457, 555, 20000, 20000, 305, 18, 12054, 633, 3, 20000, 5228, 20000, 3176,
    26, 11744, 20000, 10, 4726, 2056, 3, 20000, 16, 15, 20000, 87, 20000,
)
# Share of empty values per column, roughly as in the real data.
_CRITEO_NUM_EMPTY = (0.45, 0.0, 0.21, 0.22, 0.03, 0.22, 0.04, 0.0, 0.04, 0.45, 0.04, 0.77, 0.22)
_CRITEO_CAT_EMPTY = (
    0.0, 0.0, 0.03, 0.03, 0.0, 0.12, 0.0, 0.0, 0.0, 0.0, 0.0, 0.03, 0.0,
    0.0, 0.0, 0.03, 0.0, 0.0, 0.44, 0.44, 0.03, 0.76, 0.0, 0.03, 0.44, 0.44,
)
# Avazu: day_of_week, hour_of_day, then the 21 categorical columns in file order.
_AVAZU_CARD = (
    7, 24, 7, 7, 2000, 2000, 22, 3000, 200, 28, 20000, 20000, 5000, 5, 4, 2000, 8, 9, 400, 4, 66, 160, 60,
)
# Avazu columns written as integers (first value, step); the others are hex strings.
_AVAZU_INT_BASE = {
    "C1": (1001, 1), "banner_pos": (0, 1), "device_type": (0, 1), "device_conn_type": (0, 1),
    "C14": (15000, 7), "C15": (120, 40), "C16": (20, 10), "C17": (1000, 3), "C18": (0, 1),
    "C19": (33, 2), "C20": (100000, 17), "C21": (1, 3),
}
AVAZU_START = _dt.date(2014, 10, 21)
AVAZU_DAYS = 10
_AVAZU_TIME_FIELDS = 2  # day_of_week, hour_of_day: drawn from a timestamp, not Zipf-ranked


def check_synth_format(fmt: str) -> None:
    if fmt not in SYNTH_FORMATS:
        raise Fm2OnnxError(f"unknown synthetic format {fmt!r}; use one of {', '.join(SYNTH_FORMATS)}")


def default_cardinalities(fmt: str) -> list[int]:
    """Number of planted features per field of the default synthetic data of ``fmt``."""
    check_synth_format(fmt)
    return list(_AVAZU_CARD) if fmt == "avazu" else list(_CRITEO_NUM_CARD + _CRITEO_CAT_CARD)


# ----------------------------------------------------------------------------- rendering values


def _fmix32(x: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer: a bijection on uint32."""
    x = x.astype(np.uint32)
    with np.errstate(over="ignore"):
        x ^= x >> np.uint32(16)
        x *= np.uint32(0x85EBCA6B)
        x ^= x >> np.uint32(13)
        x *= np.uint32(0xC2B2AE35)
        x ^= x >> np.uint32(16)
    return x


def _hex8(values: np.ndarray) -> pa.Array:
    """8-hex-digit lowercase strings of uint32 values."""
    v = values.astype(np.uint32)
    digits = np.frombuffer(b"0123456789abcdef", np.uint8)
    shifts = np.arange(28, -1, -4, dtype=np.uint32)
    chars = digits[(v[:, None] >> shifts[None, :]) & np.uint32(15)]
    raw = np.ascontiguousarray(chars).view("S8").ravel()
    return pa.array(raw, pa.binary(8)).cast(pa.binary()).cast(pa.string())


def _hash_strings(c: int, salt: int) -> pa.Array:
    """``c`` distinct 8-hex strings for one field (the hash of the feature index)."""
    k = np.arange(c, dtype=np.uint64)
    return _hex8(_fmix32((k * np.uint64(0x9E3779B1) + np.uint64(salt)) & np.uint64(0xFFFFFFFF)))


class NumericField:
    """A Criteo integer field: tokens = raw small values then buckets 1..B; values rendered per token."""

    def __init__(self, card: int, with_negative: bool, rng: np.random.Generator):
        raws = [0, 1, 2] + ([-1] if with_negative else [])
        n_raw = min(len(raws), card)
        self.raws = np.array(raws[:n_raw], np.int64)
        self.n_buckets = max(0, card - n_raw)
        lo = first_integers(np.arange(1, max(self.n_buckets, 1) + 2))
        self.lo = lo[:-1]
        self.hi = lo[1:] - 1
        self.card = n_raw + self.n_buckets
        # Zipf rank -> token index: loosely by token order, so small values and low buckets are common
        self.perm = np.argsort(np.arange(self.card) * rng.uniform(0.3, 1.7, self.card), kind="stable")

    def token_of_rank(self, rank: np.ndarray) -> np.ndarray:
        return self.perm[rank]

    def values(self, tok: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A raw integer for each token: the value itself, or a uniform integer inside the bucket."""
        n_raw = len(self.raws)
        out = np.empty(len(tok), np.int64)
        is_raw = tok < n_raw
        out[is_raw] = self.raws[tok[is_raw]]
        b = tok[~is_raw] - n_raw  # bucket index 0.. -> bucket b + 1
        lo, hi = self.lo[b], self.hi[b]
        out[~is_raw] = lo + np.floor(rng.random(len(b)) * (hi - lo + 1)).astype(np.int64)
        return out


# ----------------------------------------------------------------------------- layout


class Layout:
    """Field names, cardinalities, empty shares and how to render each field for one synthetic format."""

    def __init__(self, fmt: str, cards: Sequence[int] | None, rng: np.random.Generator):
        self.fmt = fmt
        cards = [int(c) for c in (default_cardinalities(fmt) if cards is None else cards)]
        if any(c < 1 for c in cards):
            raise Fm2OnnxError("cardinalities must be positive integers")
        self.numeric: dict[int, NumericField] = {}
        if fmt == "criteo":
            self._criteo(cards, rng)
        elif fmt == "avazu":
            self._avazu(cards)
        else:
            self._ids(cards)
        self.cards = cards
        self.salts = rng.integers(0, 1 << 32, len(cards), dtype=np.uint64)
        self._strings: dict[int, pa.Array] = {}
        # diurnal profile of clicks for avazu hours
        hrs = np.arange(24)
        prof = 1.0 + 0.6 * np.sin((hrs - 8) / 24 * 2 * np.pi)
        self.hour_p = prof / prof.sum()

    def _criteo(self, cards: list[int], rng: np.random.Generator) -> None:
        if len(cards) != 39:
            raise Fm2OnnxError(f"criteo has 39 fields; got {len(cards)} cardinalities")
        self.names = list(CRITEO_NUMERIC + CRITEO_CATEGORICAL)
        for f in range(len(CRITEO_NUMERIC)):
            self.numeric[f] = NumericField(cards[f], with_negative=(f == 1), rng=rng)  # I2 has negatives
            cards[f] = self.numeric[f].card
        self.empty = list(_CRITEO_NUM_EMPTY + _CRITEO_CAT_EMPTY)

    def _avazu(self, cards: list[int]) -> None:
        if len(cards) != 23:
            raise Fm2OnnxError(f"avazu has 23 fields; got {len(cards)} cardinalities")
        if cards[0] != 7 or cards[1] != 24:
            raise Fm2OnnxError("avazu's day_of_week and hour_of_day have 7 and 24 features")
        self.names = ["day_of_week", "hour_of_day"] + list(AVAZU_COLUMNS[3:])
        self.empty = [0.0] * 23

    def _ids(self, cards: list[int]) -> None:
        if len(cards) < 2:
            raise Fm2OnnxError("ids needs at least two fields (the planted FmFM interacts pairs of fields)")
        self.names = [f"f{i}" for i in range(len(cards))]
        self.empty = [0.0] * len(cards)

    def is_time_field(self, f: int) -> bool:
        return self.fmt == "avazu" and f < _AVAZU_TIME_FIELDS

    def samplers(self, zipf: float) -> list[Zipf | None]:
        """The Zipf sampler of each field's ranks (None for fields drawn from a timestamp)."""
        return [None if self.is_time_field(f) else Zipf(c, zipf) for f, c in enumerate(self.cards)]

    def feature_ranks(self, f: int) -> np.ndarray | None:
        """Zipf rank of each planted feature of field ``f`` (0 = most frequent); None if not Zipf-ranked."""
        if self.is_time_field(f):
            return None
        if f in self.numeric:
            return np.argsort(self.numeric[f].perm)
        return np.arange(self.cards[f])

    def ids(self, feats: np.ndarray) -> np.ndarray:
        """int32 ids of planted features: feature k -> k + 1, missing -> 0 (the unknown row)."""
        return np.where(feats == np.asarray(self.cards)[None, :], 0, feats + 1).astype(np.int32)

    def strings(self, f: int) -> pa.Array:
        """The text of each planted feature of a categorical field."""
        s = self._strings.get(f)
        if s is None:
            name, c = self.names[f], self.cards[f]
            if self.fmt == "avazu" and name in _AVAZU_INT_BASE:
                base, step = _AVAZU_INT_BASE[name]
                s = pa.array((base + step * np.arange(c)).astype(np.int64)).cast(pa.string())
            else:
                s = _hash_strings(c, int(self.salts[f]))
            self._strings[f] = s
        return s

    def draw(self, samplers: list[Zipf | None], n: int, rng: Streams) -> tuple[np.ndarray, np.ndarray | None]:
        """(planted feature index per row and field, card = missing; Avazu: day index per row)."""
        feats = np.empty((n, len(self.cards)), np.int64)
        for f, c in enumerate(self.cards):
            if samplers[f] is None:
                continue  # set from the timestamp below
            k = samplers[f].sample(rng(rng.RANK, f).random(n))
            if f in self.numeric:
                k = self.numeric[f].token_of_rank(k)
            if self.empty[f] > 0:
                k = np.where(rng(rng.EMPTY, f).random(n) < self.empty[f], c, k)
            feats[:, f] = k
        if self.fmt != "avazu":
            return feats, None
        day = rng(rng.DAY).integers(0, AVAZU_DAYS, n)
        hour = np.searchsorted(np.cumsum(self.hour_p), rng(rng.HOUR).random(n), side="right").clip(0, 23)
        feats[:, 0] = (AVAZU_START.weekday() + day) % 7
        feats[:, 1] = hour
        return feats, day
