"""argus.sim.bounds: fluid quality bounds with and without per-prompt knowledge.

Cases: identical prompts leave per-prompt knowledge nothing to gain; prompts that differ in sensitivity let it
degrade the insensitive ones first (the exact optimum of a two-level, two-kind case); the prompt-blind bound
interpolates between two levels at the GPU budget; past the fastest level both bounds meet; a level some prompt
may not use is closed to the prompt-blind policy; windows are served on their own and weighted by what they
serve.
"""

from __future__ import annotations

import numpy as np
import pytest

from argus.sim import bounds

TPUT = np.array([1.0, 2.0])  # requests/s per GPU: a full-quality level and one twice as fast


def test_identical_prompts_gain_nothing_from_knowledge():
    q = np.tile([100.0, 90.0], (1000, 1))
    for rate in (1.0, 1.5, 2.0):
        pp = bounds.per_prompt(q, TPUT, rate, gpus=1.0)
        ag = bounds.agnostic(q.mean(axis=0), TPUT, rate, gpus=1.0)
        assert pp == pytest.approx(ag, abs=0.11)  # one prompt's granularity: 10 points / 1000 prompts


def test_insensitive_prompts_are_degraded_first():
    # half the prompts lose 2 points at the fast level, half lose 18: at 4/3 req/s on 1 GPU half must go fast
    q = np.array([[100.0, 98.0]] * 500 + [[100.0, 82.0]] * 500)
    pp = bounds.per_prompt(q, TPUT, 4 / 3, gpus=1.0)
    ag = bounds.agnostic(q.mean(axis=0), TPUT, 4 / 3, gpus=1.0)
    assert pp == pytest.approx(99.0, abs=0.05)  # the 2-point half goes fast
    assert ag == pytest.approx(95.0)  # half of everyone goes fast: 100 - 10 / 2
    assert pp - ag == pytest.approx(4.0, abs=0.05)


def test_prompt_blind_mix_spends_the_budget_exactly():
    mean = np.array([100.0, 90.0])
    assert bounds.agnostic(mean, TPUT, 1.0, gpus=1.0) == 100.0  # the full level fits
    assert bounds.agnostic(mean, TPUT, 1.25, gpus=1.0) == pytest.approx(96.0)  # 0.8 GPU-s a request: 2/5 fast
    assert bounds.agnostic(mean, TPUT, 2.0, gpus=1.0) == pytest.approx(90.0)


def test_past_the_fastest_level_both_bounds_serve_only_what_fits():
    q = np.array([[100.0, 98.0], [100.0, 82.0]])
    assert bounds.served_rate(5.0, TPUT, 1.0) == 2.0
    assert bounds.per_prompt(q, TPUT, 5.0, gpus=1.0) == pytest.approx(90.0)
    assert bounds.agnostic(q.mean(axis=0), TPUT, 5.0, gpus=1.0) == pytest.approx(90.0)


def test_a_level_not_every_prompt_may_use_is_closed_to_the_blind_policy():
    q = np.array([[100.0, 95.0], [100.0, -np.inf]])
    mean = bounds.open_levels_mean(q)
    assert mean[0] == 100.0 and mean[1] == -np.inf
    assert bounds.agnostic(mean, TPUT, 1.5, gpus=1.0) == -np.inf  # nothing blind fits the budget
    assert bounds.per_prompt(q, TPUT, 0.5, gpus=1.0) == 100.0


def test_windows_are_served_on_their_own_and_weighted_by_what_they_serve():
    q = np.array([[100.0, 98.0]] * 50 + [[100.0, 82.0]] * 50)
    # window 1: 1 req/s (all full quality); window 2: 4 req/s, past the fast level's 2: serves 2 at 90 both ways
    arrivals = np.concatenate([np.linspace(0, 10, 10, endpoint=False), np.linspace(10, 20, 40, endpoint=False)])
    w = bounds.windowed(q, TPUT, arrivals, gpus=1.0, window_s=10.0, t0=0.0, t1=20.0)
    assert list(w["rates"]) == [1.0, 4.0]
    assert w["past_fastest"] == 0.5
    assert w["gap"] == pytest.approx(0.0, abs=1e-9)
    assert w["mean_per_prompt"] == pytest.approx((1 * 100 + 2 * 90) / 3)
