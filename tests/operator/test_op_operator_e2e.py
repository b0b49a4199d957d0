"""The real operator process (`kopf run -m argus.controlplane.handlers`) against KMock and a real Prometheus.

Prometheus scrapes fake routers that export the router's real metric classes at rates the test sets.
Cases:
- lifecycle: apply creates per-level Deployments + Services, the policy ConfigMap and the latent PVC, all
  owned by the T2IService; status (allocation, observedGeneration, conditions, printer-column fields);
  Ready follows the workers; a demand jump in Prometheus changes replicas and the policy within two control
  periods, with a Reallocated Event carrying the numbers; a spec edit re-plans; the operator's own metrics
  count decisions and solve time; delete removes every child (ownerReference garbage collection);
- restart: the operator is killed, the spec edited while it is down, a new process converges to the new spec
  without re-creating untouched objects or duplicating anything;
- invalid specs (negative GPUs, floor > 100, unknown level, budget below the levels that must stay up, and a
  valid service edited into an invalid one): Degraded/InvalidSpec condition and a Warning Event naming the
  field, the last allocation kept, the operator alive; fixing the spec recovers;
- metrics missing: a service without series gets Degraded/NoMetrics; Prometheus stopped -> allocation kept,
  Degraded/PrometheusUnreachable; Prometheus back -> Degraded False and a MetricsRecovered Event;
- peering: two operator replicas with kopf peering; only the higher-priority one acts;
- latent-cache storage: cache.storageClassName goes on the claim (named by its class); cache.enabled=false
  creates no claim and no volume; the LatentCache condition names the mode in force.
"""

from __future__ import annotations

import json
import shutil
import time

import pytest

from tests.support.harness import FakeRouter, KMockApi, Operator, Prometheus, wait_until

pytestmark = pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs the prometheus binary")

PERIOD = 2.0
LEVELS = ["cache-k0", "cache-k10", "cache-k20", "steps-25"]
SERVICES = ["alpha", "beta", "delta"]
LOW = dict(demand=0.5, h={"cache-k0": 1.0}, served={"cache-k0": 0.5}, quality=100.0)
HIGH = dict(demand=2.5, h={"cache-k20": 1.0}, served={"cache-k0": 1.2, "steps-25": 1.0}, quality=93.0, slo=0.2)


@pytest.fixture(scope="module")
def routers():
    rs = {s: FakeRouter(s) for s in SERVICES}
    for r in rs.values():
        r.set(**LOW)
    yield rs
    for r in rs.values():
        r.stop()


@pytest.fixture(scope="module")
def prom(routers, tmp_path_factory):
    p = Prometheus(tmp_path_factory.mktemp("prom"), [f"127.0.0.1:{r.port}" for r in routers.values()])
    yield p
    p.stop()


@pytest.fixture()
def api(tmp_path):
    a = KMockApi(tmp_path)
    yield a
    a.stop()


@pytest.fixture()
def operator(api, tmp_path):
    ops = []

    def start(**kw) -> Operator:
        op = Operator(api, tmp_path, tag=f"op{len(ops)}", **kw)
        ops.append(op)
        return op.wait_started()

    yield start
    for op in ops:
        if op.alive():
            op.stop()


def spec(prom_url: str, **over) -> dict:
    raw = {"throughputTarget": 3, "gpus": 4, "levels": LEVELS, "controlPeriod": PERIOD, "qualityFloor": 90,
           "prometheusUrl": prom_url, "latencySLO": 30}
    raw.update(over)
    return raw


def status(api: KMockApi, name: str) -> dict:
    return (api.t2i(name) or {}).get("status") or {}


def cond(api: KMockApi, name: str, ctype: str) -> dict:
    return next((c for c in status(api, name).get("conditions", []) if c["type"] == ctype), {})


def policy(api: KMockApi, name: str) -> dict:
    cm = api.get(f"/api/v1/namespaces/default/configmaps/{name}-policy")
    return json.loads(cm["data"]["policy.json"]) if cm else {}


def events(api: KMockApi, name: str, reason: str) -> list[str]:
    return [e["message"] for e in api.events(name=name) if e.get("reason") == reason]


