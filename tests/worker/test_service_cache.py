"""WorkerService with the real tiny model and a real directory store: resume exactness and fallbacks.

Cases: a full run (cache-k0) with STORE_KEY stores checkpoints at every K of the level set,
listed with tenant and prompt; `cache-kK` resuming from the prompt's own latent gives the
full run's image for every K (1..5 of N=6), reports cache_hit, k_used=K, steps_run=N-K and
counts a hit; a batch of two prompts resumed together matches their full batch run; a
resume never stores (its latents are approximations); step reduction runs S steps and
stores nothing. Fallbacks (image = the full run from noise, cache_hit false, k_used 0,
steps_run N, fallback_reason and metric say why): no CACHE_KEY (miss), no store, missing,
evicted, corrupt, incompatible (other model, other N, other latent shape), bad key; a
fallback with STORE_KEY stores its checkpoints; a missing K with a smaller K stored resumes
at the smaller K (`lower_k`, still exact); in one batch a hit, a fallback and a bad request
are each answered on their own. Store faults: an entry over the budget (`full`), a corrupt
index (read and write fail: `store_error`) and an unusable store path at open only cost
the caching (served, metric, nothing stored).
"""

from __future__ import annotations

import numpy as np
import pytest

from argus.contract import WorkReport
from argus.worker.latent_store import DirectoryLatentStore
from argus.worker.service import CountingMetrics, WorkerService, WorkRequest, open_store
from argus.worker.settings import WorkerSettings

N = 6  # the `pipeline` fixture's full schedule
LEVELS = ("cache-k0", "cache-k1", "cache-k2", "cache-k3", "cache-k4", "cache-k5", "steps-3")
SIZE = 32
PROMPT, SEED = "a red fox in the snow", 11


def service(pipeline, level, store=None, root=None):
    settings = WorkerSettings(level=level, steps=N, levels=LEVELS, latent_store=str(root) if root else None)
    return WorkerService(settings, pipeline=pipeline, store=store, metrics=CountingMetrics())


def req(prompt=PROMPT, seed=SEED, cache_key=None, store_key=None, size=SIZE):
    return WorkRequest(prompt, seed, size, size, cache_key=cache_key, store_key=store_key)


@pytest.fixture(scope="module")
def stored(pipeline, tmp_path_factory):
    """A store holding one full run of PROMPT (key 'alice/fox'), and that run's image."""
    root = tmp_path_factory.mktemp("store")
    store = DirectoryLatentStore(root, 1 << 24)
    full = service(pipeline, "cache-k0", store)
    (res,) = full.handle([req(store_key="alice/fox")])
    return store, res


def new_store(tmp_path, budget=1 << 24):
    return DirectoryLatentStore(tmp_path / "s", budget)


