"""The router's Kubernetes source against KMock's KubernetesEmulator (a real HTTP API server, in its own process).

Cases:
- EndpointSlices labelled argus.dev/service + argus.dev/level give ready `host:port` per service and
  level (port named grpc, else 8001; unset `ready` counts as ready); unready endpoints and unlabelled
  slices are ignored; an endpoint turning ready appears, a deleted slice's endpoints are dropped
- policy ConfigMaps (argus.dev/policy=true, key policy.json): a valid document is adopted, a newer
  version replaces it, an invalid one (bad JSON, missing key) is rejected with the metric counted and
  the last good one kept; unlabelled ConfigMaps are ignored
- contract with the operator: the slice the EndpointSlice controller makes for a Service from
  argus.controlplane.builders (the Service's labels copied, its ports) and the operator's policy
  ConfigMap are read as that service's level endpoints and policy
- the router app with ARGUS_ROUTER_SOURCE=kubernetes (kubeconfig → KMock) lists both at start:
  /readyz is ready, the service is known, the policy version gauge and the rejection counter show
"""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from argus.adapters.kubernetes import KubernetesAdapter
from argus.policy.document import PolicyDocument
from argus.router.app import create_app
from argus.router.kube_sources import kubernetes_sources
from argus.router.settings import RouterSettings
from argus.router.sources import PolicyStore
from tests.support.harness import KMockApi


SLICES = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
CMS = "/api/v1/namespaces/default/configmaps"


@pytest.fixture(scope="module")
def kmock(tmp_path_factory):
    api = KMockApi(tmp_path_factory.mktemp("kmock"))
    yield api
    api.stop()


@pytest.fixture(scope="module")
def adapter(kmock):
    from kubernetes import config

    return KubernetesAdapter(config.new_client_from_config(config_file=str(kmock.kubeconfig)))


def eps(name, svc, level, endpoints, ports=({"name": "grpc", "port": 8001},), labels=True):
    meta = {"name": name, "namespace": "default",
            "labels": {"argus.dev/service": svc, "argus.dev/level": level,
                       "kubernetes.io/service-name": f"{svc}-{level}"} if labels else {}}
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": meta, "addressType": "IPv4",
            "endpoints": endpoints, "ports": list(ports)}


def ep(addr, ready=True):
    return {"addresses": [addr], **({"conditions": {"ready": ready}} if ready is not None else {})}


def policy(svc, version, levels=("cache-k0", "cache-k10")):
    return PolicyDocument(version=version, service=svc, quality_floor=90, latency_slo_s=30, image_size="64x64",
                          levels=list(levels),
                          allocation={lv: 1 for lv in levels}, redirection={}).model_dump_json()


def cm(name, text, labelled=True):
    meta = {"name": name, "namespace": "default", "labels": {"argus.dev/policy": "true"} if labelled else {}}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
            "data": {} if text is None else {"policy.json": text}}


def test_endpoints_follow_ready_slices(kmock, adapter):
    kmock.create(SLICES, eps("ep-a-k0-1", "ep-a", "cache-k0", [ep("10.0.0.1"), ep("10.0.0.2", ready=False)]))
    kmock.create(SLICES, eps("ep-a-k10-1", "ep-a", "cache-k10", [ep("10.0.1.1", ready=None)],
                             ports=[{"name": "metrics", "port": 8002}, {"name": "grpc", "port": 9001}]))
    kmock.create(SLICES, eps("ep-a-k10-2", "ep-a", "cache-k10", [ep("10.0.1.2")], ports=[]))
    kmock.create(SLICES, eps("other-1", "other", "x", [ep("10.9.9.9")], labels=False))
    endpoints, _ = kubernetes_sources(RouterSettings(source="kubernetes", namespace="default"), api=adapter)
    assert "other" not in endpoints.services() and "ep-a" in endpoints.services()
    assert endpoints.replicas("ep-a", "cache-k0") == ["10.0.0.1:8001"]
    assert sorted(endpoints.replicas("ep-a", "cache-k10")) == ["10.0.1.1:9001", "10.0.1.2:8001"]

    kmock.patch(SLICES + "/ep-a-k0-1", {"endpoints": [ep("10.0.0.1"), ep("10.0.0.2", ready=True)]})
    kmock.delete(SLICES + "/ep-a-k10-1")
    endpoints.refresh()
    assert sorted(endpoints.replicas("ep-a", "cache-k0")) == ["10.0.0.1:8001", "10.0.0.2:8001"]
    assert endpoints.replicas("ep-a", "cache-k10") == ["10.0.1.2:8001"]


