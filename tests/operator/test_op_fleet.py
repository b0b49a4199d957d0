"""The control loop (argus.controlplane.fleet) on a fake clock, with the real cache, planner and metrics.

Only the API server and Prometheus are replaced: a recorder that plays the watch (what it writes
shows up in the cache) and a snapshot source the test sets. Cases:
- first sight plans and writes once; steady periods write nothing; the heartbeat writes once a minute;
  a demand change is written at its period;
- an API failure (a full service range) is said in the status and one Warning Event, retried with
  backoff, and cleared when the objects can be made;
- a service deleted while its period is in flight: nothing written after, nothing kept (record, series);
- a child deleted by someone is put back; children taken by garbage collection because the T2IService
  was deleted (its watch event not arrived yet) are not re-created, and the service is forgotten;
- a finalizer left by an older operator is removed; an invalid spec is written once;
- Prometheus is read once per tick per Prometheus URL for every due service, and services with the
  same period fall due together (one read per period, however many services); an outage read once
  still gives each service its Degraded/PrometheusUnreachable condition and one Warning Event;
- status arithmetic: material change tolerances, merge-patch merge/diff;
- the Kubernetes client's pool holds a connection per worker thread.
"""

from __future__ import annotations

import threading
import time

import pytest
from prometheus_client import generate_latest

from argus.adapters.kubernetes import KubeApiError
from argus.control.observed import MetricsSnapshot, MetricsUnavailable
from argus.controlplane.cache import ObjectCache
from argus.controlplane.fleet import LEGACY_FINALIZER, Fleet, next_period
from argus.controlplane.metrics import OperatorMetrics
from argus.controlplane.settings import OperatorSettings
from argus.controlplane.status import diff, materially_different, merge
from argus.policy.profile import load_default_profile

LEVELS = ["cache-k0", "cache-k10", "cache-k20", "steps-25"]
SPEC = {"throughputTarget": 3, "gpus": 4, "levels": LEVELS, "controlPeriod": 15, "qualityFloor": 90,
        "prometheusUrl": "http://prometheus:9090", "scaleDownHalfLife": 1}


class Clock:
    def __init__(self, t: float = 999_990.0):  # a multiple of the control period (15 s)
        self.t = t

    def __call__(self) -> float:
        return self.t


class Kube:
    """Records writes; returns what it creates as the API server would (the actuator caches it)."""

    def __init__(self, cache: ObjectCache):
        self.cache, self.statuses, self.events, self.patches = cache, [], [], []
        self.writes: list[tuple[str, str]] = []
        self.fail: dict[str, KubeApiError] = {}
        self.gone: set[str] = set()  # T2IServices the API server no longer has
        self.reads: list[tuple[str, str]] = []

    def read(self, kind, namespace, name):
        self.reads.append((kind, name))
        return None if name in self.gone else self.cache.get(kind, namespace, name)

    def ensure(self, obj, current=None):
        if obj["kind"] in self.fail:
            raise self.fail[obj["kind"]]
        self.writes.append((obj["kind"], obj["metadata"]["name"]))
        return "created", obj  # the actuator puts it in the cache

    def delete(self, kind, namespace, name):
        self.writes.append(("DELETE " + kind, name))
        return True

    def patch_status(self, kind, namespace, name, status):
        self.statuses.append((name, status))

    def post_event(self, involved, etype, reason, message):
        self.events.append((involved["name"], etype, reason, message))

    def patch(self, kind, namespace, name, body):
        self.patches.append((name, body))


class Source:
    """Prometheus: a snapshot the test sets, or `down` (every service's reading is that failure);
    `gate` (when set) holds every read until it is opened; `reads` lists each read's (url, services)."""

    def __init__(self):
        self.demand = 0.5
        self.down: MetricsUnavailable | None = None
        self.gate: threading.Event | None = None
        self.held = 0
        self.reads: list[tuple[str, list[str]]] = []

    def readings(self, url, services):
        services = list(services)
        self.reads.append((url, sorted(services)))
        if self.gate is not None:
            self.held += 1
            self.gate.wait(10)
        return {s: self.down or MetricsSnapshot(demand=self.demand, h={"cache-k0": 1.0},
                                                throughput={"cache-k0": self.demand}, quality=100.0)
                for s in services}


