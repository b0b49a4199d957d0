"""The Prometheus metrics source (argus.adapters.prometheus_source): pure parse, then a real Prometheus.

Cases:
- parse table: demand with no series -> NoMetrics; h normalized; NaN/Inf samples (0/0 rates) dropped;
  per-level sums; SLO-violation rate;
- the PromQL uses the names of argus.telemetry and selects the service;
- against the real `prometheus` binary scraping the router's real metric classes (fake rates):
  demand, h_k and per-level throughput come out within 25% of what the exporter produces;
- a service with no series -> NoMetrics; an unreachable Prometheus -> PrometheusUnreachable;
- the cause of a failure is kept whole and first (refused connection, read timeout): the status
  condition's message names it, not 200 characters of the query URL;
- many services at once (`readings`, the operator's control loop) against the real Prometheus: one
  query per field for all of them, counted by Prometheus itself (its prometheus_http_requests_total),
  each service's reading equal to its own snapshot, a service without series NoMetrics, other services'
  series left out; past the URL budget every service's series are asked for, still one query per field;
  an outage is one failure, every service's reading.
"""

from __future__ import annotations

import shutil
import socket

import pytest

from argus import telemetry as t
from argus.adapters import prometheus_source
from argus.adapters.prometheus_source import PrometheusSource, batch_queries, parse, parse_batch, queries
from argus.control.observed import MetricsUnavailable
from argus.controlplane.status import condition, set_conditions
from tests.support.harness import FakeRouter, Prometheus, free_port, wait_until


def vec(*samples):
    """An instant vector: (labels, value) pairs."""
    return [{"metric": labels, "value": [0, str(v)]} for labels, v in samples]


@pytest.mark.parametrize("raw,check", [
    ({"demand": vec(({}, 2.0)), "h": vec(({"level": "cache-k0"}, 1.0), ({"level": "cache-k10"}, 3.0))},
     lambda s: s.demand == 2.0 and s.h == {"cache-k0": 0.25, "cache-k10": 0.75}),
    ({"demand": vec(({}, 0.0)), "h": []}, lambda s: s.demand == 0.0 and s.h == {}),
    ({"demand": vec(({}, 1.0)), "quality": vec(({}, "NaN"))}, lambda s: s.quality is None),
    ({"demand": vec(({}, 1.0)), "slo_violations": vec(({}, "+Inf"))}, lambda s: s.slo_violations == 0.0),
    ({"demand": vec(({}, 1.0)), "throughput": vec(({"level": "a"}, 0.5), ({"level": "a"}, 0.25),
                                                  ({"level": "b"}, 1.0)), "slo_violations": vec(({}, 0.35))},
     lambda s: s.throughput == {"a": 0.75, "b": 1.0} and s.slo_violation_rate == pytest.approx(0.2)),
    ({"demand": vec(({}, 1.0)), "queues": vec(({"level": "a"}, 3), ({}, 9))}, lambda s: s.queues == {"a": 3.0}),
])
def test_parse(raw, check):
    assert check(parse(raw))


def test_parse_without_demand_series_is_no_metrics():
    with pytest.raises(MetricsUnavailable) as e:
        parse({"demand": [], "h": vec(({"level": "a"}, 1))}, "svc")
    assert e.value.reason == "NoMetrics" and "svc" in str(e.value) and t.ARRIVALS in str(e.value)


def test_queries_use_telemetry_names_and_service():
    q = queries("svc", "30s")
    assert t.ARRIVALS in q["demand"] and t.OPTIMAL_LEVEL in q["h"] and t.REQUESTS in q["throughput"]
    assert all('service="svc"' in v for v in q.values()) and all("[30s]" in v for k, v in q.items() if k != "queues")


def test_parse_batch_splits_by_service():
    raw = {"demand": vec(({"service": "a"}, 2.0), ({"service": "b"}, 1.0), ({"service": "zzz"}, 9.0)),
           "h": vec(({"service": "a", "level": "x"}, 1.0), ({"service": "a", "level": "y"}, 3.0),
                    ({"service": "b", "level": "x"}, 1.0)),
           "quality": vec(({"service": "b"}, 91.0))}
    out = parse_batch(raw, ["a", "b", "c"])
    assert set(out) == {"a", "b", "c"}
    assert out["a"].demand == 2.0 and out["a"].h == {"x": 0.25, "y": 0.75} and out["a"].quality is None
    assert out["b"].demand == 1.0 and out["b"].h == {"x": 1.0} and out["b"].quality == 91.0
    assert isinstance(out["c"], MetricsUnavailable) and out["c"].reason == "NoMetrics" and "'c'" in str(out["c"])