def prom_demand(prom: Prometheus, name: str) -> float:
    res = prom.query(f'sum(rate(argus_router_arrivals_total{{service="{name}"}}[5s]))')
    return float(res[0]["value"][1]) if res else -1.0


def test_lifecycle(api, operator, prom, routers):
    op = operator()
    routers["alpha"].set(**LOW)
    # The first plan is made on metrics of the low demand: a first reading taken while Prometheus's rate
    # window is still filling under-reads the demand, and an allocation planned from the prior that such a
    # reading confirms is kept for the dwell, whatever the jump below would have changed.
    wait_until(lambda: prom_demand(prom, "alpha") >= 0.8 * LOW["demand"], 20, what="Prometheus to see the low demand")
    # without late rungs: with them the 4 full-quality slots ride HIGH on their steps-25 rung rather than reload
    # (argus.policy.moves.rung_quality), where this test follows a demand jump through to the Deployments
    created = api.apply_t2i("alpha", spec(prom.url, lateRungs=False))
    uid = created["metadata"]["uid"]
    wait_until(lambda: len(api.deployments("alpha")) == 4 and policy(api, "alpha"), 30, what="children created")
    deps = api.deployments("alpha")
    assert sorted(deps) == [f"alpha-{lv}" for lv in sorted(LEVELS)]
    svcs = api.owned("/api/v1/namespaces/{ns}/services", "alpha")
    assert sorted(s["metadata"]["name"] for s in svcs) == sorted(deps)
    assert api.get("/api/v1/namespaces/default/persistentvolumeclaims/alpha-latents")
    for obj in [*deps.values(), *svcs]:
        assert obj["metadata"]["ownerReferences"][0]["uid"] == uid
    assert policy(api, "alpha")["epoch"] == uid  # a recreated service (new uid) restarts its versions
    st = wait_until(lambda: status(api, "alpha").get("observedThroughput") is not None and status(api, "alpha"),
                    20, what="a control period with metrics")
    assert st["observedGeneration"] == 1 and sum(st["allocation"].values()) <= 4
    assert st["allocation"] == api.replicas("alpha") and st["averageQuality"] > 0
    assert {c["type"] for c in st["conditions"]} == {"Ready", "Progressing", "Degraded", "LatentCache"}
    assert (cond(api, "alpha", "LatentCache")["status"], cond(api, "alpha", "LatentCache")["reason"]) == \
        ("True", "SharedVolume")
    assert cond(api, "alpha", "Ready")["status"] == "False"
    def ready_after_marking():
        api.mark_ready("alpha")  # play the Deployment controller (again, if the loop re-planned meanwhile)
        return cond(api, "alpha", "Ready").get("status") == "True"

    wait_until(ready_after_marking, 15, 0.5, what="Ready=True")
    assert events(api, "alpha", "Planned")

    # A demand jump seen by Prometheus must change replicas and policy within two control periods.
    before, version = api.replicas("alpha"), policy(api, "alpha")["version"]
    routers["alpha"].set(**HIGH)
    wait_until(lambda: prom_demand(prom, "alpha") > 2.0, 20, what="Prometheus to see the demand jump")
    t0 = time.monotonic()
    wait_until(lambda: api.replicas("alpha") != before and policy(api, "alpha")["version"] > version,
               2 * PERIOD + 3, 0.1, what="replicas and policy to change")
    elapsed = time.monotonic() - t0
    assert elapsed <= 2 * PERIOD + 1.0, f"acted after {elapsed:.1f}s"
    # Deployments are patched one by one: wait for the last patch before comparing with the policy.
    wait_until(lambda: policy(api, "alpha")["allocation"] == api.replicas("alpha"), 5, 0.1,
               what="replicas to match the policy")
    msgs = wait_until(lambda: [m for m in events(api, "alpha", "Reallocated") if "> capacity" in m], 5,
                      what="Reallocated event for the jump")
    assert msgs[-1].startswith("demand ") and "→" in msgs[-1] and "quality" in msgs[-1]

    # Spec edit re-plans: more GPUs are used for the same high demand.
    api.edit_t2i("alpha", {"gpus": 8})
    wait_until(lambda: status(api, "alpha").get("observedGeneration") == 2 and
               sum(api.replicas("alpha").values()) > 4, 15, what="re-plan for gpus=8")
    assert sum(api.replicas("alpha").values()) <= 8

    text = op.metrics()
    assert 'argus_operator_decisions_total{changed="true",service="alpha"}' in text
    assert "argus_operator_solve_seconds_count" in text and "argus_operator_solve_seconds_count 0.0" not in text

    api.delete_t2i("alpha")
    wait_until(lambda: api.t2i("alpha") is None, 15, what="T2IService gone")
    # no finalizer: the children go by ownerReference garbage collection (KMock plays the collector)
    wait_until(lambda: api.deployments("alpha") == {} and
               api.owned("/api/v1/namespaces/{ns}/services", "alpha") == [] and
               api.get("/api/v1/namespaces/default/configmaps/alpha-policy") is None and
               api.get("/api/v1/namespaces/default/persistentvolumeclaims/alpha-latents") is None,
               5, 0.1, what="children garbage-collected")
    assert op.alive()


