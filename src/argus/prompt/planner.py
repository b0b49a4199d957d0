"""The router's per-prompt planner built from prompt understanding: embed → nearest cached prompt → predict → choose.

Satisfies `argus.policy.prompt_plan.Planner`. One `ServicePrompting` per T2IService (its predictor and
its similarity index, since each service has its own model and latent store). Concurrent prompts
are planned as one batch off the event loop; the decision itself is pure and synchronous.

Wiring in the router (sketch): ``PredictivePlanner(CachedEmbedder(MiniLMEmbedder()), {svc:
ServicePrompting.load(artifact, encoder=..., levels=spec levels, model=worker identity, steps=N,
cross_tenant=spec flag)})``; after a full run that stored checkpoints, ``await planner.record(...)``;
every few seconds (and at start) ``planner.sync(svc, DirectoryLatentStore(...))`` in a thread.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from argus.levels import FULL, level_named
from argus.policy.prompt_plan import PromptPlan, store_key
from argus.prompt.batching import Batcher
from argus.prompt.embedder import Embedder
from argus.prompt.index import LatentEntrySource, SimilarityIndex
from argus.prompt.predictor import Predictor, load_predictor


@dataclass
class ServicePrompting:
    """What one service's prompts are judged with."""

    predictor: Predictor
    index: SimilarityIndex

    @classmethod
    def load(cls, predictor_path: str | Path, *, encoder: str, levels: list[str], model: str, steps: int,
             capacity: int = 100_000, cross_tenant: bool = False) -> "ServicePrompting":
        """Load a predictor checked against the service, with an empty index using its calibrated thresholds."""
        pred = load_predictor(predictor_path, encoder=encoder, levels=levels, model=model, steps=steps)
        return cls(pred, SimilarityIndex(pred.thresholds, pred.dim, capacity, cross_tenant))


class PredictivePlanner:
    """Plans prompts of the services it knows; others get the full-quality plan.

    Concurrent `plan` calls are micro-batched: one encoder pass for their prompts and one matrix
    product per index namespace for their searches (the scan over the rows is the search's cost).
    """

    def __init__(self, embedder: Embedder, services: dict[str, ServicePrompting], max_batch: int = 32,
                 max_wait_s: float = 0.002, executor: Executor | None = None):
        """`embedder` must be the encoder every service's predictor was trained with (wrap it in CachedEmbedder)."""
        for name, sp in services.items():
            if sp.predictor.encoder != embedder.name:
                raise ValueError(f"service {name!r}: predictor trained with {sp.predictor.encoder!r}, "
                                 f"router embeds with {embedder.name!r}")
        self.embedder = embedder
        self.services = services
        self.executor = executor
        self.batcher: Batcher[tuple[str, str, str, float], PromptPlan] = Batcher(
            self._plan_batch, max_batch, max_wait_s, executor)

    async def plan(self, service: str, prompt: str, tenant: str, floor: float) -> PromptPlan:
        """The optimal level for `prompt` under `floor`, with the cache key of its neighbour when that level resumes."""
        tenant = tenant or "default"
        if service not in self.services:
            return PromptPlan(FULL, {FULL: 100.0}, None, store_key(tenant, prompt))
        return await self.batcher.submit((service, tenant, prompt, floor))

    def _plan_batch(self, items: list[tuple[str, str, str, float]]) -> list[PromptPlan]:
        embs = self.embedder.encode([p for _, _, p, _ in items])
        by_service: dict[str, list[int]] = {}
        for i, (service, _, _, _) in enumerate(items):
            by_service.setdefault(service, []).append(i)
        plans: list[PromptPlan | None] = [None] * len(items)
        for service, idx in by_service.items():
            sp = self.services[service]
            # An exact repeat finds its own earlier run: the best hit, so no self-exclusion.
            nbs = sp.index.search_many(embs[idx], [items[i][1] for i in idx])
            for i, nb in zip(idx, nbs):
                _, tenant, prompt, floor = items[i]
                d = sp.predictor.decide(embs[i], nb, floor)
                resumes = nb is not None and level_named(d.optimal_level).needs_cache_hit
                plans[i] = PromptPlan(d.optimal_level, d.predicted, nb.key if resumes else None,
                                      store_key(tenant, prompt), None if nb is None else nb.similarity)
        return plans  # type: ignore[return-value]

    async def record(self, service: str, tenant: str, prompt: str, key: str, steps: Iterable[int]) -> None:
        """Index a prompt whose full run just stored checkpoints at `steps` under `key`."""
        sp = self.services.get(service)
        if sp is not None:
            loop = asyncio.get_running_loop()
            # On the planner thread, like every other use of the index (plan batches, sync): never concurrent.
            await loop.run_in_executor(self.executor, lambda: sp.index.add(
                key, tenant or "default", self.embedder.encode([prompt])[0], steps))

    def sync(self, service: str, store: LatentEntrySource, since: float | None = None) -> tuple[int, int]:
        """Reconcile a service's index with its latent store (after a restart, and periodically for evictions).

        Blocking (it embeds new entries): call it from a worker thread, not the event loop.
        """
        sp = self.services[service]
        return sp.index.sync(store, self.embedder, model=sp.predictor.model, since=since)