def test_batch_queries_select_every_service_and_sum_by_service():
    q = batch_queries(["svc-a", "b.c"], "30s")
    assert set(q) == set(queries("x", "30s"))
    assert all('service=~"svc\\\\-a|b\\\\.c"' in v for v in q.values()), q
    assert all(v.startswith("sum by (service") for v in q.values()) and "sum by (service, level)" in q["h"]
    assert all('service!=""' in v for v in batch_queries(None, "30s").values())


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs the prometheus binary (scripts/setup.sh)")
def test_readings_of_many_services_cost_one_query_per_field(tmp_path, monkeypatch):
    names = [f"svc-{i}.x" for i in range(8)]
    router, other = FakeRouter(names), FakeRouter(["elsewhere"])
    prom = Prometheus(tmp_path, [f"127.0.0.1:{router.port}", f"127.0.0.1:{other.port}"])
    src = PrometheusSource(window="5s", timeout_s=2)
    try:
        router.set(2.0, {"cache-k0": 0.25, "cache-k10": 0.75}, served={"cache-k0": 0.5, "cache-k10": 1.0},
                   quality=96.0)
        other.set(0.5, {"cache-k0": 1.0}, served={"cache-k0": 0.5})
        wait_until(lambda: abs(src.snapshot(prom.url, names[-1]).demand - 2.0) < 0.5 and
                   abs(src.snapshot(prom.url, "elsewhere").demand - 0.5) < 0.2, 30, 0.5,
                   what="Prometheus to report the exporters' rates")
        for selectable in (True, False):
            if not selectable:  # names past the URL budget: every service's series, the wanted ones kept
                monkeypatch.setattr(prometheus_source, "BATCH_URL_CHARS", 10)
            n0 = prom.queries_answered()
            out = src.readings(prom.url, [*names, "nosuch"])
            asked = prom.queries_answered() - n0
            assert asked == len(queries("x", "5s")), f"{asked} queries for {len(names) + 1} services"
            assert set(out) == {*names, "nosuch"}
            assert isinstance(out["nosuch"], MetricsUnavailable) and out["nosuch"].reason == "NoMetrics"
            for n in names:
                s = out[n]
                assert s.demand == pytest.approx(2.0, rel=0.25) and s.h["cache-k0"] == pytest.approx(0.25, abs=0.06)
                assert s.throughput["cache-k10"] == pytest.approx(1.0, rel=0.25) and s.quality == pytest.approx(96.0)
                assert set(s.queues) <= {"cache-k0", "cache-k10"} and s.slo_violations == 0.0
        down = src.readings(f"http://127.0.0.1:{free_port()}", ["a", "b"])
        assert down["a"] is down["b"] and down["a"].reason == "PrometheusUnreachable"
        assert "Connection refused" in str(down["a"]) and "(demand query)" in str(down["a"])
    finally:
        prom.stop()
        router.stop()
        other.stop()


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs the prometheus binary (scripts/setup.sh)")
def test_real_prometheus(tmp_path):
    router = FakeRouter("svc")
    prom = Prometheus(tmp_path, [f"127.0.0.1:{router.port}"])
    src = PrometheusSource(window="5s", timeout_s=2)
    try:
        router.set(2.0, {"cache-k0": 0.25, "cache-k10": 0.75}, served={"cache-k0": 0.5, "cache-k10": 1.0},
                   quality=96.0)

        def settled():
            s = src.snapshot(prom.url, "svc")
            return s if abs(s.demand - 2.0) < 0.5 and s.h.get("cache-k10", 0) > 0.6 else None

        s = wait_until(settled, 30, 0.5, "Prometheus to report the exporter's rates")
        assert s.h["cache-k0"] == pytest.approx(0.25, abs=0.06)
        assert s.throughput["cache-k10"] == pytest.approx(1.0, rel=0.25)
        assert s.quality == pytest.approx(96.0)
        with pytest.raises(MetricsUnavailable) as e:
            src.snapshot(prom.url, "other")
        assert e.value.reason == "NoMetrics"
        with pytest.raises(MetricsUnavailable) as e:
            src.snapshot(f"http://127.0.0.1:{free_port()}", "svc")
        assert e.value.reason == "PrometheusUnreachable"
    finally:
        prom.stop()
        router.stop()


def _degraded_message(url: str, timeout_s: float = 2.0) -> str:
    """The Degraded condition's message the operator writes for a failed fetch (as reconcile.run words it)."""
    with pytest.raises(MetricsUnavailable) as e:
        PrometheusSource(timeout_s=timeout_s).snapshot(url, "svc")
    assert e.value.reason == "PrometheusUnreachable"
    conds = set_conditions([], {"Degraded": (True, e.value.reason, f"{e.value}; keeping the last allocation")}, "now")
    return condition(conds, "Degraded")["message"]


def test_refused_connection_cause_is_kept_in_status():
    url = f"http://127.0.0.1:{free_port()}"
    msg = _degraded_message(url)
    assert "Connection refused" in msg and "NewConnectionError" in msg and url in msg, msg
    assert "(demand query)" in msg and "%28" not in msg, msg  # the query is named, its URL-encoded text is not
    assert msg.endswith("; keeping the last allocation"), msg


def test_read_timeout_cause_is_kept_in_status():
    with socket.socket() as listener:  # accepts connections (the kernel's backlog) and never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        msg = _degraded_message(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout_s=0.5)
    assert "ReadTimeoutError" in msg and "Read timed out" in msg, msg
