"""The Kubernetes actuator of one T2IService: a control Plan becomes its Deployments, Services and ConfigMap.

Builds the objects with `argus.controlplane.builders` and writes them through the one Kubernetes client,
`argus.adapters.kubernetes.KubernetesAdapter`; existing objects are read from the operator's watch-fed cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from argus.adapters.kubernetes import KubernetesAdapter, ObjectReader
from argus.contract import LEVEL_LABEL
from argus.control.actuator import Readiness
from argus.control.loop import Plan
from argus.controlplane.builders import build_all, build_policy_configmap, build_worker_deployment, policy_name, \
    worker_name
from argus.spec import T2IServiceSpec


@dataclass
class KubernetesActuator:
    """The Actuator of one T2IService's namespace: Plans become Deployments, Services and a ConfigMap.

    Existing objects are read from `cache` (watch-fed); only writes, and reads of objects the
    cache has not seen, go to the API server.
    """

    kube: KubernetesAdapter
    namespace: str
    cache: ObjectReader
    owner: dict[str, Any] | None = None  # ownerReference to the T2IService

    def _ensure(self, obj: dict[str, Any]) -> str:
        meta = obj["metadata"]
        result, now = self.kube.ensure(obj, self.cache.get(obj["kind"], meta["namespace"], meta["name"]))
        if now:  # write-through: the next period must not think it missing while the watch catches up
            self.cache.put(obj["kind"], now)
        return result

    def apply(self, service: str, spec: T2IServiceSpec, plan: Plan, *, full: bool) -> None:
        """Ensure every object when `full`; otherwise patch only replicas that changed and a new policy."""
        if full:
            for obj in build_all(service, self.namespace, spec, plan.allocation, plan.policy, self.owner):
                self._ensure(obj)
            self.prune_levels(service, spec)
            return
        if plan.changed:
            for level in spec.levels:
                self._ensure(build_worker_deployment(service, self.namespace, spec, level,
                                                     plan.allocation.get(level, 0), self.owner))
        if plan.policy_changed:
            self._ensure(build_policy_configmap(service, self.namespace, plan.policy, self.owner))

    def prune_levels(self, service: str, spec: T2IServiceSpec) -> list[str]:
        """Delete the Deployments and Services of levels the spec no longer has; returns their names."""
        gone = []
        for kind in ("Deployment", "Service"):
            for obj in self.cache.owned(kind, self.namespace, service):
                level = obj["metadata"].get("labels", {}).get(LEVEL_LABEL)
                if level and level not in spec.levels:
                    self.kube.delete(kind, self.namespace, obj["metadata"]["name"])
                    gone.append(f"{kind}/{obj['metadata']['name']}")
        return gone

    def readiness(self, service: str, spec: T2IServiceSpec) -> Readiness:
        """Wanted and ready replicas per level, from the cached Deployments."""
        wanted, ready, missing = {}, {}, []
        for level in spec.levels:
            d = self.cache.get("Deployment", self.namespace, worker_name(service, level))
            if d is None:
                missing.append(level)
                continue
            wanted[level] = int((d.get("spec") or {}).get("replicas") or 0)
            ready[level] = int((d.get("status") or {}).get("readyReplicas") or 0)
        return Readiness(wanted=wanted, ready=ready, missing=missing)

    def owner_present(self) -> bool:
        """Whether the T2IService these objects belong to still exists (one GET by name): its children
        vanish when garbage collection takes them after it was deleted, and must not be put back."""
        if self.owner is None:
            return True
        now = self.kube.read(self.owner["kind"], self.namespace, self.owner["name"])
        return now is not None and (now.get("metadata") or {}).get("uid") == self.owner["uid"]

    def policy_present(self, service: str) -> bool:
        """Whether the policy ConfigMap exists (it is re-created when someone deleted it)."""
        return self.cache.get("ConfigMap", self.namespace, policy_name(service)) is not None
