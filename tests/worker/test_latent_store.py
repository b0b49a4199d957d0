"""The directory latent store in one process.

Cases: put/get round trip (exact array, K, dtype); list_entries gives key, tenant (prefix
before the last '/', 'default' without one), prompt, model, N, shape, checkpoint steps;
get at K returns the largest stored K' <= K; missing key and K below every checkpoint are
`missing`; other model / N / shape are `incompatible`; a flipped payload byte is `corrupt`
and the latent is dropped (next get: `missing`); a truncated file is `corrupt`; bad keys
are refused on put and get; LCBFU eviction order (table: frequency × K/N, ties by least
recent access) and evicted latents answer `evicted` and vanish from list_entries; the
budget is never exceeded by used bytes nor by the files on disk; an entry larger than the
budget is refused as `full` and the store is unchanged; re-storing a key replaces its
latents and keeps earned frequency; a reopened store sees every entry (persistence) and
sweeps crash leftovers (tmp files, orphan files, rows without files).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from argus.worker.latent_store import CacheMiss, DirectoryLatentStore, StoreWriteError, lcbfu_score, tenant_of

SHAPE = (4, 4, 4)


class Clock:
    """A manual clock: every reading advances one second (strict order of accesses)."""

    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


def arr(v: float) -> np.ndarray:
    """A latent whose every element encodes `v` and its position (no two latents alike)."""
    return (np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE) / 1000.0 + v).astype(np.float32)


def put(store, key, ks=(2, 5), n=10, model="m", prompt=None, v=1.0):
    store.put(key, prompt=prompt or f"prompt of {key}", model=model, n=n, latents={k: arr(v + k) for k in ks})


def get(store, key, k, n=10, model="m", shape=SHAPE):
    return store.get(key, k, model=model, n=n, shape=shape)


def reason(fn) -> str:
    with pytest.raises(CacheMiss) as e:
        fn()
    return e.value.reason


def files_on_disk(root: Path) -> int:
    return sum(p.stat().st_size for p in (root / "data").glob("*/*"))


@pytest.fixture
def store(tmp_path):
    return DirectoryLatentStore(tmp_path / "s", 1 << 20, clock=Clock())


def test_round_trip_and_listing(store):
    put(store, "alice/abc", ks=(2, 5), prompt="a red fox", v=3.0)
    put(store, "nokey", ks=(5,))
    got = get(store, "alice/abc", 5)
    assert got.k == 5 and got.array.dtype == np.float32 and np.array_equal(got.array, arr(8.0))
    entries = {e.key: e for e in store.list_entries()}
    e = entries["alice/abc"]
    assert (e.tenant, e.prompt, e.model, e.n, e.shape, e.steps) == ("alice", "a red fox", "m", 10, SHAPE, (2, 5))
    assert entries["nokey"].tenant == "default" and entries["nokey"].steps == (5,)
    assert store.stats().latents == 3 and store.stats().entries == 2


@pytest.mark.parametrize("key,tenant", [("a/b", "a"), ("team/x/abc", "team/x"), ("abc", "default"),
                                        ("alice@example.com/0f", "alice@example.com")])
def test_tenant_of(key, tenant):
    assert tenant_of(key) == tenant


@pytest.mark.parametrize("want,stored,expect", [(5, (2, 5), 5), (4, (2, 5), 2), (9, (2, 5), 5), (2, (2,), 2)])
def test_largest_k_not_above_request(store, want, stored, expect):
    put(store, "t/p", ks=stored)
    assert get(store, "t/p", want).k == expect


def test_missing_and_incompatible(store):
    put(store, "t/p", ks=(5,))
    assert reason(lambda: get(store, "t/other", 5)) == "missing"
    assert reason(lambda: get(store, "t/p", 4)) == "missing"  # no checkpoint at or below K=4
    assert reason(lambda: get(store, "t/p", 5, model="other-model")) == "incompatible"
    assert reason(lambda: get(store, "t/p", 5, n=20)) == "incompatible"
    assert reason(lambda: get(store, "t/p", 5, shape=(4, 8, 8))) == "incompatible"
    assert get(store, "t/p", 5).k == 5  # an incompatible request does not harm the entry


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage"])
def test_corrupt_latent_is_detected_and_dropped(store, damage):
    put(store, "t/p", ks=(5,))
    (f,) = (store.root / "data").glob("*/*.lat")
    blob = bytearray(f.read_bytes())
    if damage == "flip":
        blob[-3] ^= 0x40
    elif damage == "truncate":
        blob = blob[: len(blob) - 8]
    else:
        blob = bytearray(b"not a latent at all")
    f.write_bytes(bytes(blob))
    assert reason(lambda: get(store, "t/p", 5)) == "corrupt"
    assert reason(lambda: get(store, "t/p", 5)) == "missing"
    assert store.list_entries() == [] and not f.exists()


@pytest.mark.parametrize("key", ["", "/abc", "abc/", "a\nb", "x" * 600])
def test_bad_keys_refused(store, key):
    with pytest.raises(StoreWriteError) as e:
        put(store, key)
    assert e.value.reason == "bad_key"
    assert reason(lambda: get(store, key, 5)) == "bad_key"


def latent_bytes(tmp_path) -> int:
    """Bytes one SHAPE latent takes on disk (header + payload), measured."""
    probe = DirectoryLatentStore(tmp_path / "probe", 1 << 20)
    put(probe, "t/z", ks=(5,))  # same key length as the tests' keys: the header holds the key
    return probe.stats().used_bytes


# (accesses before the eviction: key -> number of gets at its K, expected evicted latents in order)
LCBFU_CASES = [
    # equal frequency: lower K saves less compute, so it goes first: score 1*2/10 < 1*5/10
    ({}, [("t/a", 2), ("t/b", 2)]),
    # a K=2 latent read 4 times (score 5*2/10=1.0) outranks an unread K=5 latent (score 0.5)
    ({("t/a", 2): 4}, [("t/b", 2), ("t/a", 5)]),
    # same score (both K=2 read once): the least recently used goes first
    ({("t/b", 2): 1, ("t/a", 2): 1}, [("t/b", 2), ("t/a", 2)]),
]


@pytest.mark.parametrize("reads,evicted", LCBFU_CASES)
def test_lcbfu_eviction_order(tmp_path, reads, evicted):
    one = latent_bytes(tmp_path)
    store = DirectoryLatentStore(tmp_path / "s", 4 * one, clock=Clock())
    put(store, "t/a", ks=(2, 5))
    put(store, "t/b", ks=(2, 5))
    for (key, k), times in reads.items():
        for _ in range(times):
            assert get(store, key, k).k == k
    before = store.scores()
    put(store, "t/c", ks=(5,))  # needs one slot: evicts the lowest score
    assert set(before) - set(store.scores()) == {evicted[0]}
    put(store, "t/d", ks=(5,))
    assert set(before) - set(store.scores()) == set(evicted)
    assert store.stats().used_bytes <= store.budget and files_on_disk(store.root) <= store.budget


def test_fully_evicted_entry_leaves_the_listing_and_says_evicted(tmp_path):
    one = latent_bytes(tmp_path)
    store = DirectoryLatentStore(tmp_path / "s", 2 * one, clock=Clock())
    put(store, "t/a", ks=(5,))
    put(store, "t/b", ks=(5,))
    put(store, "t/c", ks=(5,))
    assert [e.key for e in store.list_entries()] == ["t/b", "t/c"]
    assert reason(lambda: get(store, "t/a", 5)) == "evicted"


def test_score_formula():
    assert lcbfu_score(3, 10, 50) == pytest.approx(0.6)


def test_entry_over_budget_is_refused_and_store_unchanged(tmp_path):
    one = latent_bytes(tmp_path)
    store = DirectoryLatentStore(tmp_path / "s", 2 * one, clock=Clock())
    put(store, "t/a", ks=(5,))
    with pytest.raises(StoreWriteError) as e:
        put(store, "t/b", ks=(1, 2, 3))
    assert e.value.reason == "full"
    assert [x.key for x in store.list_entries()] == ["t/a"] and get(store, "t/a", 5).k == 5


def test_restore_replaces_latents_and_keeps_frequency(store):
    put(store, "t/p", ks=(5,), v=1.0)
    for _ in range(3):
        get(store, "t/p", 5)
    put(store, "t/p", ks=(5,), v=7.0, prompt="new text")
    assert np.array_equal(get(store, "t/p", 5).array, arr(12.0))
    assert store.scores()[("t/p", 5)] == pytest.approx(lcbfu_score(5, 5, 10))  # 1 + 3 reads + this read
    assert [e.prompt for e in store.list_entries()] == ["new text"]
    assert len(list((store.root / "data").glob("*/*.lat"))) == 1  # the replaced file is gone


def test_persistence_and_crash_leftovers_swept(tmp_path):
    root = tmp_path / "s"
    store = DirectoryLatentStore(root, 1 << 20, clock=Clock())
    put(store, "t/a", ks=(2, 5))
    put(store, "t/b", ks=(5,))
    sub = next((root / "data").iterdir())
    (sub / ".tmp-half-written.lat").write_bytes(b"ARGUSLAT1\npartial")  # a writer died mid-write
    (sub / "orphan-k5-000.lat").write_bytes(b"x" * 100)  # a writer died before indexing
    (b_file,) = [p for p in (root / "data").glob("*/*.lat") if p.name.startswith(hashlib.sha256(b"t/b").hexdigest())]
    b_file.unlink()  # a file lost behind the index's back
    del store
    again = DirectoryLatentStore(root, 1 << 20, clock=Clock())
    assert [(e.key, e.steps) for e in again.list_entries()] == [("t/a", (2, 5))]
    assert get(again, "t/a", 5).k == 5
    names = {p.name for p in (root / "data").glob("*/*")}
    assert not any(n.startswith(".tmp-") or n.startswith("orphan") for n in names) and len(names) == 2
    assert again.stats().used_bytes == files_on_disk(root)


def test_budget_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="budget_bytes=0"):
        DirectoryLatentStore(tmp_path, 0)


def test_unwritable_path_raises_oserror(tmp_path):
    f = tmp_path / "file"
    f.write_text("not a directory")
    with pytest.raises(OSError):
        DirectoryLatentStore(f, 1 << 20)
    assert os.path.isfile(f)
