"""AUC (exact, rank-based with ties) against a brute-force pair count; log loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fm2onnx.data.metrics import auc, log_loss


def brute_auc(y, s):
    pos = [b for a, b in zip(y, s) if a == 1]
    neg = [b for a, b in zip(y, s) if a == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 1), st.integers(-3, 3) | st.floats(-1e3, 1e3, allow_nan=False)),
        min_size=2,
        max_size=60,
    )
)
def test_auc_matches_brute_force_with_ties(pairs):
    y = [p[0] for p in pairs]
    s = [float(p[1]) for p in pairs]
    if len(set(y)) < 2:
        assert math.isnan(auc(y, s))
        return
    assert auc(y, s) == pytest.approx(brute_auc(y, s), abs=1e-12)


def test_auc_known_values():
    assert auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    assert auc([1, 0], [0.3, 0.3]) == 0.5
    assert auc([0, 1, 0, 1], [1, 2, 3, 4]) == 0.75
    assert auc(np.array([1.0, 0.0]), np.array([2.0, 1.0])) == 1.0
    assert auc([1, 0], [np.float32(1), np.float32(2)]) == 0.0
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200_000)
    assert abs(auc(y, rng.random(200_000)) - 0.5) < 0.01


def test_auc_rejects_bad_input():
    with pytest.raises(ValueError):
        auc([0, 2], [1, 2])
    with pytest.raises(ValueError):
        auc([0, 1], [1])
    with pytest.raises(ValueError):
        auc([0, 1], [float("nan"), 1])


def test_log_loss():
    assert log_loss([1, 0], [0.5, 0.5]) == pytest.approx(math.log(2))
    assert log_loss([1, 0, 1], [0.9, 0.2, 0.6]) == pytest.approx(-(math.log(0.9) + math.log(0.8) + math.log(0.6)) / 3)
    assert log_loss([1], [0.0]) == pytest.approx(-math.log(1e-7))  # clipped
    assert log_loss([0], [1.0], eps=1e-3) == pytest.approx(-math.log(1e-3))
    with pytest.raises(ValueError):
        log_loss([1, 0], [0.5])
