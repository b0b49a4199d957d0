"""The control loop over every T2IService: one thread, one pass per tick, a bounded worker pool.

It replaces a kopf timer per service (a timer needs a finalizer, logs every tick, and holds a
deletion until its tick ends). Each tick reads the cached T2IServices (controlplane.cache) and
hands the ones that are due to the workers:
- a new or edited spec (generation != observedGeneration): plan and ensure every object;
- a service first seen by this process with a plan for its generation: ensure every object (resume);
- every controlPeriod: read Prometheus, plan, patch what changed, and write the status only when it
  changed materially (status.materially_different) or once per heartbeat.
The Prometheus reads of one tick are one batch per Prometheus URL (one query per metric for all the
due services, PrometheusSource.readings), and periods fall on multiples of the controlPeriod, so the
services that share a period and a Prometheus read together: the queries per period do not grow with
the number of services.
A deleted service is forgotten on its watch event, with everything kept about it; its objects go by
ownerReference garbage collection, so nothing needs the operator to finish a deletion.
"""

from __future__ import annotations

import datetime
import logging
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from argus.adapters.kubernetes import KubeApiError, KubernetesAdapter
from argus.adapters.prometheus_source import PrometheusSource, Reading
from argus.controlplane.actuator import KubernetesActuator
from argus.controlplane.builders import owner_reference
from argus.controlplane import reconcile
from argus.controlplane.cache import ObjectCache
from argus.controlplane.metrics import OperatorMetrics
from argus.controlplane.settings import OperatorSettings
from argus.controlplane.status import condition, diff, materially_different, merge, set_conditions
from argus.policy.profile import Profile
from argus.spec import API_GROUP, API_VERSION, KIND, SpecError, parse_spec

# Operators before the control loop held deletions with this finalizer; it is removed on sight.
LEGACY_FINALIZER = "argus.dev/cleanup"
DEFAULT_PERIOD_S = 15.0
log = logging.getLogger("argus.operator")

Key = tuple[str, str]  # (namespace, name)


@dataclass
class Record:
    """What the loop keeps about one live service; dropped when the service is."""

    uid: str
    status: dict[str, Any]  # the status as last computed: the loop's memory (seeded from the stored one)
    written: dict[str, Any]  # the status as last written
    written_at: float = float("-inf")
    due: float = 0.0  # the next control period
    retry_at: float = 0.0  # after a failure: not before
    failures: int = 0
    busy: bool = False  # a period is in flight
    resumed: bool = False  # every object ensured since this process first saw the service
    extra: dict[str, Any] = field(default_factory=dict)


