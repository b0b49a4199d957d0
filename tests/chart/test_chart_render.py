"""The chart lints and renders under every value scenario, and every object is valid.

Cases:
- helm lint --strict reports nothing at warning level or worse, for every scenario;
- every rendered object validates against the Kubernetes OpenAPI schemas of the oldest version
  Chart.yaml admits and of the newest one kubernetes-validate has (strict: unknown fields are errors); custom resources of our CRDs against the CRD's own schema;
  ServiceMonitor/PodMonitor (no schema offline) have the fields the Prometheus Operator needs;
- names are unique per kind and namespace and at most 63 characters; every object carries the
  app.kubernetes.io/* labels;
- references resolve: Services and PDBs select pods of a rendered workload, ServiceMonitor ports
  exist on the selected Service, probes name declared ports, volumes name rendered (or declared
  existing) ConfigMaps/Secrets, bindings name rendered Roles and ServiceAccounts;
- scenario toggles do what they say: namespaced RBAC renders Roles per watched namespace and no
  ClusterRole with write access; Prometheus Operator on renders monitors and no scrape annotations;
  API key off mounts no Secret; standalone operator runs `--standalone` with no peering object.
"""

from __future__ import annotations

import re

import jsonschema
import pytest
import yaml
from kubernetes_validate import latest_version

from argus.adapters import helm_chart
from tests.support.chart import NAMESPACE, ROOT, SCENARIOS, by_kind, crd_schemas, kube_validate, pod_specs, render

# The oldest Kubernetes Chart.yaml admits (kubeVersion) and the newest kubernetes-validate knows.
KUBE_VERSIONS = (re.search(r">=\s*(\d+\.\d+)", yaml.safe_load((ROOT / "Chart.yaml").read_text())["kubeVersion"]).group(1),
                 latest_version())
PROMETHEUS_OPERATOR_KINDS = {"ServiceMonitor", "PodMonitor"}
LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component",
          "app.kubernetes.io/version", "app.kubernetes.io/managed-by", "helm.sh/chart")


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_lint_is_clean(scenario):
    assert helm_chart.lint(ROOT, SCENARIOS[scenario], namespace=NAMESPACE) == []


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_object_validates(scenario):
    crds = crd_schemas()
    objects = render(scenario)
    assert objects, "nothing rendered"
    for obj in objects:
        key = (obj["apiVersion"], obj["kind"])
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        if key in crds:
            jsonschema.validate(obj, crds[key])
        elif obj["kind"] in PROMETHEUS_OPERATOR_KINDS:
            assert obj["apiVersion"] == "monitoring.coreos.com/v1", name
            endpoints = obj["spec"].get("endpoints") or obj["spec"].get("podMetricsEndpoints")
            assert endpoints and all(e.get("port") for e in endpoints), name
            assert obj["spec"]["selector"]["matchLabels"], name
        else:
            for version in KUBE_VERSIONS:
                error = kube_validate(obj, version)
                assert not error, f"{name} (Kubernetes {version}): {error}"


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_names_and_labels(scenario):
    seen = set()
    for obj in render(scenario):
        meta = obj["metadata"]
        key = (obj["kind"], meta.get("namespace"), meta["name"])
        assert key not in seen, f"duplicate {key}"
        seen.add(key)
        assert len(meta["name"]) <= 63, meta["name"]
        for label in LABELS:
            assert meta["labels"].get(label), f"{key} lacks {label}"
        assert all(len(str(v)) <= 63 for v in meta["labels"].values()), key


