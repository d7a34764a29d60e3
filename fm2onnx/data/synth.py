"""Synthetic CTR data with a planted FmFM, in Criteo / Avazu text formats or directly as ids.

Every row draws one *planted feature* per field from a finite Zipf distribution. Labels come from a
planted FmFM (numpy only): per field ``f`` an embedding dim ``d_f``, embeddings ``v_f`` of shape
``[cardinality_f + 1, d_f]`` (the extra row is "value missing"), a linear field vector ``w_f``, a
field matrix ``M_ab`` (``d_a x d_b``) for every field pair and a bias::

    score = sum_f <v_f, w_f> (scaled) + sum_{a<b} v_a M_ab v_b^T (scaled)
    logit = bias + alpha * score,   y ~ Bernoulli(sigmoid(logit))

``alpha`` and ``bias`` are solved on a calibration sample so that the planted model's own AUC is
about 0.785 and the positive rate about 0.25 (Criteo) / 0.22 (Avazu, ids).

The text is written so that the paper's preprocessing recovers the planted feature: a Criteo
integer field's features are the tokens 0, 1, 2 (and -1 for I2) and the log^2 buckets, each bucket
rendered as a random integer inside it; categorical features are distinct 8-hex-digit strings.
Missing values are written empty. Frequent features therefore map to distinct ids; features rarer
than the encoder's ``min_count`` map to the unknown id 0, as with real data.

Generation runs in fixed chunks of 65,536 rows, each with its own seeded stream, so a file of N
rows is a prefix of a file of M > N rows made with the same seed.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.csv as pv

from .. import __version__
from ..errors import Fm2OnnxError
from ..progress import Progress
from ._util import SPLIT_NAMES, NpyAppender, assign_split
from .formats import AVAZU_COLUMNS, CRITEO_CATEGORICAL, CRITEO_NUMERIC, FieldSpec
from .vocab import _int_token_keys, Preprocessor

__all__ = ["synthesize", "SynthInfo", "SYNTH_FORMATS", "default_cardinalities"]

SYNTH_FORMATS = ("criteo", "avazu", "ids")
CHUNK = 1 << 16
TARGET_AUC = 0.785
TARGET_POS = {"criteo": 0.25, "avazu": 0.22, "ids": 0.22}

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
_AVAZU_HEX = {
    "site_id", "site_domain", "site_category", "app_id", "app_domain", "app_category",
    "device_id", "device_ip", "device_model",
}
_AVAZU_INT_BASE = {
    "C1": (1001, 1), "banner_pos": (0, 1), "device_type": (0, 1), "device_conn_type": (0, 1),
    "C14": (15000, 7), "C15": (120, 40), "C16": (20, 10), "C17": (1000, 3), "C18": (0, 1),
    "C19": (33, 2), "C20": (100000, 17), "C21": (1, 3),
}
_AVAZU_START = _dt.date(2014, 10, 21)
_AVAZU_DAYS = 10


def default_cardinalities(fmt: str) -> list[int]:
    """Number of planted features per field of the default synthetic data of ``fmt``."""
    if fmt == "criteo" or fmt == "ids":
        return list(_CRITEO_NUM_CARD + _CRITEO_CAT_CARD)
    if fmt == "avazu":
        return list(_AVAZU_CARD)
    raise Fm2OnnxError(f"unknown synthetic format {fmt!r}; use one of {', '.join(SYNTH_FORMATS)}")


@dataclass
class SynthInfo:
    """What :func:`synthesize` wrote."""

    path: str
    fmt: str
    rows: int
    seed: int
    field_names: list[str]
    cardinalities: list[int]
    dims: list[int]
    zipf: float
    positive_rate: float  # of the written labels
    planted_auc: float  # expected AUC of the planted model (calibration sample)
    bias: float
    alpha: float
    seconds: float
    planted_out: str | None = None
    empty_rates: list[float] = field(default_factory=list)
    decay: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------- helpers


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, (int(seed) >> 32) & 0xFFFFFFFF, *stream]))


class _Streams:
    """Independent random streams of one chunk, one per purpose and field, so that drawing n rows
    gives the first n rows of a longer draw (files of different lengths share their prefix)."""

    RANK, EMPTY, VALUE, LABEL, DAY, HOUR, ID = range(7)

    def __init__(self, seed: int, chunk: int):
        self.seed = seed
        self.chunk = chunk

    def __call__(self, purpose: int, f: int = 0) -> np.random.Generator:
        return _rng(self.seed, self.chunk, purpose, f)


class _Zipf:
    """Exact inverse-CDF sampling of ranks 0..C-1 with P(k) ~ (k+1)^-s, via a guide table."""

    def __init__(self, c: int, s: float):
        p = (np.arange(1, c + 1, dtype=np.float64)) ** (-s)
        cdf = np.cumsum(p)
        cdf /= cdf[-1]
        cdf[-1] = 1.0
        self.cdf = cdf
        self.m = min(max(4 * c, 1024), 1 << 22)
        self.guide = np.searchsorted(cdf, np.arange(self.m) / self.m, side="right")

    def sample(self, u: np.ndarray) -> np.ndarray:
        k = self.guide[(u * self.m).astype(np.int64)]
        cdf = self.cdf
        todo = np.flatnonzero(cdf[k] <= u)
        while len(todo):
            k[todo] += 1
            todo = todo[cdf[k[todo]] <= u[todo]]
        return k


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


def _bucket_bounds(max_bucket: int) -> np.ndarray:
    """lo[b] = smallest integer x > 2 whose log^2 bucket is >= b, for b = 1..max_bucket + 1."""
    b = np.arange(1, max_bucket + 2, dtype=np.int64)
    lo = np.ceil(np.exp(np.sqrt(b.astype(np.float64)))).astype(np.int64)
    lo = np.maximum(lo, 3)
    for _ in range(4):  # nudge onto the exact boundaries of the pipeline's own bucket function
        lo = np.where(_int_token_keys(lo) < b, lo + 1, lo)
        lo = np.where((lo > 3) & (_int_token_keys(lo - 1) >= b), lo - 1, lo)
    return lo


class _NumericField:
    """A Criteo integer field: tokens = raw small values then buckets 1..B; values rendered per token."""

    def __init__(self, card: int, with_negative: bool, rng: np.random.Generator):
        raws = [0, 1, 2] + ([-1] if with_negative else [])
        n_raw = min(len(raws), card)
        self.raws = np.array(raws[:n_raw], np.int64)
        self.n_buckets = max(0, card - n_raw)
        lo = _bucket_bounds(max(self.n_buckets, 1))
        self.lo = lo[:-1]
        self.hi = lo[1:] - 1
        self.card = n_raw + self.n_buckets
        # Zipf rank -> token index: loosely by token order, so small values and low buckets are common
        self.perm = np.argsort(np.arange(self.card) * rng.uniform(0.3, 1.7, self.card), kind="stable")

    def token_of_rank(self, rank: np.ndarray) -> np.ndarray:
        return self.perm[rank]

    def values(self, tok: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n_raw = len(self.raws)
        out = np.empty(len(tok), np.int64)
        is_raw = tok < n_raw
        out[is_raw] = self.raws[tok[is_raw]]
        b = tok[~is_raw] - n_raw  # bucket index 0.. -> bucket b + 1
        lo, hi = self.lo[b], self.hi[b]
        out[~is_raw] = lo + np.floor(rng.random(len(b)) * (hi - lo + 1)).astype(np.int64)
        return out


# ----------------------------------------------------------------------------- planted model


class _Planted:
    def __init__(self, cards: Sequence[int], dims: Sequence[int], rng: np.random.Generator):
        self.cards = [int(c) for c in cards]
        self.dims = [int(d) for d in dims]
        self.offsets = np.concatenate([[0], np.cumsum(self.dims)]).astype(np.int64)
        total = int(self.offsets[-1])
        self.emb = [
            rng.standard_normal((c + 1, d)).astype(np.float32) / np.float32(np.sqrt(d))
            for c, d in zip(self.cards, self.dims)
        ]
        self.w = rng.standard_normal(total).astype(np.float32)
        a = np.zeros((total, total), np.float32)
        nf = len(self.dims)
        for i in range(nf):
            for j in range(i + 1, nf):
                oi, oj = self.offsets[i], self.offsets[j]
                a[oi:oi + self.dims[i], oj:oj + self.dims[j]] = rng.standard_normal(
                    (self.dims[i], self.dims[j])
                ).astype(np.float32)
        self.a = a
        self.lin_mu = self.lin_sd = self.pair_mu = self.pair_sd = None
        self.bias = 0.0
        self.alpha = 1.0

    def parts(self, feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(linear, pair) raw scores of rows of planted feature indices [n, F] (missing = card)."""
        n = feats.shape[0]
        x = np.empty((n, int(self.offsets[-1])), np.float32)
        for f, e in enumerate(self.emb):
            x[:, self.offsets[f]:self.offsets[f + 1]] = e[feats[:, f]]
        lin = x @ self.w
        pair = np.einsum("ij,ij->i", x @ self.a, x)
        return lin.astype(np.float64), pair.astype(np.float64)

    def score(self, feats: np.ndarray) -> np.ndarray:
        lin, pair = self.parts(feats)
        return np.sqrt(0.3) * (lin - self.lin_mu) / self.lin_sd + np.sqrt(0.7) * (pair - self.pair_mu) / self.pair_sd

    def calibrate(self, feats: np.ndarray, target_auc: float, target_pos: float) -> float:
        lin, pair = self.parts(feats)
        self.lin_mu, self.lin_sd = float(lin.mean()), float(lin.std() or 1.0)
        self.pair_mu, self.pair_sd = float(pair.mean()), float(pair.std() or 1.0)
        s = np.sqrt(0.3) * (lin - self.lin_mu) / self.lin_sd + np.sqrt(0.7) * (pair - self.pair_mu) / self.pair_sd
        order = np.argsort(s, kind="stable")
        s = s[order]

        def bias_for(alpha: float) -> float:
            lo, hi = -20.0, 20.0
            for _ in range(40):
                mid = (lo + hi) / 2
                if _sigmoid(mid + alpha * s).mean() < target_pos:
                    lo = mid
                else:
                    hi = mid
            return (lo + hi) / 2

        def auc_for(alpha: float) -> tuple[float, float]:
            b = bias_for(alpha)
            return _expected_auc(s, _sigmoid(b + alpha * s)), b

        lo, hi = 0.05, 20.0
        for _ in range(30):
            mid = (lo + hi) / 2
            if auc_for(mid)[0] < target_auc:
                lo = mid
            else:
                hi = mid
        self.alpha = (lo + hi) / 2
        auc, self.bias = auc_for(self.alpha)
        return auc

    def logit(self, feats: np.ndarray) -> np.ndarray:
        return self.bias + self.alpha * self.score(feats)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _expected_auc(s_sorted: np.ndarray, p: np.ndarray) -> float:
    """AUC of score s (ascending) when row i is positive with probability p_i (ties: no ties assumed)."""
    neg_before = np.cumsum(1.0 - p) - (1.0 - p)
    return float((p * neg_before).sum() / (p.sum() * (1.0 - p).sum()))


