"""A stand-in prompt encoder for predictor and simulator tests (no MiniLM load)."""

from __future__ import annotations

import re

import numpy as np

DIM = 12


class AxisEmbedder:
    """Prompt "<anything><i>" (its trailing integer i, e.g. "p7" or "tag-7") maps to a fixed random unit
    vector seeded by i."""

    name = "axis"
    dim = DIM

    def encode(self, prompts):
        out = []
        for p in prompts:
            v = np.random.default_rng(int(re.search(r"(\d+)$", p).group(1))).normal(size=DIM)
            out.append(v / np.linalg.norm(v))
        return np.asarray(out, dtype=np.float32)
