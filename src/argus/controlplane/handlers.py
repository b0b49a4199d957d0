"""kopf handlers for T2IService: thin wrappers around reconcile.run, translating its outcome and errors.

Run: `kopf run -m argus.controlplane.handlers --all-namespaces` (add `--peering=argus` with several
replicas: kopf peering lets only the highest-priority one act). Environment: ARGUS_OPERATOR_* (settings.py).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import kopf
from prometheus_client import start_http_server

from argus.adapters.kubernetes import KubeApiError, KubernetesActuator, KubernetesAdapter
from argus.adapters.prometheus_source import PrometheusSource
from argus.control.builders import owner_reference
from argus.controlplane import reconcile
from argus.controlplane.metrics import OperatorMetrics
from argus.controlplane.settings import OperatorSettings
from argus.policy.profile import load_default_profile, load_profile
from argus.spec import API_GROUP, API_VERSION, PLURAL, SpecError

RESOURCE = (API_GROUP, API_VERSION, PLURAL)
# kopf fixes a timer's interval at import time; each service still acts once per its controlPeriod.
TICK_S = OperatorSettings.from_env().tick_s


def _api_client() -> Any:
    """A kubernetes ApiClient from the in-cluster service account, else from kubeconfig."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: logging.Logger, **_: Any) -> None:
    """Build the clients once; keep kopf's bookkeeping in argus.dev annotations, not in status."""
    cfg = OperatorSettings.from_env()
    settings.persistence.finalizer = "argus.dev/cleanup"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="argus.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="argus.dev", key="last-handled-configuration")
    settings.posting.level = logging.WARNING  # Events are posted explicitly, with numbers
    settings.watching.server_timeout = 60
    settings.execution.max_workers = cfg.workers
    settings.scanning.disabled = not cfg.cluster_discovery  # no cluster-wide RBAC: skip 54 s of 403 retries
    memo.cfg = cfg
    memo.kube = KubernetesAdapter(_api_client(), timeout_s=cfg.api_timeout_s)
    memo.prometheus = PrometheusSource(window=cfg.rate_window, timeout_s=cfg.prometheus_timeout_s)
    memo.profile = load_profile(cfg.profile_path) if cfg.profile_path else load_default_profile()
    memo.metrics = OperatorMetrics()
    if cfg.metrics_port:
        start_http_server(cfg.metrics_port, addr=cfg.metrics_host, registry=memo.metrics.registry)
        logger.info(f"operator metrics on {cfg.metrics_host}:{cfg.metrics_port}/metrics")


def _deps(memo: kopf.Memo, name: str, namespace: str, uid: str) -> reconcile.Deps:
    actuator = KubernetesActuator(memo.kube, namespace, owner_reference(name, uid) if uid else None)
    return reconcile.Deps(actuator=actuator, prometheus=memo.prometheus, profile=memo.profile,
                          metrics=memo.metrics, latent_storage_class=memo.cfg.latent_storage_class)


def _publish(out: reconcile.Outcome, body: Any, patch: kopf.Patch) -> None:
    for key, value in out.status.items():
        patch.status[key] = value
    for etype, reason, message in out.events:
        kopf.event(body, type=etype, reason=reason, message=message)