# ----------------------------------------------------------------------------- formats


class _Layout:
    """Field names, cardinalities and how to render each field for one synthetic format."""

    def __init__(self, fmt: str, cards: Sequence[int] | None, rng: np.random.Generator):
        self.fmt = fmt
        base = default_cardinalities(fmt)
        if cards is None:
            cards = base
        cards = [int(c) for c in cards]
        if any(c < 1 for c in cards):
            raise Fm2OnnxError("cardinalities must be positive integers")
        self.numeric: dict[int, _NumericField] = {}
        if fmt == "criteo":
            if len(cards) != 39:
                raise Fm2OnnxError(f"criteo has 39 fields; got {len(cards)} cardinalities")
            self.names = list(CRITEO_NUMERIC + CRITEO_CATEGORICAL)
            for f in range(13):
                nf = _NumericField(cards[f], with_negative=(f == 1), rng=rng)
                self.numeric[f] = nf
                cards[f] = nf.card
            self.empty = list(_CRITEO_NUM_EMPTY + _CRITEO_CAT_EMPTY)
        elif fmt == "avazu":
            if len(cards) != 23:
                raise Fm2OnnxError(f"avazu has 23 fields; got {len(cards)} cardinalities")
            if cards[0] != 7 or cards[1] != 24:
                raise Fm2OnnxError("avazu's day_of_week and hour_of_day have 7 and 24 features")
            self.names = ["day_of_week", "hour_of_day"] + list(AVAZU_COLUMNS[3:])
            self.empty = [0.0] * 23
        else:
            if not cards:
                raise Fm2OnnxError("ids needs at least one field")
            self.names = [f"f{i}" for i in range(len(cards))]
            self.empty = [0.0] * len(cards)
        self.cards = cards
        self.salts = rng.integers(0, 1 << 32, len(cards), dtype=np.uint64)
        self._strings: dict[int, pa.Array] = {}
        # diurnal profile of clicks for avazu hours
        hrs = np.arange(24)
        prof = 1.0 + 0.6 * np.sin((hrs - 8) / 24 * 2 * np.pi)
        self.hour_p = prof / prof.sum()

    def strings(self, f: int) -> pa.Array:
        s = self._strings.get(f)
        if s is None:
            name = self.names[f]
            c = self.cards[f]
            if self.fmt == "avazu" and name in _AVAZU_INT_BASE:
                base, step = _AVAZU_INT_BASE[name]
                s = pa.array((base + step * np.arange(c)).astype(np.int64)).cast(pa.string())
            else:
                s = _hash_strings(c, int(self.salts[f]))
            self._strings[f] = s
        return s


