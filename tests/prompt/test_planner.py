"""PredictivePlanner (the router's Planner) with real MiniLM, a known predictor and the real latent store.

Predictor: N=20, levels cache-k0/cache-k5/cache-k10/steps-10; steps-10 always 80%, cache-k5 = 70+30·s,
cache-k10 = 50+50·s (so at floor 90 cache-k10 needs s ≥ 0.8, cache-k5 s ≥ 0.667).

Cases:
- concurrent plans run as one batch (one encoder pass, one index scan)
- an exact repeat of a recorded prompt → cache-k10 with the recorded key; a paraphrase → a cache level
  consistent with its similarity; an unrelated prompt → cache-k0, no cache key
- tenant isolation: bob never gets alice's key; with cross-tenant reuse enabled he does
- a service without a predictor gets the full-quality plan; encoder mismatch is refused
- restart: a new planner synced from the DirectoryLatentStore finds the stored prompt; after the
  store evicts it, sync drops it and the plan no longer points at it
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from argus.levels import parse_levels
from argus.prompt.embedder import CachedEmbedder, MiniLMEmbedder
from argus.prompt.index import SimilarityIndex
from argus.prompt.planner import PredictivePlanner, ServicePrompting
from argus.prompt.predictor import fit_predictor, level_costs, save_predictor
from argus.policy.prompt_plan import store_key

N = 20
LEVELS = ["cache-k0", "cache-k5", "cache-k10", "steps-10"]
CAT = "a cat sitting on a red mat, oil painting"
KITTEN = "a kitten sitting on a red rug, oil painting"
SHIP = "a spaceship above the rings of saturn, digital art"


@pytest.fixture(scope="module")
def embedder():
    import torch

    torch.set_num_threads(1)
    return CachedEmbedder(MiniLMEmbedder())


@pytest.fixture(scope="module")
def predictor():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 384))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    s = rng.uniform(0.2, 1.0, 50)
    q = {"cache-k0": np.full(50, 100.0), "steps-10": np.full(50, 80.0), "cache-k5": 70 + 30 * s,
         "cache-k10": 50 + 50 * s}
    return fit_predictor(encoder="all-MiniLM-L6-v2", model="tiny", steps=N, levels=LEVELS, embeddings=x,
                         quality=q, similarity=s, costs=level_costs(parse_levels(LEVELS, N), N))


def planner_for(embedder, predictor, cross_tenant=False):
    sp = ServicePrompting(predictor, SimilarityIndex(predictor.thresholds, 384, cross_tenant=cross_tenant))
    return PredictivePlanner(embedder, {"svc": sp})


def test_repeat_paraphrase_unrelated(embedder, predictor):
    planner = planner_for(embedder, predictor)

    async def go():
        await planner.record("svc", "alice", CAT, store_key("alice", CAT), (5, 10))
        return await asyncio.gather(planner.plan("svc", CAT, "alice", 90.0), planner.plan("svc", KITTEN, "alice", 90.0),
                                    planner.plan("svc", SHIP, "alice", 90.0))

    repeat, para, unrelated = asyncio.run(go())
    assert planner.batcher.batches == [3]  # the three concurrent plans: one encoder pass, one scan
    assert repeat.optimal_level == "cache-k10" and repeat.cache_key == store_key("alice", CAT)
    assert repeat.similarity == pytest.approx(1.0, abs=1e-5) and repeat.store_key == store_key("alice", CAT)
    s = para.similarity
    expected = "cache-k10" if 50 + 50 * s >= 90 else "cache-k5" if 70 + 30 * s >= 90 else "cache-k0"
    assert para.optimal_level == expected
    assert (para.cache_key == store_key("alice", CAT)) == (expected != "cache-k0")
    assert unrelated.optimal_level == "cache-k0" and unrelated.cache_key is None
    assert unrelated.predicted_quality["steps-10"] == pytest.approx(80.0, abs=1e-3)


def test_tenants(embedder, predictor):
    for cross, expect in ((False, None), (True, store_key("alice", CAT))):
        planner = planner_for(embedder, predictor, cross_tenant=cross)

        async def go():
            await planner.record("svc", "alice", CAT, store_key("alice", CAT), (5, 10))
            return await planner.plan("svc", CAT, "bob", 90.0)

        plan = asyncio.run(go())
        assert plan.cache_key == expect
        assert plan.store_key == store_key("bob", CAT)


def test_unknown_service_and_encoder_mismatch(embedder, predictor):
    planner = planner_for(embedder, predictor)
    plan = asyncio.run(planner.plan("other", CAT, "alice", 90.0))
    assert plan.optimal_level == "cache-k0" and plan.cache_key is None

    class Other:
        name, dim = "clip-text:x", 384

        def encode(self, prompts):
            raise AssertionError("never called")

    with pytest.raises(ValueError, match="service 'svc': predictor trained with 'all-MiniLM-L6-v2', router embeds with 'clip-text:x'"):
        PredictivePlanner(Other(), {"svc": ServicePrompting(predictor, SimilarityIndex(predictor.thresholds, 384))})


def test_restart_and_eviction_through_the_store(embedder, predictor, tmp_path):
    from argus.worker.latent_store import DirectoryLatentStore

    art = tmp_path / "pred.json"
    save_predictor(predictor, art)
    store = DirectoryLatentStore(tmp_path / "latents", budget_bytes=1_000_000)
    latents = {k: np.zeros((4, 8, 8), np.float32) for k in (5, 10)}
    store.put(store_key("alice", CAT), prompt=CAT, model="tiny", n=N, latents=latents)
    store.put(store_key("alice", "x"), prompt="x", model="another", n=N, latents=latents)

    def fresh():
        sp = ServicePrompting.load(art, encoder=embedder.name, levels=LEVELS, model="tiny", steps=N)
        return PredictivePlanner(embedder, {"svc": sp})

    planner = fresh()  # a restarted router: empty index, rebuilt from the store
    assert planner.sync("svc", store) == (1, 0)
    plan = asyncio.run(planner.plan("svc", KITTEN, "alice", 80.0))
    assert plan.cache_key == store_key("alice", CAT)
    # An entry needing nearly the whole budget forces every other latent out (LCBFU).
    big = {k: np.zeros(124_900, np.float32) for k in (5, 10)}  # 2 x 499.6 kB
    store.put(store_key("alice", SHIP), prompt=SHIP, model="tiny", n=N, latents=big)
    assert store_key("alice", CAT) not in {e.key for e in store.list_entries()}
    assert planner.sync("svc", store) == (1, 1)
    plan = asyncio.run(planner.plan("svc", KITTEN, "alice", 80.0))
    assert plan.cache_key != store_key("alice", CAT)
