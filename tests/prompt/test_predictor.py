"""Predictor: fitting reproduces known labels; level choice; artifacts and their errors.

Cases:
- ridge rows recover synthetic step-level labels (linear in the embedding) on held-out prompts,
  and the chosen level equals the label-optimal level for the floor
- cache lines recover q = a + b·s per K; calibrated thresholds sit where the line meets the target,
  non-decreasing in K; a K never reaching the target is left out (and so is every deeper K)
- choose: cheapest level at or above the floor; none → full; cache levels only up to the neighbour's K
- artifact round trip gives identical predictions; level costs from measured latency or steps
- mismatched encoder / model / steps / level set, corrupt JSON, wrong format or version, missing
  level coverage, non-finite weights: PredictorError naming the file
- decision time (embedding excluded) p99 ≤ 1 ms at 384 dimensions and 9 levels
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from argus.levels import DEFAULT_LEVELS, parse_levels
from argus.prompt.index import Neighbour, Thresholds
from argus.prompt.predictor import (PredictorError, fit_predictor, level_costs, load_predictor, save_predictor)

N = 50
LEVELS = ["cache-k0", "cache-k10", "cache-k20", "steps-25", "steps-35"]
COSTS = level_costs(parse_levels(LEVELS, N), N)


def synthetic(n=300, dim=16, seed=0):
    """Embeddings and labels: steps levels linear in the embedding, cache levels linear in similarity."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    w = rng.normal(size=dim)
    base = x @ w
    sim = rng.uniform(0.3, 1.0, size=n)
    q = {"cache-k0": np.full(n, 100.0),
         "steps-25": 90.0 + 3.0 * base,
         "steps-35": 94.0 + 3.0 * base,
         "cache-k10": 100.0 - 20.0 * (1 - sim),   # 86 at s=0.3 .. 100 at s=1
         "cache-k20": 100.0 - 40.0 * (1 - sim)}
    return x, q, sim


def fit(x, q, sim, **kw):
    return fit_predictor(encoder="enc", model="m", steps=N, levels=LEVELS, embeddings=x, quality=q,
                         similarity=sim, costs=COSTS, **kw)


def test_reproduces_synthetic_labels():
    x, q, sim = synthetic()
    tr, te = np.arange(240), np.arange(240, 300)
    pred = fit(x[tr], {k: v[tr] for k, v in q.items()}, sim[tr], alpha=1e-3)
    for i in te:
        p = pred.predict(x[i], None)
        assert p["steps-25"] == pytest.approx(q["steps-25"][i], abs=0.05)
        assert p["steps-35"] == pytest.approx(q["steps-35"][i], abs=0.05)
    floor = 92.0
    agree = 0
    for i in te:
        nb = Neighbour("k", "t", float(sim[i]), pred.thresholds.k_for(float(sim[i])))
        chosen = pred.decide(x[i], nb, floor).optimal_level
        safe = [lv for lv in LEVELS if q[lv][i] >= floor and (not lv.startswith("cache-k") or
                int(lv[7:]) <= nb.k)]
        best = min(safe, key=lambda lv: (COSTS[lv], LEVELS.index(lv)))
        agree += chosen == best
    assert agree >= 0.95 * len(te)


def test_cache_lines_and_calibrated_thresholds():
    x, q, sim = synthetic()
    pred = fit(x, q, sim, reuse_target=90.0)
    a10, b10 = pred.cache_lines["cache-k10"]
    a20, b20 = pred.cache_lines["cache-k20"]
    assert (a10, b10) == pytest.approx((80.0, 20.0), abs=1e-6)
    assert (a20, b20) == pytest.approx((60.0, 40.0), abs=1e-6)
    table = dict((k, s) for s, k in pred.thresholds.table)
    assert table[10] == pytest.approx(0.5, abs=1e-6)   # 80 + 20 s = 90
    assert table[20] == pytest.approx(0.75, abs=1e-6)  # 60 + 40 s = 90
    assert pred.thresholds.encoder == "enc"
    # K=20 tops out at 98%: a 99% target keeps K=10 (from s=0.95) and drops K=20.
    strict = fit(x, {**q, "cache-k20": q["cache-k20"] - 2.0}, sim, reuse_target=99.0)
    assert [k for _, k in strict.thresholds.table] == [10]
    assert strict.thresholds.table[0][0] == pytest.approx(0.95)
    never = fit(x, {**q, "cache-k10": np.full(len(sim), 50.0)}, sim, reuse_target=90.0)
    assert never.thresholds.table == ()


@pytest.mark.parametrize("predicted,floor,expected", [
    ({"cache-k0": 100, "steps-25": 91, "steps-35": 95, "cache-k20": 96}, 90, "steps-25"),
    ({"cache-k0": 100, "steps-25": 91, "steps-35": 95, "cache-k20": 96}, 92, "cache-k20"),
    ({"cache-k0": 100, "steps-25": 91, "steps-35": 95}, 92, "steps-35"),
    ({"cache-k0": 100, "steps-25": 91, "steps-35": 95}, 97, "cache-k0"),
    ({"cache-k0": 100, "steps-25": 80}, 99.5, "cache-k0"),
])
def test_choose_cheapest_above_floor(predicted, floor, expected):
    x, q, sim = synthetic()
    assert fit(x, q, sim).choose(predicted, floor) == expected