def _draw_features(layout: _Layout, zipfs: list[_Zipf | None], n: int, rng: _Streams) -> np.ndarray:
    """Planted feature index per row and field (card_f = missing)."""
    feats = np.empty((n, len(layout.cards)), np.int64)
    for f, c in enumerate(layout.cards):
        if layout.fmt == "avazu" and f < 2:
            continue  # set from the timestamp below
        k = zipfs[f].sample(rng(rng.RANK, f).random(n))
        if f in layout.numeric:
            k = layout.numeric[f].token_of_rank(k)
        if layout.empty[f] > 0:
            k = np.where(rng(rng.EMPTY, f).random(n) < layout.empty[f], c, k)
        feats[:, f] = k
    if layout.fmt == "avazu":
        day = rng(rng.DAY).integers(0, _AVAZU_DAYS, n)
        hour = np.searchsorted(np.cumsum(layout.hour_p), rng(rng.HOUR).random(n), side="right").clip(0, 23)
        feats[:, 0] = (_AVAZU_START.weekday() + day) % 7
        feats[:, 1] = hour
        feats_day = day
    else:
        feats_day = None
    return feats, feats_day


def _criteo_table(layout: _Layout, feats: np.ndarray, y: np.ndarray, rng: _Streams) -> pa.Table:
    cols: dict[str, pa.Array] = {"label": pa.array(y.astype(np.int8))}
    for f, name in enumerate(layout.names):
        k = feats[:, f]
        missing = k == layout.cards[f]
        if f in layout.numeric:
            vals = layout.numeric[f].values(np.where(missing, 0, k), rng(rng.VALUE, f))
            cols[name] = pa.array(vals, pa.int64(), mask=missing)
        else:
            idx = pa.array(np.where(missing, 0, k), mask=missing)
            cols[name] = layout.strings(f).take(idx)
    return pa.table(cols)


