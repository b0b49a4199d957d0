"""kopf wiring for T2IService: watch streams feed the cache, one control loop acts (fleet.py).

Run: `kopf run -m argus.controlplane.handlers --all-namespaces` (add `--peering=argus` with several
replicas: kopf peering lets only the highest-priority one watch). Environment: ARGUS_OPERATOR_* (settings.py).

There are no kopf change handlers, timers or delete handlers on T2IServices, so kopf puts no finalizer
on them: deleting one never waits for the operator (its objects go by ownerReference garbage collection,
even when the operator is gone, e.g. after `helm uninstall`). The handlers here only keep the watch-fed
cache current and wake the loop when a spec is created or edited.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import signal
import tracemalloc
from pathlib import Path
from typing import Any

import kopf
from prometheus_client import start_http_server

from argus.adapters.kubernetes import KubernetesAdapter, api_client
from argus.adapters.prometheus_source import PrometheusSource
from argus.controlplane.cache import SERVICE_LABEL, ObjectCache
from argus.controlplane.fleet import Fleet
from argus.controlplane.metrics import OperatorMetrics
from argus.controlplane.settings import OperatorSettings
from argus.policy.profile import load_default_profile, load_profile
from argus.spec import API_GROUP, API_VERSION, KIND, PLURAL

RESOURCE = (API_GROUP, API_VERSION, PLURAL)
OWNED = {"Deployment": ("apps", "v1", "deployments"), "Service": ("v1", "services"),
         "ConfigMap": ("v1", "configmaps"), "PersistentVolumeClaim": ("v1", "persistentvolumeclaims")}
WATCH_HANDLER = re.compile(r"^Handler 'watch_\w+' succeeded\.$")


class QuietWatchFilter(logging.Filter):
    """Drops kopf's per-event INFO line for the cache feeders: a watch event is not an action."""

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: D102 (logging API)
        return not (record.levelno == logging.INFO and WATCH_HANDLER.match(record.getMessage()))


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: logging.Logger, **_: Any) -> None:
    """Build the clients, the cache and the control loop once; start the loop."""
    cfg = OperatorSettings.from_env()
    if cfg.trace_heap and not tracemalloc.is_tracing():
        tracemalloc.start()
    settings.posting.level = logging.WARNING  # Events are posted explicitly, with numbers
    settings.watching.server_timeout = 60
    settings.execution.max_workers = 2  # only startup and cleanup run on kopf's threads
    settings.scanning.disabled = not cfg.cluster_discovery  # no cluster-wide RBAC: skip 54 s of 403 retries
    logging.getLogger("kopf.objects").addFilter(QuietWatchFilter())
    memo.cfg = cfg
    memo.cache = ObjectCache()
    memo.metrics = OperatorMetrics()
    memo.fleet = Fleet(cfg=cfg, kube=KubernetesAdapter(api_client(cfg.api_pool_size), timeout_s=cfg.api_timeout_s),
                       cache=memo.cache,
                       prometheus=PrometheusSource(window=cfg.rate_window, timeout_s=cfg.prometheus_timeout_s),
                       profile=load_profile(cfg.profile_path) if cfg.profile_path else load_default_profile(),
                       metrics=memo.metrics)
    if cfg.metrics_port:
        try:
            start_http_server(cfg.metrics_port, addr=cfg.metrics_host, registry=memo.metrics.registry)
        except OSError as e:  # kopf would retry a startup handler after a minute, doing nothing meanwhile
            raise kopf.PermanentError(f"cannot serve the operator's metrics on "
                                      f"{cfg.metrics_host}:{cfg.metrics_port}: {e}") from e
        logger.info(f"operator metrics on {cfg.metrics_host}:{cfg.metrics_port}/metrics")
    memo.fleet.start()


@kopf.on.startup()
async def heap_snapshots(memo: kopf.Memo, logger: logging.Logger, **_: Any) -> None:
    """With trace_heap and heap_snapshot_dir: SIGUSR1 writes a tracemalloc snapshot (what a benchmark
    compares before creating services and after deleting them, to name what is kept)."""
    cfg = memo.cfg
    if not (cfg.trace_heap and cfg.heap_snapshot_dir):
        return
    numbers = itertools.count()

    def dump() -> None:
        try:
            write_heap_snapshot(Path(cfg.heap_snapshot_dir) / f"heap-{next(numbers)}.snap")
        except Exception:  # a failed snapshot must say so, not leave the benchmark waiting
            logger.exception("heap snapshot failed")

    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, dump)


def write_heap_snapshot(path: Path) -> Path:
    """The tracemalloc snapshot at `path`, whole or not at all (written beside it, then renamed)."""
    part = path.with_name(path.name + ".part")
    tracemalloc.take_snapshot().dump(str(part))
    os.replace(part, path)
    return path


@kopf.on.cleanup()
def cleanup(memo: kopf.Memo, **_: Any) -> None:
    """Stop the loop: nothing new starts; periods in flight get a few seconds (API timeouts bound them)."""
    fleet = getattr(memo, "fleet", None)
    if fleet is not None:
        fleet.stop(timeout=5.0)


@kopf.on.event(*RESOURCE)
async def watch_t2iservices(event: dict[str, Any], memo: kopf.Memo, **_: Any) -> None:
    """Keep the cached T2IService; a new object or a new generation wakes the loop, a deletion is forgotten."""
    body = event["object"]
    if event["type"] == "DELETED":
        memo.cache.drop(KIND, body)
        meta = body.get("metadata") or {}
        memo.fleet.forget(meta.get("namespace") or "", meta.get("name") or "")
        return
    old = memo.cache.put(KIND, body)
    if old is None or (old.get("metadata") or {}).get("generation") != (body.get("metadata") or {}).get("generation"):
        memo.fleet.wake()


def _feeder(kind: str) -> Any:
    async def feed(event: dict[str, Any], memo: kopf.Memo, **_: Any) -> None:
        if event["type"] == "DELETED":
            memo.cache.drop(kind, event["object"])
        else:
            memo.cache.put(kind, event["object"])

    feed.__name__ = feed.__qualname__ = f"watch_{OWNED[kind][-1]}"
    feed.__doc__ = f"Keep the cached {kind}s labelled {SERVICE_LABEL}."
    return feed


for _kind, _res in OWNED.items():
    kopf.on.event(*_res, labels={SERVICE_LABEL: kopf.PRESENT})(_feeder(_kind))
