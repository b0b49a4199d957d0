"""Per-class planning (issue 17): classes valued by their own expected quality at each level.

Cases:
- under overload the plan degrades the class that loses least, not an arbitrary one (level means tie),
  and sheds alike from every class;
- a class with a deep-enough cache hit may use that cache level even when its optimal level is steps-*;
- the safe evaluator (policy.fixed) gives HiGHS's value for class snapshots (exact LP value,
  combinatorial feasibility), on random allocations;
- the safe search with classes repairs a rounded allocation that misses by one replica (combinatorial
  feasibility, LP cuts): it finds a safe plan within its short budget where rounding alone found none;
- prices: every class the plan's assignment splits is indifferent between the levels it uses;
- classes round-trip through JSON and bad classes name the field;
- argus.policy.classes keys prompts by hit depth and step sensitivity and averages their qualities.
"""

from __future__ import annotations

import numpy as np
import pytest

from argus.policy import classes as prompt_classes
from argus.policy.solver import milp
from argus.policy.optimizer import solve
from argus.policy.snapshot import PromptClass, Snapshot, SnapshotError
from bench.synthetic import random_classes, random_snapshot
from tests.support.snapshots import SDXL, snap

LEVELS = ["cache-k0", "cache-k10", "steps-25", "steps-20"]


def cls(name, share, q20, optimal="cache-k0", hit=0, **more):
    quality = {"cache-k0": 100.0, "steps-25": 100 - (100 - q20) * 0.8, "steps-20": q20, **more}
    return PromptClass(name=name, share=share, optimal=optimal, hit=hit, quality=quality)


def test_overload_degrades_the_class_that_loses_least():
    two = ["cache-k0", "steps-20"]

    def c2(name, q20):
        return PromptClass(name=name, share=0.5, optimal="cache-k0", hit=0,
                           quality={"cache-k0": 100.0, "steps-20": q20})
    robust, fragile = c2("robust", 95.0), c2("fragile", 70.0)
    s = snap(gpus=2, levels=two, demand=1.0, h={}, classes=(robust, fragile), min_full_quality=1)
    d = solve(s)
    assert d.replicas == {"cache-k0": 1, "steps-20": 1}
    k0 = SDXL.get("cache-k0").peak_throughput
    # fragile prompts fill cache-k0, the rest of them and all robust ones go to steps-20
    expected = k0 * 100 + (0.5 - k0) * 70 + 0.5 * 95
    assert d.quality == pytest.approx(expected, abs=1e-6)
    swapped = solve(s.with_(classes=(c2("robust", 70.0), c2("fragile", 95.0))))
    assert swapped.quality == pytest.approx(expected, abs=1e-6)  # the labels do not matter, the qualities do


def test_overload_sheds_alike_from_every_class():
    """Past what every GPU serves at the fastest level, the plan sheds the same fraction of every class: the
    data plane drops late requests whatever their prompt, so a plan that shed the class cheapest to lose (the
    fragile one) would count on prompts that do arrive never being served, and report their quality as if
    so (bench/RESULTS.md, "The router's ledger")."""
    two = ["cache-k0", "steps-20"]

    def c2(name, q20):
        return PromptClass(name=name, share=0.5, optimal="cache-k0", hit=0,
                           quality={"cache-k0": 100.0, "steps-20": q20})
    s = snap(gpus=2, levels=two, demand=5.0, h={}, classes=(c2("robust", 95.0), c2("fragile", 70.0)),
             min_full_quality=0)
    d = solve(s)
    assert d.overload and d.replicas == {"cache-k0": 0, "steps-20": 2}
    t20 = SDXL.get("steps-20").peak_throughput
    assert d.throughput == pytest.approx(2 * t20, rel=1e-6)
    assert d.quality == pytest.approx((95.0 + 70.0) / 2, abs=1e-6)  # half of each served, not the robust first


def test_cache_level_open_to_a_hit_whatever_its_optimal_level():
    hit = cls("hit", 1.0, 80.0, optimal="steps-20", hit=10, **{"cache-k10": 95.81})
    f = milp.build(snap(gpus=4, levels=LEVELS, demand=1.0, h={}, classes=(hit,)), overload=False)
    assert (0, LEVELS.index("cache-k10"), True) in f.pairs
    miss = cls("miss", 1.0, 80.0, optimal="steps-20", hit=5, **{"cache-k10": 95.81})
    f = milp.build(snap(gpus=4, levels=LEVELS, demand=1.0, h={}, classes=(miss,)), overload=False)
    assert all(j != LEVELS.index("cache-k10") for _, j, _ in f.pairs)  # hit 5 < K=10: never offered