def test_policies_adopted_replaced_and_rejected(kmock, adapter):
    rejected = []
    store = PolicyStore(None, on_rejected=lambda where, err: rejected.append((where, str(err))))
    _, feed = kubernetes_sources(RouterSettings(source="kubernetes", namespace="default"), api=adapter)
    kmock.create(CMS, cm("pa-policy", policy("pa", 1)))
    kmock.create(CMS, cm("unlabelled", policy("pz", 1), labelled=False))
    feed.refresh(store)
    assert store.get("pa").version == 1 and store.get("pz") is None and not rejected

    kmock.patch(CMS + "/pa-policy", {"data": {"policy.json": policy("pa", 2, ("cache-k0", "steps-10"))}})
    feed.refresh(store)
    assert store.get("pa").version == 2 and store.get("pa").levels == ["cache-k0", "steps-10"]

    kmock.patch(CMS + "/pa-policy", {"data": {"policy.json": "{not json"}})
    kmock.create(CMS, cm("pb-policy", None))
    feed.refresh(store)
    feed.refresh(store)  # an unchanged bad ConfigMap is judged once, not on every poll
    assert store.get("pa").version == 2  # the last good one stays
    assert sorted(w.split(" ")[1] for w, _ in rejected) == ["pa-policy", "pb-policy"]
    assert any("policy.json: key missing" in e for _, e in rejected)


def test_objects_built_by_the_operator(kmock, adapter):
    from argus.controlplane.builders import build_policy_configmap, build_worker_service

    svc = build_worker_service("op-s", "default", "cache-k10")
    # What the EndpointSlice controller creates for it: the Service's labels plus service-name, its ports.
    labels = {**svc["metadata"]["labels"], "kubernetes.io/service-name": svc["metadata"]["name"]}
    kmock.create(SLICES, {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
                          "metadata": {"name": svc["metadata"]["name"] + "-abcde", "namespace": "default",
                                       "labels": labels},
                          "endpoints": [ep("10.2.0.1"), ep("10.2.0.2", ready=False)],
                          "ports": [{"name": p["name"], "port": p["targetPort"], "protocol": "TCP"}
                                    for p in svc["spec"]["ports"]]})
    doc = PolicyDocument(version=3, service="op-s", quality_floor=92, latency_slo_s=30, image_size="64x64",
                         levels=["cache-k0", "cache-k10"],
                         allocation={"cache-k0": 1, "cache-k10": 2}, redirection={})
    kmock.create(CMS, build_policy_configmap("op-s", "default", doc))
    endpoints, feed = kubernetes_sources(RouterSettings(source="kubernetes", namespace="default"), api=adapter)
    store = PolicyStore(None)
    feed.refresh(store)
    assert endpoints.replicas("op-s", "cache-k10") == ["10.2.0.1:8001"]
    assert store.get("op-s") == doc


def test_router_app_in_kubernetes_mode(kmock, monkeypatch):
    kmock.create(SLICES, eps("app-s-k0", "app-s", "cache-k0", [ep("10.1.0.1")]))
    kmock.create(CMS, cm("app-s-policy", policy("app-s", 7, ("cache-k0",))))
    kmock.create(CMS, cm("app-bad-policy", '{"version": "seven"}'))
    monkeypatch.setenv("KUBECONFIG", str(kmock.kubeconfig))
    env = {"ARGUS_ROUTER_SOURCE": "kubernetes", "ARGUS_ROUTER_NAMESPACE": "default",
           "ARGUS_ROUTER_RELOAD_INTERVAL_S": "0.2"}
    with TestClient(create_app(RouterSettings.from_env(env))) as client:
        r = client.app.state.router
        assert r.endpoints.replicas("app-s", "cache-k0") == ["10.1.0.1:8001"]
        assert r.policies.get("app-s").version == 7
        assert client.get("/readyz").status_code == 200
        kmock.create(SLICES, eps("app-s-k0-2", "app-s", "cache-k0", [ep("10.1.0.2")]))
        deadline = time.monotonic() + 10  # the reload loop polls the API every 0.2 s, off the event loop
        while len(r.endpoints.replicas("app-s", "cache-k0")) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sorted(r.endpoints.replicas("app-s", "cache-k0")) == ["10.1.0.1:8001", "10.1.0.2:8001"]
        metrics = client.get("/metrics").text
    assert 'service="app-s"} 7.0' in metrics
    rejected = [ln for ln in metrics.splitlines() if ln.startswith("argus_router_policy_rejected")]
    assert rejected and float(rejected[0].split()[-1]) >= 1