@pytest.fixture()
def world():
    cache, clock, source, metrics = ObjectCache(), Clock(), Source(), OperatorMetrics()
    kube = Kube(cache)
    fleet = Fleet(cfg=OperatorSettings(workers=2, retry_delay_s=2.0, heartbeat_s=60.0), kube=kube, cache=cache,
                  prometheus=source, profile=load_default_profile(), metrics=metrics, clock=clock)
    yield fleet, cache, kube, clock, source, metrics
    fleet.stop(timeout=1.0)


def t2i(name="a", generation=1, spec=None, **meta):
    return {"apiVersion": "argus.dev/v1alpha1", "kind": "T2IService",
            "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}", "generation": generation,
                         **meta}, "spec": dict(spec or SPEC)}


def run(fleet: Fleet) -> list:
    """One tick, and wait for its work."""
    submitted = fleet.tick()
    deadline = time.monotonic() + 120
    while fleet.in_flight() and time.monotonic() < deadline:
        time.sleep(0.01)
    return [kind for _, kind in submitted]


def test_writes_only_on_change_and_with_the_heartbeat(world):
    fleet, cache, kube, clock, source, _ = world
    cache.put("T2IService", t2i())
    assert run(fleet) == ["spec"]
    assert len(kube.statuses) == 1 and kube.statuses[0][1]["observedGeneration"] == 1
    assert ("Deployment", "a-cache-k0") in kube.writes and ("ConfigMap", "a-policy") in kube.writes
    assert [e[2] for e in kube.events] == ["Planned"]
    clock.t += 1
    assert run(fleet) == []  # not due before its control period
    writes, statuses = len(kube.writes), len(kube.statuses)
    for _ in range(3):  # steady metrics: periods run, nothing is written
        clock.t += 15
        assert run(fleet) == ["period"]
    assert len(kube.statuses) == statuses + 1  # the first observed period (t+16) says what changed
    clock.t += 15
    run(fleet)  # t+61
    assert len(kube.statuses) == statuses + 1, kube.statuses[statuses + 1:]
    assert len(kube.writes) == writes  # no object re-written either
    clock.t += 15  # t+76: 60 s after the last write, the heartbeat
    run(fleet)
    assert len(kube.statuses) == statuses + 2 and set(kube.statuses[-1][1]) <= {"lastDecision", "demandEstimate"}
    source.demand = 2.5
    clock.t += 15
    run(fleet)
    assert len(kube.statuses) == statuses + 3 and kube.statuses[-1][1]["observedThroughput"] == 2.5


