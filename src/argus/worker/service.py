"""The worker's request handling, independent of Triton: decode, generate, report.

The Triton model.py turns each Triton request into a WorkRequest, calls `handle`,
and turns each WorkResponse back into tensors or a per-request TritonError.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

import numpy as np

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


@dataclass
class WorkResponse:
    """An image with its report, or an error message for this request alone."""

    image: np.ndarray | None = None
    info: dict | None = None
    error: str | None = None

    def info_json(self) -> bytes:
        """The INFO output: what was actually done, as JSON bytes."""
        return json.dumps(self.info, sort_keys=True).encode()


class WorkerService:
    """Serves one level: owns the pipeline and (when configured) the latent store."""

    def __init__(self, settings: WorkerSettings, pipeline: DiffusionPipeline | None = None, store=None):
        """Load the model once; `store` is an optional latent store (approximate caching)."""
        self.settings = settings
        self.level = settings.parsed_level
        self.pipeline = pipeline or DiffusionPipeline(settings.pipeline_settings())
        self.store = store

    def handle(self, batch: list[WorkRequest]) -> list[WorkResponse]:
        """Generate a batch; a bad request fails alone, never the batch."""
        out: list[WorkResponse | None] = [None] * len(batch)
        todo: list[tuple[int, GenRequest, dict]] = []
        for i, r in enumerate(batch):
            err = self._validate(r)
            if err:
                out[i] = WorkResponse(error=err)
                continue
            info = {"level": self.level.name, "k_used": 0, "cache_hit": False, "fallback_reason": None}
            todo.append((i, GenRequest(r.prompt, r.seed, r.height, r.width), info))
        if todo:
            results = self.pipeline.generate([g for _, g, _ in todo], self._run_level(),
                                             checkpoints=self.settings.checkpoints if self.store else ())
            for (i, _, info), res in zip(todo, results):
                info.update(k_used=res.start_step, steps_run=res.steps_run, model=self.pipeline.identity)
                out[i] = WorkResponse(image=res.image, info=info)
        return out  # type: ignore[return-value]

    def _run_level(self):
        # Without a cached latent a cache level runs the full schedule from noise.
        return self.level

    def _validate(self, r: WorkRequest) -> str | None:
        if not r.prompt.strip():
            return "PROMPT must not be empty"
        try:
            self.pipeline.check_size(r.height, r.width)
        except SizeError as e:
            return str(e)
        return None
