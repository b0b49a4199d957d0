"""In a cluster the router counts SLO violations against the T2IService's spec.latencySLO.

The chart is rendered and its router container's environment parsed (the router gets no per-service
setting from it); the real operator (`kopf run`) runs against KMock and writes the service's policy
ConfigMap; the real router app reads that ConfigMap and an EndpointSlice through its Kubernetes source
and calls a real Triton worker (the session's local system, tiny model) over gRPC.

Cases:
- latencySLO 0.001 s: every request is later than the SLO, so the router's SLO counter counts it (the
  router's old fixed 30 s would count none); a request naming no size gets the spec's image size (32x32)
- the spec edited to latencySLO 600 s: the operator issues a new policy, the router adopts it, and the
  next request is not counted
"""

from __future__ import annotations

import base64
import io
import json

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from argus.adapters import helm_chart
from argus.router.app import create_app
from argus.router.settings import RouterSettings
from tests.support.harness import ROOT, KMockApi, Operator, wait_until

NS = "argus"  # the chart's release namespace; the harness's operator watches it
SVC = "slo"


def chart_router_env() -> dict[str, str]:
    """The router container's environment as the chart renders it (API key off: no Secret here)."""
    objs = helm_chart.render(ROOT, {"apiKey": {"enabled": False}, "router": {"pollSeconds": 0.2}},
                             release="argus", namespace=NS)
    dep = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "argus-router")
    router = next(c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "router")
    return {e["name"]: e["value"] for e in router["env"] if "value" in e}


def policy(api: KMockApi) -> dict:
    cm = api.get(f"/api/v1/namespaces/{NS}/configmaps/{SVC}-policy")
    return json.loads(cm["data"]["policy.json"]) if cm else {}


def counter(client: TestClient, name: str) -> float:
    """Sum of a router counter's samples for the service."""
    total = 0.0
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(name + "{") and f'service="{SVC}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture()
def api(tmp_path):
    a = KMockApi(tmp_path)
    yield a
    a.stop()


def test_router_counts_violations_against_spec_latency_slo(api, tmp_path, local_system, monkeypatch):
    env = chart_router_env()
    assert not any(k in env for k in ("ARGUS_ROUTER_LATENCY_SLO_S", "ARGUS_ROUTER_QUALITY_FLOOR"))
    settings = RouterSettings.from_env(env)
    assert (settings.source, settings.namespace) == ("kubernetes", NS)

    op = Operator(api, tmp_path).wait_started()
    try:
        api.apply_t2i(SVC, {"throughputTarget": 1, "gpus": 1, "levels": ["cache-k0"], "controlPeriod": 2,
                            "latencySLO": 0.001, "model": {"steps": 4, "height": 32, "width": 32},
                            "prometheusUrl": "http://127.0.0.1:9"}, ns=NS)
        first = wait_until(lambda: policy(api), 60, what="the operator's policy ConfigMap")
        assert (first["latency_slo_s"], first["image_size"], first["quality_floor"]) == (0.001, "32x32", 90.0)

        worker = next(iter(local_system.replicas.values()))
        host, port = worker.grpc.split(":")
        api.create(f"/apis/discovery.k8s.io/v1/namespaces/{NS}/endpointslices", {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": f"{SVC}-cache-k0-x1", "namespace": NS,
                         "labels": {"argus.dev/service": SVC, "argus.dev/level": "cache-k0",
                                    "kubernetes.io/service-name": f"{SVC}-cache-k0"}},
            "endpoints": [{"addresses": [host], "conditions": {"ready": True}}],
            "ports": [{"name": "grpc", "port": int(port), "protocol": "TCP"}]})

        monkeypatch.setenv("KUBECONFIG", str(api.kubeconfig))
        with TestClient(create_app(settings)) as client:
            router = client.app.state.router
            wait_until(lambda: router.policies.get(SVC) and router.endpoints.replicas(SVC, "cache-k0"), 20,
                       what="the router to list the policy and the worker")
            r = client.post("/v1/images/generations", json={"prompt": "a red bicycle", "seed": 1, "model": SVC})
            assert r.status_code == 200, r.text
            png = Image.open(io.BytesIO(base64.b64decode(r.json()["data"][0]["b64_json"])))
            assert png.size == (32, 32)  # the spec's image size
            assert counter(client, "argus_router_slo_violations_total") == 1.0

            version = first["version"]
            api.edit_t2i(SVC, {"latencySLO": 600}, ns=NS)
            wait_until(lambda: policy(api).get("latency_slo_s") == 600, 60, what="the policy to carry 600 s")
            wait_until(lambda: router.policies.get(SVC).latency_slo_s == 600, 20, what="the router to adopt it")
            assert router.policies.get(SVC).version > version
            r = client.post("/v1/images/generations", json={"prompt": "a red bicycle", "seed": 2, "model": SVC})
            assert r.status_code == 200, r.text
            assert counter(client, "argus_router_requests_total") == 2.0
            assert counter(client, "argus_router_slo_violations_total") == 1.0
    finally:
        op.stop()
