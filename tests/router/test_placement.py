"""Per-prompt placement (argus.policy.assign.place, issue 17).

Cases:
- a prompt goes to the allowed level with the highest predicted quality minus price;
- cache levels: only those the prediction covers (the predictor predicts cache levels up to the hit);
- below the floor only under declared overload (cache-k0 always allowed); levels without replicas or
  not ready are skipped; no prices or no predictions: the redirection row decides;
- the ledger keeps every level within its share of the arrivals (beyond a small burst), and a new ledger
  starts with that burst; a ledger in debt on every level comes back, so placement follows the prompts'
  gains again rather than turns by share;
- the learned prices are fitted on recent prompts (`fit_offsets`): each level is the first choice of its share,
  the prompts that gain most; the router refits at a new policy and every REFIT_EVERY arrivals;
- a level's share counts only its ready replicas (a reload in progress), renormalized;
- a decision's p99 stays within 1 ms (CPU time of the call).
"""

from __future__ import annotations

import random
import time

import numpy as np
import pytest

from argus.policy.document import PolicyDocument
from argus.policy.assign import (BURST, LEAK, MIN_FIT, REFIT_EVERY, Ledger, assigned_level, fit_offsets, place,
                                 place_rows, ready_shares)

LEVELS = ["cache-k0", "cache-k10", "steps-25", "steps-20"]


def doc(prices=None, shares=None, overload=False, alloc=None):
    return PolicyDocument(version=1, service="s", quality_floor=90.0, latency_slo_s=30, image_size="64x64",
                          levels=LEVELS,
                          allocation=alloc or {"cache-k0": 1, "cache-k10": 1, "steps-25": 1, "steps-20": 5},
                          redirection={"steps-20": {"steps-20": 1.0}}, overload=overload,
                          prices=prices if prices is not None else
                          {"cache-k0": 20.0, "cache-k10": 12.0, "steps-25": 5.0, "steps-20": 0.0},
                          shares=shares or {lv: 0.25 for lv in LEVELS})


def test_best_quality_minus_price():
    p = doc()
    # 100-20=80, 96-12=84, 94-5=89, 92-0=92: steps-20
    assert place({"cache-k0": 100, "cache-k10": 96, "steps-25": 94, "steps-20": 92}, p, Ledger()) == "steps-20"
    # a step-sensitive prompt: 100-20=80 vs 96-12=84 vs 91-5=86 vs 90.5: steps-20... at 80 it falls below floor
    assert place({"cache-k0": 100, "cache-k10": 96, "steps-25": 91, "steps-20": 80}, p, Ledger()) == "steps-25"


def test_cache_levels_only_with_a_prediction():
    p = doc(prices={"cache-k0": 20.0, "cache-k10": 0.0, "steps-25": 5.0, "steps-20": 3.0})
    hit = {"cache-k0": 100, "cache-k10": 96, "steps-25": 94, "steps-20": 92}
    miss = {"cache-k0": 100, "steps-25": 94, "steps-20": 92}  # no hit deep enough: no cache-k10 prediction
    assert place(hit, p, Ledger()) == "cache-k10"
    assert place(miss, p, Ledger()) == "steps-25"


def test_floor_replicas_and_readiness():
    pred = {"cache-k0": 100, "cache-k10": 96, "steps-25": 88, "steps-20": 88}
    assert place(pred, doc(), Ledger()) == "cache-k10"  # 96-12 = 84 > 80; 88 is below the 90 % floor
    assert place(pred, doc(overload=True), Ledger()) == "steps-20"  # under overload: 88 - 0 beats 84
    no_k10 = doc(alloc={"cache-k0": 1, "cache-k10": 0, "steps-25": 1, "steps-20": 6})
    assert place(pred, no_k10, Ledger()) == "cache-k0"
    assert place(pred, doc(), Ledger(), available={"cache-k0", "steps-20"}) == "cache-k0"
    rng = random.Random(0)
    assert assigned_level("steps-20", pred, doc(prices={}), rng, Ledger()) == "steps-20"  # the row
    assert assigned_level("steps-20", {}, doc(), rng, Ledger()) == "steps-20"


