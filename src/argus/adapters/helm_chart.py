"""The one module that drives Helm: lint, validate values and render the chart at the repository root.

Helm comes from helm-python-sdk (the Helm v4 engine as an in-process library, no `helm`
binary); it is a development dependency, so it is imported only when these functions run.
Helm's errors are translated once, here, into ChartError (a ValueError, so `argus` prints it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

# Helm's install order (pkg/release/util/kind_sorter.go): what `helm install` creates first;
# kinds not listed (custom resources) come last.
INSTALL_ORDER = [
    "PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy",
    "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList", "ConfigMap", "StorageClass",
    "PersistentVolume", "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole",
    "ClusterRoleList", "ClusterRoleBinding", "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding",
    "RoleBindingList", "Service", "DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
    "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress", "APIService",
    "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration",
]


class ChartError(ValueError):
    """The chart does not lint, its values break values.schema.json, or a template fails to render."""


def _helm():
    try:
        import helm_python
    except ImportError as e:  # dev dependency: `pip install -e .[dev]`
        raise ChartError("helm-python-sdk is not installed (pip install helm-python-sdk)") from e
    return helm_python


def install_key(obj: dict[str, Any]) -> tuple:
    """Sort key putting objects in Helm's install order, then by namespace and name."""
    kind = obj.get("kind", "")
    meta = obj.get("metadata") or {}
    rank = INSTALL_ORDER.index(kind) if kind in INSTALL_ORDER else len(INSTALL_ORDER)
    return rank, kind, meta.get("namespace", ""), meta.get("name", "")


def parse_documents(text: str) -> list[dict[str, Any]]:
    """Non-empty YAML documents of a multi-document string."""
    return [d for d in yaml.safe_load_all(text) if d]


def render(chart_dir: str | Path, values: dict[str, Any] | None = None, *, release: str = "argus",
           namespace: str = "argus") -> list[dict[str, Any]]:
    """Render the templates offline (as `helm template`) into objects, in Helm's install order."""
    helm = _helm()
    try:
        with helm.Chart.load(str(chart_dir)) as chart:
            rendered = chart.render(values or {}, name=release, namespace=namespace, is_install=True)
    except helm.HelmError as e:
        raise ChartError(f"chart {chart_dir}: {e}") from None
    objects = []
    for path in sorted(rendered):
        if path.endswith(".yaml") or path.endswith(".yml"):
            objects.extend(parse_documents(rendered[path]))
    return sorted(objects, key=install_key)


def crds(chart_dir: str | Path) -> list[dict[str, Any]]:
    """The CustomResourceDefinitions Helm installs from crds/, sorted by name."""
    helm = _helm()
    with helm.Chart.load(str(chart_dir)) as chart:
        docs = [d for c in chart.crds for d in parse_documents(c["data"])]
    return sorted(docs, key=lambda d: d["metadata"]["name"])


def validate_values(chart_dir: str | Path, values: dict[str, Any]) -> None:
    """Check user values against values.schema.json; ChartError names each offending key."""
    helm = _helm()
    try:
        with helm.Chart.load(str(chart_dir)) as chart:
            chart.validate_schema(values)  # coalesced with the chart defaults by Helm, as on install
    except helm.HelmError as e:
        raise ChartError(str(e).strip()) from None


def lint(chart_dir: str | Path, values: dict[str, Any] | None = None, *, namespace: str = "argus") -> list[str]:
    """`helm lint --strict` findings at warning level or worse (an empty list means clean)."""
    helm = _helm()
    report = helm.lint(str(chart_dir), values, strict=True, namespace=namespace)
    return [f"{m['path']}: {m['error'].strip()}" for m in report.get("messages", []) if m.get("severity", 0) >= 2]
