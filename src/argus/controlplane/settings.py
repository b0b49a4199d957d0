"""Operator settings, read from the environment in this one place."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping


@dataclass(frozen=True)
class OperatorSettings:
    """How the operator process runs; every field has an ARGUS_OPERATOR_* environment variable."""

    tick_s: float = 1.0  # seconds between control-loop passes; each service acts once per its controlPeriod
    rate_window: str = "1m"  # PromQL rate window; at least two Prometheus scrape intervals
    prometheus_timeout_s: float = 5.0  # per query; a slow Prometheus counts as unreachable
    api_timeout_s: float = 10.0  # per Kubernetes API request
    metrics_port: int = 8080  # the operator's own /metrics (0 = off)
    metrics_host: str = "0.0.0.0"
    profile_path: str = ""  # level profile JSON; empty = the bundled SDXL profile
    workers: int = 16  # control-loop worker threads (API and Prometheus calls block); the API client's pool matches
    heartbeat_s: float = 60.0  # status written at least this often; otherwise only when it changes materially
    trace_heap: int = 0  # 1: trace the Python heap (tracemalloc; argus_operator_traced_heap_bytes), for the benchmark
    heap_snapshot_dir: str = ""  # with trace_heap: SIGUSR1 writes a tracemalloc snapshot here (heap-N.snap)
    retry_delay_s: float = 2.0  # first backoff after a transient API error (doubles per retry, max 60 s)
    # kopf lists and watches namespaces and CRDs cluster-wide to notice new ones; without that RBAC
    # (chart: rbac.clusterDiscovery=false) each of those requests is retried on 403 for ~54 s before
    # kopf falls back to the namespaces it was given. False turns that scanning off (kopf's
    # settings.scanning.disabled): the watched namespaces and the CRDs present at start are used as they are.
    cluster_discovery: bool = True
    # StorageClass of the latent-store PVC of a T2IService whose spec.cache names none (chart value
    # latentCache.storageClassName); empty = the cluster's default class.
    latent_storage_class: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "OperatorSettings":
        """Read ARGUS_OPERATOR_<FIELD> variables; ValueError names the bad one."""
        env = os.environ if env is None else env
        kwargs = {}
        for name, f in cls.__dataclass_fields__.items():
            key = f"ARGUS_OPERATOR_{name.upper()}"
            if key in env:
                try:
                    kwargs[name] = _parse(type(f.default), env[key])
                except ValueError:
                    raise ValueError(f"{key}={env[key]!r}: expected {type(f.default).__name__}") from None
        s = cls(**kwargs)
        if s.tick_s <= 0:
            raise ValueError(f"ARGUS_OPERATOR_TICK_S={s.tick_s}: must be > 0")
        if s.workers < 1:
            raise ValueError(f"ARGUS_OPERATOR_WORKERS={s.workers}: must be >= 1")
        return s

    @property
    def api_pool_size(self) -> int:
        """Connections the Kubernetes client keeps: one per worker thread, plus the loop's own calls."""
        return self.workers + 2


_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _parse(kind: type, text: str):
    """One environment value as the field's type (bool("false") is True, so booleans are read by word)."""
    if kind is bool:
        if text.strip().lower() not in _BOOLS:
            raise ValueError(text)
        return _BOOLS[text.strip().lower()]
    return kind(text)
