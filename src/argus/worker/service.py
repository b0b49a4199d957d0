"""The worker's request handling, independent of Triton: decode, resume or generate, store, report.

The Triton model.py turns each Triton request into a WorkRequest, calls `handle`,
and turns each WorkResponse back into tensors or a per-request TritonError.

Approximate caching: a request at a cache level `cache-kK` (K>0) with a CACHE_KEY resumes
from that key's stored latent at step K and runs steps K..N. Any reason the latent cannot
be used (no store, missing, evicted, corrupt, incompatible, bad key, store error) falls
back to the full run from noise; the response's INFO and the WORKER_CACHE metric say why.
A run from noise with a STORE_KEY stores its checkpoint latents; a store that is full or
read-only only costs the caching (WORKER_STORE_ERRORS metric + log), never the request.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from argus.contract import Pace, WorkReport
from argus.levels import Level, parse_levels
from argus.policy.lateness import ladder
from argus.worker.latent_store import CacheMiss, DirectoryLatentStore, LatentStore, StoreWriteError
from argus.worker.pacing import ArrivalMeter, StepClock, group_rung, surge_rung
from argus.worker.pipeline import DiffusionPipeline, GenRequest, SizeError
from argus.worker.settings import WorkerSettings

log = logging.getLogger("argus.worker")


@dataclass
class WorkRequest:
    """One decoded inference request."""

    prompt: str
    seed: int
    height: int
    width: int
    cache_key: str | None = None
    store_key: str | None = None
    level: str | None = None  # the level to serve it at (None: the worker's own); any level of its model
    deadline: float | None = None  # when it should be done (Unix time, s): a group that would miss it runs faster


@dataclass
class WorkResponse:
    """An image with its report, or an error message for this request alone."""

    image: np.ndarray | None = None
    info: WorkReport | None = None
    error: str | None = None


class WorkerMetrics(Protocol):
    """Where the worker counts cache outcomes and store failures (Triton custom metrics in model.py)."""

    def cache(self, result: str, reason: str) -> None:
        """Count one cache-level request: result hit|miss|fallback, reason ('' for a plain hit)."""

    def store_error(self, op: str) -> None:
        """Count one failed latent-store operation: op open|read|write."""


class CountingMetrics:
    """WorkerMetrics kept in memory (tests, and the default when no exporter is given)."""

    def __init__(self):
        """Start with all counts at zero."""
        self.counts: Counter = Counter()

    def cache(self, result: str, reason: str) -> None:
        """Count one cache outcome."""
        self.counts[("cache", result, reason)] += 1

    def store_error(self, op: str) -> None:
        """Count one store failure."""
        self.counts[("store_error", op)] += 1


def open_store(settings: WorkerSettings, metrics: WorkerMetrics) -> LatentStore | None:
    """The configured latent store, or None (no store configured, or it cannot be opened: logged)."""
    if not settings.latent_store:
        return None
    try:
        return DirectoryLatentStore(settings.latent_store, settings.latent_store_bytes)
    except Exception as e:  # noqa: BLE001 - whatever breaks the store only costs the caching
        metrics.store_error("open")
        log.error("latent store %s unusable, serving without caching: %s", settings.latent_store, e)
        return None


class WorkerService:
    """Serves one level: owns the pipeline and (when configured) the latent store."""

    def __init__(self, settings: WorkerSettings, pipeline: DiffusionPipeline | None = None,
                 store: LatentStore | None = None, metrics: WorkerMetrics | None = None,
                 arrivals: Callable[[], int | None] | None = None, max_batch: int | None = None):
        """Load the model once; `store` is an optional latent store (approximate caching); `arrivals` counts
        the requests that have reached this worker, the batch it is handed aside (None when unknown), and
        `max_batch` is the largest batch it is handed: with both, a surge runs at a faster rung."""
        self.settings = settings
        self.level = settings.parsed_level
        self.levels = {lv.name: lv for lv in parse_levels(list(settings.levels), settings.steps)}
        self.pipeline = pipeline or DiffusionPipeline(settings.pipeline_settings())
        self.store = store
        self.metrics = metrics or CountingMetrics()
        self.clock = StepClock()
        self.arrivals = arrivals  # requests that have reached this worker so far (the Triton adapter's counters)
        self.max_batch = max_batch  # the largest batch Triton hands over (the surge rule's full batch)
        self.meter = ArrivalMeter()
        self._warned: set[str] = set()

    @classmethod
    def create(cls, settings: WorkerSettings, metrics: WorkerMetrics | None = None,
               arrivals: Callable[[], int | None] | None = None, max_batch: int | None = None) -> "WorkerService":
        """A service with the store named by `settings` (what the Triton model builds)."""
        metrics = metrics or CountingMetrics()
        return cls(settings, store=open_store(settings, metrics), metrics=metrics, arrivals=arrivals,
                   max_batch=max_batch)

    def handle(self, batch: list[WorkRequest]) -> list[WorkResponse]:
        """Generate a batch; a bad request fails alone, never the batch. Requests at different levels of
        this worker's model run as one sub-batch per level."""
        out: list[WorkResponse | None] = [None] * len(batch)
        if self.arrivals is not None and self.max_batch and any(r.deadline is not None for r in batch):
            arrived = self.arrivals()
            if arrived is not None:
                self.meter.observe(time.time(), arrived + len(batch))
        todo: dict[Level, list[tuple[int, WorkRequest, GenRequest, WorkReport]]] = {}
        for i, r in enumerate(batch):
            level, err = self._level(r)
            err = err or self._validate(r)
            if err:
                out[i] = WorkResponse(error=err)
                continue
            gen = GenRequest(r.prompt, r.seed, r.height, r.width)
            info = self._resume(r, gen, level, WorkReport(level=level.name))
            todo.setdefault(level, []).append((i, r, gen, info))
        for level, items in todo.items():
            level, items = self._pace(level, items)
            wants_store = self.store is not None and any(
                r.store_key and g.resume_latent is None for _, r, g, _ in items)
            began = time.perf_counter()
            results = self.pipeline.generate([g for _, _, g, _ in items], level,
                                             checkpoints=self.settings.checkpoints if wants_store else ())
            self.clock.record(len(items), max(res.steps_run for res in results), time.perf_counter() - began)
            for (i, r, gen, info), res in zip(items, results):
                info = replace(info, k_used=res.resume_step, steps_run=res.steps_run, model=self.pipeline.identity)
                if r.store_key and gen.resume_latent is None and res.checkpoints:
                    self._store(r, res.checkpoints)
                out[i] = WorkResponse(image=res.image, info=info)
        return out  # type: ignore[return-value]

    def _pace(self, level: Level, items: list) -> tuple[Level, list]:
        """The level a group runs at: its own, or, when its requests' deadlines would be missed there, the
        first rung of its ladder that makes them, or, while arrivals surge past the level's speed, the rung
        that keeps up (argus.worker.pacing); its reports then name both levels."""
        deadlines = [r.deadline for _, r, _, _ in items if r.deadline is not None]
        rungs = [self.levels[n] for n in ladder(level.name, list(self.levels), self.settings.steps)] if deadlines else []
        if not rungs:
            return level, items
        n = self.settings.steps
        k = group_rung(self.clock, time.time(), deadlines, level, rungs, n, len(items))
        surge = surge_rung(self.clock, self.meter.rate(), level, rungs, n, self.max_batch) if self.max_batch else 0
        why, k = (Pace.SURGE, surge) if surge > k else (Pace.DEADLINE, k)
        if k == 0:
            return level, items
        rung = rungs[k - 1]
        log.debug("group of %d at %s runs at %s (%s)", len(items), level.name, rung.name, why)
        moved = [(i, r, replace(g, resume_latent=None, resume_step=0),
                  WorkReport(level=rung.name, late_from=level.name, late_why=why.value)) for i, r, g, _ in items]
        return rung, moved

    def _level(self, r: WorkRequest) -> tuple[Level, str | None]:
        """The level `r` asks for: the worker's own, or another of the service's levels that runs on the
        same weights (a same-model level switch needs no reload); else an error for this request."""
        if not r.level or r.level == self.level.name:
            return self.level, None
        level = self.levels.get(r.level)
        if level is None:
            return self.level, f"LEVEL {r.level!r} is not a level of this service ({', '.join(self.levels)})"
        if not level.runs_on(self.level):
            return self.level, (f"LEVEL {r.level!r} needs other weights than this worker's level "
                                f"{self.level.name!r}: a model level is served by its own workers")
        return level, None

    def _resume(self, r: WorkRequest, gen: GenRequest, level: Level, info: WorkReport) -> WorkReport:
        """At a cache level K>0, attach the cached latent to `gen`, or record why the run starts from noise."""
        if not level.needs_cache_hit:
            return info
        if not r.cache_key:
            self.metrics.cache("miss", "no_key")
            return replace(info, fallback_reason="no_key")
        if self.store is None:
            return self._fallback(info, "no_store")
        try:
            latent = self.store.get(r.cache_key, level.resume_step, model=self.pipeline.identity,
                                    n=self.settings.steps, shape=self.pipeline.latent_shape(r.height, r.width))
        except CacheMiss as e:
            if e.reason == "store_error":
                self.metrics.store_error("read")
                self._warn("read", f"latent store read failed, running from noise: {e}")
            log.info("cache fallback key=%s level=%s: %s", r.cache_key, level.name, e)
            return self._fallback(info, e.reason)
        except Exception as e:  # noqa: BLE001 - a store fault or bug may only cost the caching
            self.metrics.store_error("read")
            self._warn("read", f"latent store read failed, running from noise: {type(e).__name__}: {e}")
            return self._fallback(info, "store_error")
        gen.resume_latent, gen.resume_step = latent.array, latent.k
        # An evicted checkpoint at K may leave a smaller K' of the same prompt: still a hit, less skipped.
        reason = "" if latent.k == level.resume_step else "lower_k"
        self.metrics.cache("hit", reason)
        return replace(info, cache_hit=True, fallback_reason=reason or None)

    def _fallback(self, info: WorkReport, reason: str) -> WorkReport:
        self.metrics.cache("fallback", reason)
        return replace(info, fallback_reason=reason)

    def _store(self, r: WorkRequest, checkpoints: dict[int, object]) -> None:
        """Store a full run's checkpoints; a failure costs only the caching."""
        latents = {k: np.asarray(v.cpu().numpy() if hasattr(v, "cpu") else v, dtype=np.float32)
                   for k, v in checkpoints.items()}
        try:
            self.store.put(r.store_key, prompt=r.prompt, model=self.pipeline.identity,  # type: ignore[union-attr]
                           n=self.settings.steps, latents=latents)
        except StoreWriteError as e:
            self.metrics.store_error("write")
            self._warn(f"write:{e.reason}", f"latent store write failed ({e.reason}), serving without caching: {e}")
        except Exception as e:  # noqa: BLE001 - a store fault or bug may only cost the caching
            self.metrics.store_error("write")
            self._warn("write:bug", f"latent store write failed, serving without caching: {type(e).__name__}: {e}")

    def _warn(self, kind: str, message: str) -> None:
        # First occurrence of each kind at WARNING, later ones at DEBUG: no log flood under load.
        log.log(logging.DEBUG if kind in self._warned else logging.WARNING, message)
        self._warned.add(kind)

    def _validate(self, r: WorkRequest) -> str | None:
        if not r.prompt.strip():
            return "PROMPT must not be empty"
        try:
            self.pipeline.check_size(r.height, r.width)
        except SizeError as e:
            return str(e)
        return None
