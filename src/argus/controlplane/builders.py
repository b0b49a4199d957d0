"""Pure manifest builders: the Kubernetes objects of one T2IService, as plain dicts.

Names, labels and ports follow the contract in the team brief: per level a Deployment and a
Service `<svc>-<level>`, the router's policy ConfigMap `<svc>-policy`, the latent-store PVC
`<svc>-latents` (`<svc>-latents-<class>` with cache.storageClassName; none with cache.enabled=false);
every object carries an ownerReference to the T2IService.
"""

from __future__ import annotations

import math
from typing import Any

from argus.contract import (ENDPOINT_PROPAGATION_S, LEVEL_LABEL, POLICY_KEY, POLICY_LABEL, SERVICE_LABEL, TRITON_PORTS,
                            WORKER_STOP_GRACE_S)
from argus.policy.document import PolicyDocument
from argus.spec import API_GROUP, API_VERSION, KIND, LatentCacheMode, T2IServiceSpec

HTTP_PORT, GRPC_PORT, METRICS_PORT = TRITON_PORTS.http, TRITON_PORTS.grpc, TRITON_PORTS.metrics
LATENT_DIR = "/var/lib/argus/latents"
GPU_RESOURCE = "nvidia.com/gpu"
WORKER_UID = 10001  # the worker image's non-root user (worker_image/Dockerfile)
# Writable paths on a read-only root filesystem: /tmp is HOME, the rendered model repository and
# Triton's backend dir (serve.py); /dev/shm carries the python backend's tensors to its stub.
SCRATCH_MOUNTS = (("tmp", "/tmp", None), ("shm", "/dev/shm", "Memory"))
MANAGED_BY = "argus-operator"


def owner_reference(name: str, uid: str) -> dict[str, Any]:
    """The ownerReference that makes the T2IService the controller of an object (GC on delete)."""
    return {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": KIND, "name": name, "uid": uid,
            "controller": True, "blockOwnerDeletion": True}


def service_labels(service: str) -> dict[str, str]:
    """Labels every object of the T2IService carries (the adapter lists children by these)."""
    return {"app.kubernetes.io/name": "argus", "app.kubernetes.io/managed-by": MANAGED_BY,
            SERVICE_LABEL: service}


def worker_labels(service: str, level: str) -> dict[str, str]:
    """Labels of one level's Deployment, pods and Service."""
    return {**service_labels(service), "app.kubernetes.io/component": "worker", LEVEL_LABEL: level}


def worker_name(service: str, level: str) -> str:
    """`<svc>-<level>`: the name of a level's Deployment and Service."""
    return f"{service}-{level}"


def _meta(name: str, namespace: str, labels: dict[str, str], owner: dict[str, Any] | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels}
    if owner:
        meta["ownerReferences"] = [owner]
    return meta


def _worker_env(spec: T2IServiceSpec, level: str) -> list[dict[str, str]]:
    env = {"ARGUS_LEVEL": level, "ARGUS_MODEL_NAME": spec.model.name, "ARGUS_STEPS": str(spec.model.steps),
           "ARGUS_LEVELS": ",".join(spec.levels)}
    if spec.cache.mode is LatentCacheMode.SHARED_VOLUME:
        env |= {"ARGUS_LATENT_STORE": LATENT_DIR, "ARGUS_LATENT_STORE_BYTES": str(spec.cache.max_bytes)}
    if spec.model.weights_path:
        env["ARGUS_WEIGHTS_PATH"] = spec.model.weights_path
    return [{"name": k, "value": v} for k, v in env.items()]


def _security_context() -> dict[str, Any]:
    return {"runAsNonRoot": True, "runAsUser": WORKER_UID, "runAsGroup": WORKER_UID,
            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]}}


