"""Similarity index: neighbour and K on constructed vectors, tenants, eviction, restart.

Cases:
- similarity → K through a threshold table (table-driven, boundaries strict as in the prototype)
- nearest neighbour is the most similar row; usable K is capped by the checkpoints actually stored
- tenant isolation: another tenant's entry is invisible unless cross-tenant reuse is enabled
- capacity bound evicts the oldest entry; `remove` (store eviction) makes an entry unfindable
- `exclude` skips the query's own key; wrong dimensions are errors
- restart: snapshot save/load reproduces searches; a snapshot of another encoder or a corrupt one is refused naming the file
- sync with the real DirectoryLatentStore: rebuild from its entries, follow its LCBFU evictions
  (whole entries and single checkpoints), ignore entries of another model
"""

from __future__ import annotations

import numpy as np
import pytest

from argus.prompt.index import (LatentEntry, SimilarityIndex, SimilarityIndexError, Thresholds,
                                PUBLISHED_CLIP_THRESHOLDS)

DIM = 8
T = Thresholds("test-enc", PUBLISHED_CLIP_THRESHOLDS, "published")


def vec_at(similarity: float, axis: int = 0, other: int = 1) -> np.ndarray:
    """A unit vector whose cosine with e_axis is exactly `similarity`."""
    v = np.zeros(DIM, dtype=np.float32)
    v[axis] = similarity
    v[other] = np.sqrt(max(0.0, 1 - similarity ** 2))
    return v


def e(i: int) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[i] = 1
    return v


@pytest.mark.parametrize("sim,k", [(0.99, 25), (0.951, 25), (0.95, 20), (0.91, 20), (0.86, 15), (0.80, 10),
                                   (0.70, 5), (0.65, 0), (0.2, 0), (-1.0, 0)])
def test_threshold_table(sim, k):
    assert T.k_for(sim) == k


@pytest.mark.parametrize("sim,stored,k", [
    (0.97, (5, 10, 15, 20, 25), 25),
    (0.97, (5, 10), 10),          # allowed 25, but only K<=10 stored
    (0.88, (5, 10, 15, 20, 25), 15),
    (0.88, (20, 25), 0),          # allowed 15, nothing stored at or below it
    (0.60, (5, 10, 15, 20, 25), 0),
])
def test_neighbour_and_usable_k(sim, stored, k):
    idx = SimilarityIndex(T, DIM)
    idx.add("a/near", "a", vec_at(sim), stored)
    idx.add("a/far", "a", e(3), stored)
    nb = idx.search(e(0), "a")
    assert nb.key == "a/near"
    assert nb.similarity == pytest.approx(sim, abs=1e-5)
    assert nb.k == k