def test_ledger_keeps_levels_within_their_shares():
    rng = np.random.default_rng(0)
    n = 4000
    scores = np.column_stack([rng.normal(10, 3, n), rng.normal(5, 3, n), np.zeros(n)])  # everyone wants level 0
    share = np.array([0.1, 0.3, 0.6])
    credit = np.zeros(3)
    got = place_rows(scores, share, credit, np.zeros(3))
    counts = np.bincount(got, minlength=3)
    # the credit's pull back to the burst lets a level everyone wants take LEAK x BURST more per arrival
    extra = BURST + LEAK * BURST * n
    assert 0.1 * n + BURST < counts[0] <= 0.1 * n + extra and counts[1] <= 0.3 * n + extra + 1
    # without the pull, the share holds to the burst
    got = place_rows(scores, share, np.zeros(3), np.zeros(3), leak=0.0)
    counts = np.bincount(got, minlength=3)
    assert counts[0] <= 0.1 * n + BURST and counts[1] <= 0.3 * n + BURST + 1
    # within its share, level 0 goes to the prompts that want it most
    took = scores[got == 0, 0] - scores[got == 0, 2]
    assert counts[0] >= 0.1 * n - BURST and np.mean(took) > np.mean(scores[:, 0])


def test_a_ledger_in_debt_comes_back_to_placing_by_gain():
    """Credit a level at its cap cannot take is lost, so after earlier plans (other shares, a level closed a
    while) the ledger can owe credit on every level. Then, with the prompts preferring each level by its share
    (the walk has no drift), the credits never come back: whenever level 0's crosses 0 while level 1's is below,
    level 0 takes the next prompt whatever it prefers, turns by share. The pull back to the burst repays the
    debt within a few hundred arrivals, and level 0's share goes to the prompts that gain most there."""
    rng = np.random.default_rng(5)
    n = 20000
    gain = rng.gamma(2.0, 4.0, n)
    cut = np.quantile(gain, 0.95)
    scores = np.column_stack([gain - cut, np.zeros(n)])  # at these prices the top 5 % prefer level 0
    share = np.array([0.05, 0.95])
    late = np.arange(n) >= 2000
    top = gain >= cut

    def precision(leak):  # of level 0's late placements, the share from the top 5 %
        j = place_rows(scores, share, np.array([-1.0, -1.0]), np.zeros(2), eta=0.0, leak=leak)
        return np.mean(top[late & (j == 0)]), np.mean(j[late] == 0)
    stuck, stuck_share = precision(0.0)
    pulled, pulled_share = precision(LEAK)
    assert stuck < 0.75 and pulled > 0.9  # (0.66 and 0.96 here)
    assert abs(stuck_share - 0.05) < 0.015 and abs(pulled_share - 0.05) < 0.015


def test_fitted_prices_give_each_level_its_share_of_first_choices():
    rng = np.random.default_rng(3)
    n = 600
    q = np.column_stack([np.full(n, 100.0), 100 - rng.gamma(1.5, 3.0, n), 100 - rng.gamma(2.0, 6.0, n)])
    scores = q - np.array([2.0, 1.0, 0.0])  # at the plan's prices nearly everyone prefers level 0
    share = np.array([0.1, 0.3, 0.6])
    o = fit_offsets(scores, share)
    first = np.bincount(np.argmax(scores - o, axis=1), minlength=3) / n
    assert np.allclose(first, share, atol=0.03)
    assert o.min() == 0.0 and o[0] > o[2]
    # level 0's share goes to the prompts that lose most at the cheapest level
    loss = 100 - q[:, 2]
    assert np.mean(loss[np.argmax(scores - o, axis=1) == 0]) > np.quantile(loss, 0.8)
    assert not fit_offsets(np.empty((0, 3)), share).any()


