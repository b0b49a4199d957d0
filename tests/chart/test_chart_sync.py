"""Generated files and cross-area contracts stay in sync with their sources.

Cases:
- `argus render-manifests --check` passes (and fails, naming the file, on a stale copy, which a
  plain run then rewrites): files/rbac.json, files/envoy-bootstrap.json and
  manifests/install.yaml equal what the code and the chart produce now;
- manifests/install.yaml holds the Namespace, every CRD of crds/ unchanged, and exactly the chart
  rendered with INSTALL_VALUES; every object in it validates;
- the Envoy ConfigMap carries build_bootstrap(CHART_ENVOY) (the local runtime's generator), and
  the chart's ports agree with it (Envoy listener, stats listener, router cluster);
- the operator container runs the operator's handlers module with options `kopf run` has, every
  ARGUS_OPERATOR_* it sets is a field of OperatorSettings, and the router's env parses (RouterSettings.from_env) to the chart's values;
- the worker NetworkPolicy and PodMonitor select the labels the operator's builders put on worker pods;
- every metric in the Grafana dashboard is one Argus exports (argus.telemetry), Triton's or Envoy's.
"""

from __future__ import annotations

import importlib.util
import json
import re

import jsonschema
import pytest
import yaml

from argus import cli, telemetry
from argus.adapters import helm_chart
from argus.adapters.envoy_config import build_bootstrap
from argus.commands import render as render_cmd
from argus.controlplane.builders import GRPC_PORT, METRICS_PORT, worker_labels
from argus.controlplane.settings import OperatorSettings
from argus.router.settings import RouterSettings
from tests.support.chart import ROOT, by_kind, crd_schemas, kube_validate, render


def _install_docs():
    return [d for d in yaml.safe_load_all((ROOT / "manifests" / "install.yaml").read_text()) if d]


def test_render_manifests_check_passes(capsys):
    assert cli.main(["render-manifests", "--chart", str(ROOT), "--check"]) == 0, capsys.readouterr().err


