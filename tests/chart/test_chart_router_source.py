"""The chart's router runs the Kubernetes source with exactly the permissions that source uses.

Cases:
- the router container's env parses (RouterSettings.from_env) to source=kubernetes in the release
  namespace, polling every router.pollSeconds; no predictor by default
- router.predictors renders ARGUS_ROUTER_PREDICTORS that parses to the same per-service settings
- the router Role grants get/list/watch on exactly what argus.adapters.kube_router reads
  (ROUTER_RBAC_RULES): endpointslices (discovery.k8s.io) and configmaps, nothing else
- a predictor entry without `path` is rejected by the values schema at its path
"""

from __future__ import annotations

import pytest

from argus.adapters import helm_chart
from argus.adapters.kube_router import ROUTER_RBAC_RULES
from argus.router.settings import RouterSettings
from tests.support.chart import NAMESPACE, ROOT

PREDICTORS = {"sd15": {"path": "/models/sd15.predictor.json", "levels": ["cache-k0", "cache-k10"],
                       "model": "sd15", "steps": 50, "latent_store": "/var/lib/argus/latents"}}


def router_settings(values: dict) -> RouterSettings:
    objs = helm_chart.render(ROOT, values, release="argus", namespace=NAMESPACE)
    dep = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "argus-router")
    router = next(c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "router")
    return RouterSettings.from_env({e["name"]: e["value"] for e in router["env"] if "value" in e})


def test_router_reads_the_release_namespace_through_the_api():
    s = router_settings({"router": {"pollSeconds": 3}})
    assert (s.source, s.namespace, s.reload_interval_s, s.predictors) == ("kubernetes", NAMESPACE, 3.0, {})


def test_predictors_value_reaches_the_router():
    p = router_settings({"router": {"predictors": PREDICTORS}}).predictors["sd15"]
    assert (str(p.path), p.levels, p.model, p.steps, str(p.latent_store), p.cross_tenant) == \
        ("/models/sd15.predictor.json", ("cache-k0", "cache-k10"), "sd15", 50, "/var/lib/argus/latents", False)


def test_router_role_is_exactly_what_the_source_reads():
    objs = helm_chart.render(ROOT, {}, release="argus", namespace=NAMESPACE)
    role = next(o for o in objs if o["kind"] == "Role" and o["metadata"]["name"] == "argus-router")
    granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
               for v in rule["verbs"]}
    assert granted == {(g, r, v) for g, r, verbs in ROUTER_RBAC_RULES for v in verbs}
    assert {v for _, _, v in granted} == {"get", "list", "watch"}


def test_predictor_without_path_is_rejected():
    with pytest.raises(helm_chart.ChartError, match="at '/router/predictors/sd15'"):
        helm_chart.validate_values(ROOT, {"router": {"predictors": {"sd15": {"steps": 50}}}})
