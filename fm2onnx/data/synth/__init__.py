"""Synthetic CTR data with a planted FmFM: Criteo / Avazu text, or an encoded dataset of ids.

    synthesize("synth.txt", rows=300_000, fmt="criteo", seed=0, planted_out="planted.npz")
"""

from .generate import SynthInfo, synthesize
from .layout import SYNTH_FORMATS, default_cardinalities

__all__ = ["synthesize", "SynthInfo", "SYNTH_FORMATS", "default_cardinalities"]
