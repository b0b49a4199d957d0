"""Image quality as CLIP score, and relative quality of an approximated image.

CLIP score (Hessel et al. 2021, as computed by torchmetrics): 100 * max(cos(image, text), 0) with
the CLIP image and text embeddings (kind "clipscore"). Relative quality of an approximated image = its score divided
by the score of the full-quality image for the same prompt and seed (the project's definition of quality).

Real weights come from a local directory (`CLIPModel.from_pretrained(path, local_files_only=True)`);
tests and the tiny demo build a small random-weight CLIP from a config, which exercises the same
code with meaningless values.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
TINY_CLIP_SEED = 0
SCORE_KINDS = ("clipscore", "clip-cosine")


class ScorerError(ValueError):
    """The scorer cannot be loaded or the inputs cannot be scored."""


class ClipScorer:
    """Scores images against prompts with a transformers CLIPModel."""

    def __init__(self, model, tokenizer, name: str, kind: str = "clipscore"):
        """Wrap a loaded CLIPModel and its tokenizer; `name` and `kind` go into profiles.

        kind "clipscore" is the standard 100*max(cos,0); "clip-cosine" is 50*(1+cos), used for random
        weights, whose cosines straddle 0 so that CLIPScore would be 0 for half the images.
        """
        if kind not in SCORE_KINDS:
            raise ScorerError(f"unknown score kind {kind!r}: expected one of {', '.join(SCORE_KINDS)}")
        self.kind = kind
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.image_size = int(model.config.vision_config.image_size)

    @classmethod
    def from_path(cls, path: str | Path) -> "ClipScorer":
        """Real CLIP weights from a local directory (never from a hub)."""
        from transformers import CLIPModel, CLIPTokenizer

        p = Path(path)
        if not (p / "config.json").is_file():
            raise ScorerError(f"{p}: not a CLIP model directory (no config.json)")
        model = CLIPModel.from_pretrained(str(p), local_files_only=True)
        tok = CLIPTokenizer.from_pretrained(str(p), local_files_only=True)
        return cls(model, tok, f"clip:{p.name}")

    @classmethod
    def tiny(cls) -> "ClipScorer":
        """A small seeded random-weight CLIP (same in every process) with the real CLIP BPE tokenizer."""
        import torch
        from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

        from argus.worker.tiny import CLIP_VOCAB, clip_tokenizer_files

        vocab, merges = clip_tokenizer_files()
        tok = CLIPTokenizer(str(vocab), str(merges), model_max_length=77)
        text = dict(vocab_size=CLIP_VOCAB, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                    num_attention_heads=4, max_position_embeddings=77, bos_token_id=CLIP_VOCAB - 2,
                    eos_token_id=CLIP_VOCAB - 1, pad_token_id=CLIP_VOCAB - 1)
        vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                      image_size=32, patch_size=8)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(TINY_CLIP_SEED)
            model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
        return cls(model, tok, "clip:tiny-random", kind="clip-cosine")

    def score(self, images: list[np.ndarray], prompts: list[str]) -> np.ndarray:
        """CLIP score of each image (HxWx3 uint8) against its prompt, shape [n]."""
        import torch

        if len(images) != len(prompts):
            raise ScorerError(f"{len(images)} images but {len(prompts)} prompts")
        if not images:
            return np.zeros(0, dtype=np.float64)
        pixels = torch.stack([self._pixels(im) for im in images])
        ids = self.tokenizer(list(prompts), padding=True, truncation=True,
                             max_length=self.tokenizer.model_max_length, return_tensors="pt")
        with torch.inference_mode():
            img = self.model.get_image_features(pixel_values=pixels)
            txt = self.model.get_text_features(**ids)
            img = _features(img)
            txt = _features(txt)
            cos = torch.nn.functional.cosine_similarity(img, txt, dim=-1)
        if self.kind == "clip-cosine":
            return (50.0 * (1.0 + cos)).double().numpy()
        return (100.0 * cos.clamp(min=0)).double().numpy()

    def relative_quality(self, score: float, full_score: float) -> float | None:
        """Relative quality in percent (`relative_quality`): the profile's rule for CLIP scores."""
        return relative_quality(score, full_score)

    def _pixels(self, image: np.ndarray):
        import torch

        a = np.asarray(image)
        if a.ndim != 3 or a.shape[-1] != 3:
            raise ScorerError(f"image must be HxWx3, got shape {a.shape}")
        t = torch.from_numpy(a.astype(np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0)
        # CLIP preprocessing: bicubic resize to the vision tower's size, then normalise.
        t = torch.nn.functional.interpolate(t, size=(self.image_size, self.image_size), mode="bicubic",
                                            align_corners=False).clamp(0, 1)[0]
        mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
        std = torch.tensor(CLIP_STD).view(3, 1, 1)
        return (t - mean) / std


def _features(out):
    # transformers 5 returns a model output object from get_*_features; 4.x returns the tensor.
    return out if hasattr(out, "norm") else out.pooler_output


def relative_quality(score: float, full_score: float) -> float | None:
    """score / full_score in percent; None when the full image scores 0 (the ratio is undefined)."""
    if not (math.isfinite(score) and math.isfinite(full_score)) or full_score <= 0:
        return None
    return 100.0 * score / full_score
