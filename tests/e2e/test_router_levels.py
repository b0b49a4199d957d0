"""End to end through real Envoy → router → several real Triton workers at different levels.

One system for the module: levels cache-k0 (2 replicas), cache-k1 and steps-1 (1 each) of
the tiny model (2 steps, 32x32), the router with a small admission limit and Envoy with a
request limit in front (the overload case starts its own Envoy with a local rate limit set from the
rate measured just before it). Cases, in order:
- per-level placement: with a redirection matrix in force, the per-level counts of the
  responses' `level` match the matrix (chi-square at p=1e-4 plus per-level 4.5-sigma
  binomial bands, chosen so that a uniform or an all-full-quality draw fails), and the
  router's /metrics and the workers' Triton /metrics count the same numbers per level;
- a policy change written mid-load (and then an invalid one) takes effect within the
  reload interval, with no failed request; the invalid one is rejected and counted;
- overload far beyond capacity (48 + 1.5x the closed-loop rate in clients honouring Retry-After, >2x
  what is served, in two phases alternating with two at-capacity phases): the extra requests get
  fast 429 (Envoy rate limit) and 503 (router admission) with Retry-After (p90 in Envoy
  < 250 ms), while accepted requests keep the latency of the system at capacity (4 clients,
  none refused: within 2x + 0.2 s) and within 8x the unloaded one (4 admitted); latencies are
  Envoy's access-log durations, as the Python client on 2 busy cores adds its own delay;
- with a predictor (a second router process and Envoy on the same workers): a repeated prompt
  is planned at cache-k1 and served from its own latent stored by the first, full run
  (cache_hit, k_used=1); an unrelated prompt stays at full quality;
- a cache-k0 worker switched in place to steps-1 serves steps-1 requests, the same process;
- SIGKILL of one cache-k0 replica mid-load loses no request: the router retries on the
  other replica (retries counted in the responses and in /metrics);
- SIGKILL of the only steps-1 replica mid-load loses no request: the router retries at the
  next safer level, cache-k1. These two run last.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from argus.adapters.envoy_config import EnvoySettings, build_bootstrap
from argus.local.runtime import LocalSystem
from argus.local.supervisor import free_port, wait_http
from argus.policy.document import PolicyDocument
from argus.router.settings import RouterSettings
from argus.spec import parse_spec

URL = "/v1/images/generations"
LEVELS = ["cache-k0", "cache-k1", "steps-1"]
REPLICAS = {"cache-k0": 2, "cache-k1": 1, "steps-1": 1}
ROUTER_MAX_PENDING = 4  # the other cases run 4 closed-loop clients: never refused
# The overload case's Envoy local rate limit: RATE_LIMIT_FACTOR x what ROUTER_MAX_PENDING closed-loop clients get
# straight from the router (R), measured just before that case, and at least 25 req/s. The other cases go through
# an Envoy without a rate limit: with one set from R measured when the module started, the machine's other load
# easing later (or the cheaper steps-1 level) made 4 closed-loop clients exceed it (86 x 429 in the policy case
# with a heavy job beside the suite). Machines of this kind give
# R = 8-12 and 41-58 req/s: a fixed 25 refused the normal cases (closed loop, <= R) on the fast one. The
# overload case runs 1.5R + 48 clients that pause 1 s after a refusal: they offer ~1.5R + 48 plus what is
# admitted, > 1.3R. More clients (2x the limit) made the test client itself the bottleneck on 2 cores
# (refusal p90 340 ms); R + 48 with a 1.5R limit offered barely above the limit (36 Envoy 429s of 845).
RATE_LIMIT_FACTOR = 1.3


def _start_router(system: LocalSystem, max_pending: int, name: str = "router", ready_s: float = 60, **extra) -> None:
    port = system.ports.setdefault(name, free_port())
    s = RouterSettings(port=port, policy_dir=system.workdir / "policy",
                       endpoints_file=system.workdir / "endpoints.json", default_service=system.service,
                       sizes=system.sizes, default_size=system.sizes[0], max_pending=max_pending,
                       timeout_s=60,
                       **extra)
    child = system.supervisor.start(name, [sys.executable, "-m", "argus.router"], s.to_env())
    wait_http(f"http://127.0.0.1:{port}/healthz", ready_s, child)


def _start_envoy(system: LocalSystem, name: str = "envoy", router: str = "router", rate_limit_rps: int = 0) -> str:
    """Envoy in front of the router `router` (rate limit 0: none); returns its URL."""
    for k in (name, f"{name}_stats", f"{name}_admin"):
        system.ports.setdefault(k, free_port())
    cfg = EnvoySettings(listen_port=system.ports[name], stats_port=system.ports[f"{name}_stats"],
                        admin_port=system.ports[f"{name}_admin"], router_port=system.ports[router],
                        max_requests=32, max_pending_requests=32, rate_limit_rps=rate_limit_rps,
                        rate_limit_burst=rate_limit_rps, route_timeout_s=60,
                        access_log_path=str(system.workdir / "logs" / f"{name}-access.log"))
    path = system.workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(build_bootstrap(cfg), sort_keys=False))
    envoy = Path(sys.executable).parent / "envoy"
    cmd = [str(envoy if envoy.exists() else "envoy"), "-c", str(path), "--log-level", "warn",
           "--base-id", str(system.ports[name])]
    url = f"http://127.0.0.1:{system.ports[name]}"
    wait_http(f"{url}/healthz", 30, system.supervisor.start(name, cmd))
    return url


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    """Workers per REPLICAS, router, Envoy; every process killed at the end."""
    spec = parse_spec({"model": {"steps": 2, "height": 32, "width": 32}, "levels": LEVELS,
                       "throughputTarget": 1, "gpus": 4, "latencySLO": 30, "qualityFloor": 90})
    sysm = LocalSystem("svc", spec, tmp_path_factory.mktemp("levels"), sizes=("32x32",))
    try:
        # started in parallel; one torch thread each (LocalSystem.worker_threads): 4 workers on 2 cores
        reps = [sysm.start_worker(lv, wait=False) for lv, n in REPLICAS.items() for _ in range(n)]
        for rep in reps:
            sysm.wait_worker(rep)
            sysm.ready.add(rep.name)
        sysm.publish_endpoints()
        _write_policy(sysm, 1, {"cache-k0": {"cache-k0": 1.0}})
        _start_router(sysm, ROUTER_MAX_PENDING)
        _closed_loop_rate(f"http://127.0.0.1:{sysm.ports['router']}")  # waits until it serves; warms up
        _start_envoy(sysm)
        _wait_policy(sysm, 1)
        yield sysm
    finally:
        sysm.stop()  # TERM then KILL of every process group (Triton stubs included)


# ---- helpers ---------------------------------------------------------------------------------

def _write_policy(system: LocalSystem, version: int, redirection: dict, raw: str | None = None) -> None:
    """Atomically replace the service's policy file (the router polls it every 0.5 s)."""
    doc = raw or PolicyDocument(version=version, service="svc", **system.spec.data_plane(), levels=LEVELS,
                                allocation=REPLICAS, redirection=redirection).to_json()
    path = system.workdir / "policy" / "svc.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(doc)
    os.replace(tmp, path)


