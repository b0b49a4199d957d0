"""Train the world model from scratch on the renderer's images (CPU), resumably.

Three phases, each checkpointed under the output directory so an interrupted run resumes:

1. the VAE (AutoencoderKL) learns to reconstruct 32x32 crops of rendered images (decoding the posterior
   mean; MSE + L1 with object pixels weighted 5x, plus a small KL term); its
   `scaling_factor` is set to 1 / std of the latents it produces;
2. a fixed dataset of (prompt, latent) pairs: train-split prompts, task types in `TASK_MIX`, one
   rendered image each, encoded once;
3. the UNet and the text encoder learn to denoise those latents given the prompt (v-prediction by
   default, `prediction="epsilon"` for the first recipe; min-SNR-5 loss weighting, 10 % of prompts dropped for classifier-free guidance), with
   an exponential moving average of the weights, which is what gets exported;
4. the VAE's decoder is refined with the encoder frozen (so the latents, and the UNet trained on them,
   are unchanged): sharper edges for the same latents. It needs only phase 1, so `--only-decoder` runs
   it beside phase 3 on a second core.

The result is a `StableDiffusionPipeline` directory (safetensors) plus `train-log.json` and
`training-curve.png`.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from argus.world import grammar, model, render

TASK_MIX = {"single_object": 0.1, "colors": 0.15, "counting": 0.2, "two_object": 0.15,
            "color_attr": 0.2, "position": 0.2}


@dataclass(frozen=True)
class TrainSettings:
    """What `argus train-model` trains and how long."""

    out: str
    seed: int = 0
    threads: int = 1
    vae_steps: int = 900
    vae_batch: int = 32
    decoder_steps: int = 1500
    dataset_size: int = 30000
    unet_steps: int = 8000  # 0.67 s a step on this quiet 2-core machine at 2 threads: 89 min
    batch: int = 64
    lr: float = 8e-4
    ema_decay: float = 0.995
    drop_prompt: float = 0.1
    checkpoint_every: int = 100
    # v-prediction: at the highest noise levels the model predicts the image itself instead of the noise,
    # whose error DDIM would amplify ~15x into the image (bad layouts with few steps); at the lowest it
    # predicts the noise. "epsilon" is the recipe the first bundled model (47.3) was trained with.
    prediction: str = "v_prediction"


def _prompts(rng: np.random.Generator, n: int) -> list[grammar.Prompt]:
    by_task: dict[str, list[grammar.Prompt]] = {}
    for p in grammar.prompts_of("train"):
        by_task.setdefault(p.scene.task, []).append(p)
    tasks = list(TASK_MIX)
    picks = rng.choice(len(tasks), size=n, p=np.array(list(TASK_MIX.values())) / sum(TASK_MIX.values()))
    return [by_task[tasks[t]][int(rng.integers(len(by_task[tasks[t]])))] for t in picks]


def _images(prompts: list[grammar.Prompt], seeds: list[int]):
    import torch

    arr = np.stack([render.render(p.scene, s) for p, s in zip(prompts, seeds)])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def _crops(x, rng: np.random.Generator, size: int = 32):
    """A random `size` x `size` crop of each image (grid-aligned). The VAE is fully convolutional, so it
    learns the same map from crops at a quarter of the cost per image."""
    import torch

    n, _, h, w = x.shape
    ys = rng.integers(0, (h - size) // 4 + 1, n) * 4
    xs = rng.integers(0, (w - size) // 4 + 1, n) * 4
    return torch.stack([x[i, :, ys[i]:ys[i] + size, xs[i]:xs[i] + size] for i in range(n)])


def _reconstruction_loss(rec, x):
    """MSE + 0.1 L1, object pixels (chroma) weighted 5x: ~10 % of an image but all of what the scorer reads."""
    w = 1.0 + 4.0 * ((x.max(dim=1, keepdim=True).values - x.min(dim=1, keepdim=True).values) > 0.25).float()
    err = rec - x
    return (w * err.pow(2)).mean() + 0.1 * (w * err.abs()).mean()


def _atomic_save(obj, path: Path) -> None:
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _lr(step: int, total: int, base: float, warmup: int = 100) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup))))


class Trainer:
    """Runs the phases with a progress bar; every phase resumes from its checkpoint."""

    def __init__(self, settings: TrainSettings, progress=None, log_name: str = "train-log.json"):
        """`progress(desc, total)` returns a tqdm-like bar (tqdm by default)."""
        import torch

        self.s = settings
        self.out = Path(settings.out)
        self.out.mkdir(parents=True, exist_ok=True)
        torch.set_num_threads(settings.threads)
        if progress is None:
            from tqdm import tqdm

            def progress(desc, total, initial=0):
                return tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, mininterval=5)
        self.progress = progress
        self.log_name = log_name
        self.log = self._load_log()
        self.vae, self.unet, self.text, self.tok = model.build(self.out / "tokenizer", settings.seed)

    def _load_log(self) -> dict:
        p = self.out / self.log_name
        log = json.loads(p.read_text()) if p.exists() else {
            "vae_loss": [], "decoder_loss": [], "unet_loss": [], "seconds": {}}
        # A resumed run may change settings (e.g. more UNet steps): `settings` is the latest invocation's,
        # `invocations` every one of them, in order.
        log["invocations"] = [*log.get("invocations", [log["settings"]] if "settings" in log else []), asdict(self.s)]
        log["settings"] = asdict(self.s)
        return log

    def _save_log(self) -> None:
        tmp = self.out / (self.log_name + ".tmp")
        tmp.write_text(json.dumps(self.log))
        os.replace(tmp, self.out / self.log_name)

    def run(self) -> Path:
        """All phases; returns the exported pipeline directory."""
        self.train_vae()
        latents, prompts = self.dataset()
        self.train_unet(latents, prompts)
        self.refine_decoder()
        return self.export(self.out / "pipeline")

    def _step(self, opt, loss, key: str, step: int, bar) -> None:
        """One optimizer step on `loss`, logged under `key` and shown on the progress bar."""
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        self.log[key].append([step, float(loss)])
        bar.update(1)
        bar.set_postfix(loss=f"{float(loss):.4f}")

    # Phase 1 ---------------------------------------------------------------------------------
    def train_vae(self) -> None:
        import torch

        ckpt = self.out / "vae.pt"
        state = torch.load(ckpt, weights_only=False) if ckpt.exists() else None
        if state and state.get("done"):
            self.vae.load_state_dict(state["vae"])
            self.vae.register_to_config(scaling_factor=state["scaling_factor"])
            return
        opt = torch.optim.AdamW(self.vae.parameters(), lr=2e-3, weight_decay=0.0)
        start = 0
        if state:
            self.vae.load_state_dict(state["vae"])
            opt.load_state_dict(state["opt"])
            start = state["step"]
        rng = np.random.default_rng([self.s.seed, 10, start])
        t0 = time.time()
        bar = self.progress("vae", self.s.vae_steps, start)
        self.vae.train()
        for step in range(start, self.s.vae_steps):
            for g in opt.param_groups:
                g["lr"] = _lr(step, self.s.vae_steps, 2e-3, warmup=20)
            prompts = _prompts(rng, self.s.vae_batch)
            x = _crops(_images(prompts, [int(v) for v in rng.integers(0, 2**31, len(prompts))]), rng)
            post = self.vae.encode(x).latent_dist
            # Decoding the posterior mean (a plain autoencoder with a KL leash) learns far faster than decoding
            # samples, whose initial unit noise drowns the signal; the UNet trains on mean latents anyway.
            rec = self.vae.decode(post.mean).sample
            loss = _reconstruction_loss(rec, x) + 1e-6 * post.kl().mean()
            self._step(opt, loss, "vae_loss", step, bar)
            if (step + 1) % self.s.checkpoint_every == 0:
                _atomic_save({"vae": self.vae.state_dict(), "opt": opt.state_dict(), "step": step + 1}, ckpt)
                self._save_log()
        bar.close()
        self.vae.eval()
        with torch.no_grad():
            prompts = _prompts(np.random.default_rng([self.s.seed, 11]), 512)
            z = torch.cat([self.vae.encode(_images(prompts[i:i + 64], list(range(i, i + 64)))).latent_dist.mean
                           for i in range(0, 512, 64)])
        scale = float(1.0 / z.std())
        self.vae.register_to_config(scaling_factor=scale)
        self.log["seconds"]["vae"] = self.log["seconds"].get("vae", 0) + time.time() - t0
        self.log["vae_scaling_factor"] = scale
        _atomic_save({"vae": self.vae.state_dict(), "step": self.s.vae_steps, "done": True,
                      "scaling_factor": scale}, ckpt)
        self._save_log()

    def refine_decoder(self) -> None:
        """Phase 3: train the decoder (and post-quant conv) on frozen-encoder latents of crops."""
        import torch

        ckpt = self.out / "decoder.pt"
        state = torch.load(ckpt, weights_only=False) if ckpt.exists() else None
        dec_params = list(self.vae.decoder.parameters()) + list(self.vae.post_quant_conv.parameters())
        if state and state.get("done"):
            self.vae.decoder.load_state_dict(state["decoder"])
            self.vae.post_quant_conv.load_state_dict(state["post_quant_conv"])
            return
        opt = torch.optim.AdamW(dec_params, lr=5e-4, weight_decay=0.0)
        start = 0
        if state:
            self.vae.decoder.load_state_dict(state["decoder"])
            self.vae.post_quant_conv.load_state_dict(state["post_quant_conv"])
            opt.load_state_dict(state["opt"])
            start = state["step"]
        rng = np.random.default_rng([self.s.seed, 15, start])
        t0 = time.time()
        bar = self.progress("decoder", self.s.decoder_steps, start)
        self.vae.encoder.eval()
        self.vae.decoder.train()
        for step in range(start, self.s.decoder_steps):
            for g in opt.param_groups:
                g["lr"] = _lr(step, self.s.decoder_steps, 5e-4, warmup=20)
            prompts = _prompts(rng, self.s.vae_batch)
            x = _crops(_images(prompts, [int(v) for v in rng.integers(0, 2**31, len(prompts))]), rng)
            with torch.no_grad():
                z = self.vae.encode(x).latent_dist.mean
            rec = self.vae.decode(z).sample
            loss = _reconstruction_loss(rec, x)
            self._step(opt, loss, "decoder_loss", step, bar)
            if (step + 1) % self.s.checkpoint_every == 0:
                _atomic_save({"decoder": self.vae.decoder.state_dict(), "post_quant_conv": self.vae.post_quant_conv.state_dict(),
                              "opt": opt.state_dict(), "step": step + 1}, ckpt)
                self.log["seconds"]["decoder"] = self.log["seconds"].get("decoder", 0) + time.time() - t0
                t0 = time.time()
                self._save_log()
        bar.close()
        self.vae.eval()
        _atomic_save({"decoder": self.vae.decoder.state_dict(), "post_quant_conv": self.vae.post_quant_conv.state_dict(),
                      "step": self.s.decoder_steps, "done": True}, ckpt)
        self.log["seconds"]["decoder"] = self.log["seconds"].get("decoder", 0) + time.time() - t0
        self._save_log()

    # Phase 2 ---------------------------------------------------------------------------------
    def dataset(self):
        import torch

        path = self.out / "dataset.pt"
        if path.exists():
            d = torch.load(path, weights_only=False)
            return d["latents"], d["prompts"]
        rng = np.random.default_rng([self.s.seed, 20])
        prompts = _prompts(rng, self.s.dataset_size)
        scale = self.vae.config.scaling_factor
        chunks = []
        t0 = time.time()
        bar = self.progress("dataset", len(prompts))
        self.vae.eval()
        with torch.no_grad():
            for i in range(0, len(prompts), 64):
                part = prompts[i:i + 64]
                x = _images(part, [1_000_000 + i + j for j in range(len(part))])
                chunks.append((self.vae.encode(x).latent_dist.mean * scale).half())
                bar.update(len(part))
        bar.close()
        latents = torch.cat(chunks)
        texts = [p.text for p in prompts]
        _atomic_save({"latents": latents, "prompts": texts}, path)
        self.log["seconds"]["dataset"] = time.time() - t0
        self._save_log()
        return latents, texts

    # Phase 3 ---------------------------------------------------------------------------------
    def train_unet(self, latents, prompts: list[str]) -> None:
        import torch
        from diffusers import DDPMScheduler

        ckpt = self.out / "unet.pt"
        params = list(self.unet.parameters()) + list(self.text.parameters())
        opt = torch.optim.AdamW(params, lr=self.s.lr, weight_decay=1e-4)
        ema = [p.detach().clone() for p in params]
        start = 0
        if ckpt.exists():
            st = torch.load(ckpt, weights_only=False)
            self.unet.load_state_dict(st["unet"])
            self.text.load_state_dict(st["text"])
            opt.load_state_dict(st["opt"])
            ema = st["ema"]
            start = st["step"]
        if start >= self.s.unet_steps:
            self._ema = ema
            return
        sched = DDPMScheduler(**{k: v for k, v in self._scheduler_config().items() if k != "set_alpha_to_one"})
        acp = sched.alphas_cumprod
        snr = acp / (1 - acp)
        # min-SNR-5 (Hang et al. 2023), written for the target the UNet predicts
        weight = torch.clamp(snr, max=5.0) / (snr + 1 if self.s.prediction == "v_prediction" else snr)
        ids_all = self.tok(prompts, padding="max_length", max_length=model.MAX_TOKENS, truncation=True,
                           return_tensors="pt").input_ids
        empty = self.tok([""], padding="max_length", max_length=model.MAX_TOKENS, return_tensors="pt").input_ids[0]
        rng = np.random.default_rng([self.s.seed, 30, start])
        gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
        t0 = time.time()
        bar = self.progress("unet", self.s.unet_steps, start)
        self.unet.train()
        self.text.train()
        for step in range(start, self.s.unet_steps):
            for g in opt.param_groups:
                g["lr"] = _lr(step, self.s.unet_steps, self.s.lr)
            idx = torch.from_numpy(rng.integers(0, len(prompts), self.s.batch))
            x0 = latents[idx].float()
            ids = ids_all[idx].clone()
            ids[torch.from_numpy(rng.random(self.s.batch) < self.s.drop_prompt)] = empty
            t = torch.randint(0, sched.config.num_train_timesteps, (self.s.batch,), generator=gen)
            noise = torch.randn(x0.shape, generator=gen)
            xt = sched.add_noise(x0, noise, t)
            pred = self.unet(xt, t, encoder_hidden_states=self.text(ids)[0]).sample
            target = sched.get_velocity(x0, noise, t) if self.s.prediction == "v_prediction" else noise
            loss = ((pred - target).pow(2).mean(dim=(1, 2, 3)) * weight[t]).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            d = min(self.s.ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():
                for e, p in zip(ema, params):
                    e.mul_(d).add_(p.detach(), alpha=1 - d)
            self.log["unet_loss"].append([step, float(loss)])
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss):.4f}")
            if (step + 1) % self.s.checkpoint_every == 0 or step + 1 == self.s.unet_steps:
                _atomic_save({"unet": self.unet.state_dict(), "text": self.text.state_dict(),
                              "opt": opt.state_dict(), "ema": ema, "step": step + 1}, ckpt)
                self.log["seconds"]["unet"] = self.log["seconds"].get("unet", 0) + time.time() - t0
                t0 = time.time()
                self._save_log()
                self.plot()
        bar.close()
        self._ema = ema

    def _scheduler_config(self) -> dict:
        if self.s.prediction not in ("epsilon", "v_prediction"):
            raise ValueError(f"prediction must be 'epsilon' or 'v_prediction', not {self.s.prediction!r}")
        return {**model.SCHEDULER_CONFIG, "prediction_type": self.s.prediction}

    # Export ----------------------------------------------------------------------------------
    def export(self, path: Path) -> Path:
        """Write the EMA weights as a StableDiffusionPipeline directory (safetensors)."""
        import torch
        from diffusers import DDIMScheduler, StableDiffusionPipeline

        params = list(self.unet.parameters()) + list(self.text.parameters())
        with torch.no_grad():
            for p, e in zip(params, self._ema):
                p.copy_(e)
        self.unet.eval()
        self.text.eval()
        pipe = StableDiffusionPipeline(vae=self.vae, text_encoder=self.text, tokenizer=self.tok, unet=self.unet,
                                       scheduler=DDIMScheduler(**self._scheduler_config()), safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
        pipe.save_pretrained(str(path), safe_serialization=True)
        self.plot()
        return path

    def plot(self) -> None:
        """training-curve.png: VAE and UNet losses (smoothed)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        logs = [self.log] + [json.loads(p.read_text()) for p in self.out.glob("train-log-*.json")]
        fig, axes = plt.subplots(1, 3, figsize=(14, 3.5))
        for ax, key, title in ((axes[0], "vae_loss", "VAE reconstruction loss"),
                               (axes[1], "decoder_loss", "decoder refinement loss"),
                               (axes[2], "unet_loss", "UNet denoising loss (min-SNR-5)")):
            rows = max((lg.get(key, []) for lg in logs), key=len)
            d = np.array(rows) if rows else np.zeros((0, 2))
            if len(d):
                ax.plot(d[:, 0], d[:, 1], alpha=0.3, lw=0.8)
                k = max(1, len(d) // 50)
                sm = np.convolve(d[:, 1], np.ones(k) / k, mode="valid")
                ax.plot(d[k - 1:, 0], sm, lw=1.5)
            ax.set_title(title)
            ax.set_xlabel("step")
            ax.set_yscale("log")
        fig.tight_layout()
        fig.savefig(self.out / "training-curve.png", dpi=100)
        plt.close(fig)
