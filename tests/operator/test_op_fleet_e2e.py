"""The operator's cost to the API server and its deletion path, pinned on the real `kopf run` process and KMock.

KMock records every request (tests/support/kmock_audit_server.py); the operator's are those not sent by the
test's own client. Cases:
- steady state (services planned, metrics steady): per service per control period at most 2 requests, no
  LIST, no status PATCH while nothing changes, and no line logged at INFO; one Prometheus query per
  metric per period for all the services (counted by Prometheus itself); a demand change is written;
- deletion while a control period is in flight (held by a slow Prometheus): the T2IService and its
  children are gone within 5 s, and the operator keeps nothing about it (no tracked service, no series);
- uninstall: no finalizer on a T2IService; with the operator gone (killed, as `helm uninstall` removes
  it), deleting the T2IService finishes at once and garbage collection takes its children; a finalizer
  left by an older operator is removed on sight.
"""

from __future__ import annotations

import collections
import shutil
import time

import pytest

from argus.adapters.prometheus_source import queries
from tests.support.harness import FakeRouter, KMockApi, Operator, Prometheus, SlowPrometheus, wait_until

LEVELS = ["cache-k0", "cache-k10", "cache-k20", "steps-25"]
PERIOD = 2.0
STEADY = dict(demand=0.5, h={"cache-k0": 1.0}, served={"cache-k0": 0.5}, quality=100.0)
TEST_AGENT = "python-requests"


def spec(prom_url: str, **over) -> dict:
    raw = {"throughputTarget": 3, "gpus": 4, "levels": LEVELS, "controlPeriod": PERIOD, "qualityFloor": 90,
           "prometheusUrl": prom_url, "scaleDownHalfLife": 1}
    raw.update(over)
    return raw


def planned(api: KMockApi, name: str) -> bool:
    return len(api.deployments(name)) == len(LEVELS) and \
        api.get(f"/api/v1/namespaces/default/configmaps/{name}-policy") is not None


def operator_requests(entries: list[dict]) -> list[dict]:
    """Requests the operator sent (kopf's and the adapter's), without the long-lived watches."""
    return [e for e in entries if not e["agent"].startswith(TEST_AGENT) and str(e["action"]).lower() != "watch"]


def census(entries: list[dict]) -> dict[str, int]:
    return dict(collections.Counter(f"{e['method']} {e['plural']}{'/' + e['subresource'] if e['subresource'] else ''}"
                                    f" ({e['action']})" for e in entries))


@pytest.fixture()
def api(tmp_path):
    a = KMockApi(tmp_path, audit=True)
    yield a
    a.stop()


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs the prometheus binary")
def test_steady_state_requests_status_writes_and_log_lines(api, tmp_path):
    names = [f"svc{i}" for i in range(4)]
    router = FakeRouter(names)
    router.set(**STEADY)
    prom = Prometheus(tmp_path, [f"127.0.0.1:{router.port}"])
    op = Operator(api, tmp_path, verbosity="info").wait_started()
    try:
        for n in names:
            api.apply_t2i(n, spec(prom.url))
        wait_until(lambda: all(planned(api, n) and (api.t2i(n) or {}).get("status", {}).get("observedThroughput")
                               is not None for n in names), 40, 0.5, what="every service planned with metrics")
        # Steady state: the first plans were made before Prometheus had scraped (from the spec's target), the
        # next ones re-plan on metrics while the demand estimate settles (half-life 1 s). Steady is two quiet
        # periods in a row; an operator that writes every period never gets there and fails here.
        def quiet() -> bool:
            n = len(api.audit())
            time.sleep(2 * PERIOD)
            return not [e for e in operator_requests(api.audit()[n:]) if e["method"] in ("POST", "PUT", "PATCH")]
        wait_until(quiet, 60, 0.0, what="two periods without a write (steady state)")
        n0, log0, q0 = len(api.audit()), len(op.logs().splitlines()), prom.queries_answered()
        before = {n: (api.t2i(n) or {}).get("status", {}) for n in names}
        periods = 4
        time.sleep(periods * PERIOD)
        asked = prom.queries_answered() - q0
        window = operator_requests(api.audit()[n0:])
        lines = op.logs().splitlines()[log0:]
        counts = census(window)
        per_service_period = len(window) / (len(names) * periods)
        fields = len(queries("x", "1m"))  # the queries of one read: one per metric
        assert asked <= fields * (periods + 1), \
            f"{asked} Prometheus queries in {periods} periods of {len(names)} services ({fields} per read)"
        assert not [e for e in window if str(e["action"]).lower() == "list"], f"LIST in steady state: {counts}"
        assert per_service_period <= 2, f"{per_service_period:.2f} requests per service per period: {counts}"
        status_writes = [e for e in window if e["subresource"] == "status"]
        after = {n: (api.t2i(n) or {}).get("status", {}) for n in names}
        changed = {n: {k: (before[n].get(k), v) for k, v in after[n].items() if before[n].get(k) != v} for n in names}
        assert not status_writes, f"status written while nothing changed: {counts}; fields that changed: {changed}"
        assert lines == [], f"{len(lines)} lines logged at INFO in {periods} idle periods: {lines[:5]}"

        # a real change is written within two periods
        n1 = len(api.audit())
        router.set(demand=2.5, h={"cache-k20": 1.0}, served={"cache-k0": 1.2, "steps-25": 1.0}, quality=93.0)
        wait_until(lambda: any(e["subresource"] == "status" and e["path"].endswith("/svc0/status")
                               for e in operator_requests(api.audit()[n1:])), 5 * PERIOD + 5, 0.5,
                   what="the status write of a demand change")
        assert op.alive()
    finally:
        op.stop()
        prom.stop()
        router.stop()