def _volumes(service: str, spec: T2IServiceSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(pod volumes, container mounts): latent store, scratch emptyDirs, and the weights read-only."""
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    if spec.cache.mode is LatentCacheMode.SHARED_VOLUME:
        volumes.append({"name": "latents", "persistentVolumeClaim": {"claimName": latents_name(service, spec)}})
        mounts.append({"name": "latents", "mountPath": LATENT_DIR})
    for name, path, medium in SCRATCH_MOUNTS:
        volumes.append({"name": name, "emptyDir": {"medium": medium} if medium else {}})
        mounts.append({"name": name, "mountPath": path})
    m = spec.model
    if m.weights_pvc:
        volumes.append({"name": "weights", "persistentVolumeClaim": {"claimName": m.weights_pvc, "readOnly": True}})
    elif m.weights_host_path:
        volumes.append({"name": "weights", "hostPath": {"path": m.weights_host_path, "type": "Directory"}})
    if m.weights_pvc or m.weights_host_path:
        mounts.append({"name": "weights", "mountPath": m.weights_path, "readOnly": True})
    return volumes, mounts


def build_worker_deployment(service: str, namespace: str, spec: T2IServiceSpec, level: str, replicas: int,
                            owner: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Deployment of one level: `replicas` Triton workers, one GPU each, Triton readiness probe."""
    labels = worker_labels(service, level)
    selector = {SERVICE_LABEL: service, LEVEL_LABEL: level}
    volumes, mounts = _volumes(service, spec)
    container = {
        "name": "worker",
        "image": spec.model.image,
        "command": ["python", "-m", "argus.worker.serve"],
        "env": _worker_env(spec, level),
        "ports": [{"name": "http", "containerPort": HTTP_PORT}, {"name": "grpc", "containerPort": GRPC_PORT},
                  {"name": "metrics", "containerPort": METRICS_PORT}],
        # GPU request = limit (extended resources require it); memory limit = request so a worker is
        # never OOM-killed for memory a neighbour took; no CPU limit (CFS throttling adds latency).
        "resources": {"requests": {GPU_RESOURCE: "1", "cpu": spec.worker_resources.cpu,
                                   "memory": spec.worker_resources.memory},
                      "limits": {GPU_RESOURCE: "1", "memory": spec.worker_resources.memory}},
        "securityContext": _security_context(),
        "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": HTTP_PORT},
                           "periodSeconds": 5, "failureThreshold": 3},
        # Loading weights takes tens of seconds; do not kill a worker that is still loading.
        "startupProbe": {"httpGet": {"path": "/v2/health/ready", "port": HTTP_PORT},
                         "periodSeconds": 10, "failureThreshold": 60},
        "volumeMounts": mounts,
        # Stopping: first the pause, while the router drops the terminating pod's endpoint; then SIGTERM,
        # after which Triton takes no new request and finishes the accepted ones (WORKER_DRAIN_S).
        "lifecycle": {"preStop": {"exec": {"command": [
            "python", "-c", f"import time; time.sleep({ENDPOINT_PROPAGATION_S})"]}}},
    }
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "terminationGracePeriodSeconds": ENDPOINT_PROPAGATION_S + WORKER_STOP_GRACE_S,
        "volumes": volumes,
        # fsGroup makes the latent-store volume writable by the non-root worker.
        "securityContext": {"runAsNonRoot": True, "fsGroup": WORKER_UID,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "automountServiceAccountToken": False,
    }
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in spec.tolerations]
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": _meta(worker_name(service, level), namespace, labels, owner),
        "spec": {
            "replicas": int(replicas),
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": labels,
                             "annotations": {"prometheus.io/scrape": "true",
                                             "prometheus.io/port": str(METRICS_PORT)}},
                "spec": pod_spec,
            },
        },
    }


