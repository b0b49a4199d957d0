"""The measured prompt population (argus.sim.measured) on synthetic quality profiles with known labels.

Cases:
- without a predictor: every drawn prompt is a profiled one and carries its measured qualities; the
  router sees the truth (or the truth plus noise); optional noise leaves the qualities alone
- with a predictor `argus train` fitted on the same profile: only its held-out prompts are simulated, their
  predictions are those of the train-split fit `argus train` evaluated, the planner knows the training
  prompts; with too few held-out prompts everything is simulated and the notes say so
- with a predictor fitted on another profile: every prompt simulated, predicted by the artifact itself
- without per-prompt knowledge: predictions are level means, qualities unchanged
- the engine runs on it: Clipper-HT serves every request at its level's measured quality
- errors name the problem: a missing or corrupt profile, a predictor of another model, a level not profiled
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from argus.policy.profile import LevelProfile, load_default_profile
from argus.prompt.predictor import save_predictor
from argus.prompt.profile_data import PromptRecord, header_line
from argus.prompt.training import merge_profiles, split, train
from argus.prompt.profile_data import read_profile
from argus.sim.engine import SimConfig, simulate
from argus.sim.measured import EmpiricalPromptModel, measured_model, work_profile
from argus.sim.policies import Service, make_policy
from argus.sim.prompts import PromptModelError
from argus.sim.trace import Workload, flat, poisson

from tests.support.embedders import DIM, AxisEmbedder

LEVELS = ["cache-k0", "cache-k10", "steps-25"]


def write_profile(path, n, start=0, model="m", tag="p", texts=None):
    """A complete quality profile: steps-25 quality linear in the embedding (unique per prompt unless `texts`
    repeats them: then prompt i has text i % texts and seed i), cache-k10 in the neighbour's similarity."""
    prompts = [f"{tag}-{start + (i % texts if texts else i)}" for i in range(n)]
    x = AxisEmbedder().encode(prompts).astype(np.float64)
    w = np.random.default_rng(99).normal(size=DIM)
    sim = np.random.default_rng(start + 7).uniform(0.2, 1.0, n)
    head = header_line(model=model, steps=50, levels=LEVELS, encoder="axis", scorer="exact:world",
                       score_kind="exact", height=64, width=64, seed=0, prompts_sha256="x", n_prompts=n,
                       batch_sizes=[1], device="cpu")
    lines = [json.dumps(head)]
    for i, p in enumerate(prompts):
        q = {"cache-k0": 100.0, "cache-k10": float(min(100.0, 70.0 + 30.0 * sim[i])),
             "steps-25": float(min(100.0, 92.0 + 4.0 * (x[i] @ w)))}
        rec = PromptRecord(i=i, prompt=p, seed=i, neighbour=(i + 1) % n, similarity=float(sim[i]),
                           scores={k: v / 2 for k, v in q.items()}, quality=q)
        lines.append(json.dumps(rec.to_dict()))
    for j, lv in enumerate(LEVELS):
        lines.append(json.dumps({"type": "latency", "level": lv, "batch_size": 1, "seconds": 1.0 - 0.2 * j,
                                 "repeats": 1}))
    path.write_text("\n".join(lines) + "\n")
    return path


def trained(tmp_path, profile, name="pred.json"):
    """`argus train`'s artifact for `profile` (holdout 0.25, seed 0) and the train-split predictor it evaluated."""
    ds = merge_profiles([(profile, read_profile(profile))])
    final, _, part = train(ds, AxisEmbedder(), holdout=0.25, seed=0, alpha=1e-3, reuse_target=80.0,
                           sources=[str(profile)])
    out = tmp_path / name
    save_predictor(final, out)
    return out, ds, part


def levels_of(m: EmpiricalPromptModel) -> tuple[LevelProfile, ...]:
    return work_profile(m, load_default_profile()).levels


def rows(m: EmpiricalPromptModel) -> dict[float, np.ndarray]:
    """steps-25 quality (unique per prompt) -> the prompt's measured row, over the simulated population."""
    return {float(q[2]): q for q in m.simulated.quality}


def test_without_predictor_draws_profiled_prompts_with_their_qualities(tmp_path):
    path = write_profile(tmp_path / "a.jsonl", 40)
    m = measured_model(path)
    prof = read_profile(path)
    measured = {r.quality["steps-25"]: [r.quality[lv] for lv in LEVELS] for r in prof.prompts.values()}
    p = m.draw(levels_of(m), 90.0, 2000, np.random.default_rng(0))
    assert p.quality.shape == (2000, 3)
    for q in p.quality:
        assert list(q) == measured[float(q[2])]
    assert len({float(q[2]) for q in p.quality}) == 40  # with replacement, every prompt turns up
    assert np.array_equal(p.predicted, p.quality) and set(p.kmax) == {10} and m.hits == {10: 1.0}
    noisy = measured_model(path, noise_pp=5.0).draw(levels_of(m), 90.0, 2000, np.random.default_rng(0))
    assert np.array_equal(noisy.quality, p.quality)
    assert 4.0 < np.std(noisy.predicted - noisy.quality) < 6.0
    assert "an oracle" in " ".join(m.notes)