def _avazu_table(layout: _Layout, feats: np.ndarray, day: np.ndarray, y: np.ndarray,
                 rng: _Streams) -> pa.Table:
    hour_strings = pa.array(
        [
            (_AVAZU_START + _dt.timedelta(days=d)).strftime("%y%m%d") + f"{h:02d}"
            for d in range(_AVAZU_DAYS)
            for h in range(24)
        ]
    )
    n = len(y)
    ids = rng(rng.ID).integers(0, np.iinfo(np.uint64).max, n, dtype=np.uint64, endpoint=True)
    cols: dict[str, pa.Array] = {
        "id": pa.array(ids, pa.uint64()),
        "click": pa.array(y.astype(np.int8)),
        "hour": hour_strings.take(pa.array(day * 24 + feats[:, 1])),
    }
    for f in range(2, len(layout.names)):
        cols[layout.names[f]] = layout.strings(f).take(pa.array(feats[:, f]))
    return pa.table(cols)


# ----------------------------------------------------------------------------- main entry


def _check_out(path: Path, force: bool, is_dir: bool) -> None:
    if path.exists() or path.is_symlink():
        if not force:
            raise Fm2OnnxError(f"{path}: already exists; pass force=True (--force) to overwrite it")
        if is_dir and (not path.is_dir() or (any(path.iterdir()) and not (path / "meta.json").is_file())):
            raise Fm2OnnxError(f"{path}: exists and is not an encoded dataset; refusing to overwrite it")
        if not is_dir and path.is_dir():
            raise Fm2OnnxError(f"{path}: is a directory; refusing to overwrite it")


