"""A local Prometheus: config (pure) and process. It scrapes the router, Envoy and every worker.

Worker targets change as the control loop starts and stops processes, so they come from a
file_sd file that the runtime rewrites (Prometheus re-reads it within the refresh interval),
the local counterpart of Kubernetes service discovery.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import yaml


def build_config(*, router: str, envoy_stats: str, targets_file: Path, scrape_interval_s: float = 1.0) -> dict:
    """prometheus.yml for the local system."""
    interval = f"{scrape_interval_s:g}s"
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [
            {"job_name": "argus-router", "static_configs": [{"targets": [router]}]},
            {"job_name": "envoy", "metrics_path": "/stats/prometheus", "static_configs": [{"targets": [envoy_stats]}]},
            {"job_name": "argus-workers", "file_sd_configs": [{"files": [str(targets_file)], "refresh_interval": interval}]},
        ],
    }


def worker_targets(replicas: dict[str, tuple[str, str]]) -> list[dict]:
    """file_sd content: one target group per replica, labelled with its level. `replicas`: name -> (level, host:port)."""
    return [{"targets": [addr], "labels": {"level": level, "replica": name}}
            for name, (level, addr) in sorted(replicas.items())]


def write_targets(path: Path, replicas: dict[str, tuple[str, str]]) -> None:
    """Atomically rewrite the file_sd targets file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(worker_targets(replicas), indent=1))
    os.replace(tmp, path)


def prometheus_binary() -> str:
    """The `prometheus` binary (Debian package), or a clear error."""
    path = shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)
    if not path:
        raise FileNotFoundError("prometheus not found: `apt-get install prometheus` (scripts/setup.sh does)")
    return path


def command(config: Path, data_dir: Path, listen: str) -> list[str]:
    """Command line of a Prometheus serving on `listen` with its TSDB under `data_dir`."""
    return [prometheus_binary(), f"--config.file={config}", f"--storage.tsdb.path={data_dir}",
            f"--web.listen-address={listen}", "--storage.tsdb.retention.time=1d", "--log.level=warn"]


def write_config(path: Path, config: dict) -> None:
    """Write prometheus.yml."""
    path.write_text(yaml.safe_dump(config, sort_keys=False))