def test_optimal_level_is_the_cheapest_predicted_above_the_floor(tmp_path):
    m = measured_model(write_profile(tmp_path / "a.jsonl", 40))
    levels = levels_of(m)  # costs: steps-25 cheapest, then cache-k10 (40 steps), then cache-k0
    p = m.draw(levels, 95.0, 500, np.random.default_rng(1))
    j = {lv: LEVELS.index(lv) for lv in LEVELS}
    want = np.where(p.quality[:, j["steps-25"]] >= 95.0, j["steps-25"],
                    np.where(p.quality[:, j["cache-k10"]] >= 95.0, j["cache-k10"], j["cache-k0"]))
    assert np.array_equal(p.optimal, want)


def test_predictor_of_the_same_profile_simulates_its_held_out_prompts(tmp_path):
    path = write_profile(tmp_path / "a.jsonl", 120)
    pred_path, ds, part = trained(tmp_path, path)
    tr, te = split(120, 0.25, 0)
    m = measured_model(path, pred_path, embedder=AxisEmbedder())
    assert set(m.simulated.prompts) == {ds.prompts[i] for i in te} and len(m.simulated) == 30
    assert set(m.planning.prompts) == {ds.prompts[i] for i in tr}
    x = AxisEmbedder().encode(list(m.simulated.prompts))
    from argus.prompt.index import Neighbour
    prof = read_profile(path)
    sim = {r.prompt: r.similarity for r in prof.prompts.values()}
    for i, text in enumerate(m.simulated.prompts):  # the train-split fit's predictions, not the final one's
        k = part.thresholds.k_for(sim[text])
        want = part.predict(x[i], Neighbour("n", "", sim[text], k))
        got = dict(zip(LEVELS, m.simulated.predicted[i]))
        assert m.simulated.kmax[i] == k
        for lv in LEVELS:
            assert got[lv] == pytest.approx(want[lv], abs=1e-4) if lv in want else np.isnan(got[lv])
    assert "not fitted on" in " ".join(m.notes)
    p = m.draw(levels_of(m), 90.0, 1000, np.random.default_rng(2))
    held = rows(m)
    assert all(float(q[2]) in held for q in p.quality)  # only held-out prompts are drawn
    small = measured_model(path, pred_path, embedder=AxisEmbedder(), min_holdout=31)
    assert len(small.simulated) == 120 and "too small" in " ".join(small.notes)


def test_held_out_prompts_are_records_not_texts(tmp_path):
    path = write_profile(tmp_path / "a.jsonl", 120, texts=40)  # every text three times, each with its own seed
    pred_path, _, _ = trained(tmp_path, path)
    m = measured_model(path, pred_path, embedder=AxisEmbedder())
    assert len(m.simulated) == 30  # the 30 records `argus train` held out, though their texts were trained on
    assert "of them repeat the text of a fitted prompt" in " ".join(m.notes)


def test_predictor_of_another_profile_predicts_every_prompt(tmp_path):
    other = write_profile(tmp_path / "train.jsonl", 60, start=1000)
    pred_path, _, _ = trained(tmp_path, other)
    path = write_profile(tmp_path / "a.jsonl", 40)
    m = measured_model(path, pred_path, embedder=AxisEmbedder())
    assert len(m.simulated) == 40 and len(m.planning) == 60
    from argus.prompt.predictor import load_predictor
    from argus.prompt.index import Neighbour
    pred = load_predictor(pred_path)
    x = AxisEmbedder().encode(list(m.simulated.prompts))
    prof = {r.prompt: r for r in read_profile(path).prompts.values()}
    for i, text in enumerate(m.simulated.prompts):
        s = prof[text].similarity
        want = pred.predict(x[i], Neighbour("n", "", s, pred.thresholds.k_for(s)))
        assert m.simulated.predicted[i, 2] == pytest.approx(want["steps-25"], abs=1e-4)
        assert m.simulated.quality[i, 2] == prof[text].quality["steps-25"]


def test_without_per_prompt_knowledge_predicts_level_means(tmp_path):
    path = write_profile(tmp_path / "a.jsonl", 120)
    pred_path, _, _ = trained(tmp_path, path)
    m = measured_model(path, pred_path, embedder=AxisEmbedder())
    flat_m = m.without_per_prompt()
    assert np.array_equal(flat_m.simulated.quality, m.simulated.quality)
    pr = flat_m.simulated.predicted
    assert np.nanstd(pr[:, 2]) == 0.0 and pr[0, 2] == pytest.approx(m.planning.quality[:, 2].mean())
    assert np.array_equal(np.isnan(pr), np.isnan(m.simulated.predicted))  # the same cache hits
    exact = m.with_true_predictions().simulated
    ok = ~np.isnan(m.simulated.predicted)
    assert np.array_equal(exact.predicted[ok], m.simulated.quality[ok]) and np.isnan(exact.predicted[~ok]).all()