def _matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_references_resolve(scenario):
    objects = render(scenario)
    templates = [o["spec"]["template"] for o in by_kind(objects, "Deployment")]
    pod_labels = [t["metadata"]["labels"] for t in templates]
    for svc in by_kind(objects, "Service"):
        pods = [t for t in templates if _matches(svc["spec"]["selector"], t["metadata"]["labels"])]
        assert pods, f"Service {svc['metadata']['name']} selects no pod"
        declared = {p["name"] for t in pods for c in t["spec"]["containers"] for p in c.get("ports", [])}
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in declared, (svc["metadata"]["name"], port)
    for pdb in by_kind(objects, "PodDisruptionBudget"):
        assert any(_matches(pdb["spec"]["selector"]["matchLabels"], lb) for lb in pod_labels), pdb["metadata"]
    for mon in by_kind(objects, "ServiceMonitor"):
        svcs = [s for s in by_kind(objects, "Service") if _matches(mon["spec"]["selector"]["matchLabels"],
                                                                   s["metadata"]["labels"])]
        assert svcs, mon["metadata"]["name"]
        ports = {p["name"] for s in svcs for p in s["spec"]["ports"]}
        assert {e["port"] for e in mon["spec"]["endpoints"]} <= ports
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    existing_secret = SCENARIOS[scenario].get("apiKey", {}).get("existingSecret")
    for workload, spec in pod_specs(objects):
        assert ("ServiceAccount", spec["serviceAccountName"]) in names, workload
        for c in spec["containers"]:
            ports = {p["name"] for p in c.get("ports", [])}
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                if probe in c:
                    assert c[probe]["httpGet"]["port"] in ports, (workload, c["name"], probe)
            mounted = {m["name"] for m in c.get("volumeMounts", [])}
            assert mounted <= {v["name"] for v in spec.get("volumes", [])}, (workload, c["name"])
        for v in spec.get("volumes", []):
            if "configMap" in v:
                assert ("ConfigMap", v["configMap"]["name"]) in names, (workload, v)
            if "secret" in v:
                assert ("Secret", v["secret"]["secretName"]) in names or \
                    v["secret"]["secretName"] == existing_secret, (workload, v)
    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"])
             for o in objects if o["kind"] in ("Role", "ClusterRole")}
    for b in by_kind(objects, "RoleBinding") + by_kind(objects, "ClusterRoleBinding"):
        ns = b["metadata"].get("namespace") if b["roleRef"]["kind"] == "Role" else None
        assert (b["roleRef"]["kind"], ns, b["roleRef"]["name"]) in roles, b["metadata"]
        for s in b["subjects"]:
            assert ("ServiceAccount", s["name"]) in names and s["namespace"] == NAMESPACE


def _container(objects, deployment, container):
    d = next(o for o in by_kind(objects, "Deployment") if o["metadata"]["name"] == deployment)
    return d, next(c for c in d["spec"]["template"]["spec"]["containers"] if c["name"] == container)


