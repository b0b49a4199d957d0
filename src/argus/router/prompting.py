"""The router's predictive planning: a PredictivePlanner per configured service, its index sync and record hook.

All index work (plan batches, records, sync mutations) runs on ONE planner thread, because the
similarity index is not thread-safe; the sync thread only lists the latent store and warms the
embedding cache, so the planner thread's share of a sync is cheap. Nothing here runs on the event loop.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable

from argus.levels import cache_checkpoints, parse_levels
from argus.prompt.embedder import CachedEmbedder, Embedder, make_embedder
from argus.prompt.index import LatentEntry, LatentEntrySource, SimilarityIndex
from argus.prompt.planner import PredictivePlanner, ServicePrompting
from argus.prompt.predictor import load_predictor
from argus.router.settings import RouterSettings

log = logging.getLogger("argus.router")

SYNC_CHUNK = 32  # prompts embedded per call while syncing
READ_ONLY_BUDGET = 1 << 50  # the router never writes the store; the budget only bounds writes


class _Listed:
    """A LatentEntrySource over entries already listed (so the planner thread does no store I/O)."""

    def __init__(self, entries: list):
        self.entries = entries

    def list_entries(self) -> list:
        return self.entries


class PromptPlanning:
    """The PredictivePlanner of the services with a predictor, with its store sync and record hook."""

    def __init__(self, planner: PredictivePlanner, executor: ThreadPoolExecutor,
                 stores: dict[str, Callable[[], LatentEntrySource]], interval_s: float = 5.0):
        """`executor` must be the planner's (one thread); `stores` maps services to openers of their latent stores.

        A store is opened in the thread that syncs (a DirectoryLatentStore's SQLite handle is bound to it).
        """
        self.planner = planner
        self.executor = executor
        self.stores = stores
        self._local = threading.local()
        # Records newer than a sync's listing are not in it; the sync keeps them instead of dropping them.
        self._recent: list[tuple[float, str, LatentEntry]] = []  # (monotonic time, service, entry)
        self._recent_lock = threading.Lock()
        self.interval_s = interval_s
        self.checkpoints = {name: tuple(cache_checkpoints(parse_levels(list(sp.predictor.levels), sp.predictor.steps)))
                            for name, sp in planner.services.items()}
        self.syncs = 0  # completed sync rounds (all services)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings: RouterSettings, embedder: Embedder | None = None) -> "PromptPlanning | None":
        """Load every configured predictor (checked against its service); None when none is configured."""
        if not settings.predictors:
            return None
        from argus.worker.latent_store import DirectoryLatentStore

        emb = embedder or CachedEmbedder(make_embedder(settings.encoder, settings.encoder_weights))
        services, stores = {}, {}
        for name, cfg in settings.predictors.items():
            expect = {k: v for k, v in (("levels", list(cfg.levels) if cfg.levels else None), ("model", cfg.model),
                                        ("steps", cfg.steps)) if v is not None}
            pred = load_predictor(cfg.path, encoder=emb.name, **expect)  # what is not configured is not checked
            services[name] = ServicePrompting(pred, SimilarityIndex(pred.thresholds, pred.dim,
                                                                    cross_tenant=cfg.cross_tenant))
            if cfg.latent_store is not None:
                stores[name] = lambda d=cfg.latent_store: DirectoryLatentStore(d, READ_ONLY_BUDGET)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="argus-planner")
        return cls(PredictivePlanner(emb, services, executor=executor), executor, stores, settings.index_sync_s)

    def sync_once(self) -> dict[str, tuple[int, int]]:
        """Follow every service's latent store once; {service: (added, removed)}. Blocking: not on the event loop."""
        out = {}
        opened = self._local.__dict__.setdefault("stores", {})
        for name, opener in self.stores.items():
            if name not in opened:
                opened[name] = opener()
            listed_at = time.monotonic()
            entries = list(opened[name].list_entries())
            with self._recent_lock:  # records from before the listing are in it (stored before recorded)
                self._recent = [r for r in self._recent if r[1] != name or r[0] >= listed_at]
                listed = {e.key for e in entries}
                entries += [e for t, svc, e in self._recent if svc == name and t >= listed_at and e.key not in listed]
            known = self.executor.submit(lambda n=name: self.planner.services[n].index.keys()).result()
            new = [e.prompt for e in entries if e.key not in known]
            # Embed here, off the planner thread, in small chunks so plan batches interleave (the embedder
            # is locked per call); the sync below then hits the embedding cache.
            for i in range(0, len(new), SYNC_CHUNK):
                self.planner.embedder.encode(new[i:i + SYNC_CHUNK])
            out[name] = self.executor.submit(self.planner.sync, name, _Listed(entries), listed_at).result()
        self.syncs += 1
        return out

    def start(self) -> None:
        """Sync now and then every `interval_s` seconds in a daemon thread."""
        self._thread = threading.Thread(target=self._run, name="argus-index-sync", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for name, (added, removed) in self.sync_once().items():
                    if added or removed:
                        log.info("index of %s follows its latent store: +%d -%d", name, added, removed)
            except Exception:  # a store fault must never stop the syncing (or the router)
                log.exception("similarity index sync failed")
            self._stop.wait(self.interval_s)

    async def record(self, service: str, tenant: str, prompt: str, key: str) -> None:
        """Index a prompt whose full run stored its checkpoints under `key` (no-op for other services)."""
        steps: Iterable[int] = self.checkpoints.get(service, ())
        if not steps:
            return
        if service in self.stores:
            with self._recent_lock:
                self._recent.append((time.monotonic(), service, LatentEntry(key, tenant or "default", prompt,
                                                                            tuple(steps))))
        await self.planner.record(service, tenant, prompt, key, steps)

    def close(self) -> None:
        """Stop the sync thread and the planner thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.executor.shutdown(wait=False, cancel_futures=True)


async def record_safely(planning: PromptPlanning, service: str, tenant: str, prompt: str, key: str) -> None:
    """`planning.record`, logging instead of raising: indexing may only cost the caching, never a reply."""
    try:
        await planning.record(service, tenant, prompt, key)
    except Exception:
        log.exception("recording %s for the similarity index failed", key)
