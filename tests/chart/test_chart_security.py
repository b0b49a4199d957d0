"""Security posture of everything the chart runs, in every value scenario.

Cases:
- no container runs as root: runAsNonRoot and a non-zero runAsUser (pod or container level);
- none is privileged, none may escalate privileges, every one drops ALL capabilities, has a
  read-only root filesystem and RuntimeDefault seccomp;
- every container requests CPU and memory;
- no Secret value appears in any ConfigMap, env value, annotation or label (checked with a
  user-given key, which the test knows, and with the generated one);
- NetworkPolicies: every ingress rule of the workers and the operator names its sources (an empty
  `from` would admit everyone); workers take gRPC only from the router pods and metrics only from
  scrapers; with no scraper configured the metrics rules disappear instead of opening up;
- the API key reaches the router only as a read-only mounted file, never through env;
- images are pinned (a tag that is not `latest`).
"""

from __future__ import annotations

import base64
import json

import pytest

from tests.support.chart import SCENARIOS, by_kind, pod_specs, render

def _containers(spec):
    return spec.get("initContainers", []) + spec["containers"]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_no_root_no_privilege(scenario):
    for workload, spec in pod_specs(render(scenario)):
        pod_sc = spec.get("securityContext", {})
        assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", workload
        for c in _containers(spec):
            sc = c.get("securityContext", {})
            where = f"{workload}/{c['name']}"
            assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, where
            assert sc.get("runAsUser", pod_sc.get("runAsUser")) not in (None, 0), where
            assert sc.get("privileged") is False, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not sc.get("capabilities", {}).get("add"), where


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_container_requests_cpu_and_memory(scenario):
    for workload, spec in pod_specs(render(scenario)):
        for c in _containers(spec):
            requests = c.get("resources", {}).get("requests", {})
            assert requests.get("cpu") and requests.get("memory"), f"{workload}/{c['name']}: {requests}"


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_images_are_pinned(scenario):
    for workload, spec in pod_specs(render(scenario)):
        for c in _containers(spec):
            name, _, tag = c["image"].rpartition(":")
            assert name and tag and tag != "latest" and "/" not in tag, f"{workload}: {c['image']}"


def _secret_values(objects):
    for s in by_kind(objects, "Secret"):
        for v in (s.get("data") or {}).values():
            yield base64.b64decode(v).decode()
        yield from (s.get("stringData") or {}).values()


def _leak_surfaces(objects):
    """Text of everything that is not a Secret and is readable without Secret access."""
    for o in objects:
        if o["kind"] == "Secret":
            continue
        meta = o["metadata"]
        yield json.dumps([meta.get("labels"), meta.get("annotations")])
        if o["kind"] == "ConfigMap":
            yield json.dumps([o.get("data"), o.get("binaryData")])
    for _, spec in pod_specs(objects):
        for c in _containers(spec):
            yield json.dumps([c.get("env"), c.get("args"), c.get("command")])


@pytest.mark.parametrize("scenario", ["defaults", "api-key-given", "prometheus-operator"])
def test_no_secret_value_outside_secrets(scenario):
    objects = render(scenario)
    secrets = list(_secret_values(objects))
    assert secrets, "the scenario renders an API-key Secret"
    given = SCENARIOS[scenario].get("apiKey", {}).get("value")
    if given:
        assert given in secrets
    for text in _leak_surfaces(objects):
        for value in secrets:
            assert value not in text


def test_api_key_is_a_read_only_file_mount():
    objects = render("defaults")
    router = next(d for d in by_kind(objects, "Deployment") if d["metadata"]["name"] == "argus-router")
    spec = router["spec"]["template"]["spec"]
    vol = next(v for v in spec["volumes"] if "secret" in v)
    assert vol["secret"]["defaultMode"] == 0o400
    for c in spec["containers"]:
        assert not any("secretKeyRef" in (e.get("valueFrom") or {}) for e in c.get("env", []))
        mounts = [m for m in c.get("volumeMounts", []) if m["name"] == vol["name"]]
        assert all(m["readOnly"] for m in mounts)
        assert bool(mounts) == (c["name"] == "router"), c["name"]


def _policy(objects, component):
    return next(n for n in by_kind(objects, "NetworkPolicy") if n["metadata"]["name"].endswith(f"-{component}"))


@pytest.mark.parametrize("scenario", [s for s in sorted(SCENARIOS)
                                      if SCENARIOS[s].get("networkPolicy", {}).get("enabled", True)])
def test_network_policies_admit_only_named_sources(scenario):
    objects = render(scenario)
    router_pods = {"app.kubernetes.io/name": "argus", "app.kubernetes.io/instance": "argus",
                   "app.kubernetes.io/component": "router"}
    workers = _policy(objects, "workers")
    assert workers["spec"]["policyTypes"] == ["Ingress"]
    scrapers = SCENARIOS[scenario].get("networkPolicy", {}).get("metricsFrom", [None])
    has_scrapers = bool(scrapers) or SCENARIOS[scenario].get("prometheus", {}).get("enabled", True)
    ports_seen = set()
    for rule in workers["spec"]["ingress"]:
        assert rule.get("from"), f"{scenario}: a worker rule without sources admits everyone"
        ports = {p["port"] for p in rule["ports"]}
        ports_seen |= ports
        if ports == {8001}:
            assert [peer["podSelector"]["matchLabels"] for peer in rule["from"]] == [router_pods]
        else:
            assert ports == {8002}
    assert ports_seen == ({8001, 8002} if has_scrapers else {8001})
    for rule in _policy(objects, "operator")["spec"]["ingress"]:
        assert rule.get("from")
    router_rules = _policy(objects, "router")["spec"]["ingress"]
    assert all(r.get("from") for r in router_rules if {p["port"] for p in r["ports"]} != {8000})
    public = next(r for r in router_rules if {p["port"] for p in r["ports"]} == {8000})
    assert public.get("from", []) == SCENARIOS[scenario].get("networkPolicy", {}).get("routerFrom", [])
