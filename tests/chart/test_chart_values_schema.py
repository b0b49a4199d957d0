"""values.schema.json rejects invalid values with a message naming the key and the constraint,
and accepts every documented scenario.

Cases: each row of INVALID is rejected by validate_values (and by render, which Helm also checks)
with a message containing the offending path and the expected text; every scenario of tests.support.chart
and the kubectl install values are accepted; every key in values.yaml is described in the schema
and carries a comment in values.yaml.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml

from argus.adapters import helm_chart
from argus.commands.render import INSTALL_VALUES
from tests.support.chart import ROOT, SCENARIOS

INVALID = [
    ({"rbac": {"scope": "everywhere"}}, "/rbac/scope", "value must be one of 'cluster', 'namespace'"),
    ({"operator": {"replicas": 2, "peering": {"enabled": False}}}, "/operator/replicas", "maximum: got 2, want 1"),
    ({"operator": {"replicas": -1}}, "/operator/replicas", "minimum: got -1, want 0"),
    ({"routr": {"replicas": 3}}, "", "additional properties 'routr' not allowed"),
    ({"router": {"replcas": 3}}, "/router", "additional properties 'replcas' not allowed"),
    ({"router": {"replicas": "two"}}, "/router/replicas", "got string, want integer"),
    ({"router": {"sizes": "64 by 64"}}, "/router/sizes", "does not match pattern"),
    ({"router": {"service": {"type": "Ingress"}}}, "/router/service/type", "value must be one of"),
    ({"router": {"service": {"nodePort": 80}}}, "/router/service/nodePort", "minimum: got 80, want 30,000"),
    ({"router": {"resources": {"requests": None}}}, "/router/resources", "missing property 'requests'"),
    ({"router": {"resources": {"requests": {"cpu": "lots"}}}}, "/router/resources/requests/cpu", "pattern"),
    ({"envoy": {"port": 70000}}, "/envoy/port", "maximum: got 70,000, want 65,535"),
    ({"latentCache": {"storageClassName": "Fast_SSD"}}, "/latentCache/storageClassName", "does not match pattern"),
    ({"podSecurityContext": {"runAsUser": 0}}, "/podSecurityContext/runAsUser", "minimum: got 0, want 1"),
    ({"podSecurityContext": {"runAsNonRoot": False}}, "/podSecurityContext/runAsNonRoot", "value must be true"),
    ({"containerSecurityContext": {"privileged": True}}, "/containerSecurityContext/privileged", "value must be false"),
    ({"containerSecurityContext": {"allowPrivilegeEscalation": True}},
     "/containerSecurityContext/allowPrivilegeEscalation", "value must be false"),
    ({"apiKey": {"value": "short"}}, "/apiKey/value", "does not match pattern"),
    ({"apiKey": {"existingSecret": "Not_A_Name"}}, "/apiKey/existingSecret", ""),
    ({"rbac": {"watchNamespaces": ["ok", "ok"]}}, "/rbac/watchNamespaces", "items at 0 and 1 are equal"),
    ({"prometheus": {"retention": "six hours"}}, "/prometheus/retention", "does not match pattern"),
    ({"metrics": {"serviceMonitor": {"enabled": "yes"}}}, "/metrics/serviceMonitor/enabled", "got string, want boolean"),
    ({"podDisruptionBudget": {"maxUnavailable": 0}}, "/podDisruptionBudget/maxUnavailable", ""),
    ({"networkPolicy": {"metricsFrom": [{"pods": {}}]}}, "/networkPolicy/metricsFrom/0", "additional properties 'pods'"),
    ({"operator": {"logLevel": "chatty"}}, "/operator/logLevel", "value must be one of"),
]


@pytest.mark.parametrize("values,path,text", INVALID, ids=[json.dumps(v)[:60] for v, _, _ in INVALID])
def test_invalid_values_are_rejected_with_a_clear_message(values, path, text):
    with pytest.raises(helm_chart.ChartError) as err:
        helm_chart.validate_values(ROOT, values)
    message = str(err.value)
    assert f"at '{path}'" in message and text in message, message
    with pytest.raises(helm_chart.ChartError, match=re.escape(f"at '{path}'")):
        helm_chart.render(ROOT, values)


@pytest.mark.parametrize("values", [*SCENARIOS.values(), INSTALL_VALUES])
def test_documented_values_are_accepted(values):
    helm_chart.validate_values(ROOT, values)


def _leaf_paths(tree, prefix=()):
    for k, v in tree.items():
        if isinstance(v, dict) and v:
            yield from _leaf_paths(v, prefix + (k,))
        else:
            yield prefix + (k,)


def test_every_value_is_in_the_schema_and_commented():
    schema = json.loads((ROOT / "values.schema.json").read_text())
    values = yaml.safe_load((ROOT / "values.yaml").read_text())
    lines = (ROOT / "values.yaml").read_text().splitlines()
    # Free-form maps (resources, selectors, securityContexts) are documented as a whole.
    free_form = {"resources", "podSecurityContext", "containerSecurityContext", "labels", "nodeSelector"}
    for path in _leaf_paths(values):
        node = schema
        for key in path:
            if "$ref" in node:
                node = schema["$defs"][node["$ref"].split("/")[-1]]
            props = node.get("properties", {})
            if key not in props and set(path) & free_form:
                break
            assert key in props, f"{'.'.join(path)} is not in values.schema.json"
            node = props[key]
    # Each value (a leaf, or a whole free-form map/list) has a comment right above its line.
    leaves = set(_leaf_paths(values))
    stack: list[tuple[int, str]] = []
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z][\w.-]*):", line)
        if not m:
            continue
        indent = len(m.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, m.group(2)))
        path = tuple(k for _, k in stack)
        if path in leaves and not set(path[:-1]) & free_form:
            assert lines[i - 1].strip().startswith("#"), f"values.yaml:{i + 1} {line.strip()} has no comment"
