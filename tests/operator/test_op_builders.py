"""Pure manifest builders (argus.control.builders), checked against the official Kubernetes schemas.

Cases:
- every object of a service validates with kubernetes-validate (strict) for Kubernetes 1.30;
- names, labels, selectors and ownerReferences follow the contract (<svc>-<level>, <svc>-policy, <svc>-latents);
- the worker Deployment requests one nvidia.com/gpu, probes Triton's readiness, carries the worker env,
  mounts the latent store, and copies nodeSelector/tolerations from the spec;
- the policy ConfigMap holds a PolicyDocument that parses back unchanged;
- RBAC_RULES cover every kind the adapter writes.
"""

from __future__ import annotations

import kubernetes_validate
import pytest

from argus.adapters.kubernetes import KINDS, OWNED_KINDS, RBAC_RULES
from argus.control.builders import build_all, build_policy_configmap, build_worker_deployment, owner_reference
from argus.policy.document import PolicyDocument, parse_policy
from argus.spec import parse_spec

SPEC = parse_spec({"model": {"name": "sdxl", "weightsPath": "/models/sdxl", "steps": 50},
                   "levels": ["cache-k0", "cache-k10", "steps-25"], "throughputTarget": 2, "gpus": 4,
                   "nodeSelector": {"gpu": "h100"},
                   "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]})
OWNER = owner_reference("svc", "1234-uid")
POLICY = PolicyDocument(version=3, service="svc", quality_floor=90, levels=SPEC.levels,
                        allocation={"cache-k0": 2, "cache-k10": 1, "steps-25": 1})
OBJS = build_all("svc", "prod", SPEC, {"cache-k0": 2, "cache-k10": 1, "steps-25": 1}, POLICY, OWNER)


@pytest.mark.parametrize("obj", OBJS, ids=lambda o: f"{o['kind']}/{o['metadata']['name']}")
def test_objects_validate_against_kubernetes_schema(obj):
    kubernetes_validate.validate(obj, "1.30", strict=True)
    meta = obj["metadata"]
    assert meta["namespace"] == "prod" and meta["ownerReferences"] == [OWNER]
    assert meta["labels"]["argus.dev/service"] == "svc"
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "argus-operator"


def test_names_follow_the_contract():
    names = sorted((o["kind"], o["metadata"]["name"]) for o in OBJS)
    assert names == sorted([("PersistentVolumeClaim", "svc-latents"), ("ConfigMap", "svc-policy")] +
                           [(k, f"svc-{lv}") for lv in SPEC.levels for k in ("Deployment", "Service")])
    assert OWNER["controller"] is True and OWNER["kind"] == "T2IService" and OWNER["apiVersion"] == "argus.dev/v1alpha1"


def test_worker_deployment_gpu_probe_env_volume_scheduling():
    d = build_worker_deployment("svc", "prod", SPEC, "cache-k10", 3, OWNER)
    assert d["spec"]["replicas"] == 3
    labels = d["spec"]["template"]["metadata"]["labels"]
    assert all(labels[k] == v for k, v in d["spec"]["selector"]["matchLabels"].items())
    assert labels["argus.dev/level"] == "cache-k10" and labels["app.kubernetes.io/component"] == "worker"
    pod = d["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8000}
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env == {"ARGUS_LEVEL": "cache-k10", "ARGUS_MODEL_NAME": "sdxl", "ARGUS_STEPS": "50",
                   "ARGUS_LEVELS": "cache-k0,cache-k10,steps-25", "ARGUS_LATENT_STORE": "/var/lib/argus/latents",
                   "ARGUS_LATENT_STORE_BYTES": str(SPEC.cache.max_bytes), "ARGUS_WEIGHTS_PATH": "/models/sdxl"}
    assert c["command"] == ["python", "-m", "argus.worker.serve"]
    assert {p["containerPort"] for p in c["ports"]} == {8000, 8001, 8002}
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "svc-latents"
    assert c["volumeMounts"][0]["mountPath"] == "/var/lib/argus/latents"
    assert pod["nodeSelector"] == {"gpu": "h100"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def test_policy_configmap_round_trips():
    cm = build_policy_configmap("svc", "prod", POLICY)
    assert cm["metadata"]["labels"]["argus.dev/policy"] == "true"
    assert parse_policy(cm["data"]["policy.json"]) == POLICY


def test_rbac_rules_cover_written_kinds():
    rules = {(g, r): set(v) for g, r, v in RBAC_RULES}
    for kind in OWNED_KINDS:
        prefix, plural = KINDS[kind]
        group = "" if prefix == "/api/v1" else prefix.split("/")[2]
        assert {"get", "list", "create", "patch", "delete"} <= rules[(group, plural)], kind
    assert {"patch"} <= rules[("argus.dev", "t2iservices/status")]
    assert {"create"} <= rules[("", "events")]