def test_api_failure_is_said_in_status_and_retried_with_backoff(world):
    fleet, cache, kube, clock, _, metrics = world
    kube.fail["Service"] = KubeApiError(500, "POST services: failed to allocate a serviceIP: range is full")
    cache.put("T2IService", t2i())
    assert run(fleet) == ["spec"]
    (name, status), = kube.statuses
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and degraded["reason"] == "KubernetesApiError"
    assert "range is full" in degraded["message"] and "range is full" in status["message"]
    assert [(e[1], e[2]) for e in kube.events] == [("Warning", "KubernetesApiError")]
    clock.t += 1
    assert run(fleet) == []  # backing off: 2 s
    clock.t += 1.5
    assert run(fleet) == ["spec"]
    assert len(kube.events) == 1 and len(kube.statuses) == 1  # same failure: no new Event, no new write
    clock.t += 3
    assert run(fleet) == []  # 4 s after the second failure
    del kube.fail["Service"]
    clock.t += 2
    assert run(fleet) == ["spec"]
    degraded = next(c for c in kube.statuses[-1][1]["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] != "KubernetesApiError" and kube.statuses[-1][1]["observedGeneration"] == 1
    assert 'kind="api_retryable"' in generate_latest(metrics.registry).decode()


def test_deleted_while_in_flight_keeps_nothing(world):
    fleet, cache, kube, clock, source, metrics = world
    body = t2i()
    cache.put("T2IService", body)
    run(fleet)
    source.gate = threading.Event()
    clock.t += 15
    assert [k for _, k in fleet.tick()] == ["period"]
    deadline = time.monotonic() + 60
    while not source.held and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fleet.in_flight() == 1
    statuses, events = len(kube.statuses), len(kube.events)
    cache.drop("T2IService", body)  # the DELETED watch event
    fleet.forget("default", "a")
    assert fleet.tracked() == 0
    assert 'service="a"' not in generate_latest(metrics.registry).decode()
    source.demand = 2.5  # the held period would reallocate and write
    source.gate.set()
    deadline = time.monotonic() + 60
    while fleet.in_flight() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    assert len(kube.statuses) == statuses and len(kube.events) == events
    assert fleet.tracked() == 0 and 'service="a"' not in generate_latest(metrics.registry).decode()


def test_missing_child_is_put_back_unless_its_service_was_deleted(world):
    fleet, cache, kube, clock, _, _ = world
    body = t2i()
    cache.put("T2IService", body)
    run(fleet)
    dep = cache.get("Deployment", "default", "a-cache-k10")
    cache.drop("Deployment", dep)  # someone deleted it
    writes = len(kube.writes)
    clock.t += 15
    assert run(fleet) == ["period"]
    assert ("Deployment", "a-cache-k10") in kube.writes[writes:] and ("T2IService", "a") in kube.reads
    for kind in ("Deployment", "Service", "ConfigMap", "PersistentVolumeClaim"):  # garbage collection
        for obj in cache.owned(kind, "default", "a"):
            cache.drop(kind, obj)
    kube.gone.add("a")
    writes, statuses = len(kube.writes), len(kube.statuses)
    clock.t += 15
    assert run(fleet) == ["period"]
    assert kube.writes[writes:] == [] and len(kube.statuses) == statuses
    assert fleet.tracked() == 0 and cache.get("T2IService", "default", "a") is None
    cache.put("T2IService", body)  # a late MODIFIED event of the deleted service
    clock.t += 15
    assert run(fleet) == [] and kube.writes[writes:] == [] and fleet.tracked() == 0


def test_legacy_finalizer_is_removed_and_invalid_spec_written_once(world):
    fleet, cache, kube, clock, _, _ = world
    cache.put("T2IService", t2i("old", finalizers=[LEGACY_FINALIZER, "other/keep"], resourceVersion="7"))
    assert run(fleet) == ["unblock"]
    assert kube.patches == [("old", {"metadata": {"finalizers": ["other/keep"], "resourceVersion": "7"}})]
    cache.put("T2IService", t2i("bad", spec={**SPEC, "gpus": -1}))
    clock.t += 3
    run(fleet)
    bad = [s for n, s in kube.statuses if n == "bad"]
    assert len(bad) == 1 and bad[0]["invalidGeneration"] == 1 and bad[0]["message"].startswith("spec.gpus")
    for _ in range(3):
        clock.t += 15
        run(fleet)
    assert len([s for n, s in kube.statuses if n == "bad"]) == 1
    assert [e[2] for e in kube.events if e[0] == "bad"] == ["InvalidSpec"]
    cache.put("T2IService", t2i("bad", generation=2))  # fixed
    clock.t += 1
    assert ("default", "bad") in {k for k, _ in fleet.tick()}


def test_one_prometheus_read_per_url_per_period(world):
    fleet, cache, kube, clock, source, _ = world
    names = [f"s{i}" for i in range(6)]
    for i, n in enumerate(names):
        other = {**SPEC, "prometheusUrl": "http://other:9090"} if i == 5 else SPEC
        cache.put("T2IService", t2i(n, spec=other))
        clock.t += 2.5  # created at different times: their periods still fall due together
        run(fleet)
    for _ in range(4):
        source.reads.clear()
        clock.t += 15
        assert sorted(run(fleet)) == ["period"] * 6
        # the two URLs are read on the worker pool, so in either order; once each
        assert sorted(source.reads) == [("http://other:9090", names[5:]), ("http://prometheus:9090", names[:5])]


def test_prometheus_outage_read_once_degrades_every_service(world):
    fleet, cache, kube, clock, source, _ = world
    for n in ("a", "b", "c"):
        cache.put("T2IService", t2i(n))
    run(fleet)
    source.down = MetricsUnavailable("PrometheusUnreachable", "Prometheus at http://prometheus:9090 failed "
                                     "(demand query): ConnectionError: NewConnectionError: Connection refused")
    source.reads.clear()
    events = len(kube.events)
    for _ in range(2):
        clock.t += 15
        run(fleet)
    assert len(source.reads) == 2
    for n in ("a", "b", "c"):
        written: dict = {}
        for patch in (s for name, s in kube.statuses if name == n):
            written = merge(written, patch)
        degraded = next(c for c in written["conditions"] if c["type"] == "Degraded")
        assert degraded["status"] == "True" and degraded["reason"] == "PrometheusUnreachable"
        assert "Connection refused" in degraded["message"] and written["allocation"]
    warnings = [(e[0], e[2]) for e in kube.events[events:]]
    assert sorted(warnings) == [("a", "PrometheusUnreachable"), ("b", "PrometheusUnreachable"),
                                ("c", "PrometheusUnreachable")]


@pytest.mark.parametrize("now,period,due", [
    (999_990.0, 15, 1_000_005.0), (999_991.0, 15, 1_000_005.0), (999_998.0, 15, 1_000_020.0), (7.4, 10, 20.0),
    (2.0, 2, 4.0), (2.9, 2, 4.0), (3.1, 2, 6.0),
])
def test_next_period_falls_on_multiples(now, period, due):
    assert next_period(now, period) == due


@pytest.mark.parametrize("old,new,different", [
    ({"observedThroughput": 0.50}, {"observedThroughput": 0.4745}, False),  # scrape jitter (5 %)
    ({"observedThroughput": 0.50}, {"observedThroughput": 0.58}, True),
    ({"averageQuality": 97.0}, {"averageQuality": 97.4}, False),
    ({"averageQuality": 97.0}, {"averageQuality": 95.0}, True),
    ({"sloViolationRate": 0.0}, {"sloViolationRate": 0.005}, False),
    ({"allocation": {"a": 1}}, {"allocation": {"a": 2}}, True),
    ({"lastDecision": 1.0, "demandEstimate": {"rate": 1}}, {"lastDecision": 99.0, "demandEstimate": {"rate": 3}}, False),
    ({"message": "demand 0.512 req/s"}, {"message": "demand 0.498 req/s"}, False),
    ({"message": "gain -1.42e-14"}, {"message": "gain 0"}, False),
    ({"message": "kept current allocation"}, {"message": "released idle replicas"}, True),
    ({"readyReplicas": 1}, {"readyReplicas": 2}, True),
    ({"conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": "x"}]},
     {"conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": "y"}]}, False),
    ({}, {"overload": False}, True),
])
def test_material_changes(old, new, different):
    assert materially_different(old, new) is different


