"""Synthetic prompt population and the oracle predictor.

Cases: the default hit distribution is NIRVANA's 77.5% hits with mean K about 7; sampled qualities
keep each level's profile mean (cache levels over their hits, step levels over all prompts);
the optimal level is feasible (quality >= floor, cache K within the hit) and no cheaper level is;
a floor of 100 sends everything to full quality; a lower floor never makes prompts costlier;
invalid settings raise with the field name; the vectorized choice equals
argus.prompt.predictor.Predictor.choose prompt by prompt.
"""

import numpy as np
import pytest

from argus.policy.profile import load_default_profile
from argus.sim.prompts import PromptModel, PromptModelError, cache_allowed, draw

PROFILE = load_default_profile()
LEVELS = PROFILE.levels
NAMES = [lp.level for lp in LEVELS]
TPUT = np.array([lp.peak_throughput for lp in LEVELS])


def test_default_hits_are_the_prototype_logs():
    """Issue 17: the Argus prototype's 20k-prompt log with its CLIP thresholds, K = 0..25."""
    m = PromptModel()
    published = [22.5, 42.6, 21.3, 4.6, 3.2, 5.9]  # percent; they sum to 100.1, so normalized
    assert [round(100 * m.hits[k], 1) for k in (0, 5, 10, 15, 20, 25)] == published
    assert m.hit_rate == pytest.approx(0.775, abs=1e-3)
    assert m.mean_k == pytest.approx(7.1, abs=0.1)


def test_sampled_quality_keeps_profile_means():
    p = draw(PromptModel(), LEVELS, 90.0, 100_000, np.random.default_rng(0))
    for j, lp in enumerate(LEVELS):
        if lp.level.startswith("steps-"):
            assert p.quality[:, j].mean() == pytest.approx(lp.quality, abs=0.15)
        elif lp.level.startswith("cache-k") and lp.level != "cache-k0":
            k = int(lp.level.removeprefix("cache-k"))
            assert p.quality[p.kmax >= k, j] == pytest.approx(lp.quality)


@pytest.mark.parametrize("floor", [85.0, 90.0, 94.0])
def test_optimal_level_is_feasible_and_cheapest(floor):
    p = draw(PromptModel(), LEVELS, floor, 20_000, np.random.default_rng(1))
    allowed = cache_allowed(LEVELS, p.kmax)
    ok = (p.quality >= floor) & allowed
    ok[:, NAMES.index("cache-k0")] = True
    rows = np.arange(len(p.optimal))
    assert ok[rows, p.optimal].all()
    best = np.where(ok, TPUT[None, :], -np.inf).max(axis=1)
    assert np.allclose(TPUT[p.optimal], best)


def test_floor_100_sends_everything_to_full_quality():
    p = draw(PromptModel(), LEVELS, 100.0, 1000, np.random.default_rng(2))
    assert set(p.optimal.tolist()) == {NAMES.index("cache-k0")}


def test_lower_floor_never_costs_more():
    hi = draw(PromptModel(), LEVELS, 94.0, 5000, np.random.default_rng(3))
    lo = draw(PromptModel(), LEVELS, 88.0, 5000, np.random.default_rng(3))
    assert np.all(TPUT[lo.optimal] >= TPUT[hi.optimal])


@pytest.mark.parametrize("kwargs,field", [({"hits": {0: 0.5, 5: 0.4}}, "hits"),
                                          ({"steps_shape": 0.0}, "steps_shape"),
                                          ({"predictor_noise_pp": -1.0}, "predictor_noise_pp")])
def test_invalid_settings_name_the_field(kwargs, field):
    with pytest.raises(PromptModelError, match=f"^{field}:"):
        PromptModel(**kwargs)


def test_vectorized_choice_equals_the_routers_predictor():
    from argus.sim.prompts import chooser

    p = draw(PromptModel(), LEVELS, 90.0, 2000, np.random.default_rng(5))
    pred = chooser(LEVELS)
    allowed = cache_allowed(LEVELS, p.kmax)
    for i in range(len(p.optimal)):
        offered = {n: float(p.quality[i, j]) for j, n in enumerate(NAMES) if allowed[i, j]}
        offered["cache-k0"] = 100.0
        assert pred.choose(offered, 90.0) == NAMES[p.optimal[i]]
