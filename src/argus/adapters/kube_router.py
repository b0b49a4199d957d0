"""The router's read-only view of the Kubernetes API: worker endpoints and policy documents.

Worker endpoints come from the EndpointSlices of each `<svc>-<level>` Service (the EndpointSlice
controller copies the Service's labels `argus.dev/service` and `argus.dev/level` onto its slices);
only ready endpoints count, on the port named `grpc` (else 8001). Policies come from ConfigMaps
labelled `argus.dev/policy=true`, key `policy.json`. Label filters are re-checked client-side.
`ROUTER_RBAC_RULES` is everything the router needs (the chart derives the router's Role from it).
"""

from __future__ import annotations

from typing import Any

from argus.adapters.kubernetes import KubernetesAdapter, api_client
from argus.contract import LEVEL_LABEL, POLICY_KEY, POLICY_LABEL, SERVICE_LABEL, TRITON_PORTS

ROUTER_RBAC_RULES: list[tuple[str, str, tuple[str, ...]]] = [
    ("discovery.k8s.io", "endpointslices", ("get", "list", "watch")),
    ("", "configmaps", ("get", "list", "watch")),
]
GRPC_PORT = TRITON_PORTS.grpc


def slice_addresses(sl: dict[str, Any]) -> list[str]:
    """`host:port` of the ready endpoints of one EndpointSlice (unset `ready` means ready, as in Kubernetes)."""
    ports = sl.get("ports") or []
    port = next((p.get("port") for p in ports if p.get("name") == "grpc" and p.get("port")), None)
    if port is None:
        port = next((p.get("port") for p in ports if p.get("port") == GRPC_PORT), GRPC_PORT)
    out = []
    for ep in sl.get("endpoints") or []:
        if (ep.get("conditions") or {}).get("ready") is False:
            continue
        for addr in ep.get("addresses") or []:
            out.append(f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}")
    return out


def list_worker_endpoints(api: KubernetesAdapter, namespace: str) -> dict[str, dict[str, list[str]]]:
    """Ready worker addresses per service and level, from the namespace's labelled EndpointSlices."""
    body = api.request("GET", f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices",
                       query={"labelSelector": f"{SERVICE_LABEL},{LEVEL_LABEL}"}) or {}
    out: dict[str, dict[str, list[str]]] = {}
    for sl in body.get("items") or []:
        labels = (sl.get("metadata") or {}).get("labels") or {}
        svc, level = labels.get(SERVICE_LABEL), labels.get(LEVEL_LABEL)
        if not svc or not level:
            continue
        addrs = out.setdefault(svc, {}).setdefault(level, [])
        addrs.extend(a for a in slice_addresses(sl) if a not in addrs)
    return out


def list_policy_configmaps(api: KubernetesAdapter, namespace: str) -> list[tuple[str, str, str | None]]:
    """(name, resourceVersion, policy.json text or None) of every ConfigMap labelled argus.dev/policy=true."""
    body = api.request("GET", f"/api/v1/namespaces/{namespace}/configmaps",
                       query={"labelSelector": f"{POLICY_LABEL}=true"}) or {}
    out = []
    for cm in body.get("items") or []:
        meta = cm.get("metadata") or {}
        if (meta.get("labels") or {}).get(POLICY_LABEL) != "true":
            continue
        out.append((meta.get("name", ""), str(meta.get("resourceVersion", "")), (cm.get("data") or {}).get(POLICY_KEY)))
    return out
