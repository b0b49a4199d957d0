"""The one module that talks to the Kubernetes API server (through the official `kubernetes` client).

Generic JSON requests (create, read by name, merge-patch, delete, Events, status) on the few kinds the
operator owns; the operator's actuator (controlplane.actuator) writes a control Plan through it, reading
what exists from the watch-fed ObjectCache (controlplane.cache), never by listing: a control period
costs no read request. API errors become KubeApiError (retryable or not), translated once in
the control loop (controlplane.fleet). `RBAC_RULES` lists every (apiGroup, resource, verbs) used here
and by kopf, for the Helm chart.
"""

from __future__ import annotations

import datetime
import json
import os
from typing import Any, Protocol


# (apiGroup, resource, verbs): what the operator process needs, kopf's own needs included.
RBAC_RULES: list[tuple[str, str, tuple[str, ...]]] = [
    ("argus.dev", "t2iservices", ("get", "list", "watch", "patch", "update")),
    ("argus.dev", "t2iservices/status", ("get", "patch", "update")),
    # Children carry ownerReferences with blockOwnerDeletion=true; with the OwnerReferencesPermission-
    # Enforcement admission plugin that needs update on the owner's finalizers subresource.
    ("argus.dev", "t2iservices/finalizers", ("update",)),
    ("apps", "deployments", ("get", "list", "watch", "create", "patch", "delete")),
    ("", "services", ("get", "list", "watch", "create", "patch", "delete")),
    ("", "configmaps", ("get", "list", "watch", "create", "patch", "delete")),
    ("", "persistentvolumeclaims", ("get", "list", "watch", "create", "patch", "delete")),
    ("", "events", ("create", "patch")),  # kopf posts Events through core/v1
    ("", "namespaces", ("get", "list", "watch")),  # kopf waits for namespaces to exist
    ("apiextensions.k8s.io", "customresourcedefinitions", ("get", "list", "watch")),  # kopf discovery
    ("kopf.dev", "kopfpeerings", ("get", "list", "watch", "patch")),  # peering of operator replicas
    ("kopf.dev", "clusterkopfpeerings", ("get", "list", "watch", "patch")),
]

# kind -> (API prefix, plural); all namespaced.
KINDS: dict[str, tuple[str, str]] = {
    "Deployment": ("/apis/apps/v1", "deployments"),
    "Service": ("/api/v1", "services"),
    "ConfigMap": ("/api/v1", "configmaps"),
    "PersistentVolumeClaim": ("/api/v1", "persistentvolumeclaims"),
    "T2IService": ("/apis/argus.dev/v1alpha1", "t2iservices"),  # status and the legacy finalizer only
}
# The kinds a service owns (garbage-collected through their ownerReference when it is deleted).
OWNED_KINDS = ("Deployment", "Service", "ConfigMap", "PersistentVolumeClaim")
RETRYABLE = {409, 429, 500, 502, 503, 504}
# Fields the API server refuses to change once set: an existing object keeps its value.
IMMUTABLE = {"Service": ("clusterIP",)}
UNKNOWN: Any = object()  # `current` not given: read the object by name


class ObjectReader(Protocol):
    """What the actuator reads existing objects from (controlplane.cache.ObjectCache); what it writes is
    put there at once (the watch brings the same object moments later)."""

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...

    def put(self, kind: str, body: dict[str, Any]) -> Any: ...

    def owned(self, kind: str, namespace: str, service: str) -> list[dict[str, Any]]: ...


def api_client(pool_size: int | None = None) -> Any:
    """A kubernetes ApiClient from the in-cluster service account, else from kubeconfig (`KUBECONFIG`, read
    now, not at the client's import); `pool_size`: connections kept, one per thread that shares the client
    (the default, 5 per CPU, discards connections under 16 worker threads on 2 CPUs)."""
    from kubernetes import client, config

    conf = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=conf)
    except config.ConfigException:
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG"), client_configuration=conf)
    if pool_size is not None:
        conf.connection_pool_maxsize = pool_size
    return client.ApiClient(conf)


class KubeApiError(Exception):
    """A failed API call; `retryable` for conflicts, throttling, server errors and connection failures."""

    def __init__(self, status: int, message: str):
        super().__init__(f"Kubernetes API {status}: {message}")
        self.status = status
        self.retryable = status in RETRYABLE or status == 0


