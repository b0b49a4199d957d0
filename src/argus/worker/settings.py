"""Worker settings: the one place the worker reads its environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from argus.levels import DEFAULT_LEVELS, FULL, Level, cache_checkpoints, parse_level, parse_levels
from argus.worker.pipeline import PipelineSettings

METRICS_PORT_ENV = "ARGUS_METRICS_PORT"


@dataclass(frozen=True)
class WorkerSettings:
    """Everything one worker process needs: its level, the model, the latent store."""

    level: str = FULL
    steps: int = 50
    levels: tuple[str, ...] = tuple(DEFAULT_LEVELS)
    model_name: str = "tiny-sd"
    weights_path: str | None = None
    guidance_scale: float = 7.5
    latent_store: str | None = None  # directory; None serves without caching
    latent_store_bytes: int = 2 * 1024**3
    device: str = "cpu"
    # the Triton serving this worker serves its /metrics here (its arrivals: argus.worker.pacing.ArrivalMeter);
    # set per process by argus.worker.repository.triton_command, so not part of to_env
    metrics_port: int = 8002

    def __post_init__(self):
        parse_level(self.level, self.steps)  # raises LevelError naming the problem
        parse_levels(list(self.levels), self.steps)
        if self.latent_store_bytes <= 0:
            raise ValueError(f"ARGUS_LATENT_STORE_BYTES={self.latent_store_bytes}: must be a positive byte count")

    @property
    def parsed_level(self) -> Level:
        """This worker's level."""
        return parse_level(self.level, self.steps)

    @property
    def checkpoints(self) -> tuple[int, ...]:
        """Steps at which full runs store latents: the K values of the service's cache levels."""
        return tuple(cache_checkpoints(parse_levels(list(self.levels), self.steps)))

    def pipeline_settings(self) -> PipelineSettings:
        """Settings for the diffusion pipeline."""
        return PipelineSettings(steps=self.steps, guidance_scale=self.guidance_scale,
                                weights_path=self.weights_path, model_name=self.model_name,
                                device=self.device)

    def to_env(self) -> dict[str, str]:
        """The environment that reproduces these settings (for child processes and pod specs)."""
        env = {"ARGUS_LEVEL": self.level, "ARGUS_STEPS": str(self.steps), "ARGUS_LEVELS": ",".join(self.levels),
               "ARGUS_MODEL_NAME": self.model_name, "ARGUS_GUIDANCE_SCALE": str(self.guidance_scale),
               "ARGUS_LATENT_STORE_BYTES": str(self.latent_store_bytes), "ARGUS_DEVICE": self.device}
        if self.weights_path:
            env["ARGUS_WEIGHTS_PATH"] = self.weights_path
        if self.latent_store:
            env["ARGUS_LATENT_STORE"] = self.latent_store
        return env

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, level: str | None = None) -> "WorkerSettings":
        """Read ARGUS_* variables (see to_env); `level` overrides ARGUS_LEVEL."""
        env = os.environ if env is None else env
        d = cls()
        levels = tuple(x for x in env.get("ARGUS_LEVELS", ",".join(d.levels)).split(",") if x)
        return cls(
            level=env.get("ARGUS_LEVEL") or level or d.level,
            steps=int(env.get("ARGUS_STEPS", d.steps)),
            levels=levels,
            model_name=env.get("ARGUS_MODEL_NAME", d.model_name),
            weights_path=env.get("ARGUS_WEIGHTS_PATH") or None,
            guidance_scale=float(env.get("ARGUS_GUIDANCE_SCALE", d.guidance_scale)),
            latent_store=env.get("ARGUS_LATENT_STORE") or None,
            latent_store_bytes=int(env.get("ARGUS_LATENT_STORE_BYTES", d.latent_store_bytes)),
            device=env.get("ARGUS_DEVICE", d.device),
            metrics_port=int(env.get(METRICS_PORT_ENV, d.metrics_port)),
        )