def test_merge_and_diff_are_merge_patch():
    old = {"allocation": {"a": 1, "b": 2}, "message": "x", "invalidGeneration": 3}
    patch = {"allocation": {"b": None, "c": 1}, "invalidGeneration": None, "policyVersion": 2}
    new = merge(old, patch)
    assert new == {"allocation": {"a": 1, "c": 1}, "message": "x", "policyVersion": 2}
    assert merge(old, diff(old, new)) == new and diff(new, new) == {}
    assert diff(old, new) == {"allocation": {"b": None, "c": 1}, "invalidGeneration": None, "policyVersion": 2}


def test_api_client_pool_holds_a_connection_per_worker(tmp_path, monkeypatch):
    from argus.adapters.kubernetes import api_client

    (tmp_path / "kubeconfig").write_text(
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'http://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
        "current-context: x\n")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    for workers in (16, 64):
        cfg = OperatorSettings(workers=workers)
        client = api_client(cfg.api_pool_size)
        assert client.rest_client.pool_manager.connection_pool_kw["maxsize"] >= workers


def test_cache_keeps_the_newest_version_and_indexes_by_service():
    cache = ObjectCache()
    dep = {"kind": "Deployment", "metadata": {"name": "a-x", "namespace": "ns", "resourceVersion": "5",
                                              "labels": {"argus.dev/service": "a"}}}
    cache.put("Deployment", dep)
    cache.put("Deployment", {**dep, "metadata": {**dep["metadata"], "resourceVersion": "4"}})  # late write-through
    assert cache.get("Deployment", "ns", "a-x")["metadata"]["resourceVersion"] == "5"
    assert [d["metadata"]["name"] for d in cache.owned("Deployment", "ns", "a")] == ["a-x"]
    cache.drop("Deployment", dep)
    assert cache.get("Deployment", "ns", "a-x") is None and cache.owned("Deployment", "ns", "a") == []
    assert cache.size() == 0