def _metrics(system: LocalSystem) -> dict[tuple, float]:
    """The router's /metrics as {(name, sorted labels): value}."""
    text = httpx.get(system.url + "/metrics", timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def _metric(m: dict, name: str, **labels) -> float:
    return m.get((name, tuple(sorted(labels.items()))), 0.0)


def _wait_policy(system: LocalSystem, version: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _metric(_metrics(system), "argus_router_policy_version", service="svc") == version:
            return
        time.sleep(0.1)
    raise AssertionError(f"router did not adopt policy version {version} within {timeout}s")


def _triton_success(system: LocalSystem) -> dict[str, float]:
    """Successful inferences per level, summed over the live replicas' Triton /metrics."""
    out: dict[str, float] = {}
    for rep in system.replicas.values():
        text = httpx.get(f"http://127.0.0.1:{rep.ports.metrics}/metrics", timeout=10).text
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if fam.name == "nv_inference_request_success" and s.labels.get("model") == rep.level:
                    out[rep.level] = out.get(rep.level, 0.0) + s.value
    return out


class Rec:
    """One request's outcome as the client saw it."""

    def __init__(self, t0, t1, status, body, retry_after):
        self.t0, self.t1, self.status, self.body, self.retry_after = t0, t1, status, body, retry_after

    @property
    def argus(self) -> dict:
        return self.body["argus"][0]


def _closed_loop_rate(url: str, seconds: float = 2.0) -> float:
    """Requests/s that ROUTER_MAX_PENDING closed-loop clients get from `url` in `seconds` (all must succeed)."""
    deadline = time.monotonic() + 30  # the router serves once it has read the policy
    while httpx.post(url + URL, json={"prompt": "warm-up", "seed": 0}, timeout=60).status_code != 200:
        assert time.monotonic() < deadline, "the router did not serve within 30 s"
        time.sleep(0.5)
    end = time.monotonic() + seconds
    t0 = time.monotonic()
    recs = asyncio.run(_load(None, 0, concurrency=ROUTER_MAX_PENDING, until=lambda: time.monotonic() > end,
                             base_url=url))
    assert recs and all(r.status == 200 for r in recs), [r.status for r in recs if r.status != 200][:5]
    return len(recs) / (time.monotonic() - t0)


async def _load(system: LocalSystem | None, n: int, concurrency: int, on_done=None, pause_on_reject: float = 0.0,
                until=None, base_url: str | None = None) -> list[Rec]:
    """Closed-loop load: `concurrency` clients share `n` requests, or run until `until()` is true."""
    recs: list[Rec] = []
    counter = iter(range(10**9))

    async def client(http):
        while True:
            i = next(counter)
            if (until is None and i >= n) or (until is not None and until()):
                return
            t0 = time.monotonic()
            r = await http.post(URL, json={"prompt": f"a lighthouse at dusk {i}", "seed": i})
            body = r.json()
            rec = Rec(t0, time.monotonic(), r.status_code, body, r.headers.get("retry-after"))
            recs.append(rec)
            if on_done:
                on_done(rec, len(recs))
            if r.status_code != 200 and pause_on_reject:
                await asyncio.sleep(pause_on_reject)

    limits = httpx.Limits(max_connections=concurrency + 4, max_keepalive_connections=concurrency + 4)
    async with httpx.AsyncClient(base_url=base_url or system.url, timeout=60, limits=limits) as http:
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
    return recs


def _counts(recs: list[Rec]) -> dict[str, int]:
    out = {lv: 0 for lv in LEVELS}
    for r in recs:
        out[r.argus["level"]] += 1
    return out


# ---- cases -----------------------------------------------------------------------------------

MATRIX = {"cache-k0": 0.1, "cache-k1": 0.7, "steps-1": 0.2}
N_PLACED = 120
CHI2_DF2_P1E4 = -2 * math.log(1e-4)  # chi-square (2 dof) survival function is exp(-x/2)


def _chi2(counts: dict[str, int], probs: dict[str, float], n: int) -> float:
    return sum((counts[lv] - n * p) ** 2 / (n * p) for lv, p in probs.items())


def test_statistical_bounds_reject_wrong_placements():
    """The bands of the placement case reject what a broken router would produce (guards the guard)."""
    wrong = [{"cache-k0": 40, "cache-k1": 40, "steps-1": 40},  # uniform: matrix ignored
             {"cache-k0": 120, "cache-k1": 0, "steps-1": 0},  # optimal level only
             {"cache-k0": 12, "cache-k1": 24, "steps-1": 84}]  # two levels swapped
    assert all(_chi2(c, MATRIX, N_PLACED) > CHI2_DF2_P1E4 for c in wrong)
    assert _chi2({"cache-k0": 12, "cache-k1": 84, "steps-1": 24}, MATRIX, N_PLACED) == 0


def test_prompts_land_on_the_levels_of_the_redirection_matrix(system):
    _write_policy(system, 2, {"cache-k0": MATRIX})
    _wait_policy(system, 2)
    m0, t0 = _metrics(system), _triton_success(system)
    recs = asyncio.run(_load(system, N_PLACED, concurrency=4))
    assert [r.status for r in recs if r.status != 200] == []
    counts = _counts(recs)
    assert _chi2(counts, MATRIX, N_PLACED) < CHI2_DF2_P1E4, counts
    for lv, p in MATRIX.items():
        sd = math.sqrt(N_PLACED * p * (1 - p))
        assert abs(counts[lv] - N_PLACED * p) <= 4.5 * sd, (lv, counts)
    assert {r.argus["optimal_level"] for r in recs} == {"cache-k0"}
    assert {r.argus["steps_run"] for r in recs if r.argus["level"] == "steps-1"} == {1}
    m1, t1 = _metrics(system), _triton_success(system)
    for lv in LEVELS:  # the router's own counters and the workers of each level agree with the responses
        name = "argus_router_requests_total"
        assert _metric(m1, name, service="svc", level=lv, outcome="ok") - \
            _metric(m0, name, service="svc", level=lv, outcome="ok") == counts[lv], lv
        assert t1.get(lv, 0) - t0.get(lv, 0) == counts[lv], lv
    opt = "argus_router_optimal_level_total"
    assert _metric(m1, opt, service="svc", level="cache-k0") - _metric(m0, opt, service="svc",
                                                                        level="cache-k0") == N_PLACED


def test_policy_change_mid_load_without_failed_requests(system):
    _write_policy(system, 3, {"cache-k0": {"cache-k0": 1.0}})
    _wait_policy(system, 3)
    marks: dict[str, float] = {}

    def on_done(rec, done):
        if done == 20:  # a third of the way through: the control loop publishes a new decision
            marks["v4"] = time.monotonic()
            _write_policy(system, 4, {"cache-k0": {"steps-1": 1.0}})
        if done == 40:  # then an invalid one (row sums to 0.9): rejected, v4 stays in force
            marks["bad"] = time.monotonic()
            _write_policy(system, 5, {}, raw=json.dumps({
                "version": 5, "service": "svc", "quality_floor": 90, "latency_slo_s": 30, "image_size": "32x32",
                "levels": LEVELS,
                "redirection": {"cache-k0": {"cache-k0": 0.9}}}))

    rejected0 = _metric(_metrics(system), "argus_router_policy_rejected_total")
    # run until 2.5 s after the invalid document: long enough for both reloads (every 0.5 s)
    recs = asyncio.run(_load(system, 0, concurrency=4, on_done=on_done,
                             until=lambda: time.monotonic() > marks.get("bad", math.inf) + 2.5))
    assert [r.status for r in recs if r.status != 200] == []
    before = [r for r in recs if r.t1 < marks["v4"]]
    after = [r for r in recs if r.t0 > marks["v4"] + 1.5]  # reload every 0.5 s, plus scheduling slack
    after_bad = [r for r in recs if r.t0 > marks["bad"] + 1.5]
    assert len(before) >= 19 and len(after) >= 10 and after_bad, (len(before), len(after), len(after_bad))
    assert {r.argus["level"] for r in before} == {"cache-k0"}
    assert {r.argus["level"] for r in after} == {"steps-1"}  # after_bad included: v4 stays in force
    m = _metrics(system)
    assert _metric(m, "argus_router_policy_version", service="svc") == 4
    assert _metric(m, "argus_router_policy_rejected_total") == rejected0 + 1


def _access_log(system: LocalSystem, envoy: str) -> list[dict]:
    path = system.workdir / "logs" / f"{envoy}-access.log"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _served(system: LocalSystem, since: float, n: int, envoy: str = "envoy") -> list[tuple[int, float]]:
    """(status, seconds) of the `n` requests Envoy `envoy` logged as started after unix time `since`."""
    def entries():
        return [e for e in _access_log(system, envoy) if e["path"] == URL
                and datetime.fromisoformat(e["time"].replace("Z", "+00:00")).timestamp() >= since]
    deadline = time.monotonic() + 10
    httpx.post(f"http://127.0.0.1:{system.ports[envoy + '_admin']}/reopen_logs", timeout=10)  # flushes the buffer
    while len(got := entries()) < n and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(got) == n, (len(got), n)
    return [(int(e["status"]), int(e["duration_ms"]) / 1e3) for e in got]


def test_overload_is_shed_fast_and_accepted_latency_holds(system):
    """Latencies are Envoy's own (access log): the Python test client on 2 busy cores adds its own delay."""
    _write_policy(system, 6, {"cache-k0": {"cache-k0": 1.0}})  # 2 replicas serve everything
    _wait_policy(system, 6)
    # The machine's rate now (its other load changes during the module): the rate limit is set from it.
    direct = max(_closed_loop_rate(f"http://127.0.0.1:{system.ports['router']}") for _ in range(2))
    limit = max(25, math.ceil(RATE_LIMIT_FACTOR * direct))
    print(f"\nclosed loop x{ROUTER_MAX_PENDING} straight to the router: {direct:.1f} req/s; Envoy rate limit {limit} req/s")
    try:
        url = _start_envoy(system, name="envoy_limited", rate_limit_rps=limit)
        _overload_case(system, url, direct)
    finally:
        system.supervisor.stop("envoy_limited")


def _overload_case(system: LocalSystem, url: str, direct: float) -> None:
    def load(*a, **k):
        return asyncio.run(_load(system, *a, base_url=url, **k))

    def served(since, n):
        return _served(system, since, n, envoy="envoy_limited")
    mark = time.time()
    unloaded = load(12, concurrency=1)
    base = statistics.median(d for _, d in served(mark, len(unloaded))[2:])
    shed0 = _metric(_metrics(system), "argus_router_shed_total", service="svc", reason="router_max_pending")
    full, recs, full_served, overload_served = [], [], [], []
    for _ in range(2):  # alternate phases so that the machine's other load hits both alike
        # at capacity: as many closed-loop clients as the router admits; none refused
        mark, end = time.time(), time.monotonic() + 3
        got = load(0, concurrency=ROUTER_MAX_PENDING, until=lambda: time.monotonic() > end)
        full += got
        full_served += served(mark, len(got))
        # overload: 1.5R + 48 clients (>= 12x what the router admits) that honour Retry-After (1 s) after a
        # refusal
        mark, end = time.time(), time.monotonic() + 5
        got = load(0, concurrency=48 + math.ceil(1.5 * direct), pause_on_reject=1.0,
                   until=lambda: time.monotonic() > end)
        recs += got
        overload_served += served(mark, len(got))
    assert [r.status for r in full if r.status != 200] == []
    at_capacity = statistics.median(d for _, d in full_served)
    ok = [r for r in recs if r.status == 200]
    rejected = [r for r in recs if r.status != 200]
    assert {r.status for r in rejected} <= {429, 503}, {r.status for r in rejected}
    assert all(r.retry_after for r in rejected)
    router_503 = [r for r in rejected if r.status == 503 and r.body["error"]["type"] == "overloaded_error"]
    n429 = sum(r.status == 429 for r in rejected)
    assert n429 and router_503, len(rejected)
    shed = _metric(_metrics(system), "argus_router_shed_total", service="svc", reason="router_max_pending")
    assert shed - shed0 == len(router_503)
    assert len(ok) >= 10 and len(rejected) >= len(ok), (len(ok), len(rejected))  # offered >= 2x served
    refusals = sorted(d for st, d in overload_served if st != 200)
    accepted = statistics.median(d for st, d in overload_served if st == 200)
    p90 = refusals[int(0.9 * len(refusals))]
    print(f"\noverload: {len(recs)} requests in 2x5 s: {len(ok)} ok, {len(router_503)} router 503, {n429} Envoy 429, "
          f"{len(rejected) - len(router_503) - n429} Envoy 503; in Envoy: refusals p90 {p90 * 1e3:.0f} ms, accepted "
          f"p50 {accepted * 1e3:.0f} ms vs unloaded p50 {base * 1e3:.0f} ms ({accepted / base:.2f}x) and at "
          f"capacity p50 {at_capacity * 1e3:.0f} ms ({accepted / at_capacity:.2f}x)")
    # Shed fast: 250 ms on a quiet machine (unloaded p50 75-85 ms, refusals p90 55-101 ms); a machine that runs
    # slower (the suite's other load, CI) gets a limit scaled by its own unloaded latency, measured above.
    assert p90 < max(0.25, 3 * base), (p90, base)
    # Admitted: at most 4 in flight over 2 replicas (one dynamic batch of 2 each), so the latency stays
    # that of a system at capacity. Without admission all the clients would queue at the workers
    # (24 per replica): measured once with admission off (router limit 256, no rate limit), accepted p50
    # was 4.6x the at-capacity latency and ~15x the unloaded one, so both bounds below would fail.
    assert accepted < 2 * at_capacity + 0.2, (accepted, at_capacity)
    assert accepted < 8 * base + 0.3, (accepted, base)


def test_repeated_prompt_is_served_from_its_own_stored_latent(system, tmp_path):
    """A second router with a predictor (real MiniLM), behind its own Envoy, on the same workers."""
    import numpy as np

    from argus.levels import parse_levels
    from argus.prompt.predictor import fit_predictor, level_costs, save_predictor
    from argus.router.settings import ServicePredictor
    from argus.worker.tiny import tiny_identity

    # A predictor that wants full quality unless a stored similar prompt makes cache-k1 good enough
    # (quality 50 + 50 x similarity); steps-1 is always below the floor.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 384))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sim = rng.uniform(0.2, 1.0, 40)
    q = {"cache-k0": np.full(40, 100.0), "steps-1": np.full(40, 80.0), "cache-k1": 50 + 50 * sim}
    steps = system.spec.model.steps
    pred = fit_predictor(encoder="all-MiniLM-L6-v2", model=tiny_identity(), steps=steps, levels=LEVELS,
                         embeddings=x, quality=q, similarity=sim, costs=level_costs(parse_levels(LEVELS, steps), steps))
    save_predictor(pred, tmp_path / "svc.predictor.json")
    _write_policy(system, 7, {"cache-k0": {"cache-k0": 1.0}})  # no redirection: served at the optimal level
    try:
        # It loads a real sentence encoder before it answers: over 60 s with a heavy job beside the suite.
        _start_router(system, 64, name="router_pred", ready_s=240, predictors={"svc": ServicePredictor(
            tmp_path / "svc.predictor.json", tuple(LEVELS), tiny_identity(), steps, system.latent_dir)})
        url = _start_envoy(system, name="envoy_pred", router="router_pred")

        def gen(prompt):
            r = httpx.post(url + URL, json={"prompt": prompt, "seed": 7, "user": "alice"}, timeout=120)
            assert r.status_code == 200, r.text
            return r.json()["argus"][0]

        cat = "a cat sitting on a red mat, oil painting"
        first, repeat = gen(cat), gen(cat)
        unrelated = gen("a spaceship above the rings of saturn, digital art")
        text = httpx.get(url + "/metrics", timeout=10).text
    finally:
        for name in ("envoy_pred", "router_pred"):
            system.supervisor.stop(name)
    assert (first["optimal_level"], first["level"], first["k_used"]) == ("cache-k0", "cache-k0", 0)
    assert (repeat["optimal_level"], repeat["level"]) == ("cache-k1", "cache-k1")
    assert repeat["cache_hit"] is True and repeat["k_used"] == 1 and repeat["fallback_reason"] is None
    assert unrelated["optimal_level"] == "cache-k0" and unrelated["cache_hit"] is False
    assert 'argus_router_cache_lookups_total{result="hit",service="svc"} 1.0' in text


def test_a_worker_switched_in_place_serves_its_new_level_without_a_restart(system):
    """A cache-k0 replica switched in place to steps-1 (the local actuator's move within one model) serves
    steps-1 requests as soon as the router rereads the endpoints: the same process, no reload. Switched back
    after, for the cases that follow."""
    _write_policy(system, 8, {"cache-k0": {"steps-1": 1.0}})
    _wait_policy(system, 8)
    mover = sorted(n for n, r in system.replicas.items() if r.level == "cache-k0")[0]
    rep, pid = system.replicas[mover], system.supervisor.children[mover].popen.pid
    system.switch_worker(mover, "steps-1")
    try:
        time.sleep(1.5)  # the router rereads its endpoints every 0.5 s
        recs = asyncio.run(_load(system, 24, concurrency=4))
    finally:
        system.switch_worker(mover, "cache-k0")
    assert [(r.status, r.body) for r in recs if r.status != 200] == []
    assert {(r.argus["level"], r.argus["steps_run"]) for r in recs} == {("steps-1", 1)}
    assert [r for r in recs if r.argus["replica"] == f"{rep.grpc}@cache-k0"]  # the switched worker served some
    assert system.supervisor.children[mover].popen.pid == pid and system.counts() == REPLICAS


def test_sigkill_of_a_replica_mid_load_loses_no_request(system):
    _write_policy(system, 9, {"cache-k0": {"cache-k0": 1.0}})
    _wait_policy(system, 9)
    victim = next(r for r in system.replicas.values() if r.level == "cache-k0")
    retries0 = _metric(_metrics(system), "argus_router_retries_total", service="svc", level="cache-k0")
    marks: dict[str, float] = {}

    def on_done(rec, done):
        if done == 15:
            child = system.supervisor.children[victim.name]
            os.killpg(child.popen.pid, signal.SIGKILL)  # no unpublish: the router finds it dead
            marks["kill"] = time.monotonic()

    recs = asyncio.run(_load(system, 50, concurrency=4, on_done=on_done))
    assert [(r.status, r.body) for r in recs if r.status != 200] == []
    assert any(r.argus["replica"] == victim.grpc for r in recs if r.t1 < marks["kill"])
    after = [r for r in recs if r.t0 > marks["kill"]]
    assert after and all(r.argus["replica"] != victim.grpc for r in after)
    retried = [r for r in recs if r.argus["retries"] > 0]
    assert retried
    retries = _metric(_metrics(system), "argus_router_retries_total", service="svc", level="cache-k0")
    assert retries - retries0 == sum(r.argus["retries"] for r in recs)


def test_sigkill_of_a_levels_only_replica_falls_back_to_a_safer_level(system):
    _write_policy(system, 10, {"cache-k0": {"steps-1": 1.0}})
    _wait_policy(system, 10)
    victim = next(r for r in system.replicas.values() if r.level == "steps-1")
    marks: dict[str, float] = {}

    def on_done(rec, done):
        if done == 10:
            os.killpg(system.supervisor.children[victim.name].popen.pid, signal.SIGKILL)
            marks["kill"] = time.monotonic()

    recs = asyncio.run(_load(system, 30, concurrency=4, on_done=on_done))
    assert [(r.status, r.body) for r in recs if r.status != 200] == []
    assert {r.argus["level"] for r in recs if r.t1 < marks["kill"]} == {"steps-1"}
    after = [r for r in recs if r.t0 > marks["kill"]]
    assert len(after) >= 10
    # steps-1 has no other replica: the retry goes to the next safer level, cache-k1
    assert {(r.argus["level"], r.argus["retries"]) for r in after} == {("cache-k1", 1)}
