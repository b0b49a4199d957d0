"""The router with a real PredictivePlanner (real MiniLM, a fitted predictor file) and real workers.

Workers are `argus.worker.WorkerService` (the tiny diffusion model, the real DirectoryLatentStore)
called in-process through the dispatcher's client factory instead of Triton gRPC (the gRPC path
is covered by tests/e2e). Predictor: N=10, levels cache-k0/cache-k5/steps-5; steps-5 always 80%,
cache-k5 = 50+50·s, so at floor 90 only a neighbour with s ≥ 0.8 makes cache-k5 optimal.

Cases:
- a first prompt runs at cache-k0 and stores checkpoints; the router records it, so the repeat is
  planned at cache-k5 with the first run's key and the worker resumes (cache_hit, k_used=5);
  an unrelated prompt and a service without a predictor stay at cache-k0 with no key
- a restarted router's planner syncs the index from the latent store (at start, via its thread) and
  plans the repeat at cache-k5
- a prompt recorded while a sync is listing the store (so missing from that listing) stays indexed;
  a key the store no longer lists is dropped by the next sync
- RouterSettings.from_env: round trip of the predictor settings; malformed values raise
  RouterSettingsError naming the variable (and the service/field for ARGUS_ROUTER_PREDICTORS)
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from argus.adapters.triton_client import Generated, WorkerRejected
from argus.levels import parse_levels
from argus.policy.document import PolicyDocument
from argus.prompt.embedder import CachedEmbedder, MiniLMEmbedder
from argus.prompt.predictor import fit_predictor, level_costs, save_predictor
from argus.router.app import Router
from argus.router.dispatch import Dispatcher
from argus.router.metrics import RouterMetrics
from argus.policy.prompt_plan import store_key
from argus.router.prompting import PromptPlanning
from argus.router.schema import ImageRequest
from argus.router.settings import RouterSettings, RouterSettingsError, ServicePredictor
from argus.router.sources import FileEndpoints
from argus.worker.service import CountingMetrics, WorkerService, WorkRequest, open_store
from argus.worker.settings import WorkerSettings
from argus.worker.tiny import tiny_identity

N = 10
LEVELS = ["cache-k0", "cache-k5", "steps-5"]
CAT = "a cat sitting on a red mat, oil painting"
SHIP = "a spaceship above the rings of saturn, digital art"


@pytest.fixture(scope="module")
def embedder():
    import torch

    torch.set_num_threads(1)
    return CachedEmbedder(MiniLMEmbedder())


@pytest.fixture(scope="module")
def predictor_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 384))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    s = rng.uniform(0.2, 1.0, 40)
    q = {"cache-k0": np.full(40, 100.0), "steps-5": np.full(40, 80.0), "cache-k5": 50 + 50 * s}
    pred = fit_predictor(encoder="all-MiniLM-L6-v2", model=tiny_identity(), steps=N, levels=LEVELS, embeddings=x,
                         quality=q, similarity=s, costs=level_costs(parse_levels(LEVELS, N), N))
    path = tmp_path_factory.mktemp("pred") / "svc.predictor.json"
    save_predictor(pred, path)
    return path


def _one_torch_thread():
    import torch

    torch.set_num_threads(1)


class InProcessClient:
    """The TritonWorkerClient interface over a WorkerService (same WorkRequest/INFO as model.py).

    Like Triton's python backend, each worker runs on one thread of its own (its store's SQLite handle
    is bound to the thread that opened it), so the service is built on that thread.
    """

    def __init__(self, settings: WorkerSettings, pipeline):
        # One torch thread, as a Triton worker process gets (LocalSystem.worker_threads): torch.set_num_threads
        # on the main thread does not reach this one, whose 2 spin-waiting OpenMP threads on 2 busy cores made a
        # 32x32 image take 36-62 s instead of 2 s (measured; this test took 147 s).
        self.pool = ThreadPoolExecutor(max_workers=1, initializer=_one_torch_thread)
        self.service = self.pool.submit(self._build, settings, pipeline).result()

    @staticmethod
    def _build(settings, pipeline):
        m = CountingMetrics()
        return WorkerService(settings, pipeline=pipeline, store=open_store(settings, m), metrics=m)

    async def generate(self, model, prompt, seed, height, width, *, cache_key=None, store_key=None,
                       timeout_s=None, request_id=None, level=None, deadline=None):
        req = WorkRequest(prompt, seed, height, width, cache_key, store_key, level=level, deadline=deadline)
        (res,) = await asyncio.get_running_loop().run_in_executor(self.pool, self.service.handle, [req])
        if res.error:
            raise WorkerRejected(res.error)
        return Generated(res.image, res.info)

    async def close(self):
        pass


@pytest.fixture(scope="module")
def system(tmp_path_factory, predictor_file):
    """Workers of both services (shared tiny pipeline), an endpoints file and router settings."""
    root = tmp_path_factory.mktemp("router")
    latents = root / "latents"
    workers = {}
    pipeline = None
    for svc in ("svc", "plain"):
        for lv in ("cache-k0", "cache-k5"):
            ws = WorkerSettings(level=lv, steps=N, levels=tuple(LEVELS), latent_store=str(latents / svc))
            w = InProcessClient(ws, pipeline)
            pipeline = w.service.pipeline
            workers[f"{svc}-{lv}"] = w
    (root / "endpoints.json").write_text(json.dumps(
        {svc: {lv: [f"{svc}-{lv}"] for lv in ("cache-k0", "cache-k5")} for svc in ("svc", "plain")}))
    (root / "policy").mkdir()
    for svc in ("svc", "plain"):  # the floor (90) reaches the router in each service's policy document
        doc = PolicyDocument(version=1, service=svc, quality_floor=90.0, latency_slo_s=30.0, image_size="32x32",
                             levels=list(LEVELS), allocation={"cache-k0": 1, "cache-k5": 1})
        (root / "policy" / f"{svc}.json").write_text(doc.to_json())
    settings = RouterSettings(
        sizes=("32x32",), default_size="32x32", policy_dir=root / "policy", index_sync_s=0.2,
        predictors={"svc": ServicePredictor(predictor_file, tuple(LEVELS), tiny_identity(), N, latents / "svc")})
    return settings, root, workers


def make_router(system, planning):
    settings, root, workers = system
    endpoints = FileEndpoints(root / "endpoints.json")
    return Router(settings, endpoints, RouterMetrics(), planning=planning,
                  dispatcher=Dispatcher(endpoints, lambda url: workers[url]))


def request(prompt, service, user="alice"):
    return ImageRequest(prompt=prompt, n=1, height=32, width=32, seed=7, quality_floor=None, service=service,
                        user=user)


def test_full_run_is_recorded_and_the_repeat_resumes(system, embedder):
    planning = PromptPlanning.from_settings(system[0], embedder=embedder)
    router = make_router(system, planning)

    async def go():
        first = await router.generate(request(CAT, "svc"))
        repeat = await router.generate(request(CAT, "svc"))
        unrelated = await router.generate(request(SHIP, "svc"))
        plain1 = await router.generate(request(CAT, "plain"))
        plain2 = await router.generate(request(CAT, "plain"))
        return [r["argus"][0] for r in (first, repeat, unrelated, plain1, plain2)]

    try:
        first, repeat, unrelated, plain1, plain2 = asyncio.run(go())
    finally:
        planning.close()
    assert first["level"] == first["optimal_level"] == "cache-k0" and first["k_used"] == 0
    assert store_key("alice", CAT) in planning.planner.services["svc"].index
    assert repeat["optimal_level"] == repeat["level"] == "cache-k5"
    assert repeat["cache_hit"] is True and repeat["k_used"] == 5 and repeat["fallback_reason"] is None
    assert repeat["predicted_quality"] >= 90.0
    assert unrelated["optimal_level"] == "cache-k0" and unrelated["cache_hit"] is False
    assert plain1["optimal_level"] == plain2["optimal_level"] == "cache-k0"  # no predictor: full quality
    assert router.metrics.cache.labels("svc", "hit")._value.get() == 1


def test_restarted_router_syncs_the_index_from_the_store(system, embedder):
    # The first test's full run stored CAT for alice in svc's latent store (same module-scoped system).
    planning = PromptPlanning.from_settings(system[0], embedder=embedder)
    assert len(planning.planner.services["svc"].index) == 0
    planning.start()
    try:
        deadline = time.monotonic() + 30
        while planning.syncs == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store_key("alice", CAT) in planning.planner.services["svc"].index
        plan = asyncio.run(planning.planner.plan("svc", CAT, "alice", 90.0))
    finally:
        planning.close()
    assert plan.optimal_level == "cache-k5" and plan.cache_key == store_key("alice", CAT)


class SlowListing:
    """A latent store listing that blocks until released (a record happens meanwhile)."""

    def __init__(self, entries):
        self.entries, self.listing, self.release = entries, threading.Event(), threading.Event()

    def list_entries(self):
        snapshot = list(self.entries)
        self.listing.set()
        assert self.release.wait(30)
        return snapshot


def test_record_during_a_sync_listing_is_kept(embedder, predictor_file):
    from argus.prompt.index import LatentEntry
    from argus.prompt.planner import PredictivePlanner, ServicePrompting

    source = SlowListing([LatentEntry("alice/old", "alice", SHIP, (5,))])
    pool = ThreadPoolExecutor(max_workers=1)
    sp = ServicePrompting.load(predictor_file, encoder=embedder.name, levels=LEVELS, model=tiny_identity(), steps=N)
    planning = PromptPlanning(PredictivePlanner(embedder, {"svc": sp}, executor=pool), pool, {"svc": lambda: source})
    try:
        sync = threading.Thread(target=planning.sync_once)
        sync.start()
        assert source.listing.wait(30)
        asyncio.run(planning.record("svc", "alice", CAT, store_key("alice", CAT)))  # stored after the listing
        source.release.set()
        sync.join(30)
        assert {store_key("alice", CAT), "alice/old"} <= sp.index.keys()
        plan = asyncio.run(planning.planner.plan("svc", CAT, "alice", 90.0))
        assert plan.optimal_level == "cache-k5" and plan.cache_key == store_key("alice", CAT)

        source.entries = [LatentEntry(store_key("alice", CAT), "alice", CAT, (5,))]  # "alice/old" evicted
        source.listing.clear()
        planning.sync_once()
        assert sp.index.keys() == {store_key("alice", CAT)}
    finally:
        source.release.set()
        planning.close()


def test_settings_round_trip_and_errors_name_the_variable(tmp_path):
    s = RouterSettings(predictors={"a": ServicePredictor(tmp_path / "p.json", ("cache-k0", "cache-k5"), "m", 10,
                                                         tmp_path / "lat", True)},
                       encoder="minilm", index_sync_s=2.5)
    assert RouterSettings.from_env(s.to_env()) == s
    assert RouterSettings.from_env({}).predictors == {}


@pytest.mark.parametrize("var,value,needle", [
    ("ARGUS_ROUTER_PORT", "eighty", "ARGUS_ROUTER_PORT='eighty'"),
    ("ARGUS_ROUTER_INDEX_SYNC_S", "soon", "ARGUS_ROUTER_INDEX_SYNC_S='soon'"),
    ("ARGUS_ROUTER_PREDICTORS", "{not json", "ARGUS_ROUTER_PREDICTORS: not JSON"),
    ("ARGUS_ROUTER_PREDICTORS", "[1]", "ARGUS_ROUTER_PREDICTORS: expected a JSON object"),
    ("ARGUS_ROUTER_PREDICTORS", '{"s": {}}', "service 's': 'path'"),
    ("ARGUS_ROUTER_PREDICTORS", '{"s": {"path": "p", "steps": "ten"}}', "service 's': 'steps' must be"),
    ("ARGUS_ROUTER_PREDICTORS", '{"s": {"path": "p", "levels": "cache-k0"}}', "'levels' must be a list"),
    ("ARGUS_ROUTER_PREDICTORS", '{"s": {"path": "p", "colour": 1}}', "unknown field(s) ['colour']"),
])
def test_settings_errors(var, value, needle):
    with pytest.raises(RouterSettingsError) as e:
        RouterSettings.from_env({var: value})
    assert needle in str(e.value) and var in str(e.value)


def test_predictor_mismatch_names_the_file(system, embedder, predictor_file):
    bad = RouterSettings(predictors={"svc": ServicePredictor(predictor_file, ("cache-k0", "cache-k5"), None, N)})
    with pytest.raises(ValueError, match="level set differs"):
        PromptPlanning.from_settings(bad, embedder=embedder)


@pytest.mark.parametrize("late_rungs", [True, False])
def test_a_request_that_would_be_late_runs_faster_when_the_policy_says_so(tmp_path, late_rungs):
    """With `late_rungs` in the service's policy the router sends each request's deadline (start + AIM x the
    SLO, argus.policy.lateness) and a worker whose clock says its level would miss it serves a faster level
    of its weights; the answer names the level that served and the one asked for. Without, no deadline."""
    ws = WorkerSettings(level="cache-k0", steps=N, levels=tuple(LEVELS))
    worker = InProcessClient(ws, None)
    worker.service.clock.per_step = {1: 1.0}  # 1 s per step: cache-k0 10 s, steps-5 5 s, over a 4 s SLO
    (tmp_path / "endpoints.json").write_text(json.dumps({"late": {"cache-k0": ["w"]}}))
    (tmp_path / "policy").mkdir()
    doc = PolicyDocument(version=1, service="late", quality_floor=50.0, latency_slo_s=4.0, image_size="32x32",
                         levels=list(LEVELS), allocation={"cache-k0": 1}, late_rungs=late_rungs)
    (tmp_path / "policy" / "late.json").write_text(doc.to_json())
    settings = RouterSettings(sizes=("32x32",), default_size="32x32", policy_dir=tmp_path / "policy")
    endpoints = FileEndpoints(tmp_path / "endpoints.json")
    router = Router(settings, endpoints, RouterMetrics(), dispatcher=Dispatcher(endpoints, lambda url: worker))
    (res,) = asyncio.run(router.generate(request(CAT, "late")))["argus"]
    if late_rungs:
        assert (res["level"], res["late_from"], res["steps_run"]) == ("steps-5", "cache-k0", 5)
        assert router.metrics.requests.labels("late", "steps-5", "ok")._value.get() == 1
        assert router.metrics.late.labels("late", "cache-k0", "steps-5", "deadline")._value.get() == 1
        assert res["late_why"] == "deadline"
    else:
        assert (res["level"], res["late_from"], res["steps_run"]) == ("cache-k0", None, N)