def synthesize(
    out_path: str | os.PathLike,
    *,
    rows: int,
    fmt: str = "criteo",
    seed: int = 0,
    field_dims: Sequence[int] | int | None = None,
    cardinalities: Sequence[int] | None = None,
    zipf: float = 1.1,
    planted_out: str | os.PathLike | None = None,
    force: bool = False,
    progress: bool = True,
    split: Sequence[float] = (0.8, 0.1, 0.1),
    decay: float = 0.0,
) -> SynthInfo:
    """Write ``rows`` synthetic rows to ``out_path`` (a text file, or for ``fmt="ids"`` an encoded
    dataset directory readable by ``EncodedDataset.open``).

    ``field_dims``: planted embedding dim per field (int for all; default: drawn from 2..12 by
    seed). ``cardinalities``: planted features per field (default :func:`default_cardinalities`).
    ``zipf``: exponent of the feature frequencies. ``planted_out``: a ``.npz`` receiving ``logits``
    (float32, one per row in file order), ``dims``, ``cardinalities``, ``field_names``, ``bias``,
    ``alpha``. ``split`` only matters for ``fmt="ids"`` (the encoder assigns splits otherwise).
    ``decay`` > 0 shrinks the planted embedding of the feature of frequency rank ``r`` by
    ``(1 + r/3) ** -decay``, so rare features carry less signal and the planted model is easier to
    learn from few rows (0 = every feature equally strong).
    """
    if fmt not in SYNTH_FORMATS:
        raise Fm2OnnxError(f"unknown synthetic format {fmt!r}; use one of {', '.join(SYNTH_FORMATS)}")
    if isinstance(rows, bool) or not isinstance(rows, (int, np.integer)) or rows < 1:
        raise Fm2OnnxError(f"rows must be a positive integer, got {rows!r}")
    if not (zipf > 0):
        raise Fm2OnnxError(f"zipf exponent must be > 0, got {zipf!r}")
    if not (decay >= 0):
        raise Fm2OnnxError(f"decay must be >= 0, got {decay!r}")
    rows = int(rows)
    seed = int(seed)
    out = Path(out_path)
    _check_out(out, force, is_dir=(fmt == "ids"))
    if planted_out is not None:
        planted_out = Path(planted_out)
        if planted_out.exists() and not force:
            raise Fm2OnnxError(f"{planted_out}: already exists; pass force=True to overwrite it")

    rng_params = _rng(seed, 1)
    layout = _Layout(fmt, cardinalities, rng_params)
    nf = len(layout.cards)
    if field_dims is None:
        dims = [int(d) for d in _rng(seed, 2).integers(2, 13, nf)]
    elif isinstance(field_dims, (int, np.integer)):
        dims = [int(field_dims)] * nf
    else:
        dims = [int(d) for d in field_dims]
    if len(dims) != nf or any(d < 1 for d in dims):
        raise Fm2OnnxError(f"field_dims must be {nf} positive integers (one per field)")
    planted = _Planted(layout.cards, dims, rng_params)
    if decay:
        for f, emb in enumerate(planted.emb):
            c = emb.shape[0] - 1
            if fmt == "avazu" and f < 2:
                continue  # day_of_week / hour_of_day are not Zipf-ranked
            rank = np.argsort(layout.numeric[f].perm) if f in layout.numeric else np.arange(c)
            emb[:c] *= ((1.0 + rank / 3.0) ** (-float(decay))).astype(np.float32)[:, None]
    zipfs = [None if (fmt == "avazu" and f < 2) else _Zipf(c, zipf) for f, c in enumerate(layout.cards)]
    cal_feats, _ = _draw_features(layout, zipfs, 20_000, _Streams(seed, 3))
    planted_auc = planted.calibrate(cal_feats, TARGET_AUC, TARGET_POS[fmt])
    del cal_feats

    prog = Progress(f"synth {fmt} {out.name}", progress)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp) if tmp.is_dir() else tmp.unlink()
    logits = np.empty(rows, np.float32) if planted_out is not None else None
    positives = 0
    writer = None
    appenders: list[NpyAppender] = []
    try:
        if fmt == "ids":
            tmp.mkdir(parents=True)
            w_ids = NpyAppender(str(tmp / "ids.npy"), np.int32, (nf,))
            w_lab = NpyAppender(str(tmp / "labels.npy"), np.float32)
            w_split = NpyAppender(str(tmp / "split.npy"), np.uint8)
            appenders = [w_ids, w_lab, w_split]
            split_counts = np.zeros(3, np.int64)
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            fh = open(tmp, "wb")
            if fmt == "avazu":
                fh.write((",".join(AVAZU_COLUMNS) + "\n").encode())
        for c, row0 in enumerate(range(0, rows, CHUNK)):
            n = min(CHUNK, rows - row0)
            rng = _Streams(seed, 1000 + c)
            feats, day = _draw_features(layout, zipfs, n, rng)
            logit = planted.logit(feats)
            y = rng(rng.LABEL).random(n) < _sigmoid(logit)
            positives += int(y.sum())
            if logits is not None:
                logits[row0:row0 + n] = logit
            if fmt == "ids":
                ids = np.where(feats == np.asarray(layout.cards)[None, :], 0, feats + 1).astype(np.int32)
                sp = assign_split(np.arange(row0, row0 + n), seed, split)
                w_ids.write(ids)
                w_lab.write(y.astype(np.float32))
                w_split.write(sp)
                split_counts += np.bincount(sp, minlength=3)[:3]
            else:
                if fmt == "criteo":
                    table = _criteo_table(layout, feats, y, rng)
                    opts = pv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")
                else:
                    table = _avazu_table(layout, feats, day, y, rng)
                    opts = pv.WriteOptions(include_header=False, delimiter=",", quoting_style="none")
                if writer is None:
                    writer = pv.CSVWriter(fh, table.schema, write_options=opts)
                writer.write_table(table)
            prog.update(row0 + n, (row0 + n) / rows)
        if fmt == "ids":
            for w in appenders:
                w.close()
            pre = Preprocessor(
                [FieldSpec(nm, "categorical", nm) for nm in layout.names],
                [[str(i) for i in range(1, c + 1)] for c in layout.cards],
                format_spec={"name": "ids"},
                min_count=1,
                label="label",
            )
            from .encode import ENCODED_KIND, ENCODED_VERSION, write_dataset_files

            meta = {
                "kind": ENCODED_KIND,
                "version": ENCODED_VERSION,
                "fm2onnx_version": __version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "source": {"synthetic": True, "fmt": "ids", "seed": seed, "zipf": zipf},
                "format": {"name": "ids"},
                "rows": rows,
                "n_fields": nf,
                "field_names": layout.names,
                "vocab_sizes": pre.vocab_sizes,
                "min_count": 1,
                "seed": seed,
                "split": [float(x) for x in split],
                "split_counts": {nm: int(k) for nm, k in zip(SPLIT_NAMES, split_counts)},
                "positive_rate": positives / rows,
                "skip_bad_rows": False,
                "bad_rows": 0,
                "bad_row_lines": [],
                "bad_row_examples": [],
                "preprocessor_given": False,
            }
            write_dataset_files(tmp, pre, meta)
            if out.exists():
                shutil.rmtree(out)
        else:
            if writer is not None:
                writer.close()
            fh.close()
            if out.exists():
                out.unlink()
        os.replace(tmp, out)
    except BaseException:
        for w in appenders:
            w.abort()
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        raise
    if planted_out is not None:
        planted_out.parent.mkdir(parents=True, exist_ok=True)
        with open(planted_out, "wb") as f:
            np.savez(
                f,
                logits=logits,
                dims=np.asarray(dims, np.int32),
                cardinalities=np.asarray(layout.cards, np.int64),
                field_names=np.asarray(layout.names),
                bias=np.float64(planted.bias),
                alpha=np.float64(planted.alpha),
            )
    secs = prog.done(rows)
    return SynthInfo(
        path=str(out),
        fmt=fmt,
        rows=rows,
        seed=seed,
        field_names=list(layout.names),
        cardinalities=list(layout.cards),
        dims=dims,
        zipf=float(zipf),
        positive_rate=positives / rows,
        planted_auc=planted_auc,
        bias=float(planted.bias),
        alpha=float(planted.alpha),
        seconds=secs,
        planted_out=str(planted_out) if planted_out is not None else None,
        empty_rates=list(layout.empty),
        decay=float(decay),
    )
