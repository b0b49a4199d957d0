"""Pure manifest builders (argus.controlplane.builders), checked against the official Kubernetes schemas.

Cases:
- every object of a service validates with kubernetes-validate (strict) for Kubernetes 1.30;
- names, labels, selectors and ownerReferences follow the contract (<svc>-<level>, <svc>-policy, <svc>-latents);
- the worker Deployment requests one nvidia.com/gpu, probes Triton's readiness, carries the worker env,
  mounts the latent store, and copies nodeSelector/tolerations from the spec;
- worker pods run hardened: non-root, no privilege escalation, all capabilities dropped, read-only root
  filesystem with emptyDirs for /tmp and /dev/shm, seccomp RuntimeDefault;
- worker resources: one GPU, cpu/memory requests (and memory limit) from spec.workerResources or defaults;
- the weights volume (weightsPvc or weightsHostPath) is mounted read-only at weightsPath, nothing without one;
  both at once, or a volume without weightsPath, is an invalid spec naming spec.model;
- the policy ConfigMap holds a PolicyDocument that parses back unchanged;
- level Services are headless (clusterIP None: the router reads EndpointSlices, no ClusterIP is used),
  and an existing Service keeps the ClusterIP it has (immutable) instead of a refused patch;
- RBAC_RULES cover every kind the adapter writes.
"""

from __future__ import annotations

import kubernetes_validate
import pytest

from argus.adapters.kubernetes import KINDS, OWNED_KINDS, RBAC_RULES
from argus.controlplane.builders import (build_all, build_policy_configmap, build_worker_deployment, latent_cache_condition,
                                    owner_reference)
from argus.policy.document import PolicyDocument, parse_policy
from argus.spec import SpecError, parse_spec