def test_the_router_refits_its_prices_at_a_new_policy():
    """A new plan raises level 0's price by 30 points: the ledger's prices are fitted again on the recent
    prompts before the next placement, so level 0 keeps going to the prompts that gain most there rather than
    to none until the one-arrival-at-a-time learning catches up."""
    rng = np.random.default_rng(4)
    preds = [{"cache-k0": 100.0, "steps-20": float(100 - g)} for g in rng.gamma(2.0, 5.0, 2 * REFIT_EVERY)]
    shares = {"cache-k0": 0.1, "steps-20": 0.9}

    def policy(version, k0_price):
        return PolicyDocument(version=version, service="s", quality_floor=0.0, latency_slo_s=30, image_size="64x64",
                              levels=["cache-k0", "steps-20"], allocation={"cache-k0": 1, "steps-20": 5},
                              overload=True, prices={"cache-k0": k0_price, "steps-20": 0.0}, shares=shares)
    ledger = Ledger()
    for p in preds[:REFIT_EVERY]:
        place(p, policy(1, 5.0), ledger)
    assert ledger.fitted_for == ("", 1) and len(ledger.recent) == REFIT_EVERY >= MIN_FIT
    before = dict(ledger.offset)
    got = [place(p, policy(2, 35.0), ledger) for p in preds[REFIT_EVERY:]]
    assert ledger.fitted_for == ("", 2) and ledger.offset != before
    loss = np.array([100 - p["steps-20"] for p in preds[REFIT_EVERY:]])
    at_k0 = np.array(got) == "cache-k0"
    assert 0.05 < at_k0.mean() < 0.15
    assert np.mean(loss[at_k0]) > np.quantile(loss, 0.75)


def test_a_new_ledger_starts_with_its_full_burst():
    """A fresh ledger (a router start, a level new to the plan) holds a full burst of credit per level: the first
    prompts that gain most at a level with a small share go there, not to their second choice as soon as the
    first has taken it (an empty start diverted them after every new level: -0.3 points at the paper's plateau
    and violations in 2x and 3x bursts, bench/RESULTS.md). Once it is spent the share holds again."""
    p = doc(prices={lv: 0.0 for lv in LEVELS},
            shares={"cache-k0": 0.05, "cache-k10": 0.05, "steps-25": 0.1, "steps-20": 0.8})
    ledger = Ledger()
    wants_k0 = {"cache-k0": 100.0, "steps-25": 94.0, "steps-20": 92.0}
    assert [place(wants_k0, p, ledger) for _ in range(int(BURST))] == ["cache-k0"] * int(BURST)
    assert [place(wants_k0, p, ledger) for _ in range(40)].count("cache-k0") <= 0.05 * 40 + 1


def test_a_share_goes_to_the_prompts_that_gain_most():
    """Everyone prefers level 0 at the plan's price; its 10 % share goes to the prompts that gain most there
    (the ledger's learned price), not to whichever came first."""
    rng = np.random.default_rng(2)
    n = 6000
    gain = rng.gamma(2.0, 4.0, n)
    scores = np.column_stack([gain, np.zeros(n)])  # level 0: its gain over level 1
    share = np.array([0.1, 0.9])
    top = gain >= np.quantile(gain, 0.9)

    def placed(eta):
        credit, offset = np.zeros(2), np.zeros(2)
        return place_rows(scores, share, credit, offset, eta=eta), offset
    first_come, _ = placed(0.0)
    learned, offset = placed(0.1)
    # first come, everyone wants level 0: the credit's pull lets it take LEAK x BURST more of the arrivals
    assert abs(np.mean(learned == 0) - 0.1) < 0.01 and 0.1 - 0.01 < np.mean(first_come == 0) < 0.1 + LEAK * BURST + 0.01
    late = np.arange(n) >= 1000  # once the price has settled

    def captured(j):  # the gain level 0 served, against the most its share could (the top decile's)
        return gain[late & (j == 0)].sum() / gain[late & top].sum()
    assert captured(first_come) < 0.45 and np.mean(top[first_come == 0]) < 0.2  # first come, any gain
    assert captured(learned) > 0.65 and np.mean(top[late & (learned == 0)]) > 0.5
    assert offset[0] == pytest.approx(np.quantile(gain, 0.9), rel=0.3) and offset[1] < 1.0


def test_decision_p99_within_1ms():
    p = doc()
    ledger = Ledger()
    rng = np.random.default_rng(1)
    preds = [{lv: float(q) for lv, q in zip(LEVELS, 100 - rng.gamma(2, 3, 4))} for _ in range(2000)]
    times = []
    for pred in preds:
        # CPU time of the decision itself: on a shared machine (load 10 on 2 cores here) wall time measures the
        # scheduler, not the code (its p99 was 20 ms while the mean CPU cost was a fraction of a millisecond)
        t = time.thread_time_ns()
        place(pred, p, ledger)
        times.append((time.thread_time_ns() - t) * 1e-9)
    assert np.percentile(times, 99) < 1e-3, np.percentile(times, 99)


