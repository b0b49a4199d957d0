"""The router's per-prompt planner built from prompt understanding: embed → nearest cached prompt → predict → choose.

Satisfies `argus.router.planner.Planner`. One `ServicePrompting` per T2IService (its predictor and
its similarity index, since each service has its own model and latent store). The embedding is
awaited through a shared micro-batcher; the decision itself is pure and synchronous.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from argus.prompt.embedder import MicroBatcher
from argus.prompt.index import LatentEntrySource, SimilarityIndex
from argus.prompt.predictor import FULL, Predictor, load_predictor
from argus.router.planner import PromptPlan, store_key


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
    """Plans prompts of the services it knows; others get the full-quality plan."""

    def __init__(self, batcher: MicroBatcher, services: dict[str, ServicePrompting]):
        """`batcher` embeds with the encoder every service's predictor was trained for."""
        for name, sp in services.items():
            if sp.predictor.encoder != batcher.embedder.name:
                raise ValueError(f"service {name!r}: predictor trained with {sp.predictor.encoder!r}, "
                                 f"router embeds with {batcher.embedder.name!r}")
        self.batcher = batcher
        self.services = services

    async def plan(self, service: str, prompt: str, tenant: str, floor: float) -> PromptPlan:
        """The optimal level for `prompt` under `floor`, with the cache key of its neighbour when that level resumes."""
        tenant = tenant or "default"
        key = store_key(tenant, prompt)
        sp = self.services.get(service)
        if sp is None:
            return PromptPlan(FULL, {FULL: 100.0}, None, key)
        emb = await self.batcher.embed(prompt)
        nb = sp.index.search(emb, tenant)  # an exact repeat finds its own earlier run: the best hit
        d = sp.predictor.decide(emb, nb, floor)
        cache_key = nb.key if (nb is not None and d.optimal_level.startswith("cache-k")
                               and d.optimal_level != FULL) else None
        return PromptPlan(d.optimal_level, d.predicted, cache_key, key,
                          None if nb is None else nb.similarity)

    async def record(self, service: str, tenant: str, prompt: str, key: str, steps: Iterable[int]) -> None:
        """Index a prompt whose full run just stored checkpoints at `steps` under `key`."""
        sp = self.services.get(service)
        if sp is not None:
            sp.index.add(key, tenant or "default", await self.batcher.embed(prompt), steps)

    def sync(self, service: str, store: LatentEntrySource) -> tuple[int, int]:
        """Reconcile a service's index with its latent store (after a restart, and periodically for evictions)."""
        sp = self.services[service]
        return sp.index.sync(store, self.batcher.embedder, model=sp.predictor.model)