SPEC = parse_spec({"model": {"name": "sdxl", "weightsPath": "/models/sdxl", "steps": 50},
                   "levels": ["cache-k0", "cache-k10", "steps-25"], "throughputTarget": 2, "gpus": 4,
                   "nodeSelector": {"gpu": "h100"},
                   "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]})
OWNER = owner_reference("svc", "1234-uid")
POLICY = PolicyDocument(version=3, service="svc", quality_floor=90, latency_slo_s=30, image_size="64x64",
                        levels=SPEC.levels,
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
    assert c["resources"]["limits"] == {"nvidia.com/gpu": "1", "memory": "16Gi"}
    assert c["resources"]["requests"] == {"nvidia.com/gpu": "1", "cpu": "2", "memory": "16Gi"}
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


def test_a_stopping_worker_finishes_what_it_accepted(tmp_path):
    # the endpoint goes first (preStop pause), then SIGTERM: Triton drains for WORKER_DRAIN_S (its
    # --exit-timeout-secs), within the pod's grace period, so a scale-down or a switch loses no request
    from argus.contract import ENDPOINT_PROPAGATION_S, WORKER_DRAIN_S
    from argus.contract import TritonPorts
    from argus.worker.repository import triton_command

    pod = build_worker_deployment("svc", "prod", SPEC, "cache-k0", 1, OWNER)["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > ENDPOINT_PROPAGATION_S + WORKER_DRAIN_S
    assert str(ENDPOINT_PROPAGATION_S) in " ".join(pod["containers"][0]["lifecycle"]["preStop"]["exec"]["command"])
    cmd, _ = triton_command(tmp_path / "models", TritonPorts(), tmp_path)
    assert f"--exit-timeout-secs={WORKER_DRAIN_S}" in cmd and WORKER_DRAIN_S >= 30


def test_worker_pod_is_hardened_with_writable_scratch():
    pod = build_worker_deployment("svc", "prod", SPEC, "cache-k0", 1, OWNER)["spec"]["template"]["spec"]
    sc = pod["containers"][0]["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True and sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["runAsUser"] == 10001  # the image's user (worker_image/Dockerfile)
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["fsGroup"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
    vols = {v["name"]: v for v in pod["volumes"]}
    # every writable path the worker needs is a volume, since the root filesystem is read-only
    for path in ("/tmp", "/dev/shm", "/var/lib/argus/latents"):
        assert path in mounts
    assert "emptyDir" in vols[mounts["/tmp"]] and vols[mounts["/dev/shm"]]["emptyDir"] == {"medium": "Memory"}


def test_worker_resources_come_from_spec():
    spec = parse_spec({"throughputTarget": 1, "gpus": 2, "workerResources": {"cpu": "500m", "memory": "6Gi"}})
    res = build_worker_deployment("svc", "prod", spec, "cache-k0", 1)["spec"]["template"]["spec"][
        "containers"][0]["resources"]
    assert res == {"requests": {"nvidia.com/gpu": "1", "cpu": "500m", "memory": "6Gi"},
                   "limits": {"nvidia.com/gpu": "1", "memory": "6Gi"}}


@pytest.mark.parametrize("model,volume", [
    ({"weightsPath": "/models/sd", "weightsPvc": "sd-weights"},
     {"persistentVolumeClaim": {"claimName": "sd-weights", "readOnly": True}}),
    ({"weightsPath": "/models/sd", "weightsHostPath": "/srv/sd15"}, {"hostPath": {"path": "/srv/sd15", "type": "Directory"}}),
    ({"weightsPath": "/models/sd"}, None),  # baked into the image: nothing to mount
    ({}, None),  # tiny random model
])
def test_weights_volume_mounted_read_only(model, volume):
    spec = parse_spec({"throughputTarget": 1, "gpus": 2, "model": model})
    d = build_worker_deployment("svc", "prod", spec, "cache-k0", 1, OWNER)
    kubernetes_validate.validate(d, "1.30", strict=True)
    pod = d["spec"]["template"]["spec"]
    vols = {v["name"]: v for v in pod["volumes"]}
    mounts = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "weights"]
    if volume is None:
        assert "weights" not in vols and not mounts
    else:
        assert {k: v for k, v in vols["weights"].items() if k != "name"} == volume
        assert mounts == [{"name": "weights", "mountPath": "/models/sd", "readOnly": True}]


@pytest.mark.parametrize("model,needle", [
    ({"weightsPath": "/m", "weightsPvc": "a", "weightsHostPath": "/b"}, "exclusive"),
    ({"weightsPvc": "a"}, "weightsPath is required"),
])
def test_bad_weights_volume_is_an_invalid_spec(model, needle):
    with pytest.raises(SpecError) as e:
        parse_spec({"throughputTarget": 1, "gpus": 2, "model": model})
    assert e.value.field == "model" and needle in e.value.message


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


def test_level_services_are_headless_and_existing_cluster_ips_are_kept():
    from argus.adapters.kubernetes import covers, keep_immutable

    services = [o for o in OBJS if o["kind"] == "Service"]
    assert len(services) == len(SPEC.levels)
    assert all(s["spec"]["clusterIP"] == "None" for s in services)
    old = {**services[0], "spec": {**services[0]["spec"], "clusterIP": "10.0.0.7"}}  # made before headless
    kept = keep_immutable(old, services[0])
    assert "clusterIP" not in kept["spec"] and covers(old, kept)
    assert keep_immutable({"spec": {"clusterIP": "None"}}, services[0]) is services[0]
    assert keep_immutable({}, services[0]) is services[0]  # a new Service is created headless


# --- the latent cache's storage (README "Storage for the latent cache") ---

def _spec(**cache):
    levels = ["cache-k0", "cache-k10", "steps-25"] if cache.get("enabled", True) else ["cache-k0", "steps-25"]
    return parse_spec({"levels": levels, "throughputTarget": 2, "gpus": 4, "cache": cache})


def test_storage_class_goes_on_the_claim_and_names_it():
    spec = _spec(storageClassName="cephfs")
    objs = build_all("svc", "prod", spec, {"cache-k0": 2}, POLICY, OWNER)
    pvc = next(o for o in objs if o["kind"] == "PersistentVolumeClaim")
    kubernetes_validate.validate(pvc, "1.30", strict=True)
    assert pvc["spec"]["storageClassName"] == "cephfs" and pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    # a claim's class is immutable: another class is another claim, which the workers mount
    assert pvc["metadata"]["name"] == "svc-latents-cephfs"
    pod = build_worker_deployment("svc", "prod", spec, "cache-k10", 1)["spec"]["template"]["spec"]
    assert {"name": "latents", "persistentVolumeClaim": {"claimName": "svc-latents-cephfs"}} in pod["volumes"]
    assert latent_cache_condition("svc", spec)[:2] == (True, "SharedVolume")
    assert "svc-latents-cephfs" in latent_cache_condition("svc", spec)[2]


def test_default_class_keeps_the_old_claim_name_and_sets_no_class():
    pvc = next(o for o in build_all("svc", "prod", _spec(), {}, POLICY, OWNER) if o["kind"] == "PersistentVolumeClaim")
    assert pvc["metadata"]["name"] == "svc-latents" and "storageClassName" not in pvc["spec"]
    assert "cluster default storage class" in latent_cache_condition("svc", _spec())[2]


def test_cache_disabled_needs_no_volume_at_all():
    spec = _spec(enabled=False)
    objs = build_all("svc", "prod", spec, {"cache-k0": 2, "steps-25": 2}, POLICY, OWNER)
    assert not [o for o in objs if o["kind"] == "PersistentVolumeClaim"]
    for d in (o for o in objs if o["kind"] == "Deployment"):
        kubernetes_validate.validate(d, "1.30", strict=True)
        pod = d["spec"]["template"]["spec"]
        assert all("persistentVolumeClaim" not in v for v in pod["volumes"])
        env = {e["name"] for e in pod["containers"][0]["env"]}
        assert "ARGUS_LATENT_STORE" not in env and "ARGUS_LATENT_STORE_BYTES" not in env
    status, reason, message = latent_cache_condition("svc", spec)
    assert (status, reason) == (False, "Disabled") and "any cluster" in message


def test_cache_levels_need_the_cache():
    with pytest.raises(SpecError) as e:
        parse_spec({"levels": ["cache-k0", "cache-k10", "steps-25"], "throughputTarget": 2, "gpus": 4,
                    "cache": {"enabled": False}})
    assert e.value.field == "levels" and "cache-k10 need the latent cache" in str(e.value)


@pytest.mark.parametrize("bad", ["Fast_SSD", "-x", "a" * 254, ""])
def test_bad_storage_class_names_are_refused(bad):
    with pytest.raises(SpecError) as e:
        _spec(storageClassName=bad)
    assert e.value.field == "cache.storageClassName"