def _period(*, name: str, namespace: str, body: Any, spec: Any, status: Any, meta: Any, patch: kopf.Patch,
            memo: kopf.Memo, retry: int, full: bool, use_metrics: bool, in_timer: bool) -> None:
    status = dict(status or {})
    generation = meta.get("generation")
    now = time.time()
    try:
        out = reconcile.run(name=name, raw_spec=dict(spec or {}), status=status, generation=generation,
                            deps=_deps(memo, name, namespace, meta.get("uid")), now=now, full=full,
                            use_metrics=use_metrics, uid=meta.get("uid") or "")
    except SpecError as e:
        memo.metrics.errors.labels(name, "invalid_spec").inc()
        if status.get("invalidGeneration") != generation or not in_timer:
            _publish(reconcile.invalid_outcome(e, status, generation, now), body, patch)
        if in_timer:
            return
        raise kopf.PermanentError(str(e)) from None  # retrying an invalid spec is useless
    except KubeApiError as e:
        memo.metrics.errors.labels(name, "api_retryable" if e.retryable else "api").inc()
        if e.retryable or e.status == 0:
            raise kopf.TemporaryError(str(e), delay=min(60.0, memo.cfg.retry_delay_s * 2 ** retry)) from None
        raise
    except Exception as e:  # a bug or an unexpected input: retry with backoff instead of kopf's flat 60 s
        memo.metrics.errors.labels(name, type(e).__name__).inc()
        if in_timer:
            raise
        raise kopf.TemporaryError(f"{type(e).__name__}: {e}",
                                  delay=min(60.0, memo.cfg.retry_delay_s * 2 ** retry)) from e
    if in_timer:
        # kopf runs timers concurrently with change handlers: if the spec changed while this period ran,
        # its status (computed from the old body) must not overwrite what the spec handler writes.
        live = memo.kube.read("T2IService", namespace, name) or {}
        if live.get("metadata", {}).get("generation") != generation:
            return
    _publish(out, body, patch)


@kopf.on.resume(*RESOURCE)
def resume(name: str, namespace: str, body: Any, spec: Any, status: Any, meta: Any, patch: kopf.Patch,
           memo: kopf.Memo, retry: int, **_: Any) -> None:
    """Operator (re)started: ensure every object for the allocation stored on the resource."""
    _period(name=name, namespace=namespace, body=body, spec=spec, status=status, meta=meta, patch=patch,
            memo=memo, retry=retry, full=True, use_metrics=False, in_timer=False)


@kopf.on.create(*RESOURCE)
@kopf.on.update(*RESOURCE, field="spec")
def reconcile_spec(name: str, namespace: str, body: Any, spec: Any, status: Any, meta: Any, patch: kopf.Patch,
                   memo: kopf.Memo, retry: int, **_: Any) -> None:
    """New or edited spec: plan with the current metrics and ensure every object."""
    _period(name=name, namespace=namespace, body=body, spec=spec, status=status, meta=meta, patch=patch,
            memo=memo, retry=retry, full=True, use_metrics=True, in_timer=False)


@kopf.timer(*RESOURCE, interval=TICK_S, sharp=False)
def control(name: str, namespace: str, body: Any, spec: Any, status: Any, meta: Any, patch: kopf.Patch,
            memo: kopf.Memo, **_: Any) -> None:
    """Every controlPeriod: read Prometheus, solve, patch replicas and policy, write status."""
    status = status or {}
    if not status.get("allocation") or meta.get("deletionTimestamp"):
        return  # not planned yet (the create handler does that) or going away
    if status.get("observedGeneration") != meta.get("generation") and \
            status.get("invalidGeneration") != meta.get("generation"):
        return  # a spec change is being handled by reconcile_spec
    period = float((spec or {}).get("controlPeriod") or 15.0)
    last = status.get("lastDecision")
    if isinstance(last, (int, float)) and time.time() - last < period - TICK_S / 2:
        return
    _period(name=name, namespace=namespace, body=body, spec=spec, status=status, meta=meta, patch=patch,
            memo=memo, retry=0, full=False, use_metrics=True, in_timer=True)


@kopf.on.delete(*RESOURCE)
def delete(name: str, namespace: str, meta: Any, memo: kopf.Memo, **_: Any) -> None:
    """Remove the service's objects now (ownerReferences would too, but not on every cluster promptly)."""
    try:
        _deps(memo, name, namespace, meta.get("uid")).actuator.remove(name)
    except KubeApiError as e:
        memo.metrics.errors.labels(name, "api").inc()
        raise kopf.TemporaryError(str(e), delay=memo.cfg.retry_delay_s) from None