def test_cache_levels_only_up_to_neighbour_k():
    x, q, sim = synthetic()
    pred = fit(x, q, sim)
    assert set(pred.predict(x[0], None)) == {"cache-k0", "steps-25", "steps-35"}
    assert "cache-k20" not in pred.predict(x[0], Neighbour("k", "t", 0.99, 10))
    assert pred.predict(x[0], Neighbour("k", "t", 0.99, 20))["cache-k20"] == pytest.approx(99.6, abs=1e-3)


def test_artifact_round_trip(tmp_path):
    x, q, sim = synthetic()
    pred = fit(x, q, sim, meta={"note": "test"})
    path = tmp_path / "pred.json"
    save_predictor(pred, path)
    back = load_predictor(path, encoder="enc", model="m", steps=N, levels=list(reversed(LEVELS)))
    nb = Neighbour("k", "t", 0.9, 20)
    for i in range(10):
        a, b = pred.predict(x[i], nb), back.predict(x[i], nb)
        assert a.keys() == b.keys()
        assert all(a[k] == pytest.approx(b[k], abs=1e-4) for k in a)
    assert back.thresholds == pred.thresholds and back.meta == {"note": "test"}


def test_level_costs():
    levels = parse_levels(["cache-k0", "cache-k10", "steps-25"], N)
    assert level_costs(levels, N) == {"cache-k0": 1.0, "cache-k10": 0.8, "steps-25": 0.5}
    measured = level_costs(levels, N, {"cache-k0": 2.0, "cache-k10": 1.7, "steps-25": 1.1})
    assert measured == pytest.approx({"cache-k0": 1.0, "cache-k10": 0.85, "steps-25": 0.55})


@pytest.mark.parametrize("expect,message", [
    ({"encoder": "clip-text:x"}, "trained with encoder 'enc', but 'clip-text:x' is in use"),
    ({"model": "sdxl"}, "trained for model 'm', but the service runs 'sdxl'"),
    ({"steps": 30}, "trained for 50 steps, but the service runs 30"),
    ({"levels": ["cache-k0", "steps-25"]}, r"level set differs .*not served: \['cache-k10', 'cache-k20', 'steps-35'\]"),
    ({"levels": LEVELS + ["steps-20"]}, r"level set differs .*not trained: \[.steps-20.\]"),
])
def test_mismatched_artifact(tmp_path, expect, message):
    x, q, sim = synthetic()
    path = tmp_path / "pred.json"
    save_predictor(fit(x, q, sim), path)
    with pytest.raises(PredictorError, match=f"{path}: {message}"):
        load_predictor(path, **expect)


def _mutate(raw, how):
    if how == "format":
        raw["format"] = "something-else"
    elif how == "version":
        raw["version"] = 99
    elif how == "coverage":
        del raw["cache"]["cache-k20"]
    elif how == "nan":
        raw["ridge"]["b"][0] = float("nan")
    elif how == "shape":
        raw["ridge"]["w"][0] = raw["ridge"]["w"][0][:3]
    elif how == "level":
        raw["levels"].append("warp-9")
    return raw


@pytest.mark.parametrize("how,message", [
    ("format", "not an argus-level-predictor artifact"), ("version", "artifact version 99"),
    ("coverage", "do not cover exactly the levels"), ("nan", "non-finite weights"),
    ("shape", "malformed artifact"), ("level", "unknown level 'warp-9'"),
])
def test_corrupt_artifact(tmp_path, how, message):
    x, q, sim = synthetic()
    path = tmp_path / "pred.json"
    save_predictor(fit(x, q, sim), path)
    path.write_text(json.dumps(_mutate(json.loads(path.read_text()), how)))
    with pytest.raises(PredictorError, match=f"{path}: .*{message}"):
        load_predictor(path)


def test_truncated_and_missing_artifact(tmp_path):
    x, q, sim = synthetic()
    path = tmp_path / "pred.json"
    save_predictor(fit(x, q, sim), path)
    path.write_text(path.read_text()[:500])
    with pytest.raises(PredictorError, match=f"{path}: corrupt predictor artifact: not JSON"):
        load_predictor(path)
    with pytest.raises(PredictorError, match="not found"):
        load_predictor(tmp_path / "missing.json")


def test_too_few_labels():
    x, q, sim = synthetic(n=5)
    q["steps-25"][:] = np.nan
    q["steps-25"][0] = 90.0
    with pytest.raises(PredictorError, match="level 'steps-25': 1 labelled prompts, need at least 2"):
        fit(x, q, sim)


def test_decision_p99_under_1ms():
    rng = np.random.default_rng(1)
    n, dim = 400, 384
    x = rng.normal(size=(n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    levels = list(DEFAULT_LEVELS)
    q = {lv: 90 + rng.normal(size=n) for lv in levels}
    sim = rng.uniform(0.5, 1.0, size=n)
    pred = fit_predictor(encoder="enc", model="m", steps=N, levels=levels, embeddings=x, quality=q,
                         similarity=sim, costs=level_costs(parse_levels(levels, N), N))
    queries = x.astype(np.float32)
    nbs = [Neighbour("k", "t", float(s), 25) for s in sim]
    times = []
    for _ in range(3):
        for i in range(n):
            t0 = time.perf_counter()
            pred.decide(queries[i], nbs[i], 92.0)
            times.append(time.perf_counter() - t0)
    assert np.percentile(times, 99) < 1e-3
