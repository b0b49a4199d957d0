"""Profile → train → predict round trip on the tiny random model (4 steps, 32x32, 6 prompts).

Cases:
- `run_profile` with the real tiny pipeline, the tiny CLIP scorer and MiniLM writes a complete
  quality profile (no `.partial` left) and a level profile the optimizer's `load_profile` accepts
- a cache level's image resumes from the neighbour's checkpoint: an exact duplicate prompt at any K
  reproduces the neighbour's full image, so its score equals the neighbour's full score
- resume: a `.partial` holding the header, some prompts and a torn line is completed by generating
  only the missing prompts (and their neighbours), with the same records as an uninterrupted run
- `argus train` (CLI) on that profile prints the held-out table, writes the artifact and a PNG;
  the artifact loads for the same model/levels/encoder and plans prompts through PredictivePlanner
"""

from __future__ import annotations

import asyncio
import json

import pytest

from argus.prompt.profiling import ProfileRun, levels_path, partial_path, run_profile
from argus.prompt.profile_data import read_profile
from argus.prompt.prompt_sets import bundled_prompts_path, load_prompts

LEVELS = ("cache-k0", "cache-k2", "steps-2")
STEPS = 4
PROMPTS = load_prompts(bundled_prompts_path(), limit=6)
RUN = ProfileRun(levels=LEVELS, height=32, width=32, seed=0, batch=6, batch_sizes=(1, 2), repeats=1, warmup=False)


@pytest.fixture(scope="module")
def parts():
    """The tiny pipeline (N=4), tiny CLIP scorer and MiniLM, single-threaded (the machine is shared)."""
    import torch

    from argus.prompt.embedder import MiniLMEmbedder
    from argus.prompt.scorer import ClipScorer
    from argus.worker.pipeline import DiffusionPipeline, PipelineSettings

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield DiffusionPipeline(PipelineSettings(steps=STEPS)), ClipScorer.tiny(), MiniLMEmbedder()
    finally:
        torch.set_num_threads(threads)


class CountingPipeline:
    """The real pipeline, counting the prompts it generates."""

    def __init__(self, inner):
        self.inner, self.settings, self.identity = inner, inner.settings, inner.identity
        self.generated: list[str] = []

    def check_size(self, h, w):
        return self.inner.check_size(h, w)

    def generate(self, reqs, level, checkpoints=()):
        self.generated += [r.prompt for r in reqs]
        return self.inner.generate(reqs, level, checkpoints=checkpoints)


@pytest.fixture(scope="module")
def profiled(parts, tmp_path_factory):
    pipe, scorer, emb = parts
    out = tmp_path_factory.mktemp("profile") / "tiny.jsonl"
    prof = run_profile(PROMPTS, pipe, scorer, emb, RUN, out, progress=False)
    return out, prof


def test_profile_files(profiled, parts):
    from argus.policy.profile import load_profile

    out, prof = profiled
    pipe = parts[0]
    assert out.exists() and not partial_path(out).exists()
    back = read_profile(out)
    assert back.complete and len(back.prompts) == len(PROMPTS)
    assert back.header["model"] == pipe.identity and back.header["encoder"] == "all-MiniLM-L6-v2"
    for r in back.prompts.values():
        assert set(r.quality) == set(LEVELS) and r.quality["cache-k0"] == 100.0
        assert r.neighbour is not None and r.neighbour != r.i
        assert all(q is not None and q > 0 for q in r.quality.values())
    level_profile = load_profile(levels_path(out))
    assert [lp.level for lp in level_profile.levels] == list(LEVELS)
    assert all(set(lp.throughput) == {1, 2} and lp.model == pipe.identity for lp in level_profile.levels)


def test_duplicate_prompt_resumes_neighbours_latent(profiled):
    _, prof = profiled
    dup = [r for r in prof.prompts.values() if r.prompt == PROMPTS[r.neighbour]]
    assert dup, "the first bundled DiffusionDB prompts contain an exact duplicate"
    for r in dup:
        nb = prof.prompts[r.neighbour]
        assert r.similarity == pytest.approx(1.0, abs=1e-5)
        # Equal up to batch-composition float noise (the two runs batch different prompts).
        assert r.scores["cache-k2"] == pytest.approx(nb.scores["cache-k0"], rel=1e-3)


def test_resume_after_interruption(profiled, parts, tmp_path):
    out, prof = profiled
    pipe, scorer, emb = parts
    lines = out.read_text().splitlines()
    header = lines[0]
    prompt_lines = [ln for ln in lines if '"type": "prompt"' in ln]
    latency_lines = [ln for ln in lines if '"type": "latency"' in ln]
    target = tmp_path / "resumed.jsonl"
    # Interrupted after 4 prompts and every latency cell, in the middle of writing prompt 5.
    partial_path(target).write_text("\n".join([header] + prompt_lines[:4] + latency_lines) + "\n"
                                    + prompt_lines[4][:40])
    counting = CountingPipeline(pipe)
    resumed = run_profile(PROMPTS, counting, scorer, emb, RUN, target, progress=False)
    missing = {PROMPTS[i] for i in (4, 5)} | {PROMPTS[prof.prompts[i].neighbour] for i in (4, 5)}
    assert PROMPTS[4] in counting.generated and PROMPTS[5] in counting.generated
    assert set(counting.generated) <= missing
    for i in range(len(PROMPTS)):
        a, b = prof.prompts[i], resumed.prompts[i]
        assert a.quality == pytest.approx(b.quality, rel=1e-3) and a.neighbour == b.neighbour  # batch noise
    assert not partial_path(target).exists() and read_profile(target).complete


def test_train_and_predict(profiled, parts, tmp_path, capsys):
    from argus.cli import main
    from argus.prompt.index import SimilarityIndex
    from argus.prompt.planner import PredictivePlanner, ServicePrompting
    from argus.prompt.predictor import load_predictor

    out, prof = profiled
    pipe, _, emb = parts
    art = tmp_path / "pred.json"
    rc = main(["train", "--profile", str(out), "--out", str(art), "--holdout", "0.34", "--floors", "50,90,100",
               "--model", pipe.identity])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "held-out evaluation (2 prompts; trained on 4)" in printed
    png = art.with_name("pred.eval.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pred = load_predictor(art, encoder=emb.name, levels=list(LEVELS), model=pipe.identity, steps=STEPS)
    assert json.loads(art.read_text())["meta"]["n_prompts"] == len(PROMPTS)
    sp = ServicePrompting(pred, SimilarityIndex(pred.thresholds, pred.dim))
    planner = PredictivePlanner(emb, {"svc": sp})

    async def go():
        await planner.record("svc", "alice", PROMPTS[0], "alice/k0", (2,))
        cheap = await planner.plan("svc", PROMPTS[0] + " ", "alice", floor=1.0)
        strict = await planner.plan("svc", PROMPTS[0] + " ", "alice", floor=101.0)
        other = await planner.plan("svc", PROMPTS[0] + " ", "bob", floor=1.0)
        return cheap, strict, other

    cheap, strict, other = asyncio.run(go())
    assert strict.optimal_level == "cache-k0" and strict.cache_key is None
    assert set(cheap.predicted_quality) <= set(LEVELS) and cheap.similarity == pytest.approx(1.0, abs=1e-5)
    expected = pred.choose(cheap.predicted_quality, 1.0)
    assert cheap.optimal_level == expected
    assert (cheap.cache_key == "alice/k0") == (expected == "cache-k2")
    assert other.cache_key is None and other.similarity is None and "cache-k2" not in other.predicted_quality