def _random_classes(rng: np.random.Generator, m: int) -> tuple[PromptClass, ...]:
    shares = rng.dirichlet(np.ones(m))
    out = []
    for i in range(m):
        hit = int(rng.choice([0, 5, 10, 25]))
        q = {lp.level: float(rng.uniform(75, 99)) for lp in SDXL.levels}
        q["cache-k0"] = 100.0
        out.append(PromptClass(name=f"c{i}", share=float(shares[i]), optimal=str(rng.choice(list(q))), hit=hit,
                               quality=q))
    return tuple(out)


@pytest.mark.parametrize("seed", range(6))
def test_safe_evaluator_matches_highs_for_classes(seed):
    rng = np.random.default_rng(seed)
    s = snap(gpus=8, demand=float(rng.uniform(1.0, 3.0)), h={}, classes=_random_classes(rng, 5),
             current={"cache-k0": 4, "steps-20": 4}, queues={"steps-20": float(rng.uniform(0, 60))})
    f = milp.build(s, overload=False)
    xs = np.array([rng.multinomial(8, np.ones(f.n) / f.n) for _ in range(40)], dtype=float)
    xs[:, 0] = np.maximum(xs[:, 0], 1)
    got = f.evaluator().values(xs)
    for x, v in zip(xs, got):
        ref = milp.run(f, fixed_x=x)
        if ref is None or x.sum() > s.gpus:
            assert v == -np.inf
        else:
            assert v == pytest.approx(ref.objective, abs=1e-6)


@pytest.mark.parametrize("index", [44, 84])
def test_safe_search_with_classes_repairs_its_rounding(index):
    # bench_optimizer's 64 x 12 instances with 24 classes (seed 1) whose short safe search found no integer
    # point when a rounded allocation was one replica short: HiGHS's MIP has a safe one.
    import random
    rng, nrng = random.Random(1), np.random.default_rng(1)
    snaps = [random_classes(random_snapshot(rng, 64, 12), 24, nrng) for _ in range(index + 1)]
    f = milp.build(snaps[index], overload=False)
    found = milp.run(f, give_up=milp.GIVE_UP)
    assert found is not None
    assert f.evaluator().feasible(found.x[None, :])[0]
    ref = milp.run_highs_milp(f)
    assert found.objective >= ref.objective - 2 * f.tolerance


def test_prices_make_split_classes_indifferent():
    rng = np.random.default_rng(3)
    s = snap(gpus=8, demand=4.0, h={}, classes=_random_classes(rng, 6))
    d = solve(s)
    assert d.prices and set(d.shares) <= set(d.replicas)
    assert sum(d.shares.values()) == pytest.approx(1.0, abs=1e-5)
    # a class whose best levels at these prices tie is the one the assignment splits; no class prefers an
    # unused level by more than rounding
    used = [lv for lv, n in d.replicas.items() if n > 0]
    for c in s.classes:
        vals = {lv: c.quality[lv] - d.prices[lv] for lv in used if lv in c.quality
                and (not lv.startswith("cache-k") or lv == "cache-k0" or int(lv[7:]) <= c.hit)}
        assert max(vals.values()) >= max(c.quality["cache-k0"] - d.prices["cache-k0"], -1e9)


def test_classes_round_trip_and_validation():
    s = snap(levels=LEVELS, demand=1.0, h={}, classes=(cls("a", 0.4, 90.0), cls("b", 0.6, 80.0)), quality_weight=2.0)
    assert Snapshot.from_dict(s.to_dict()) == s
    with pytest.raises(SnapshotError, match=r"classes: shares sum"):
        snap(levels=LEVELS, demand=1.0, h={}, classes=(cls("a", 0.4, 90.0),))
    with pytest.raises(SnapshotError, match=r"classes\[0\].optimal"):
        snap(levels=LEVELS, demand=1.0, h={}, classes=(cls("a", 1.0, 90.0, optimal="cache-k25"),))
    with pytest.raises(SnapshotError, match=r"classes\[1\].name"):
        snap(levels=LEVELS, demand=1.0, h={}, classes=(cls("a", 0.5, 90.0), cls("a", 0.5, 90.0)))
    with pytest.raises(SnapshotError, match="quality_weight"):
        snap(levels=LEVELS, demand=1.0, h={"cache-k0": 1.0}, quality_weight=0.0)