class KubernetesAdapter:
    """JSON-level access to the API server through a configured `kubernetes.client.ApiClient`."""

    def __init__(self, api_client: Any, timeout_s: float = 10.0, field_manager: str = "argus-operator"):
        """Use `api_client` (built from kubeconfig or in-cluster config by the caller)."""
        self._api = api_client
        self._timeout = timeout_s
        self._manager = field_manager

    def request(self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None,
                content_type: str | None = None) -> dict[str, Any] | None:
        """One API call; returns the decoded body, None on 404 for GET/DELETE, raises KubeApiError otherwise."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type or "application/json"
        try:
            params = self._api.param_serialize(method=method, resource_path=path,
                                               query_params=list((query or {}).items()), header_params=headers,
                                               body=body, auth_settings=["BearerToken"])
            resp = self._api.call_api(*params, _request_timeout=self._timeout)
            resp.read()
        except Exception as e:  # urllib3 connection errors and the client's ApiException alike
            status = getattr(e, "status", 0) or 0
            if status == 404 and method in ("GET", "DELETE"):
                return None
            raise KubeApiError(status, f"{method} {path}: {e}") from None
        if resp.status == 404 and method in ("GET", "DELETE"):
            return None
        if resp.status >= 400:
            raise KubeApiError(resp.status, f"{method} {path}: {resp.data[:300]!r}")
        return json.loads(resp.data) if resp.data else {}

    @staticmethod
    def path(kind: str, namespace: str, name: str | None = None) -> str:
        """The REST path of a namespaced kind (collection when name is None)."""
        prefix, plural = KINDS[kind]
        return f"{prefix}/namespaces/{namespace}/{plural}" + (f"/{name}" if name else "")

    def read(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        return self.request("GET", self.path(kind, namespace, name))

    def patch(self, kind: str, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """JSON merge-patch one object."""
        return self.request("PATCH", self.path(kind, namespace, name), body,
                            query={"fieldManager": self._manager}, content_type="application/merge-patch+json")

    def ensure(self, obj: dict[str, Any], current: Any = UNKNOWN) -> tuple[str, dict[str, Any] | None]:
        """Create the object or merge-patch it to match: ('created' | 'patched' | 'unchanged', the object
        as the server now has it, or None when unchanged).

        `current` is the object as last seen (None: absent); when not given it is read by name.
        """
        kind, meta = obj["kind"], obj["metadata"]
        if current is UNKNOWN:
            current = self.read(kind, meta["namespace"], meta["name"])
        if current is None:
            try:
                return "created", self.request("POST", self.path(kind, meta["namespace"]), obj,
                                               query={"fieldManager": self._manager})
            except KubeApiError as e:
                if e.status != 409:  # created meanwhile by another writer: fall through to patch
                    raise
                current = self.read(kind, meta["namespace"], meta["name"]) or {}
        obj = keep_immutable(current, obj)
        if covers(current, obj):
            return "unchanged", None
        return "patched", self.patch(kind, meta["namespace"], meta["name"], obj)

    def patch_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any] | None:
        """JSON merge-patch the status subresource."""
        return self.request("PATCH", self.path(kind, namespace, name) + "/status", {"status": status},
                            query={"fieldManager": self._manager}, content_type="application/merge-patch+json")

    def post_event(self, involved: dict[str, Any], etype: str, reason: str, message: str,
                   component: str = "argus-operator") -> None:
        """Post a core/v1 Event about `involved` (apiVersion, kind, name, namespace, uid)."""
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        ns = involved["namespace"]
        self.request("POST", f"/api/v1/namespaces/{ns}/events", {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": f"{involved['name']}.", "namespace": ns},
            "involvedObject": involved, "type": etype, "reason": reason, "message": message[:1024],
            "source": {"component": component}, "reportingComponent": component,
            "firstTimestamp": now, "lastTimestamp": now, "count": 1})

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        """Delete one object (background propagation); False when it was already gone."""
        return self.request("DELETE", self.path(kind, namespace, name),
                            body={"propagationPolicy": "Background"}) is not None


def keep_immutable(current: dict[str, Any], desired: dict[str, Any]) -> dict[str, Any]:
    """`desired` without the immutable spec fields `current` already has with another value.

    An existing Service keeps its ClusterIP (the builders now ask for headless Services): patching
    it would be refused; it becomes headless when it is re-created.
    """
    fields = IMMUTABLE.get(desired.get("kind", ""), ())
    cur, want = current.get("spec") or {}, desired.get("spec") or {}
    drop = [f for f in fields if f in want and cur.get(f) not in (None, want[f])]
    if not drop:
        return desired
    return {**desired, "spec": {k: v for k, v in want.items() if k not in drop}}


def covers(current: Any, desired: Any) -> bool:
    """Whether `current` already has every value of `desired` (server-added fields are ignored)."""
    if isinstance(desired, dict):
        return isinstance(current, dict) and all(k in current and covers(current[k], v) for k, v in desired.items())
    if isinstance(desired, list):
        return isinstance(current, list) and len(current) == len(desired) and \
            all(covers(c, d) for c, d in zip(current, desired))
    return current == desired
