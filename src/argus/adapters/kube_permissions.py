"""Kubernetes API permissions of each Argus component, shaped as RBAC PolicyRules for the chart.

The operator's rules are not written here: they are derived from `RBAC_RULES` in
argus.adapters.kubernetes (the one module that calls the API server, kopf's needs included)
and only split by scope. `argus render-manifests` writes the result to the chart's
`files/rbac.json`, and tests/chart checks that the file, the rendered Roles and the code agree.

Scopes: cluster-wide mode gets one ClusterRole (kopf then uses the ClusterKopfPeering, so the
namespaced `kopfpeerings` is left out); namespaced mode gets a Role per watched namespace with
the namespaced resources only (no `clusterkopfpeerings`), plus an optional read-only ClusterRole
for the cluster-scoped objects kopf observes (namespaces, CRDs); without it kopf logs a warning
and only scans them at start-up.
"""

from __future__ import annotations

from collections.abc import Iterable

from argus.adapters.kube_router import ROUTER_RBAC_RULES

Triple = tuple[str, str, str]  # (apiGroup, resource, verb)

# Cluster-scoped resources among those the operator may use.
CLUSTER_SCOPED = frozenset({"namespaces", "customresourcedefinitions", "clusterkopfpeerings"})
NAMESPACED_PEERING, CLUSTER_PEERING = "kopfpeerings", "clusterkopfpeerings"

# The router reads policies from labelled ConfigMaps and worker endpoints from EndpointSlices
# of the level Services, in its own namespace only (contract in the team brief): read-only.
# Derived, like the operator's, from the one module that makes those calls.
ROUTER_RULES: list[tuple[str, str, tuple[str, ...]]] = list(ROUTER_RBAC_RULES)

# The chart's optional minimal Prometheus discovers pods to scrape in the release namespace.
PROMETHEUS_RULES: list[tuple[str, str, tuple[str, ...]]] = [
    ("", "pods", ("get", "list", "watch")),
]


def triples(rules: Iterable[tuple[str, str, Iterable[str]]]) -> set[Triple]:
    """(apiGroup, resource, verb) triples of (apiGroup, resource, verbs) entries."""
    return {(g, r, v) for g, r, verbs in rules for v in verbs}


def flatten(policy_rules: Iterable[dict]) -> set[Triple]:
    """(apiGroup, resource, verb) triples granted by RBAC PolicyRule dicts."""
    return {(g, r, v) for rule in policy_rules for g in rule.get("apiGroups", [])
            for r in rule.get("resources", []) for v in rule.get("verbs", [])}


def policy_rules(granted: Iterable[Triple]) -> list[dict]:
    """Compact, deterministic PolicyRules: one per (apiGroup, verb set), resources merged."""
    verbs: dict[tuple[str, str], set[str]] = {}
    for g, r, v in granted:
        verbs.setdefault((g, r), set()).add(v)
    merged: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for (g, r), vs in sorted(verbs.items()):
        merged.setdefault((g, tuple(sorted(vs))), []).append(r)
    return [{"apiGroups": [g], "resources": sorted(rs), "verbs": list(vs)}
            for (g, vs), rs in sorted(merged.items())]


def split_operator_rules(operator: Iterable[tuple[str, str, Iterable[str]]]) -> dict[str, set[Triple]]:
    """The operator's triples for each scope: cluster mode, namespaced mode, and its read-only extra."""
    all_t = triples(operator)
    cluster = {t for t in all_t if t[1] != NAMESPACED_PEERING}
    namespaced = {t for t in all_t if t[1] not in CLUSTER_SCOPED}
    discovery = {t for t in all_t if t[1] in CLUSTER_SCOPED and t[1] != CLUSTER_PEERING
                 and t[2] in ("get", "list", "watch")}
    return {"operatorCluster": cluster, "operatorNamespaced": namespaced, "operatorDiscovery": discovery}


def rbac_document(operator: Iterable[tuple[str, str, Iterable[str]]] | None = None) -> dict[str, list[dict]]:
    """Every component's PolicyRules, keyed as the chart's files/rbac.json has them."""
    if operator is None:
        from argus.adapters.kubernetes import RBAC_RULES  # the operator's own list, kopf's needs included
        operator = RBAC_RULES
    doc = {k: policy_rules(v) for k, v in split_operator_rules(operator).items()}
    doc["router"] = policy_rules(triples(ROUTER_RULES))
    doc["prometheus"] = policy_rules(triples(PROMETHEUS_RULES))
    return doc