def build_worker_service(service: str, namespace: str, level: str,
                         owner: dict[str, Any] | None = None) -> dict[str, Any]:
    """The headless Service of one level: the router reads its EndpointSlices to find ready workers, so
    it needs no ClusterIP (four per T2IService exhausted a /24 service range at ~62 services)."""
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": _meta(worker_name(service, level), namespace, worker_labels(service, level), owner),
        "spec": {
            "clusterIP": "None",
            "selector": {SERVICE_LABEL: service, LEVEL_LABEL: level},
            "ports": [{"name": "grpc", "port": GRPC_PORT, "targetPort": GRPC_PORT},
                      {"name": "http", "port": HTTP_PORT, "targetPort": HTTP_PORT},
                      {"name": "metrics", "port": METRICS_PORT, "targetPort": METRICS_PORT}],
        },
    }


def policy_name(service: str) -> str:
    """`<svc>-policy`: the ConfigMap the router reads the policy from."""
    return f"{service}-policy"


def build_policy_configmap(service: str, namespace: str, policy: PolicyDocument,
                           owner: dict[str, Any] | None = None) -> dict[str, Any]:
    """The policy ConfigMap (label argus.dev/policy=true, key policy.json)."""
    labels = {**service_labels(service), "app.kubernetes.io/component": "policy", POLICY_LABEL: "true"}
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": _meta(policy_name(service), namespace, labels, owner),
            "data": {POLICY_KEY: policy.to_json()}}


def latents_name(service: str, spec: T2IServiceSpec | None = None) -> str:
    """The shared latent store's PVC: `<svc>-latents`, or `<svc>-latents-<class>` with a storage class.

    A PVC's storage class cannot change once created; naming the claim by its class makes a class
    change a new claim (the workers roll over to it) instead of a patch the API server rejects.
    """
    cls = spec.cache.storage_class_name if spec is not None else None
    return f"{service}-latents-{cls}" if cls else f"{service}-latents"


def build_latents_pvc(service: str, namespace: str, spec: T2IServiceSpec,
                      owner: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ReadWriteMany PVC every worker of the service mounts as its latent store."""
    gib = max(1, math.ceil(spec.cache.max_bytes / 1024**3))
    labels = {**service_labels(service), "app.kubernetes.io/component": "latent-store"}
    pvc_spec: dict[str, Any] = {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": f"{gib}Gi"}}}
    if spec.cache.storage_class_name:
        pvc_spec["storageClassName"] = spec.cache.storage_class_name
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": _meta(latents_name(service, spec), namespace, labels, owner), "spec": pvc_spec}


def latent_cache_condition(service: str, spec: T2IServiceSpec) -> tuple[bool, str, str]:
    """The LatentCache condition (status, reason, message): which latent-cache mode is in force and what it costs."""
    if spec.cache.mode is LatentCacheMode.DISABLED:
        return (False, LatentCacheMode.DISABLED.value,
                "cache.enabled=false: no latent store and no volume (runs on any cluster); no cache-k<K> level is "
                "served, so a prompt near a cached one still pays for every denoising step")
    cls = spec.cache.storage_class_name
    return (True, LatentCacheMode.SHARED_VOLUME.value,
            f"latents in PVC {latents_name(service, spec)} (ReadWriteMany, "
            f"{f'storage class {cls}' if cls else 'the cluster default storage class'}), shared by every worker; "
            "it stays Pending, and so do the workers, unless the class provisions ReadWriteMany volumes "
            "(set cache.storageClassName, or cache.enabled=false)")


def build_all(service: str, namespace: str, spec: T2IServiceSpec, allocation: dict[str, int],
              policy: PolicyDocument, owner: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every object of the service, PVC first (pods need it; none without a latent cache), policy last
    (after workers exist)."""
    objs = [build_latents_pvc(service, namespace, spec, owner)] if spec.cache.mode is LatentCacheMode.SHARED_VOLUME \
        else []
    for level in spec.levels:
        objs.append(build_worker_deployment(service, namespace, spec, level, allocation.get(level, 0), owner))
        objs.append(build_worker_service(service, namespace, level, owner))
    objs.append(build_policy_configmap(service, namespace, policy, owner))
    return objs
