"""Chart test support: render the chart at the repository root under named value scenarios.

Rendering goes through argus.adapters.helm_chart (the real Helm v4 engine in-process); each
scenario is rendered once per session.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import yaml

from argus.adapters import helm_chart

ROOT = Path(__file__).resolve().parents[2]
NAMESPACE = "argus"

# The value scenarios the issue names, plus the combinations a user is likely to try.
SCENARIOS: dict[str, dict] = {
    "defaults": {},
    "namespaced-rbac": {"rbac": {"scope": "namespace", "watchNamespaces": ["team-a", "team-b"]}},
    "namespaced-no-cluster-role": {"rbac": {"scope": "namespace", "clusterDiscovery": False}},
    "prometheus-operator": {"metrics": {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}},
                            "prometheus": {"enabled": False}, "grafana": {"dashboard": {"enabled": True}}},
    "api-key-off": {"apiKey": {"enabled": False}},
    "api-key-existing": {"apiKey": {"existingSecret": "my-key"}},
    "api-key-given": {"apiKey": {"value": "s3cret-api-key-0123456789"}},
    "standalone-operator": {"operator": {"peering": {"enabled": False}}},
    "no-scrapers": {"networkPolicy": {"metricsFrom": [], "routerFrom": [{"namespaceSelector": {
        "matchLabels": {"kubernetes.io/metadata.name": "ingress"}}}]}, "prometheus": {"enabled": False}},
    "lean": {"networkPolicy": {"enabled": False}, "podDisruptionBudget": {"enabled": False},
             "prometheus": {"enabled": False}, "metrics": {"scrapeAnnotations": False}},
    "nodeport-long-name": {"fullnameOverride": "a-very-long-release-name-for-testing-the-sixty-three-limit-x",
                           "router": {"service": {"type": "NodePort", "nodePort": 30080}}},
}


@functools.lru_cache(maxsize=None)
def _render(name: str) -> tuple[dict, ...]:
    return tuple(helm_chart.render(ROOT, SCENARIOS[name], release="argus", namespace=NAMESPACE))


def render(name: str) -> list[dict]:
    """The objects of one scenario (a fresh copy the test may modify)."""
    return copy.deepcopy(list(_render(name)))


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    """Objects of one kind."""
    return [o for o in objects if o["kind"] == kind]


def pod_specs(objects: list[dict]) -> list[tuple[str, dict]]:
    """(workload name, pod spec) of every workload."""
    return [(o["metadata"]["name"], o["spec"]["template"]["spec"]) for o in objects
            if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job")]


def crd_schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> openAPIV3Schema of every CRD in crds/ (read from the files, never copied)."""
    out = {}
    for path in sorted((ROOT / "crds").glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd:
                continue
            for v in crd["spec"]["versions"]:
                out[(f"{crd['spec']['group']}/{v['name']}", crd["spec"]["names"]["kind"])] = \
                    v["schema"]["openAPIV3Schema"]
    return out


@functools.lru_cache(maxsize=None)
def _validator(api_version: str, kind: str, version: str):
    """A validator over kubernetes-validate's strict schema for one kind, built once: the library's
    own validate() re-reads the 3 MB definitions file on every call, which is most of its cost."""
    import re

    import jsonschema
    import referencing
    from kubernetes_validate import utils

    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    release = [v for v in utils.all_versions() if utils.major_minor(v) <= version][-1]
    folder = f"kubernetes-json-schema/v{release}-local-strict"
    schema = utils.schema_contents(f"{folder}/{kind.lower()}-{group_version}.json", version)
    definitions = utils.schema_contents(f"{folder}/_definitions.json", version)
    registry = referencing.Resource.from_contents(definitions) @ (
        referencing.Resource.from_contents(schema) @ referencing.Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def kube_validate(obj: dict, version: str = "1.30") -> str:
    """Validate one object against the Kubernetes OpenAPI schema (kubernetes-validate's strict
    schemas: unknown fields are errors); '' when valid, else the first error with its path."""
    error = next(iter(sorted(_validator(obj["apiVersion"], obj["kind"], version).iter_errors(obj),
                             key=lambda e: list(e.path))), None)
    return "" if error is None else f"{error.message} at {list(error.path)}"
