"""Levels as data (argus.levels): the full-quality constant and what a Level answers.

Cases:
- FULL parses to the full-quality level: cache family, resumes at step 0, needs no cache hit, cost 1
- cache-k<K> resumes at step K and needs a cache hit; its cost is (N-K)/N
- steps-<S> and model-<name> start from noise (K 0) and need no cache hit; steps-S costs S/N
- level_named parses a wire name without a schedule bound (cache-k60 is valid for N=100), and still
  rejects malformed names; parse_levels names FULL when it is missing
"""

from __future__ import annotations

import pytest

from argus.levels import FULL, LevelError, cache_checkpoints, level_named, parse_level, parse_levels


def test_full_is_the_full_quality_level():
    lv = parse_level(FULL, 20)
    assert lv.is_full_quality and lv.family == "cache"
    assert (lv.resume_step, lv.needs_cache_hit, lv.cost_ratio(20)) == (0, False, 1.0)


@pytest.mark.parametrize("name,k,hit,cost", [
    ("cache-k5", 5, True, 0.75), ("steps-5", 0, False, 0.25), ("model-tiny", 0, False, 1.0)])
def test_resume_step_cache_hit_and_cost(name, k, hit, cost):
    lv = parse_level(name, 20)
    assert (lv.resume_step, lv.needs_cache_hit, lv.cost_ratio(20)) == (k, hit, cost)
    assert not lv.is_full_quality


def test_level_named_is_unbounded_but_strict():
    assert level_named("cache-k60").resume_step == 60
    with pytest.raises(LevelError):
        parse_level("cache-k60", 50)
    with pytest.raises(LevelError, match="unknown level"):
        level_named("cache-60")


def test_level_sets_need_full_and_checkpoints_are_the_cache_ks():
    with pytest.raises(LevelError, match=repr(FULL)):
        parse_levels(["cache-k5", "steps-5"], 20)
    assert cache_checkpoints(parse_levels([FULL, "cache-k10", "steps-5", "cache-k5"], 20)) == [5, 10]