def test_class_table_keys_by_hit_and_sensitivity():
    levels = SDXL.levels
    names = [lp.level for lp in levels]
    q = np.full((4, len(levels)), 95.0)
    j = names.index("steps-20")
    q[:, j] = [99.0, 76.0, 99.0, 76.0]  # loss 1 and 24 points: z = 1/12 and 2
    hits = np.array([0, 0, 10, 10])
    keys = prompt_classes.keys(hits, q, levels)
    assert keys[0] != keys[1] and keys[0][:3] == "k0-" and keys[2].startswith("k10-")
    table = prompt_classes.table(hits, q, q, np.array([j, 0, j, 0]), levels)
    c = table[keys[1]]
    assert c.optimal == "cache-k0" and c.quality["steps-20"] == 76.0 and c.share == 0.25
    assert "cache-k10" not in c.quality and "cache-k10" in table[keys[3]].quality


def test_shares_follow_capacity_even_when_every_queue_needs_it_all():
    """In a burst every level's queue may need all its capacity to drain within the SLO. The shares (the
    router's ceilings on arrivals) still follow the allocation's capacity: with none left net of the drain,
    the router would send every prompt to its favourite (slowest) level."""
    rng = np.random.default_rng(5)
    s = snap(gpus=8, demand=6.0, h={}, classes=_random_classes(rng, 4), current={"cache-k0": 1, "steps-20": 7},
             queues={"cache-k0": 40.0, "steps-20": 400.0})
    d = solve(s)
    cap = {lv: n * SDXL.get(lv).peak_throughput for lv, n in d.replicas.items() if n > 0}
    assert d.shares == pytest.approx({lv: c / sum(cap.values()) for lv, c in cap.items()}, abs=1e-5)


def test_shares_sum_to_one_with_room_to_spare():
    """The shares scale with whatever arrives: they sum to 1 even when the planned demand leaves room (ceilings
    of capacity over planned demand overfilled the slow levels in bursts the plan had not caught up with)."""
    rng = np.random.default_rng(6)
    classes = _random_classes(rng, 4)
    light = solve(snap(gpus=8, demand=1.0, h={}, classes=classes))
    assert sum(light.shares.values()) == pytest.approx(1.0, abs=1e-5)
    heavy = solve(snap(gpus=8, demand=20.0, h={}, classes=classes))
    assert heavy.overload and sum(heavy.shares.values()) == pytest.approx(1.0, abs=1e-5)
    assert heavy.degrade_price == 0.0  # per class: the values are the classes' own qualities


def test_a_level_the_floors_need_is_filled_under_an_unclassed_overload():
    """The local system's burst: planned per optimal level, every prompt keyed at full quality, 2 GPUs, more
    demand than full quality serves but less than the cheap level does. The plan prices cache-k0 with the
    overload model's degrade price; the router charges a prompt that price at a level below its floor
    (the document's degrade_price), so cache-k0's share goes to the prompts below their floor at steps-20
    (without it, every prompt preferred steps-20 and cache-k0's share went first come)."""
    from argus.policy.assign import place_rows, score_rows
    from argus.policy.decision import to_policy_document
    levels = ["cache-k0", "steps-20"]
    d = solve(snap(gpus=2, levels=levels, demand=0.9, h={"cache-k0": 1.0}, min_full_quality=1))
    assert d.overload and d.replicas == {"cache-k0": 1, "steps-20": 1}
    assert d.degrade_price == pytest.approx(50.0)
    doc = to_policy_document(d, service="s", version=1, quality_floor=90.0, latency_slo_s=30.0,
                             image_size="64x64", generated_at=0.0)
    rng = np.random.default_rng(8)
    pred = np.column_stack([np.full(4000, 100.0), rng.uniform(80.0, 98.0, 4000)])
    got = place_rows(score_rows(pred, doc), np.array([d.shares[lv] for lv in levels]), np.zeros(2), np.zeros(2))
    at_k0 = np.mean(got == 0)
    k0 = SDXL.get("cache-k0").peak_throughput
    assert 0.85 * d.shares["cache-k0"] <= at_k0 <= d.shares["cache-k0"] + 0.01, (at_k0, d.prices)
    assert d.shares["cache-k0"] == pytest.approx(k0 / (k0 + SDXL.get("steps-20").peak_throughput), abs=1e-5)
    assert np.mean(pred[got == 0, 1] < 90.0) > 0.75  # and it goes to those below their floor at steps-20 (56 % are)