def test_restart_converges_without_duplicates(api, operator, prom, routers):
    routers["beta"].set(**LOW)
    op = operator()
    api.apply_t2i("beta", spec(prom.url))
    wait_until(lambda: status(api, "beta").get("observedThroughput") is not None, 30, what="beta planned")
    uids = {n: d["metadata"]["uid"] for n, d in api.deployments("beta").items()}
    op.kill()
    api.edit_t2i("beta", {"levels": LEVELS[:3]})  # drops steps-25 while no operator runs
    operator()
    wait_until(lambda: status(api, "beta").get("observedGeneration") == 2 and
               "beta-steps-25" not in api.deployments("beta"), 30, what="new operator converges")
    deps = api.deployments("beta")
    assert sorted(deps) == sorted(f"beta-{lv}" for lv in LEVELS[:3])
    assert all(deps[n]["metadata"]["uid"] == uids[n] for n in deps), "untouched Deployments were re-created"
    assert set(status(api, "beta")["allocation"]) == set(LEVELS[:3])
    assert len(api.owned("/api/v1/namespaces/{ns}/configmaps", "beta")) == 1
    assert len(api.owned("/api/v1/namespaces/{ns}/services", "beta")) == 3
    assert len(events(api, "beta", "Planned")) == 1  # the restart did not start over


INVALID = [
    ("neg-gpus", {"gpus": -1}, "spec.gpus"),
    ("floor", {"qualityFloor": 101}, "spec.qualityFloor"),
    ("level", {"levels": ["cache-k0", "turbo-3"]}, "spec.levels"),
    ("budget", {"gpus": 2, "minFullQualityReplicas": 3}, "spec.minFullQualityReplicas"),
]


def test_invalid_specs_and_missing_metrics(api, operator, prom, routers):
    op = operator()
    for name, over, field in INVALID:
        api.apply_t2i(name, spec(prom.url, **over))
    api.apply_t2i("nodata", spec(prom.url))  # no router exports this service
    routers["delta"].set(**LOW)
    api.apply_t2i("delta", spec(prom.url))
    for name, over, field in INVALID:
        c = wait_until(lambda: cond(api, name, "Degraded").get("reason") == "InvalidSpec" and
                       cond(api, name, "Degraded"), 20, what=f"{name}: InvalidSpec condition")
        assert c["status"] == "True" and c["message"].startswith(field)
        msgs = wait_until(lambda: events(api, name, "InvalidSpec"), 10, what=f"{name}: InvalidSpec event")
        assert field in msgs[0]
        assert api.deployments(name) == {}
    c = wait_until(lambda: cond(api, "nodata", "Degraded").get("reason") == "NoMetrics" and
                   cond(api, "nodata", "Degraded"), 20, what="NoMetrics condition")
    assert c["status"] == "True" and len(api.deployments("nodata")) == 4  # planned for the target anyway

    # A working service edited into an invalid one keeps its allocation; fixing it recovers.
    wait_until(lambda: status(api, "delta").get("observedThroughput") is not None, 20, what="delta planned")
    kept = api.replicas("delta")
    api.edit_t2i("delta", {"qualityFloor": 150})
    wait_until(lambda: cond(api, "delta", "Degraded").get("reason") == "InvalidSpec", 15, what="delta invalid")
    time.sleep(2 * PERIOD)
    assert api.replicas("delta") == kept and op.alive()
    assert len(events(api, "delta", "InvalidSpec")) == 1  # no crash loop, no Event storm
    api.edit_t2i("delta", {"qualityFloor": 85})
    wait_until(lambda: cond(api, "delta", "Degraded").get("reason") == "AsExpected" and
               status(api, "delta").get("observedGeneration") == 3, 20, what="delta recovers")
    assert op.alive() and "Traceback" not in op.logs()