def _iso(now: float) -> str:
    return datetime.datetime.fromtimestamp(now, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _num(v: Any, default: float) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 else default


def next_period(now: float, period: float) -> float:
    """When the next control period after one at `now` is due: the first multiple of `period` at least
    half a period away, so services with the same period fall due in the same tick and read together."""
    due = (math.floor(now / period) + 1) * period
    return due if due - now >= period / 2 else due + period


@dataclass
class Work:
    """One service's work submitted by a tick."""

    key: Key
    rec: Record
    body: dict[str, Any]
    kind: str  # 'unblock', 'spec', 'resume' or 'period'


class Fleet:
    """Schedules and runs the periods of every service; see the module docstring."""

    def __init__(self, *, cfg: OperatorSettings, kube: KubernetesAdapter, cache: ObjectCache,
                 prometheus: PrometheusSource, profile: Profile, metrics: OperatorMetrics,
                 clock: Callable[[], float] = time.time):
        """Nothing runs until start() (or tick() calls, in tests)."""
        self.cfg, self.kube, self.cache, self.prometheus = cfg, kube, cache, prometheus
        self.profile, self.metrics, self.clock = profile, metrics, clock
        self._records: dict[Key, Record] = {}
        # Services found deleted before their watch event: (uid, until when) a cached body of theirs
        # (a late MODIFIED event) is ignored, so nothing is re-created for them.
        self._gone: dict[Key, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=cfg.workers, thread_name_prefix="argus-period")
        self._thread: threading.Thread | None = None
        self._running = 0  # pool tasks running now (queued ones do not count: stop() cancels them)

    # lifecycle
    def start(self) -> None:
        """Run the loop on its own thread."""
        self._thread = threading.Thread(target=self._run, name="argus-control-loop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                self.tick()
            except Exception:  # a bug in scheduling must not stop every service's loop
                log.exception("control loop tick failed")
            self._wake.wait(self.cfg.tick_s)
            self._wake.clear()

    def wake(self) -> None:
        """Run a tick now (a spec was created or edited)."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop scheduling, drop queued periods, wait up to `timeout` for the ones in flight."""
        self._stopped.set()
        self._wake.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + timeout
        if self._thread is not None:
            self._thread.join(timeout)
        while self._running and time.monotonic() < deadline:  # queued work was cancelled: only running work
            time.sleep(0.05)

    def forget(self, namespace: str, name: str) -> None:
        """The service is gone: drop everything kept about it (record, metric series, cached children)."""
        with self._lock:
            gone = self._records.pop((namespace, name), None)
            if not self._records:
                self._records = {}  # an emptied dict keeps its peak size: let it go
        self.cache.forget_service(namespace, name)
        if gone is not None:
            self.metrics.forget(name)
            self.metrics.services.set(len(self._records))

    def tracked(self) -> int:
        """Number of services with a record."""
        return len(self._records)

    def in_flight(self) -> int:
        """Number of periods running now."""
        with self._lock:
            return sum(r.busy for r in self._records.values())

    # scheduling
    def tick(self) -> list[tuple[Key, str]]:
        """One pass: submit every due service's work (with one Prometheus read per URL for those that
        plan on metrics); returns what was submitted (key, kind)."""
        now = self.clock()
        due: list[Work] = []
        seen = set()
        for body in self.cache.all(KIND):
            meta = body.get("metadata") or {}
            key = (meta.get("namespace") or "", meta.get("name") or "")
            seen.add(key)
            gone = self._gone.get(key)
            if gone is not None and gone[0] == meta.get("uid"):
                continue
            with self._lock:
                kind = self._due(key, body, now)
                if kind is None:
                    continue
                rec = self._records[key]
                rec.busy = True
            due.append(Work(key, rec, body, kind))
        reads: dict[str, list[Work]] = {}
        for w in due:
            url = self._metrics_url(w)
            if url is None:
                self._submit([w], self._work, w, None)
            else:
                reads.setdefault(url, []).append(w)
        for url, batch in reads.items():
            self._submit(batch, self._read, url, batch)
        for key in [k for k in self._records if k not in seen]:  # a DELETED event missed (relist)
            self.forget(*key)
        with self._lock:
            for key in [k for k, (_, until) in self._gone.items() if until < now]:
                del self._gone[key]
        self.metrics.services.set(len(self._records))
        self.metrics.cached.set(self.cache.size())
        return [(w.key, w.kind) for w in due]

    def _submit(self, works: list[Work], fn: Callable[..., None], *args: Any) -> None:
        """Run fn(*args), which handles `works`, on the pool; once the pool is shut down they are dropped."""
        try:
            self._pool.submit(self._call, fn, *args)
        except RuntimeError:  # shut down meanwhile
            for w in works:
                w.rec.busy = False

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        with self._lock:
            self._running += 1
        try:
            fn(*args)
        finally:
            with self._lock:
                self._running -= 1

    @staticmethod
    def _metrics_url(w: Work) -> str | None:
        """The Prometheus this work reads, or None (it plans without metrics, or its spec is invalid)."""
        if w.kind not in ("spec", "period"):
            return None
        try:
            return parse_spec(dict(w.body.get("spec") or {})).prometheus_url
        except SpecError:
            return None  # the period says why

    def _live(self, w: Work) -> bool:
        with self._lock:
            return self._records.get(w.key) is w.rec

    def _read(self, url: str, batch: list[Work]) -> None:
        """One read of every service in the batch (on a pool thread), then each one's period."""
        live = [w for w in batch if self._live(w)]
        for w in batch:
            if w not in live:
                w.rec.busy = False  # deleted while queued
        try:
            readings = self.prometheus.readings(url, [w.key[1] for w in live]) if live else {}
        except Exception as e:  # a bug: each service backs off and says so
            log.exception(f"reading {url} failed")
            for w in live:
                self._submit([w], self._fail, w, e)
            return
        for w in live:
            self._submit([w], self._work, w, readings.get(w.key[1]))

    def _fail(self, w: Work, err: Exception) -> None:
        try:
            self._failed(w.key, w.rec, w.body, err)
        finally:
            w.rec.busy = False

    def _due(self, key: Key, body: dict[str, Any], now: float) -> str | None:
        """What the service needs now: 'unblock', 'spec', 'resume', 'period' or nothing."""
        meta = body.get("metadata") or {}
        uid = meta.get("uid") or ""
        rec = self._records.get(key)
        if rec is None or rec.uid != uid:
            status = dict(body.get("status") or {})
            rec = self._records[key] = Record(uid=uid, status=status, written=dict(status),
                                              due=next_period(_num(status.get("lastDecision"), now),
                                                              self._period(body)))
        if rec.busy or now < rec.retry_at:
            return None
        if LEGACY_FINALIZER in (meta.get("finalizers") or []):
            return "unblock"
        if meta.get("deletionTimestamp"):
            return None  # garbage collection removes its objects
        gen = meta.get("generation")
        st = rec.status
        if gen is not None and st.get("invalidGeneration") == gen:
            return None  # an invalid spec waits for the next edit
        if not st.get("allocation") or st.get("observedGeneration") != gen:
            return "spec"
        if not rec.resumed:
            return "resume"
        return "period" if now >= rec.due else None

    @staticmethod
    def _period(body: dict[str, Any]) -> float:
        return _num((body.get("spec") or {}).get("controlPeriod"), DEFAULT_PERIOD_S)

    # work (on a pool thread)
    def _work(self, w: Work, reading: Reading | None) -> None:
        key, rec, body, kind = w.key, w.rec, w.body, w.kind
        try:
            if not self._live(w):
                return  # deleted while queued
            if kind == "unblock":
                self._unblock(rec, body)
            else:
                self._reconcile(key, rec, body, kind, reading)
        except KubeApiError as e:
            self._failed(key, rec, body, e)
        except Exception as e:  # a bug or an unexpected input: back off, say so, keep the other services going
            log.exception(f"{key[0]}/{key[1]}: {kind} failed")
            self._failed(key, rec, body, e)
        finally:
            rec.busy = False
            if not self._live(w):  # deleted while in flight: drop what this period set or cached after forget()
                self.metrics.forget(key[1])
                self.cache.forget_service(*key)

    def _unblock(self, rec: Record, body: dict[str, Any]) -> None:
        meta = body["metadata"]
        keep = [f for f in meta.get("finalizers") or [] if f != LEGACY_FINALIZER]
        self.kube.patch(KIND, meta["namespace"], meta["name"],
                        {"metadata": {"finalizers": keep, "resourceVersion": meta.get("resourceVersion")}})
        rec.retry_at = self.clock() + 2.0  # until the watch shows the change
        log.info(f"{meta['namespace']}/{meta['name']}: removed the legacy finalizer {LEGACY_FINALIZER}")

    def _reconcile(self, key: Key, rec: Record, body: dict[str, Any], kind: str, reading: Reading | None) -> None:
        ns, name = key
        meta = body.get("metadata") or {}
        gen, uid = meta.get("generation"), meta.get("uid") or ""
        now = self.clock()
        actuator = KubernetesActuator(self.kube, ns, self.cache, owner_reference(name, uid) if uid else None)
        deps = reconcile.Deps(actuator=actuator, profile=self.profile, metrics=self.metrics,
                              latent_storage_class=self.cfg.latent_storage_class)
        try:
            out = reconcile.run(name=name, raw_spec=dict(body.get("spec") or {}), status=dict(rec.status),
                                generation=gen, deps=deps, now=now, full=kind != "period", reading=reading, uid=uid)
        except reconcile.ServiceGone:
            log.debug(f"{ns}/{name}: deleted (its objects are being garbage-collected); forgotten")
            self.forget(ns, name)
            self.cache.drop(KIND, body)
            with self._lock:
                self._gone[key] = (uid, now + 60.0)
            return
        except SpecError as e:
            self.metrics.error(name, "invalid_spec")
            log.warning(f"{ns}/{name}: invalid spec: {e}")
            self._publish(key, rec, body, reconcile.invalid_outcome(e, rec.status, gen, now), now)
            return
        rec.failures = 0
        rec.resumed = True
        rec.due = next_period(now, self._period(body))
        self._publish(key, rec, body, out, now)

    def _failed(self, key: Key, rec: Record, body: dict[str, Any], err: Exception) -> None:
        """Back off exponentially; the status says why the service cannot get its objects."""
        ns, name = key
        now = self.clock()
        rec.failures += 1
        delay = min(60.0, self.cfg.retry_delay_s * 2 ** (rec.failures - 1))
        rec.retry_at = now + delay
        if isinstance(err, KubeApiError):
            self.metrics.error(name, "api_retryable" if err.retryable else "api")
            reason, text = "KubernetesApiError", f"cannot apply the service's objects: {err}"
        else:
            self.metrics.error(name, type(err).__name__)
            reason, text = "InternalError", f"{type(err).__name__}: {err}"
        log.warning(f"{ns}/{name}: {text}; retrying in {delay:g} s")
        was = condition(rec.status.get("conditions"), "Degraded") or {}
        conds = set_conditions(rec.status.get("conditions"), {"Degraded": (True, reason, text)}, _iso(now))
        out = reconcile.Outcome(status={"conditions": conds, "message": text[:1000]})
        if was.get("reason") != reason or was.get("message") != text[:1000]:
            out.events.append(("Warning", reason, text))
        try:
            self._publish(key, rec, body, out, now)
        except KubeApiError as e:  # the API server itself is unreachable: the log is all there is
            log.warning(f"{ns}/{name}: status not written: {e}")

    def _publish(self, key: Key, rec: Record, body: dict[str, Any], out: reconcile.Outcome, now: float) -> None:
        """Keep the new status; write it when it changed materially or the heartbeat is due; post Events."""
        with self._lock:
            if self._records.get(key) is not rec:
                return  # deleted (or re-created) meanwhile: nothing more to say about this one
        ns, name = key
        rec.status = merge(rec.status, out.status)
        if materially_different(rec.written, rec.status) or now - rec.written_at >= self.cfg.heartbeat_s:
            patch = diff(rec.written, rec.status)
            if patch:
                try:
                    self.kube.patch_status(KIND, ns, name, patch)
                except KubeApiError as e:
                    if e.status == 404:
                        self.forget(ns, name)
                        return
                    raise
                self.metrics.status_writes.inc()
                log.debug(f"{ns}/{name}: status written: {patch}")
            rec.written, rec.written_at = dict(rec.status), now
        involved = {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": KIND, "name": name, "namespace": ns,
                    "uid": (body.get("metadata") or {}).get("uid", "")}
        for etype, reason, message in out.events:
            if etype == "Normal":
                log.info(f"{ns}/{name}: {reason}: {message}")
            try:
                self.kube.post_event(involved, etype, reason, message)
            except KubeApiError as e:
                log.warning(f"{ns}/{name}: Event {reason} not posted: {e}")