def test_namespaced_rbac_has_roles_per_namespace_and_no_cluster_write():
    objects = render("namespaced-rbac")
    role_ns = {r["metadata"]["namespace"] for r in by_kind(objects, "Role")
               if r["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"}
    assert role_ns == {"team-a", "team-b"}
    for cr in by_kind(objects, "ClusterRole"):
        verbs = {v for rule in cr["rules"] for v in rule["verbs"]}
        assert verbs <= {"get", "list", "watch"}, cr["metadata"]["name"]
    _, op = _container(objects, "argus-operator", "operator")
    assert "--namespace=team-a" in op["args"] and "--namespace=team-b" in op["args"]
    assert "--all-namespaces" not in op["args"]
    # Rendered offline (as `helm template`) kopf.dev/v1 is not a known API, so no peering object; with the
    # CRDs served there is one KopfPeering per namespace (test_chart_dry_run.py).
    assert not by_kind(objects, "KopfPeering") and not by_kind(objects, "ClusterKopfPeering")


def test_namespaced_without_cluster_discovery_creates_nothing_cluster_scoped():
    objects = render("namespaced-no-cluster-role")
    assert not by_kind(objects, "ClusterRole") and not by_kind(objects, "ClusterRoleBinding")
    assert {r["metadata"]["namespace"] for r in by_kind(objects, "Role")} == {NAMESPACE}
    _, op = _container(objects, "argus-operator", "operator")
    assert {"name": "ARGUS_OPERATOR_CLUSTER_DISCOVERY", "value": "false"} in op["env"]  # kopf scanning off


@pytest.mark.parametrize("scenario", ["defaults", "namespaced-rbac"])
def test_cluster_discovery_stays_on_where_rbac_grants_it(scenario):
    _, op = _container(render(scenario), "argus-operator", "operator")
    assert all(e["name"] != "ARGUS_OPERATOR_CLUSTER_DISCOVERY" for e in op["env"])


def test_cluster_mode_watches_all_namespaces_with_peering():
    objects = render("defaults")
    _, op = _container(objects, "argus-operator", "operator")
    assert "--all-namespaces" in op["args"] and "--peering=argus" in op["args"]
    # The ClusterKopfPeering needs kopf.dev/v1 served (test_chart_dry_run.py); offline it is left out.
    assert not by_kind(objects, "ClusterKopfPeering")


def test_standalone_operator_has_no_peering_object():
    objects = render("standalone-operator")
    _, op = _container(objects, "argus-operator", "operator")
    assert "--standalone" in op["args"] and not any(a.startswith("--peering") for a in op["args"])
    assert not by_kind(objects, "ClusterKopfPeering") and not by_kind(objects, "KopfPeering")


def test_prometheus_operator_toggle():
    on, off = render("prometheus-operator"), render("defaults")
    assert {o["kind"] for o in on} >= {"ServiceMonitor", "PodMonitor"}
    assert not {"ServiceMonitor", "PodMonitor"} & {o["kind"] for o in off}
    for d in by_kind(on, "Deployment"):
        anns = d["spec"]["template"]["metadata"].get("annotations") or {}
        assert "prometheus.io/scrape" not in anns, d["metadata"]["name"]
    for name in ("argus-router", "argus-operator"):
        d = next(o for o in by_kind(off, "Deployment") if o["metadata"]["name"] == name)
        assert d["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert any(c["metadata"]["name"] == "argus-dashboard" for c in by_kind(on, "ConfigMap"))
    assert not any(d["metadata"]["name"] == "argus-prometheus" for d in by_kind(on, "Deployment"))


def test_api_key_toggle():
    on, off = render("defaults"), render("api-key-off")
    _, router_on = _container(on, "argus-router", "router")
    _, router_off = _container(off, "argus-router", "router")
    env_on = {e["name"]: e.get("value") for e in router_on["env"]}
    assert env_on["ARGUS_ROUTER_API_KEY_FILE"] == "/etc/argus/api-key/api-key"
    assert [s["metadata"]["name"] for s in by_kind(on, "Secret")] == ["argus-api-key"]
    assert "ARGUS_ROUTER_API_KEY_FILE" not in {e["name"] for e in router_off["env"]}
    assert not by_kind(off, "Secret")
    existing = render("api-key-existing")
    assert not by_kind(existing, "Secret")
    d, _ = _container(existing, "argus-router", "router")
    assert {"name": "api-key", "secret": {"secretName": "my-key", "defaultMode": 0o400}} in \
        d["spec"]["template"]["spec"]["volumes"]


def test_long_names_are_truncated_to_63():
    objects = render("nodeport-long-name")
    names = [o["metadata"]["name"] for o in objects]
    assert all(len(n) <= 63 for n in names)
    assert any(n.endswith("-router") for n in names) and any(n.endswith("-operator") for n in names)
    svc = next(s for s in by_kind(objects, "Service") if s["metadata"]["name"].endswith("-router"))
    assert svc["spec"]["type"] == "NodePort" and svc["spec"]["ports"][0]["nodePort"] == 30080


def test_latent_cache_storage_class_reaches_the_operator():
    """latentCache.storageClassName is the operator's default class for latent-store PVCs (empty: not set)."""
    from argus.adapters import helm_chart

    objects = helm_chart.render(ROOT, {"latentCache": {"storageClassName": "cephfs"}}, release="argus",
                                namespace=NAMESPACE)
    _, op = _container(objects, "argus-operator", "operator")
    assert {"name": "ARGUS_OPERATOR_LATENT_STORAGE_CLASS", "value": "cephfs"} in op["env"]
    _, op = _container(render("defaults"), "argus-operator", "operator")
    assert all(e["name"] != "ARGUS_OPERATOR_LATENT_STORAGE_CLASS" for e in op["env"])