def test_prometheus_down_keeps_allocation_and_recovers(api, operator, routers, tmp_path):
    routers["delta"].set(**HIGH)
    p = Prometheus(tmp_path, [f"127.0.0.1:{routers['delta'].port}"])
    try:
        operator()
        api.apply_t2i("delta", spec(p.url))
        wait_until(lambda: cond(api, "delta", "Degraded").get("reason") in ("AsExpected", "Overload"), 30,
                   what="metrics-driven plan")
        kept, version = api.replicas("delta"), policy(api, "delta")["version"]
        p.stop()
        c = wait_until(lambda: cond(api, "delta", "Degraded").get("reason") == "PrometheusUnreachable" and
                       cond(api, "delta", "Degraded"), 3 * PERIOD + 3, what="PrometheusUnreachable")
        assert c["status"] == "True" and "keeping the last allocation" in c["message"]
        time.sleep(PERIOD)
        assert api.replicas("delta") == kept and policy(api, "delta")["version"] == version
        assert len(events(api, "delta", "PrometheusUnreachable")) == 1
        p.start()
        wait_until(lambda: cond(api, "delta", "Degraded").get("reason") in ("AsExpected", "Overload"), 30,
                   what="recovery after Prometheus returns")
        assert events(api, "delta", "MetricsRecovered")
    finally:
        p.stop()


def test_peering_only_one_replica_acts(api, operator, prom, routers):
    high = operator(peering="argus", priority=20)
    wait_until(lambda: "Resuming the watch-stream for t2iservices" in high.logs(), 30, what="first replica up")
    low = operator(peering="argus", priority=10)
    wait_until(lambda: "Starting the watch-stream for t2iservices" in low.logs(), 30, what="second replica up")
    api.apply_t2i("beta", spec(prom.url))
    wait_until(lambda: len(api.deployments("beta")) == 4, 30, what="the active replica to act")
    time.sleep(PERIOD)
    assert "default/beta: Planned" in high.logs() and "default/beta" not in low.logs()
    assert "Resuming the watch-stream for t2iservices" not in low.logs()  # it stayed paused
    high.stop()
    wait_until(lambda: "Resuming operations" in low.logs(), 60, what="the standby to take over")
    api.edit_t2i("beta", {"gpus": 6})
    wait_until(lambda: status(api, "beta").get("observedGeneration") == 2, 30, what="standby acts on an edit")


def test_latent_cache_storage_modes(api, operator, prom, routers):
    operator()
    api.apply_t2i("beta", spec(prom.url, cache={"storageClassName": "cephfs"}))
    api.apply_t2i("delta", spec(prom.url, cache={"enabled": False}, levels=["cache-k0", "steps-25"]))
    wait_until(lambda: cond(api, "beta", "LatentCache") and cond(api, "delta", "LatentCache"), 60,
               what="LatentCache conditions")
    pvc = api.get("/api/v1/namespaces/default/persistentvolumeclaims/beta-latents-cephfs")
    assert pvc["spec"]["storageClassName"] == "cephfs" and pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert cond(api, "beta", "LatentCache")["reason"] == "SharedVolume"
    assert "storage class cephfs" in cond(api, "beta", "LatentCache")["message"]
    assert not api.owned("/api/v1/namespaces/{ns}/persistentvolumeclaims", "delta")
    wait_until(lambda: len(api.deployments("delta")) == 2, 60, what="delta's workers")
    for d in api.deployments("delta").values():
        assert all("persistentVolumeClaim" not in v for v in d["spec"]["template"]["spec"]["volumes"])
    c = cond(api, "delta", "LatentCache")
    assert (c["status"], c["reason"]) == ("False", "Disabled") and "any cluster" in c["message"]
