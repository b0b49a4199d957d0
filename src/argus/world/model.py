"""The world model's architecture: a small latent diffusion model in the standard diffusers layout.

`UNet2DConditionModel`, `AutoencoderKL`, `CLIPTextModel` with a `CLIPTokenizer` and a DDIM
scheduler, saved as a `StableDiffusionPipeline` directory, so the worker loads it through the same
`model.weightsPath` path as real SDXL/SD weights and the stock
`StableDiffusionPipeline.from_pretrained(dir)` loads it too.

The tokenizer is a real CLIP BPE tokenizer whose vocabulary is the byte alphabet plus one token per
word of the world's grammar (merges built so each grammar word is one token); a free-form prompt
outside the grammar still tokenizes, byte by byte.
"""

from __future__ import annotations

import json
from pathlib import Path

from argus.world import grammar

IMAGE_SIZE = 64
MAX_TOKENS = 24  # longest grammar prompt is 16 tokens with BOS/EOS
# Sized for a CPU budget: full-resolution layers are narrow (flat shapes need little capacity there);
# the UNet's 16x16 level is convolution only, cross-attention at 8x8 and 4x4 binds words to places.
VAE_CONFIG = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, sample_size=IMAGE_SIZE,
    block_out_channels=(16, 32, 64), norm_num_groups=16, mid_block_add_attention=False,  # two downsamplings: 64x64 -> 16x16 latent
    down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
)
UNET_CONFIG = dict(
    sample_size=IMAGE_SIZE // 4, in_channels=4, out_channels=4, layers_per_block=1,
    block_out_channels=(32, 64, 128), cross_attention_dim=64, attention_head_dim=8,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
)
TEXT_CONFIG = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_hidden_layers=3,
                   max_position_embeddings=MAX_TOKENS, layer_norm_eps=1e-5)
SCHEDULER_CONFIG = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                        beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False,
                        steps_offset=1, prediction_type="epsilon")


def grammar_words() -> list[str]:
    """Every word of the grammar's prompts, in a fixed order."""
    words: dict[str, None] = {}
    for t in grammar.TEMPLATES:
        for w in t.replace("{}", " ").split():
            words[w] = None
    for w in ("a", "an", "and", "to", "the", "left", "right", "of", "above", "below", *grammar.NUMBERS.values(),
              *grammar.COLOURS, *grammar.SHAPES, *(s + "s" for s in grammar.SHAPES)):
        words[w] = None
    return list(words)


def _bpe(word: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Byte-pair merges of one word, lowest rank first (what CLIPTokenizer does)."""
    while len(word) > 1:
        pairs = [(ranks.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(zip(word, word[1:]))]
        rank, i = min(pairs)
        if rank == 1 << 30:
            break
        word = word[:i] + [word[i] + word[i + 1]] + word[i + 2:]
    return word


def write_tokenizer(out: Path) -> None:
    """Write vocab.json, merges.txt and the tokenizer config of the world's CLIP tokenizer."""
    from argus.worker.tiny import _bytes_to_unicode

    chars = list(_bytes_to_unicode().values())
    vocab = chars + [c + "</w>" for c in chars]
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    for w in grammar_words():
        toks = _bpe(list(w[:-1]) + [w[-1] + "</w>"], ranks)
        while len(toks) > 1:  # merge left to right until the word is one token
            pair = (toks[0], toks[1])
            ranks[pair] = len(merges)
            merges.append(pair)
            vocab.append(pair[0] + pair[1])
            toks = [pair[0] + pair[1]] + toks[2:]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    (out / "special_tokens_map.json").write_text(json.dumps({
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>"}))
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": MAX_TOKENS, "do_lower_case": True,
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>"}))


def build(tokenizer_dir: Path, seed: int = 0):
    """Fresh (untrained) VAE, UNet, text encoder and the tokenizer, seeded."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    write_tokenizer(tokenizer_dir)
    tok = CLIPTokenizer.from_pretrained(str(tokenizer_dir))
    torch.manual_seed(seed)
    vae = AutoencoderKL(**VAE_CONFIG)
    unet = UNet2DConditionModel(**UNET_CONFIG)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id,
                                        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                                        **TEXT_CONFIG))
    return vae, unet, text, tok


GUIDANCE_FILE = "argus_model.json"  # sidecar in the pipeline directory: settings the model was measured with


def recommended_guidance(path: str | Path, default: float = 7.5) -> float:
    """The guidance scale recorded beside a pipeline directory (`argus_model.json`), else `default`."""
    p = Path(path) / GUIDANCE_FILE
    if p.is_file():
        return float(json.loads(p.read_text()).get("guidance_scale", default))
    return default
