"""Helpers for users' own tests of the model files they serve.

    from fm2onnx.testing import assert_matches_golden

    def test_served_model_still_scores_as_released():
        assert_matches_golden("model.onnx", "golden.npz")

The golden file comes from ``fm2onnx check model.onnx --golden golden.npz --write`` (docs/golden.md).
"""

from __future__ import annotations

from pathlib import Path


def assert_matches_golden(model: str | Path, golden: str | Path, *, tolerance: float | None = None):
    """Re-run the rows recorded in ``golden`` on ``model`` (alone and in serving batches) and raise
    AssertionError naming the worst row when an output moved past the golden file's tolerance
    (``tolerance``, atol = rtol, replaces it). Returns the check (``.describe()``, ``.to_dict()``).
    A missing or mismatched file raises fm2onnx.errors.Fm2OnnxError: a broken setup, not a moved model."""
    from export.golden import check_golden  # imported here so that importing this module stays cheap

    result = check_golden(model, golden, tolerance=tolerance)
    if not result.ok:
        raise AssertionError(result.describe())
    return result