def test_a_prompt_without_per_level_predictions_follows_the_redirection_row():
    # A router without a predictor plans every prompt as {cache-k0: 100}; placing that would pin every prompt to
    # full quality even in overload (the local burst run then served nothing at its cheap level).
    p = PolicyDocument(version=1, service="s", quality_floor=90.0, latency_slo_s=30, image_size="64x64",
                       levels=["cache-k0", "steps-5"], allocation={"cache-k0": 1, "steps-5": 1},
                       redirection={"cache-k0": {"cache-k0": 0.5, "steps-5": 0.5}}, overload=True,
                       prices={"cache-k0": 10.0, "steps-5": 0.0}, shares={"cache-k0": 0.5, "steps-5": 0.5})
    assert place({"cache-k0": 100.0}, p, Ledger()) is None
    rng, ledger = random.Random(0), Ledger()
    served = {assigned_level("cache-k0", {"cache-k0": 100.0}, p, rng, ledger) for _ in range(50)}
    assert served == {"cache-k0", "steps-5"}


def test_prompt_agnostic_policy_ignores_predictions():
    """Proteus-like (`agnostic_key`): every prompt keyed at that level, served from its redirection row,
    whatever its own predictions say (the same prompt under Argus's policy goes elsewhere)."""
    row = {"cache-k0": 0.25, "steps-25": 0.75}
    agnostic = doc(prices={}, shares={}).model_copy(update={"agnostic_key": "steps-20",
                                                            "redirection": {"steps-20": row}})
    predicted = {"cache-k0": 100, "cache-k10": 96, "steps-25": 94, "steps-20": 92}
    rng = random.Random(0)
    served = [assigned_level("cache-k10", predicted, agnostic, rng, Ledger()) for _ in range(2000)]
    assert set(served) == {"cache-k0", "steps-25"}
    assert abs(served.count("steps-25") / len(served) - 0.75) < 0.04
    assert assigned_level("cache-k10", predicted, doc(), random.Random(0), Ledger()) == "steps-20"


def test_agnostic_key_must_be_a_level():
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="agnostic_key"):
        PolicyDocument(**{**doc().model_dump(), "agnostic_key": "steps-7"})


def test_a_share_counts_only_the_ready_replicas():
    """The plan's shares count every replica it allocates; while 4 of 5 steps-20 replicas still load (a reload
    into a burst's level), the one ready takes a fifth of steps-20's share, and the other levels the rest."""
    p = doc(prices={lv: 0.0 for lv in LEVELS}, shares={"cache-k0": 0.1, "cache-k10": 0.1, "steps-25": 0.1, "steps-20": 0.7})
    assert ready_shares(p, None).tolist() == pytest.approx([0.1, 0.1, 0.1, 0.7])
    assert ready_shares(p, {"cache-k0": 1, "cache-k10": 1, "steps-25": 1, "steps-20": 5}).tolist() == \
        pytest.approx([0.1, 0.1, 0.1, 0.7])
    got = ready_shares(p, {"cache-k0": 1, "cache-k10": 1, "steps-25": 1, "steps-20": 1})
    assert got.tolist() == pytest.approx([0.1 / 0.44, 0.1 / 0.44, 0.1 / 0.44, 0.14 / 0.44])
    # placed: everyone prefers steps-20 at these predictions; with 1 of 5 ready it takes ~32 %, not 70 %
    ledger, pred = Ledger(), {"cache-k0": 91.0, "cache-k10": 91.0, "steps-25": 91.0, "steps-20": 95.0}
    ready = {"cache-k0": 1, "cache-k10": 1, "steps-25": 1, "steps-20": 1}
    placed = [place(pred, p, ledger, ready=ready) for _ in range(1000)]
    assert placed.count("steps-20") <= 0.32 * 1000 + BURST + 1
    assert [place(pred, p, Ledger()) for _ in range(1000)].count("steps-20") >= 0.7 * 1000 - 1
