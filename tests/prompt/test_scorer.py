"""CLIP quality scorer and relative quality.

Cases:
- tiny random CLIP: one finite score per image in [0, 100], deterministic across instances, order-preserving per pair
- real-weights path: a CLIP saved with save_pretrained loads offline; its standard CLIPScore equals
  max(0, 2·cosine-score − 100) of the same weights (the two score kinds agree)
- relative quality: ratio in percent; undefined (None) when the full image scores 0 or a value is not finite
- errors: image/prompt count mismatch, a non-HxWx3 image, an unknown score kind, a directory without a CLIP model
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from argus.prompt.scorer import ClipScorer, ScorerError, relative_quality


def images(n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8) for _ in range(n)]


PROMPTS = ["a red fox in the snow", "a city at night, neon", "a bowl of fruit, still life"]


def test_tiny_scores():
    a, b = ClipScorer.tiny(), ClipScorer.tiny()
    ims = images(3)
    s = a.score(ims, PROMPTS)
    assert s.shape == (3,) and np.isfinite(s).all() and ((0 <= s) & (s <= 100)).all()
    assert np.allclose(s, b.score(ims, PROMPTS), atol=1e-6)
    assert np.allclose(a.score(ims[::-1], PROMPTS[::-1]), s[::-1], atol=1e-4)  # batch order does not matter
    assert a.score([], []).shape == (0,)


def test_from_path_matches_tiny(tmp_path):
    tiny = ClipScorer.tiny()
    tiny.model.save_pretrained(tmp_path / "clip")
    tiny.tokenizer.save_pretrained(tmp_path / "clip")
    real = ClipScorer.from_path(tmp_path / "clip")
    assert real.kind == "clipscore" and real.name == "clip:clip"
    ims = images(3, seed=1)
    cos_score = tiny.score(ims, PROMPTS)
    assert np.allclose(real.score(ims, PROMPTS), np.maximum(0.0, 2 * cos_score - 100), atol=1e-3)


@pytest.mark.parametrize("score,full,expected", [
    (45.0, 50.0, 90.0), (50.0, 50.0, 100.0), (55.0, 50.0, 110.0), (0.0, 50.0, 0.0),
    (30.0, 0.0, None), (math.nan, 50.0, None), (30.0, math.inf, None),
])
def test_relative_quality(score, full, expected):
    got = relative_quality(score, full)
    assert got == (pytest.approx(expected) if expected is not None else None)


def test_errors(tmp_path):
    s = ClipScorer.tiny()
    with pytest.raises(ScorerError, match="2 images but 1 prompts"):
        s.score(images(2), ["x"])
    with pytest.raises(ScorerError, match=r"image must be HxWx3, got shape \(32, 32\)"):
        s.score([np.zeros((32, 32), np.uint8)], ["x"])
    with pytest.raises(ScorerError, match="unknown score kind 'pickscore'"):
        ClipScorer(s.model, s.tokenizer, "x", kind="pickscore")
    with pytest.raises(ScorerError, match=f"{tmp_path}: not a CLIP model directory"):
        ClipScorer.from_path(tmp_path)