def test_full_run_stores_every_checkpoint(stored):
    store, res = stored
    assert res.info == WorkReport(level="cache-k0", k_used=0, steps_run=N, cache_hit=False,
                                  fallback_reason=None, model=res.info.model)
    (e,) = store.list_entries()
    assert (e.key, e.tenant, e.prompt, e.n, e.steps) == ("alice/fox", "alice", PROMPT, N, (1, 2, 3, 4, 5))
    assert e.shape == (4, SIZE // 2, SIZE // 2)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_resume_reproduces_full_run(pipeline, stored, k):
    store, full = stored
    svc = service(pipeline, f"cache-k{k}", store)
    (res,) = svc.handle([req(cache_key="alice/fox", store_key="alice/fox")])
    assert res.error is None
    assert (res.info.cache_hit, res.info.k_used, res.info.steps_run, res.info.fallback_reason) == (
        True, k, N - k, None)
    assert np.abs(res.image.astype(int) - full.image.astype(int)).max() <= 1
    assert svc.metrics.counts == {("cache", "hit", ""): 1}


def test_batch_resume_matches_batch_full_run(pipeline, tmp_path):
    store = new_store(tmp_path)
    prompts = [("a castle at dusk", "t/castle"), ("two cats on a sofa", "t/cats")]
    full = service(pipeline, "cache-k0", store).handle([req(p, 5, store_key=key) for p, key in prompts])
    res = service(pipeline, "cache-k3", store).handle([req(p, 5, cache_key=key) for p, key in prompts])
    for f, r in zip(full, res):
        assert r.info.cache_hit and r.info.k_used == 3
        assert np.abs(r.image.astype(int) - f.image.astype(int)).max() <= 1
    assert not np.array_equal(res[0].image, res[1].image)


def test_resume_does_not_store_and_steps_level_stores_nothing(pipeline, tmp_path, stored):
    src, _ = stored
    store = new_store(tmp_path)
    latent = src.get("alice/fox", 2, model=pipeline.identity, n=N, shape=(4, SIZE // 2, SIZE // 2))
    store.put("t/src", prompt=PROMPT, model=pipeline.identity, n=N, latents={2: latent.array})
    (r,) = service(pipeline, "cache-k2", store).handle([req("another prompt", cache_key="t/src", store_key="t/new")])
    assert r.info.cache_hit
    (s,) = service(pipeline, "steps-3", store).handle([req(store_key="t/steps")])
    assert (s.info.steps_run, s.info.k_used, s.info.cache_hit) == (3, 0, False)
    assert [e.key for e in store.list_entries()] == ["t/src"]


@pytest.fixture(scope="module")
def full_image(stored):
    return stored[1].image


def _corrupt(store, key):
    for f in (store.root / "data").glob("*/*.lat"):
        b = bytearray(f.read_bytes())
        b[-1] ^= 0xFF
        f.write_bytes(bytes(b))


FALLBACKS = {
    # name: (how to prepare the store for key 't/x' given (store, pipeline, stored latents), cache key, reason)
    "missing": (lambda s, p, lat: None, "t/x", "missing"),
    "evicted": (lambda s, p, lat: [s.put(k, prompt=k, model=p.identity, n=N, latents={3: lat}) for k in ("t/x", "t/y", "t/z")],
                "t/x", "evicted"),
    "corrupt": (lambda s, p, lat: (s.put("t/x", prompt="x", model=p.identity, n=N, latents={3: lat}), _corrupt(s, "t/x")),
                "t/x", "corrupt"),
    "other_model": (lambda s, p, lat: s.put("t/x", prompt="x", model="sd-xl-base", n=N, latents={3: lat}),
                    "t/x", "incompatible"),
    "other_n": (lambda s, p, lat: s.put("t/x", prompt="x", model=p.identity, n=50, latents={3: lat}),
                "t/x", "incompatible"),
    "other_shape": (lambda s, p, lat: s.put("t/x", prompt="x", model=p.identity, n=N,
                                            latents={3: np.zeros((4, SIZE, SIZE), np.float32)}), "t/x", "incompatible"),
    "bad_key": (lambda s, p, lat: None, "bad\x00key", "bad_key"),
}


@pytest.mark.parametrize("case", sorted(FALLBACKS))
def test_fallback_runs_full_and_says_why(pipeline, stored, full_image, tmp_path, case):
    prepare, key, why = FALLBACKS[case]
    src, _ = stored
    lat = src.get("alice/fox", 3, model=pipeline.identity, n=N, shape=(4, SIZE // 2, SIZE // 2)).array
    one = len(lat.tobytes()) + 400  # room for one latent with its header, not two
    store = new_store(tmp_path, budget=one if case == "evicted" else 1 << 24)
    prepare(store, pipeline, lat)
    svc = service(pipeline, "cache-k3", store)
    (res,) = svc.handle([req(cache_key=key)])
    assert res.error is None
    assert (res.info.cache_hit, res.info.k_used, res.info.steps_run, res.info.fallback_reason) == (
        False, 0, N, why)
    assert np.array_equal(res.image, full_image)
    assert svc.metrics.counts == {("cache", "fallback", why): 1}


def test_no_key_is_a_miss_and_no_store_a_fallback(pipeline, full_image):
    svc = service(pipeline, "cache-k3", store=None)
    a, b = svc.handle([req(), req(cache_key="alice/fox")])
    assert (a.info.fallback_reason, b.info.fallback_reason) == ("no_key", "no_store")
    assert np.array_equal(a.image, full_image) and np.array_equal(b.image, full_image)
    assert svc.metrics.counts == {("cache", "miss", "no_key"): 1, ("cache", "fallback", "no_store"): 1}


def test_fallback_with_store_key_stores_its_run(pipeline, tmp_path):
    store = new_store(tmp_path)
    (res,) = service(pipeline, "cache-k3", store).handle([req(cache_key="t/none", store_key="t/mine")])
    assert res.info.fallback_reason == "missing"
    assert [(e.key, e.steps) for e in store.list_entries()] == [("t/mine", (1, 2, 3, 4, 5))]


def test_lower_k_when_k_is_gone(pipeline, stored, full_image, tmp_path):
    src, _ = stored
    shape = (4, SIZE // 2, SIZE // 2)
    store = new_store(tmp_path)
    store.put("t/x", prompt=PROMPT, model=pipeline.identity, n=N,
              latents={k: src.get("alice/fox", k, model=pipeline.identity, n=N, shape=shape).array for k in (1, 2)})
    svc = service(pipeline, "cache-k4", store)
    (res,) = svc.handle([req(cache_key="t/x")])
    assert (res.info.cache_hit, res.info.k_used, res.info.steps_run, res.info.fallback_reason) == (
        True, 2, N - 2, "lower_k")
    assert np.abs(res.image.astype(int) - full_image.astype(int)).max() <= 1
    assert svc.metrics.counts == {("cache", "hit", "lower_k"): 1}


def test_mixed_batch_each_answered(pipeline, stored, full_image):
    store, _ = stored
    svc = service(pipeline, "cache-k2", store)
    hit, miss, bad = svc.handle([req(cache_key="alice/fox"), req(cache_key="alice/none"), req(size=33)])
    assert hit.info.cache_hit and hit.info.k_used == 2
    assert miss.info.fallback_reason == "missing" and np.array_equal(miss.image, full_image)
    assert bad.image is None and "height=33" in bad.error
    assert np.abs(hit.image.astype(int) - full_image.astype(int)).max() <= 1


def test_entry_over_budget_serves_without_caching(pipeline, full_image, tmp_path):
    store = new_store(tmp_path, budget=2048)  # one 4x16x16 float latent alone is 4 KiB
    svc = service(pipeline, "cache-k0", store)
    (res,) = svc.handle([req(store_key="t/big")])
    assert res.error is None and np.array_equal(res.image, full_image)
    assert svc.metrics.counts == {("store_error", "write"): 1}
    assert store.list_entries() == []


def test_unusable_store_path_serves_without_caching(pipeline, full_image, tmp_path):
    bad = tmp_path / "not-a-dir"
    bad.write_text("a file where the store should be")
    settings = WorkerSettings(level="cache-k2", steps=N, levels=LEVELS, latent_store=str(bad))
    metrics = CountingMetrics()
    store = open_store(settings, metrics)
    assert store is None and metrics.counts == {("store_error", "open"): 1}
    svc = WorkerService(settings, pipeline=pipeline, store=store, metrics=metrics)
    (res,) = svc.handle([req(cache_key="alice/fox", store_key="t/k")])
    assert res.info.fallback_reason == "no_store" and np.array_equal(res.image, full_image)


def test_corrupt_index_serves_without_caching(pipeline, full_image, tmp_path):
    store = new_store(tmp_path)
    store.put("t/x", prompt="x", model=pipeline.identity, n=N, latents={3: np.zeros((4, SIZE // 2, SIZE // 2), np.float32)})
    (store.root / "index.sqlite").write_bytes(b"this is not a database" * 300)
    svc = service(pipeline, "cache-k3", store)
    (res,) = svc.handle([req(cache_key="t/x", store_key="t/y")])
    assert res.error is None and np.array_equal(res.image, full_image)
    assert res.info.fallback_reason == "store_error"
    assert svc.metrics.counts == {("store_error", "read"): 1, ("cache", "fallback", "store_error"): 1,
                                  ("store_error", "write"): 1}


def test_request_level_switches_in_place_and_model_levels_are_refused(pipeline, stored, full_image):
    """A request's LEVEL serves it at another level of the worker's weights (a level switch without a
    reload): the same images as that level's own worker gives, in one mixed batch; a level of other weights
    or outside the service is an error for that request alone."""
    store, _ = stored
    worker = service(pipeline, "cache-k0", store)
    own = service(pipeline, "steps-3", store).handle([req()])[0]
    full, steps, hit, other, unknown = worker.handle([
        req(), WorkRequest(PROMPT, SEED, SIZE, SIZE, level="steps-3"),
        WorkRequest(PROMPT, SEED, SIZE, SIZE, cache_key="alice/fox", level="cache-k4"),
        WorkRequest(PROMPT, SEED, SIZE, SIZE, level="model-tiny"), WorkRequest(PROMPT, SEED, SIZE, SIZE, level="steps-4")])
    assert full.info.level == "cache-k0" and np.array_equal(full.image, full_image)
    assert (steps.info.level, steps.info.steps_run) == ("steps-3", 3) and np.array_equal(steps.image, own.image)
    assert (hit.info.level, hit.info.cache_hit, hit.info.k_used, hit.info.steps_run) == ("cache-k4", True, 4, N - 4)
    assert other.image is None and "not a level of this service" in other.error
    assert unknown.image is None and "'steps-4' is not a level" in unknown.error
    model_worker = WorkerService(WorkerSettings(level="cache-k0", steps=N, levels=(*LEVELS, "model-tiny")),
                                 pipeline=pipeline, metrics=CountingMetrics())
    (refused,) = model_worker.handle([WorkRequest(PROMPT, SEED, SIZE, SIZE, level="model-tiny")])
    assert refused.image is None and "needs other weights" in refused.error


def test_a_late_group_runs_at_the_first_rung_that_makes_its_deadline(pipeline, stored):
    """With a DEADLINE the worker's clock says its level would miss, a group runs at the first steps-* level
    of the same weights that makes it (the same image as that level's own request), and its report names
    both levels; a group that makes its deadline, or has none, runs at its own level."""
    import time

    store, _ = stored
    worker = WorkerService(WorkerSettings(level="cache-k0", steps=N, levels=(*LEVELS, "steps-1")),
                           pipeline=pipeline, store=store, metrics=CountingMetrics())
    steps3 = worker.handle([WorkRequest(PROMPT, SEED, SIZE, SIZE, level="steps-3")])[0]

    def run(deadline_in, **kw):
        worker.clock.per_step = {1: 1.0}  # 1 s per step: cache-k0 takes 6 s, steps-3 3 s, steps-1 1 s
        return worker.handle([WorkRequest(PROMPT, SEED, SIZE, SIZE, deadline=time.time() + deadline_in, **kw)])[0]

    on_time, late, later, cached = run(100.0), run(4.5), run(2.0), run(4.5, cache_key="alice/fox", level="cache-k2")
    assert (on_time.info.level, on_time.info.late_from, on_time.info.steps_run) == ("cache-k0", None, N)
    assert (late.info.level, late.info.late_from, late.info.steps_run) == ("steps-3", "cache-k0", 3)
    assert np.array_equal(late.image, steps3.image)
    assert (later.info.level, later.info.late_from, later.info.steps_run) == ("steps-1", "cache-k0", 1)
    # a hit at cache-k2 runs 4 steps: 4 s, in time at its own level
    assert (cached.info.level, cached.info.late_from, cached.info.cache_hit) == ("cache-k2", None, True)
    (plain,) = worker.handle([req()])
    assert plain.info.late_from is None and plain.info.level == "cache-k0"
