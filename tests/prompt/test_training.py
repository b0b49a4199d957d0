"""Training and held-out evaluation (argus.prompt.training) on a synthetic profile with known labels.

Cases:
- labels linear in the embedding (steps levels) and in similarity (cache levels): the trained predictor's
  choices on held-out prompts break the floor for (almost) no prompt and save what the oracle saves
- evaluate counts a violation when the chosen level's measured quality is under the floor, and costs it
- split: deterministic by seed, disjoint, both parts non-empty; too few prompts / bad fraction are errors
- an embedder other than the profile's is refused; merging two compatible profiles concatenates them
- nearest_neighbours (chunked) equals the brute-force answer
"""

from __future__ import annotations

import numpy as np
import pytest

from argus.prompt.index import Thresholds
from argus.prompt.predictor import Predictor, PredictorError
from argus.prompt.profile_data import PromptRecord, QualityProfile, header_line
from argus.prompt.profiling import nearest_neighbours
from argus.prompt.training import Dataset, evaluate, merge_profiles, report, split, train

from tests.support.embedders import DIM, AxisEmbedder

LEVELS = ["cache-k0", "cache-k10", "steps-25"]


def synthetic_dataset(n=200):
    emb = AxisEmbedder()
    prompts = [f"p{i}" for i in range(n)]
    x = emb.encode(prompts).astype(np.float64)
    w = np.random.default_rng(99).normal(size=DIM)
    sim = np.random.default_rng(7).uniform(0.2, 1.0, n)
    quality = {"cache-k0": np.full(n, 100.0), "steps-25": 92.0 + 4.0 * (x @ w), "cache-k10": 70.0 + 30.0 * sim}
    header = {"model": "m", "steps": 50, "levels": LEVELS, "encoder": "axis", "score_kind": "clipscore"}
    return emb, Dataset(header, prompts, quality, sim, {"cache-k0": 1.0, "cache-k10": 0.8, "steps-25": 0.5})


def test_train_reproduces_labels_on_held_out():
    emb, ds = synthetic_dataset()
    final, evals, part = train(ds, emb, holdout=0.25, seed=1, alpha=1e-4, reuse_target=80.0, floors=(88.0, 92.0, 96.0))
    assert final.meta["n_prompts"] == 200 and len(final.meta["eval"]) == 3
    for e in evals:
        assert sum(e.chosen.values()) == 50
        assert e.violation_rate <= 0.02
        assert e.compute_saved == pytest.approx(e.oracle_saved, abs=0.02)
    assert evals[0].compute_saved > evals[-1].compute_saved  # a higher floor saves less
    text = report(evals, 150, 50)
    assert "held-out evaluation (50 prompts; trained on 150)" in text and "88.0" in text


def test_evaluate_counts_violations_and_cost():
    pred = Predictor(encoder="axis", dim=DIM, model="m", steps=50, levels=tuple(LEVELS),
                     thresholds=Thresholds("axis", ((0.5, 10),)), ridge_levels=("steps-25",),
                     ridge_w=np.zeros((1, DIM)), ridge_b=np.array([95.0]), cache_lines={"cache-k10": (0.0, 0.0)},
                     costs={"cache-k0": 1.0, "cache-k10": 0.8, "steps-25": 0.5})
    x = np.zeros((4, DIM), np.float32)
    measured = {"cache-k0": np.full(4, 100.0), "cache-k10": np.full(4, 99.0),
                "steps-25": np.array([96.0, 91.0, 89.0, np.nan])}
    e = evaluate(pred, x, measured, np.full(4, 0.9), floor=90.0)
    # Predicted 95 for steps-25 everywhere: prompt 2 measured 89 (violation); prompt 3 unmeasured -> full.
    assert e.violation_rate == pytest.approx(0.25)
    assert e.chosen == {"steps-25": 3, "cache-k0": 1}
    assert e.compute_saved == pytest.approx(1 - (0.5 * 3 + 1.0) / 4)
    assert e.oracle_saved == pytest.approx(1 - (0.5 + 0.5 + 0.8 + 0.8) / 4)


def test_split():
    tr, te = split(10, 0.3, seed=4)
    assert len(te) == 3 and len(tr) == 7 and not set(tr) & set(te)
    assert np.array_equal(split(10, 0.3, seed=4)[1], te)
    with pytest.raises(PredictorError, match="need at least 3"):
        split(2, 0.5, 0)
    with pytest.raises(PredictorError, match=r"must be in \(0, 1\)"):
        split(10, 1.0, 0)


def test_wrong_embedder_and_merge(tmp_path):
    _, ds = synthetic_dataset(10)

    class Other(AxisEmbedder):
        name = "other"

    with pytest.raises(PredictorError, match="profile was embedded with 'axis', the encoder here is 'other'"):
        train(ds, Other())

    def prof(n, offset):
        h = header_line(model="m", steps=50, levels=LEVELS, encoder="axis", scorer="s", score_kind="clipscore",
                        height=32, width=32, seed=0, prompts_sha256="x", n_prompts=n, batch_sizes=[1])
        q = QualityProfile(h)
        for i in range(n):
            q.prompts[i] = PromptRecord(i, f"p{i + offset}", i, (i + 1) % n, 0.5, {}, {lv: 100.0 for lv in LEVELS})
        q.latency = {(lv, 1): 1.0 for lv in LEVELS}
        return q

    merged = merge_profiles([(tmp_path / "a", prof(3, 0)), (tmp_path / "b", prof(2, 100))])
    assert merged.prompts == ["p0", "p1", "p2", "p100", "p101"]
    assert merged.costs == {lv: 1.0 for lv in LEVELS}


@pytest.mark.parametrize("chunk", [1, 3, 1024])
def test_nearest_neighbours(chunk):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(17, 6)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    nb, sim = nearest_neighbours(x, chunk=chunk)
    s = x @ x.T
    np.fill_diagonal(s, -np.inf)
    assert np.array_equal(nb, s.argmax(1)) and np.allclose(sim, s.max(1))
    one_nb, one_sim = nearest_neighbours(x[:1])
    assert one_nb.tolist() == [-1] and np.isnan(one_sim).all()
