"""RBAC: the chart grants exactly what the code uses, taken from the code, in both scopes.

Cases:
- files/rbac.json equals what argus.adapters.kube_permissions derives now from the operator's
  RBAC_RULES (argus.adapters.kubernetes), so the list is maintained once, in the code;
- cluster mode: the operator's ClusterRole grants exactly RBAC_RULES minus the namespaced peering;
- namespaced mode: each watched namespace's Role grants exactly the namespaced part, and the
  optional ClusterRole only read verbs on cluster-scoped kinds;
- every kind the adapter writes (its KINDS table) is covered for the verbs its methods send
  (GET, POST, PATCH, DELETE and label-selected lists), and the T2IService with its status;
- the router and the chart's Prometheus are read-only and namespaced (Roles, no ClusterRole);
- split_operator_rules is table-tested on a small rule list.
"""

from __future__ import annotations

import json

import pytest

from argus.adapters import kube_permissions as kp
from argus.adapters.kubernetes import KINDS, OWNED_KINDS, RBAC_RULES
from argus.spec import API_GROUP, PLURAL
from tests.support.chart import ROOT, by_kind, render

READ = {"get", "list", "watch"}
# What KubernetesAdapter's methods send for every kind it manages: read/ensure (GET, POST,
# PATCH), list_owned (list) and delete (DELETE).
ADAPTER_VERBS = {"get", "list", "create", "patch", "delete"}


def _component(objects, kind, component):
    return [o for o in by_kind(objects, kind) if o["metadata"]["labels"]["app.kubernetes.io/component"] == component]


def test_rbac_file_is_generated_from_the_code():
    assert json.loads((ROOT / "files" / "rbac.json").read_text()) == kp.rbac_document()


def test_cluster_mode_grants_exactly_the_code_rules():
    (role,) = _component(render("defaults"), "ClusterRole", "operator")
    expected = {t for t in kp.triples(RBAC_RULES) if t[1] != "kopfpeerings"}
    assert kp.flatten(role["rules"]) == expected


def test_namespaced_mode_grants_the_namespaced_part_per_namespace():
    objects = render("namespaced-rbac")
    expected = {t for t in kp.triples(RBAC_RULES) if t[1] not in kp.CLUSTER_SCOPED}
    roles = _component(objects, "Role", "operator")
    assert len(roles) == 2
    for role in roles:
        assert kp.flatten(role["rules"]) == expected
    (discovery,) = _component(objects, "ClusterRole", "operator")
    granted = kp.flatten(discovery["rules"])
    assert granted and {v for _, _, v in granted} <= READ
    assert {r for _, r, _ in granted} <= kp.CLUSTER_SCOPED - {"clusterkopfpeerings"}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_adapter_kind_is_covered(kind):
    prefix, plural = KINDS[kind]
    group = "" if prefix.startswith("/api/") else prefix.split("/")[2]
    (role,) = _component(render("defaults"), "ClusterRole", "operator")
    granted = kp.flatten(role["rules"])
    # The adapter writes only the kinds a service owns; the others (the T2IService) it only reads.
    verbs = ADAPTER_VERBS if kind in OWNED_KINDS else {"get"}
    assert {(group, plural, v) for v in verbs} <= granted


def test_t2iservice_and_status_are_covered():
    (role,) = _component(render("defaults"), "ClusterRole", "operator")
    granted = kp.flatten(role["rules"])
    assert {(API_GROUP, PLURAL, v) for v in ("get", "list", "watch", "patch")} <= granted
    assert (API_GROUP, f"{PLURAL}/status", "patch") in granted


@pytest.mark.parametrize("component", ["router", "prometheus"])
def test_data_plane_roles_are_read_only_and_namespaced(component):
    objects = render("defaults")
    assert not _component(objects, "ClusterRole", component)
    (role,) = _component(objects, "Role", component)
    granted = kp.flatten(role["rules"])
    assert granted and {v for _, _, v in granted} <= READ


SPLIT_CASES = [
    # (rules, cluster, namespaced, discovery)
    ([("", "configmaps", ("get", "patch"))],
     {("", "configmaps", "get"), ("", "configmaps", "patch")},
     {("", "configmaps", "get"), ("", "configmaps", "patch")}, set()),
    ([("kopf.dev", "kopfpeerings", ("patch",)), ("kopf.dev", "clusterkopfpeerings", ("patch",))],
     {("kopf.dev", "clusterkopfpeerings", "patch")}, {("kopf.dev", "kopfpeerings", "patch")}, set()),
    ([("", "namespaces", ("get", "list", "watch", "delete"))],
     {("", "namespaces", v) for v in ("get", "list", "watch", "delete")}, set(),
     {("", "namespaces", v) for v in ("get", "list", "watch")}),
]


@pytest.mark.parametrize("rules,cluster,namespaced,discovery", SPLIT_CASES)
def test_split_operator_rules(rules, cluster, namespaced, discovery):
    out = kp.split_operator_rules(rules)
    assert (out["operatorCluster"], out["operatorNamespaced"], out["operatorDiscovery"]) == \
        (cluster, namespaced, discovery)


def test_policy_rules_round_trip():
    granted = kp.triples(RBAC_RULES)
    rules = kp.policy_rules(granted)
    assert kp.flatten(rules) == granted
    assert rules == kp.policy_rules(sorted(granted, reverse=True))  # deterministic
