"""A tiny, random-weight, Stable-Diffusion-shaped model built from configs.

Used when no weights path is configured (tests, the local demo, latency profiling of
real architectures on a GPU). Weights are seeded, so every worker process builds the
same model and latents stored by one are valid for another. The tokenizer is the real
CLIP BPE tokenizer, built from the vocabulary shipped in the open_clip wheel.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

TINY_SEED = 0
CLIP_VOCAB = 49408

UNET_CONFIG = dict(
    block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=4, out_channels=4,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
)
VAE_CONFIG = dict(
    block_out_channels=(32, 64), in_channels=3, out_channels=3,
    down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
    up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), latent_channels=4,
)
TEXT_CONFIG = dict(
    bos_token_id=CLIP_VOCAB - 2, eos_token_id=CLIP_VOCAB - 1, pad_token_id=CLIP_VOCAB - 1,
    hidden_size=32, intermediate_size=37, layer_norm_eps=1e-05, num_attention_heads=4,
    num_hidden_layers=5, vocab_size=CLIP_VOCAB, max_position_embeddings=77,
)
SCHEDULER_CONFIG = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                        clip_sample=False, set_alpha_to_one=False, steps_offset=1)


def tiny_identity() -> str:
    """Model identity of the tiny model: changes whenever its configs or seed change."""
    blob = json.dumps([UNET_CONFIG, VAE_CONFIG, TEXT_CONFIG, TINY_SEED], sort_keys=True, default=list)
    return "tiny-sd-" + hashlib.sha256(blob.encode()).hexdigest()[:12]


@dataclass
class Components:
    """The parts of a Stable-Diffusion-shaped pipeline."""

    unet: object
    vae: object
    text_encoder: object
    tokenizer: object
    scheduler_config: dict
    identity: str


def clip_tokenizer_files(cache_dir: Path | None = None) -> tuple[Path, Path]:
    """Write vocab.json and merges.txt of the real CLIP BPE vocabulary (from open_clip); return paths."""
    import importlib.util

    # find_spec locates the wheel's files without importing open_clip (it needs torchvision).
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("open_clip_torch is not installed (scripts/setup.sh installs it with --no-deps)")
    src = Path(list(spec.submodule_search_locations)[0]) / "bpe_simple_vocab_16e6.txt.gz"
    cache_dir = cache_dir or Path(tempfile.gettempdir()) / "argus-clip-tokenizer"
    vocab_path, merges_path = cache_dir / "vocab.json", cache_dir / "merges.txt"
    if vocab_path.exists() and merges_path.exists():
        return vocab_path, merges_path
    lines = gzip.open(src).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1:49152 - 256 - 2 + 1]]
    byte_chars = list(_bytes_to_unicode().values())
    vocab = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    cache_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write(vocab_path, json.dumps({t: i for i, t in enumerate(vocab)}))
    _atomic_write(merges_path, "#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    return vocab_path, merges_path


def build_tiny(device: str = "cpu") -> Components:
    """Build the seeded tiny model (same weights in every process)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab, merges = clip_tokenizer_files()
    tokenizer = CLIPTokenizer(str(vocab), str(merges), model_max_length=77)
    # Fork the RNG so building the model never disturbs the caller's global seed.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        unet = UNet2DConditionModel(**UNET_CONFIG)
        vae = AutoencoderKL(**VAE_CONFIG)
        text_encoder = CLIPTextModel(CLIPTextConfig(**TEXT_CONFIG))
    for m in (unet, vae, text_encoder):
        m.to(device).eval()
    return Components(unet, vae, text_encoder, tokenizer, dict(SCHEDULER_CONFIG), tiny_identity())


def load_pretrained(path: str, name: str, device: str = "cpu", dtype=None) -> Components:
    """Load real diffusers weights from a local directory (never from a hub)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    if not os.path.isdir(path):
        raise FileNotFoundError(f"weights path {path!r} is not a directory")
    kw = dict(local_files_only=True, **({"torch_dtype": dtype} if dtype is not None else {}))
    unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet", **kw).to(device).eval()
    vae = AutoencoderKL.from_pretrained(path, subfolder="vae", **kw).to(device).eval()
    text_encoder = CLIPTextModel.from_pretrained(path, subfolder="text_encoder", **kw).to(device).eval()
    tokenizer = CLIPTokenizer.from_pretrained(path, subfolder="tokenizer", local_files_only=True)
    sched = json.loads((Path(path) / "scheduler" / "scheduler_config.json").read_text())
    return Components(unet, vae, text_encoder, tokenizer, sched, name)


def _bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