def test_deletion_while_a_period_is_in_flight(api, tmp_path):
    slow = SlowPrometheus()
    op = Operator(api, tmp_path, tick_s=0.5, extra_env={"ARGUS_OPERATOR_PROMETHEUS_TIMEOUT_S": "30"}).wait_started()
    try:
        api.apply_t2i("gone", spec(slow.url, controlPeriod=1))
        api.apply_t2i("stays", spec(slow.url, controlPeriod=1))
        wait_until(lambda: planned(api, "gone") and planned(api, "stays"), 30, 0.2, what="both planned")
        slow.delay = 10.0
        wait_until(lambda: slow.pending > 0, 10, 0.05, what="a period in flight")
        t0 = time.monotonic()
        api.delete_t2i("gone")
        wait_until(lambda: api.t2i("gone") is None and not api.deployments("gone") and
                   not api.owned("/api/v1/namespaces/{ns}/services", "gone") and
                   api.get("/api/v1/namespaces/default/configmaps/gone-policy") is None and
                   api.get("/api/v1/namespaces/default/persistentvolumeclaims/gone-latents") is None,
                   10, 0.1, what="the T2IService and its children gone")
        elapsed = time.monotonic() - t0
        assert elapsed <= 5.0, f"deletion took {elapsed:.1f} s"
        def forgotten():
            text = op.metrics()
            return text if "argus_operator_services 1.0" in text else None

        text = wait_until(forgotten, 5, what="the operator to forget the service")
        assert 'service="gone"' not in text and 'service="stays"' in text
        assert slow.pending > 0, "the period was no longer in flight: the test proved nothing"
        slow.delay = 0.0
        wait_until(lambda: slow.pending == 0, 15, 0.1, what="the held period to finish")
        time.sleep(2.0)
        assert api.t2i("gone") is None and not api.deployments("gone")  # nothing re-created for it
        assert planned(api, "stays") and op.alive()
    finally:
        slow.delay = 0.0
        op.stop()
        slow.stop()


def test_uninstall_leaves_nothing_stuck(api, tmp_path):
    slow = SlowPrometheus()
    legacy = api.create("/apis/argus.dev/v1alpha1/namespaces/default/t2iservices", {
        "apiVersion": "argus.dev/v1alpha1", "kind": "T2IService",
        "metadata": {"name": "legacy", "namespace": "default", "finalizers": ["argus.dev/cleanup"]},
        "spec": spec(slow.url)})
    assert legacy["metadata"]["finalizers"] == ["argus.dev/cleanup"]
    op = Operator(api, tmp_path).wait_started()
    try:
        api.apply_t2i("keep", spec(slow.url))
        wait_until(lambda: planned(api, "keep") and planned(api, "legacy"), 30, 0.2, what="both planned")
        wait_until(lambda: not (api.t2i("legacy") or {})["metadata"].get("finalizers"), 10,
                   what="the legacy finalizer removed")
        assert not (api.t2i("keep") or {})["metadata"].get("finalizers")
        op.kill()  # `helm uninstall`: the operator and its ServiceAccount are gone first
        t0 = time.monotonic()
        for n in ("keep", "legacy"):
            api.delete_t2i(n)
        assert api.t2i("keep") is None and api.t2i("legacy") is None  # nothing holds the deletion
        wait_until(lambda: not api.deployments("keep") and not api.deployments("legacy") and
                   not api.owned("/api/v1/namespaces/{ns}/services", "keep") and
                   api.get("/api/v1/namespaces/default/configmaps/keep-policy") is None, 5, 0.1,
                   what="garbage collection of the children")
        assert time.monotonic() - t0 <= 5.0
    finally:
        if op.alive():
            op.stop()
        slow.stop()
