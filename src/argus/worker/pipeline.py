"""Text-to-image generation for one approximation level, with resumable denoising.

A hand-written denoising loop over diffusers components (UNet, VAE, CLIP text encoder,
DDIM scheduler) rather than `StableDiffusionPipeline.__call__`, because approximate
caching needs two things the stock call does not expose: the latent after exactly K
steps (to store), and a run that starts at step K from a stored latent. DDIM is
deterministic and its step is stateless, so a resumed run reproduces the full run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from argus.levels import Level


@dataclass(frozen=True)
class PipelineSettings:
    """How the pipeline is built and run."""

    steps: int = 50  # N, the full-quality schedule
    guidance_scale: float = 7.5
    weights_path: str | None = None  # None: the seeded tiny random model
    model_name: str = "tiny-sd"
    device: str = "cpu"
    max_size: int = 1024


@dataclass
class GenRequest:
    """One image to generate."""

    prompt: str
    seed: int
    height: int
    width: int
    resume_latent: object | None = None  # latent after `resume_step` steps, or None for a run from noise
    resume_step: int = 0


@dataclass
class GenResult:
    """One generated image (HxWx3 uint8) and what was done to make it."""

    image: np.ndarray
    steps_run: int
    resume_step: int
    checkpoints: dict[int, object] = field(default_factory=dict)


class SizeError(ValueError):
    """Requested image size cannot be produced by this model."""


class DiffusionPipeline:
    """A loaded model that generates batches of images for any level."""

    def __init__(self, settings: PipelineSettings):
        """Build (tiny) or load (weights path) the model once."""
        from argus.worker import tiny

        self.settings = settings
        if settings.weights_path:
            self.components = tiny.load_pretrained(settings.weights_path, settings.model_name, settings.device)
        else:
            self.components = tiny.build_tiny(settings.device)
        vae_cfg = self.components.vae.config
        self.vae_scale = 2 ** (len(vae_cfg.block_out_channels) - 1)
        self.latent_channels = self.components.unet.config.in_channels

    @property
    def identity(self) -> str:
        """Model identity: latents are only reusable within one identity."""
        return self.components.identity

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """Shape [C, h, w] of one latent for an image of the given size."""
        self.check_size(height, width)
        return (self.latent_channels, height // self.vae_scale, width // self.vae_scale)

    def check_size(self, height: int, width: int) -> None:
        """Raise SizeError unless the size is a positive multiple of the latent grid."""
        m = self.vae_scale * 4
        for name, v in (("height", height), ("width", width)):
            if v <= 0 or v > self.settings.max_size or v % m:
                raise SizeError(f"{name}={v}: must be a multiple of {m} in [{m}, {self.settings.max_size}]")

    def generate(self, requests: list[GenRequest], level: Level,
                 checkpoints: tuple[int, ...] = ()) -> list[GenResult]:
        """Generate all requests at `level`; requests with the same size and start run as one batch.

        Runs from noise store their latent after each step in `checkpoints` (cache levels only).
        """
        groups: dict[tuple[int, int, int], list[int]] = {}
        for i, r in enumerate(requests):
            self.check_size(r.height, r.width)
            start = r.resume_step if r.resume_latent is not None else 0
            groups.setdefault((r.height, r.width, start), []).append(i)
        results: list[GenResult | None] = [None] * len(requests)
        for (h, w, start), idx in groups.items():
            batch = [requests[i] for i in idx]
            store = checkpoints if (start == 0 and level.family == "cache") else ()
            for i, res in zip(idx, self._run(batch, level, h, w, start, store)):
                results[i] = res
        return results  # type: ignore[return-value]

    def _run(self, batch: list[GenRequest], level: Level, h: int, w: int, start: int,
             store: tuple[int, ...]) -> list[GenResult]:
        import torch
        from diffusers import DDIMScheduler

        c = self.components
        n_steps = level.steps_run(self.settings.steps) if level.family == "steps" else self.settings.steps
        scheduler = DDIMScheduler.from_config(c.scheduler_config)
        scheduler.set_timesteps(n_steps)
        timesteps = scheduler.timesteps
        shape = self.latent_shape(h, w)
        with torch.inference_mode():
            emb = self._encode([r.prompt for r in batch])
            if start:
                latents = torch.stack([torch.as_tensor(r.resume_latent, dtype=torch.float32) for r in batch])
            else:
                latents = torch.stack([
                    torch.randn(shape, generator=torch.Generator().manual_seed(int(r.seed)))
                    for r in batch]) * scheduler.init_noise_sigma
            saved: list[dict[int, object]] = [{} for _ in batch]
            g = self.settings.guidance_scale
            for i in range(start, len(timesteps)):
                if i in store:
                    for b in range(len(batch)):
                        saved[b][i] = latents[b].clone()
                t = timesteps[i]
                inp = scheduler.scale_model_input(torch.cat([latents, latents]), t)
                noise = c.unet(inp, t, encoder_hidden_states=emb).sample
                uncond, text = noise.chunk(2)
                latents = scheduler.step(uncond + g * (text - uncond), t, latents).prev_sample
            images = self._decode(latents)
        return [GenResult(image=images[b], steps_run=len(timesteps) - start, resume_step=start,
                          checkpoints=saved[b]) for b in range(len(batch))]

    def _encode(self, prompts: list[str]):
        import torch

        c = self.components
        tok = c.tokenizer
        ids = tok(prompts + [""] * len(prompts), padding="max_length", max_length=tok.model_max_length,
                  truncation=True, return_tensors="pt").input_ids
        out = c.text_encoder(ids)[0]
        text, uncond = out[: len(prompts)], out[len(prompts):]
        return torch.cat([uncond, text])

    def _decode(self, latents) -> np.ndarray:
        vae = self.components.vae
        scale = getattr(vae.config, "scaling_factor", 0.18215)
        img = vae.decode(latents / scale).sample
        img = (img / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).float().numpy()
        return (img * 255).round().astype(np.uint8)