def test_engine_serves_measured_qualities(tmp_path):
    m = measured_model(write_profile(tmp_path / "a.jsonl", 40))
    levels = levels_of(m)
    svc = Service(gpus=2, levels=levels, quality_floor=95.0, latency_slo=30.0)
    wl = Workload(poisson(5000, seed=3), flat(0.5, 900.0))
    r = simulate(wl, svc, make_policy("clipper-ht", svc, m), m, SimConfig(seed=0))
    s = r.summary
    mean_ht = m.simulated.quality[:, 2].mean()  # Clipper-HT: everything at steps-25, the fastest level
    assert s.served_share["steps-25"] == 1.0 and s.completed > 300
    assert s.quality == pytest.approx(mean_ht, abs=0.6)
    assert s.below_floor == pytest.approx((m.simulated.quality[:, 2] < 95.0).mean(), abs=0.06)
    ha = simulate(wl, svc, make_policy("clipper-ha", svc, m), m, SimConfig(seed=0)).summary
    assert ha.quality == 100.0 and ha.below_floor == 0.0


def test_level_profiles_carry_measured_qualities(tmp_path):
    from argus.sim.measured import measured_levels_profile

    m = measured_model(write_profile(tmp_path / "a.jsonl", 40))
    sdxl = load_default_profile()
    means = m.simulated.quality.mean(axis=0)
    work = {lp.level: lp for lp in work_profile(m, sdxl).levels}  # cost by steps run: 50, 40, 25 of 50
    assert work["cache-k0"].peak_throughput == sdxl.get("cache-k0").peak_throughput
    assert work["steps-25"].peak_throughput == pytest.approx(2 * work["cache-k0"].peak_throughput)
    assert work["cache-k10"].service_time == pytest.approx(0.8 * work["cache-k0"].service_time)
    assert [work[lv].quality for lv in LEVELS] == pytest.approx(list(means), abs=1e-3)
    doc = {"model": "m", "levels": [{"level": lv, "throughput": {"1": 0.5 * (j + 1)}, "service_time": 2.0 / (j + 1),
                                     "quality": 99.0, "model": "m", "load_time": 5.0} for j, lv in enumerate(LEVELS)]}
    (tmp_path / "a.levels.json").write_text(json.dumps(doc))
    lv = {lp.level: lp for lp in measured_levels_profile(m, tmp_path / "a.levels.json", sdxl).levels}
    assert lv["cache-k0"].peak_throughput == pytest.approx(sdxl.get("cache-k0").peak_throughput)
    assert lv["steps-25"].peak_throughput == pytest.approx(3 * lv["cache-k0"].peak_throughput)  # measured ratio
    assert lv["steps-25"].quality == pytest.approx(means[2], abs=1e-3) and lv["steps-25"].load_time == 5.0
    (tmp_path / "b.levels.json").write_text(json.dumps({**doc, "model": "other"}))
    with pytest.raises(PromptModelError, match="levels of model 'other'"):
        measured_levels_profile(m, tmp_path / "b.levels.json", sdxl)


def test_argus_simulate_runs_a_measured_population(tmp_path, capsys):
    from argus.cli import main

    path = write_profile(tmp_path / "a.jsonl", 40)
    rc = main(["simulate", "--prompts", str(path), "--gpus", "1", "--shape", "flat", "--base-qpm", "20",
               "--duration-min", "3", "--policy", "clipper-ht", "--quality-floor", "95"])
    out = capsys.readouterr().out
    assert rc == 0 and "measured population" in out and "| clipper-ht |" in out
    assert main(["simulate", "--prompts", str(tmp_path / "none.jsonl"), "--shape", "flat"]) == 2
    assert "none.jsonl: profile not found" in capsys.readouterr().err


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(PromptModelError, match="nope.jsonl: profile not found"):
        measured_model(tmp_path / "nope.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "prompt"}\n')
    with pytest.raises(PromptModelError, match="not an argus-quality-profile file"):
        measured_model(bad)
    other = write_profile(tmp_path / "other.jsonl", 60, model="another-model")
    pred_path, _, _ = trained(tmp_path, other)
    path = write_profile(tmp_path / "a.jsonl", 40)
    with pytest.raises(PromptModelError, match=r"trained for model='another-model', but .*a\.jsonl profiles model='m'"):
        measured_model(path, pred_path, embedder=AxisEmbedder())
    m = measured_model(path)
    sdxl = load_default_profile().levels
    with pytest.raises(PromptModelError, match=r"levels: \['cache-k5'"):
        m.draw(sdxl, 90.0, 10, np.random.default_rng(0))
    with pytest.raises(PromptModelError, match="noise_pp"):
        measured_model(path, noise_pp=-1.0)
