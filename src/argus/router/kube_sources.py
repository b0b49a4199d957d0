"""The router's Kubernetes mode: endpoints and policies polled through argus.adapters.kube_router.

Both take a lister (a function returning the current API state), so this logic never talks to the
API itself; a failed listing keeps what was known (a brief API outage must not empty the router).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

from argus.policy.document import PolicyError, parse_policy
from argus.router.settings import RouterSettings
from argus.router.sources import PolicyStore

log = logging.getLogger("argus.router")

SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class PolledEndpoints:
    """An EndpointSource over `lister() -> {service: {level: ["host:port", ...]}}` (ready replicas only)."""

    def __init__(self, lister: Callable[[], dict[str, dict[str, list[str]]]]):
        """List now; later on each `refresh`."""
        self._lister = lister
        self._data: dict[str, dict[str, list[str]]] = {}
        self.refresh()

    def refresh(self) -> None:
        """Replace the known endpoints by the listed ones; keep them when listing fails."""
        try:
            self._data = self._lister()
        except Exception as e:  # API down or throttled: route to what we knew
            log.warning("listing worker endpoints failed, keeping the last known: %s", e)

    def replicas(self, service: str, level: str) -> list[str]:
        """Ready replica addresses of one level."""
        return list(self._data.get(service, {}).get(level, []))

    def services(self) -> list[str]:
        """Services with at least one listed EndpointSlice."""
        return sorted(self._data)


class ConfigMapPolicies:
    """Feeds a PolicyStore from `lister() -> [(configmap, resourceVersion, policy.json text | None)]`."""

    def __init__(self, lister: Callable[[], list[tuple[str, str, str | None]]]):
        """Nothing is listed until the first `refresh`."""
        self._lister = lister
        self._seen: dict[str, str] = {}  # ConfigMap name -> resourceVersion already judged

    def refresh(self, store: PolicyStore) -> None:
        """Offer every new or changed ConfigMap's document; reject (log + metric) invalid ones."""
        try:
            listed = self._lister()
        except Exception as e:
            log.warning("listing policy ConfigMaps failed, keeping the policies in force: %s", e)
            return
        for name, version, text in listed:
            if self._seen.get(name) == version:
                continue
            self._seen[name] = version
            where = f"ConfigMap {name} (resourceVersion {version})"
            if text is None:
                store.reject(where, PolicyError("policy.json: key missing from the ConfigMap"))
                continue
            try:
                store.offer(parse_policy(text.encode("utf-8")))
            except PolicyError as e:
                store.reject(where, e)


def namespace_of(settings: RouterSettings) -> str:
    """The namespace served: the setting, else the pod's own (service account), else default."""
    if settings.namespace:
        return settings.namespace
    try:
        return SA_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


def kubernetes_sources(settings: RouterSettings, api=None) -> tuple[PolledEndpoints, ConfigMapPolicies]:
    """Endpoints and policy feed of the namespace, through the Kubernetes adapter (`api`: a KubernetesAdapter)."""
    from argus.adapters.kube_router import api_client, list_policy_configmaps, list_worker_endpoints
    from argus.adapters.kubernetes import KubernetesAdapter

    api = api or KubernetesAdapter(api_client(), field_manager="argus-router")
    ns = namespace_of(settings)
    return (PolledEndpoints(lambda: list_worker_endpoints(api, ns)),
            ConfigMapPolicies(lambda: list_policy_configmaps(api, ns)))