def test_nearest_of_many():
    rng = np.random.default_rng(0)
    idx = SimilarityIndex(T, DIM)
    vecs = rng.normal(size=(200, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    for i, v in enumerate(vecs):
        idx.add(f"t/{i}", "t", v, (5,))
    q = rng.normal(size=DIM).astype(np.float32)
    q /= np.linalg.norm(q)
    assert idx.search(q, "t").key == f"t/{int(np.argmax(vecs @ q))}"


def test_tenant_isolation_and_cross_tenant():
    isolated = SimilarityIndex(T, DIM)
    shared = SimilarityIndex(T, DIM, cross_tenant=True)
    for idx in (isolated, shared):
        idx.add("alice/x", "alice", e(0), (5, 10))
        idx.add("bob/y", "bob", vec_at(0.7), (5, 10))
    assert isolated.search(e(0), "bob").key == "bob/y"
    assert isolated.search(e(0), "carol") is None
    nb = shared.search(e(0), "bob")
    assert (nb.key, nb.tenant, nb.k) == ("alice/x", "alice", 10)


def test_capacity_evicts_oldest_and_remove():
    idx = SimilarityIndex(T, DIM, capacity=2)
    assert idx.add("t/1", "t", e(0), (5,)) == []
    idx.add("t/2", "t", e(1), (5,))
    assert idx.add("t/3", "t", e(2), (5,)) == ["t/1"]
    assert idx.keys() == {"t/2", "t/3"}
    assert idx.search(e(0), "t").key != "t/1"
    assert idx.remove("t/2") and not idx.remove("t/2")
    assert idx.search(e(1), "t").key == "t/3"
    idx.remove("t/3")
    assert len(idx) == 0 and idx.search(e(1), "t") is None


def test_readd_replaces_and_exclude():
    idx = SimilarityIndex(T, DIM)
    idx.add("t/1", "t", e(0), (5,))
    idx.add("t/2", "t", vec_at(0.8), (5, 10))
    idx.add("t/1", "t", e(0), (5, 10, 15))
    assert len(idx) == 2
    assert idx.search(e(0), "t").k == 15  # similarity 1.0 allows 25; the re-added entry stores up to 15
    nb = idx.search(e(0), "t", exclude="t/1")
    assert (nb.key, nb.k) == ("t/2", 10)
    with pytest.raises(SimilarityIndexError, match="3 dimensions"):
        idx.search(np.ones(3), "t")
    with pytest.raises(SimilarityIndexError, match="expects 8"):
        idx.add("t/9", "t", np.ones(3), (5,))


def test_snapshot_restart(tmp_path):
    idx = SimilarityIndex(T, DIM)
    for i in range(DIM):
        idx.add(f"a/{i}", "a", vec_at(0.5 + 0.05 * i, axis=i, other=(i + 1) % DIM), (5, 10, 15))
    idx.add("b/0", "b", e(0), (5,))
    path = tmp_path / "index.npz"
    idx.save(path)
    back = SimilarityIndex.load(path, encoder="test-enc")
    assert back.keys() == idx.keys()
    assert back.thresholds == idx.thresholds
    for i in range(DIM):
        a, b = idx.search(e(i), "a"), back.search(e(i), "a")
        assert (a.key, a.k) == (b.key, b.k)
        assert a.similarity == b.similarity
    assert back.search(e(0), "b").key == "b/0"


def test_snapshot_errors_name_the_file(tmp_path):
    idx = SimilarityIndex(T, DIM)
    idx.add("a/1", "a", e(0), (5,))
    path = tmp_path / "index.npz"
    idx.save(path)
    with pytest.raises(SimilarityIndexError, match=f"{path}.*encoder 'test-enc', not 'other'"):
        SimilarityIndex.load(path, encoder="other")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(path.read_bytes()[:100])
    with pytest.raises(SimilarityIndexError, match=f"{bad}: not a readable index snapshot"):
        SimilarityIndex.load(bad, encoder="test-enc")
    with pytest.raises(SimilarityIndexError, match="not found"):
        SimilarityIndex.load(tmp_path / "none.npz", encoder="test-enc")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no tmp files left


class DictEmbedder:
    """Embedder stand-in: prompts are named axes ("p3" -> e(3)), so expected neighbours are exact."""

    name = "test-enc"
    dim = DIM

    def __init__(self):
        self.calls = 0

    def encode(self, prompts):
        self.calls += len(prompts)
        return np.stack([e(int(p[1:]) % DIM) for p in prompts]) if prompts else np.zeros((0, DIM), np.float32)


def _put(store, key, prompt, ks=(5, 10), model="m", n=50, size=64):
    store.put(key, prompt=prompt, model=model, n=n, latents={k: np.full(size, k, np.float32) for k in ks})


def test_sync_with_real_latent_store(tmp_path):
    from argus.worker.latent_store import DirectoryLatentStore

    root = tmp_path / "latents"
    store = DirectoryLatentStore(root, budget_bytes=10_000_000)
    _put(store, "alice/p1", "p1")
    _put(store, "alice/p2", "p2", ks=(5,))
    _put(store, "bob/p3", "p3")
    _put(store, "bob/p4", "p4", model="other")  # another model's latents are useless here
    emb = DictEmbedder()
    idx = SimilarityIndex(T, DIM)
    assert idx.sync(store, emb, model="m") == (3, 0)
    assert idx.keys() == {"alice/p1", "alice/p2", "bob/p3"}
    assert idx.search(e(1), "alice").k == 10
    assert idx.search(e(3), "alice").key != "bob/p3"  # tenant isolation holds after a rebuild
    # Restart: a snapshot plus a store that changed while the router was down.
    snap = tmp_path / "index.npz"
    idx.save(snap)
    _put(store, "alice/p5", "p5")
    calls = emb.calls
    back = SimilarityIndex.load(snap, encoder="test-enc")
    reopened = DirectoryLatentStore(root, budget_bytes=10_000_000)
    assert back.sync(reopened, emb, model="m") == (1, 0)
    assert emb.calls == calls + 1  # only the new prompt is embedded again
    assert back.search(e(5), "alice").key == "alice/p5"


def test_sync_follows_lcbfu_evictions(tmp_path):
    from argus.worker.latent_store import DirectoryLatentStore

    probe = DirectoryLatentStore(tmp_path / "probe", budget_bytes=10_000_000)
    _put(probe, "t/p0", "p0", ks=(5,))
    latent_bytes = probe.stats().used_bytes
    # Room for exactly 4 latents: the fifth put evicts by LCBFU (frequency x K/N, lowest first).
    store = DirectoryLatentStore(tmp_path / "s", budget_bytes=4 * latent_bytes + latent_bytes // 2)
    _put(store, "t/p1", "p1", ks=(5, 10))
    _put(store, "t/p2", "p2", ks=(5, 10))
    idx = SimilarityIndex(T, DIM)
    emb = DictEmbedder()
    idx.sync(store, emb)
    assert idx.search(e(1), "t").k == 10
    _put(store, "t/p3", "p3", ks=(10,))  # evicts the lowest-score latent: a K=5 one
    idx.sync(store, emb)
    stored = {en.key: en.steps for en in store.list_entries()}
    assert sum(len(v) for v in stored.values()) == 4
    for key, steps in stored.items():
        p = int(key.split("/p")[1])
        nb = idx.search(e(p), "t")
        assert nb.key == key and nb.k == max(steps)
    _put(store, "t/p4", "p4", ks=(5, 10, 15, 20))  # needs the whole budget: everything else goes
    assert idx.sync(store, emb) == (1, len(stored))
    assert idx.keys() == {en.key for en in store.list_entries()} == {"t/p4"}
    assert idx.search(e(1), "t").key == "t/p4"


def test_bad_thresholds_and_capacity():
    with pytest.raises(SimilarityIndexError, match="K >= 1"):
        Thresholds("x", ((0.5, 0),))
    with pytest.raises(SimilarityIndexError, match="capacity"):
        SimilarityIndex(T, DIM, capacity=0)
    assert Thresholds.published_clip("all-MiniLM-L6-v2").source.endswith("run argus profile + argus train")
    assert LatentEntry("k", "t", "p", (5,)).steps == (5,)


def test_churn_matches_brute_force():
    """Random adds/removes across block boundaries and tenants agree with a brute-force reference."""
    rng = np.random.default_rng(3)
    idx = SimilarityIndex(T, DIM, capacity=700)
    ref: dict[str, tuple[str, np.ndarray]] = {}
    for step in range(3000):
        if ref and rng.random() < 0.35:
            key = list(ref)[rng.integers(len(ref))]
            assert idx.remove(key)
            del ref[key]
        else:
            key, tenant = f"k{step}", f"t{rng.integers(3)}"
            v = rng.normal(size=DIM).astype(np.float32)
            v /= np.linalg.norm(v)
            for gone in idx.add(key, tenant, v, (5,)):
                del ref[gone]
            ref[key] = (tenant, v)
    assert idx.keys() == set(ref) and len(idx) <= 700
    for _ in range(50):
        q = rng.normal(size=DIM).astype(np.float32)
        q /= np.linalg.norm(q)
        for tenant in ("t0", "t1", "t2"):
            mine = {k: v for k, (t, v) in ref.items() if t == tenant}
            best = max(mine, key=lambda k: float(mine[k] @ q))
            assert idx.search(q, tenant).key == best


@pytest.mark.parametrize("cross", [False, True])
def test_search_many_equals_search(cross):
    rng = np.random.default_rng(11)
    idx = SimilarityIndex(T, DIM, cross_tenant=cross)
    for i in range(300):
        v = rng.normal(size=DIM).astype(np.float32)
        idx.add(f"k{i}", f"t{i % 3}", v, (5, 10, 15, 20, 25))
    q = rng.normal(size=(40, DIM)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    tenants = [f"t{i % 4}" for i in range(40)]  # t3 has no entries
    many = idx.search_many(q, tenants)
    for qi, t, got in zip(q, tenants, many):
        one = idx.search(qi, t)
        if one is None:
            assert got is None
        else:
            assert (got.key, got.tenant, got.k) == (one.key, one.tenant, one.k)
            assert got.similarity == pytest.approx(one.similarity, abs=1e-5)
    assert (many[3] is None) == (not cross)
    with pytest.raises(SimilarityIndexError, match="for 2 tenants"):
        idx.search_many(q[:3], ["t0", "t1"])


def test_sync_keeps_keys_recorded_after_its_listing(tmp_path):
    """The router lists the store, then applies the listing on the planner thread; a full run recorded in
    between is not in the listing and must survive (it was removed, and the repeated prompt missed)."""
    import time

    from argus.worker.latent_store import DirectoryLatentStore

    store = DirectoryLatentStore(tmp_path / "latents", budget_bytes=10_000_000)
    _put(store, "t/p1", "p1")
    emb = DictEmbedder()
    idx = SimilarityIndex(T, DIM)
    idx.sync(store, emb)
    _put(store, "t/p2", "p2")
    idx.add("t/p2", "t", e(2), (5, 10))  # recorded before the listing below
    listed_at = time.monotonic()
    listing = [en for en in store.list_entries() if en.key != "t/p2"]  # ... but evicted from the store since
    _put(store, "t/p3", "p3")
    idx.add("t/p3", "t", e(3), (5, 10))  # recorded after the listing started: not in it

    class Listed:
        def list_entries(self):
            return listing

    assert idx.sync(Listed(), emb, since=listed_at) == (0, 1)
    assert idx.keys() == {"t/p1", "t/p3"}
    assert idx.search(e(3), "t").key == "t/p3"
    # without `since` (a plain reconcile) the listing is the truth
    assert idx.sync(Listed(), emb) == (0, 1) and idx.keys() == {"t/p1"}