def test_install_yaml_is_the_rendered_chart():
    docs = _install_docs()
    assert docs[0] == {"apiVersion": "v1", "kind": "Namespace",
                       "metadata": {"name": "argus", "labels": {"app.kubernetes.io/part-of": "argus"}}}
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    from_files = [d for p in sorted((ROOT / "crds").glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]
    assert sorted(json.dumps(c, sort_keys=True) for c in crds) == sorted(json.dumps(c, sort_keys=True) for c in from_files)
    rest = [d for d in docs[1:] if d["kind"] != "CustomResourceDefinition"]
    rendered = helm_chart.render(ROOT, render_cmd.INSTALL_VALUES, release="argus", namespace="argus")
    assert rest == rendered


def test_install_yaml_objects_validate():
    crds = crd_schemas()
    for obj in _install_docs():
        key = (obj["apiVersion"], obj["kind"])
        if key in crds:
            jsonschema.validate(obj, crds[key])
        else:
            assert not kube_validate(obj), (obj["kind"], obj["metadata"]["name"], kube_validate(obj))


def test_fast_validator_agrees_with_kubernetes_validate():
    import kubernetes_validate

    good = render("defaults")[0]
    bad = json.loads(json.dumps(good))
    bad["metadata"]["bogus"] = 1
    for obj in (good, bad):
        try:
            kubernetes_validate.validate(obj, "1.30", strict=True)
            lib_ok = True
        except kubernetes_validate.ValidationError:
            lib_ok = False
        assert lib_ok == (kube_validate(obj) == "")
    assert kube_validate(bad)


def test_envoy_configmap_is_the_shared_generator_and_ports_agree():
    objects = render("defaults")
    (cm,) = [c for c in by_kind(objects, "ConfigMap") if c["metadata"]["name"] == "argus-envoy"]
    boot = yaml.safe_load(cm["data"]["envoy.yaml"])
    assert boot == build_bootstrap(render_cmd.CHART_ENVOY)
    values = yaml.safe_load((ROOT / "values.yaml").read_text())
    listeners = {ln["name"]: ln["address"]["socket_address"] for ln in boot["static_resources"]["listeners"]}
    assert listeners["ingress"] == {"address": "0.0.0.0", "port_value": values["envoy"]["port"]}
    assert listeners["stats"]["port_value"] == values["envoy"]["statsPort"]
    router_cluster = next(c for c in boot["static_resources"]["clusters"] if c["name"] == "router")
    address = router_cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert address["socket_address"] == {"address": "127.0.0.1", "port_value": values["router"]["port"]}


def _containers(objects, deployment):
    d = next(o for o in by_kind(objects, "Deployment") if o["metadata"]["name"] == deployment)
    return {c["name"]: c for c in d["spec"]["template"]["spec"]["containers"]}


def test_operator_command_and_env_match_the_operator_code():
    op = _containers(render("defaults"), "argus-operator")["operator"]
    assert op["command"] == ["kopf", "run"]
    module = next(a.split("=", 1)[1] for a in op["args"] if a.startswith("--module="))
    assert importlib.util.find_spec(module) is not None, module
    fields = {f"ARGUS_OPERATOR_{n.upper()}" for n in OperatorSettings.__dataclass_fields__}
    env = {e["name"]: e.get("value") for e in op["env"]}
    assert {k for k in env if k.startswith("ARGUS_")} <= fields
    settings = OperatorSettings.from_env({k: v for k, v in env.items() if v is not None})
    assert settings.metrics_port == int(next(p["containerPort"] for p in op["ports"] if p["name"] == "metrics"))


@pytest.mark.parametrize("scenario", ["defaults", "namespaced-rbac", "standalone-operator"])
def test_operator_args_are_kopf_run_options(scenario):
    from kopf.cli import run as kopf_run

    options = {o for p in kopf_run.params for o in p.opts}
    op = _containers(render(scenario), "argus-operator")["operator"]
    assert op["command"] == ["kopf", "run"]
    for arg in op["args"]:
        assert arg.split("=", 1)[0] in options, arg


def test_router_env_parses_to_the_chart_values():
    values = yaml.safe_load((ROOT / "values.yaml").read_text())["router"]
    containers = _containers(render("defaults"), "argus-router")
    router = containers["router"]
    assert router["command"] == ["python", "-m", "argus.router"]
    assert importlib.util.find_spec("argus.router.__main__") is not None
    env = {e["name"]: e["value"] for e in router["env"] if "value" in e}
    s = RouterSettings.from_env(env)
    assert (s.host, s.port, ",".join(s.sizes), s.timeout_s, s.max_pending) == \
        ("0.0.0.0", values["port"], values["sizes"], values["timeoutSeconds"], values["maxPending"])
    assert str(s.api_key_file) == "/etc/argus/api-key/api-key"
    read = set(re.findall(r'get\("([A-Z_]+)"', (ROOT / "src/argus/router/settings.py").read_text()))
    assert {k.removeprefix("ARGUS_ROUTER_") for k in env if k.startswith("ARGUS_ROUTER_")} <= read


def test_worker_selectors_match_the_operator_builders():
    labels = worker_labels("svc", "cache-k10")
    objects = render("prometheus-operator")
    (np,) = [n for n in by_kind(render("defaults"), "NetworkPolicy") if n["metadata"]["name"] == "argus-workers"]
    assert all(labels.get(k) == v for k, v in np["spec"]["podSelector"]["matchLabels"].items())
    assert {p["port"] for rule in np["spec"]["ingress"] for p in rule["ports"]} == {GRPC_PORT, METRICS_PORT}
    (pm,) = by_kind(objects, "PodMonitor")
    assert all(labels.get(k) == v for k, v in pm["spec"]["selector"]["matchLabels"].items())


def test_dashboard_metrics_exist():
    dashboard = json.loads((ROOT / "files" / "grafana-dashboard.json").read_text())
    exported = {v for k, v in vars(telemetry).items() if k.isupper() and isinstance(v, str)}
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            names = set(re.findall(r"\b((?:argus|nv|envoy)_[a-z_]+)\b", target["expr"]))
            assert names, target["expr"]
            for name in names:
                base = re.sub(r"_(bucket|sum|count)$", "", name)
                assert base in exported or name.startswith(("nv_inference_", "envoy_")), name


def test_render_manifests_rewrites_and_check_detects_staleness(tmp_path, capsys):
    import shutil

    for name in ("Chart.yaml", "values.yaml", "values.schema.json", ".helmignore"):
        shutil.copy(ROOT / name, tmp_path / name)
    for name in ("templates", "crds", "files"):
        shutil.copytree(ROOT / name, tmp_path / name)
    (tmp_path / "files" / "rbac.json").write_text("{}\n")
    assert cli.main(["render-manifests", "--chart", str(tmp_path), "--check"]) == 1
    err = capsys.readouterr().err
    assert "stale: files/rbac.json" in err and "stale: manifests/install.yaml" in err
    assert "envoy-bootstrap" not in err
    assert cli.main(["render-manifests", "--chart", str(tmp_path)]) == 0
    assert (tmp_path / "files" / "rbac.json").read_text() == (ROOT / "files" / "rbac.json").read_text()
    assert (tmp_path / "manifests" / "install.yaml").read_text() == (ROOT / "manifests" / "install.yaml").read_text()
    assert cli.main(["render-manifests", "--chart", str(tmp_path), "--check"]) == 0
