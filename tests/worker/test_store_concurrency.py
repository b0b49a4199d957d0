"""The latent store shared by several real processes (as worker replicas share one volume).

Cases: 3 writer and 3 reader processes hammer one small store (constant eviction and
replacement of the same keys): no reader ever gets a torn, mixed or foreign latent (every
array read is exactly what some writer wrote for that key and K) and none is ever reported
corrupt; the budget is never exceeded, neither by the index's accounting nor by the files
on disk (sampled under the store's shared lock while the writers run); afterwards the
index and the files agree. LCBFU across processes: frequencies counted by a reader process
decide what a third process's put evicts.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from argus.worker.latent_store import DirectoryLatentStore

COMMON = textwrap.dedent("""
    import json, random, sys, time, zlib
    import numpy as np
    from argus.worker.latent_store import CacheMiss, DirectoryLatentStore
    SHAPE = (4, 8, 8)
    def value(key, k):
        return float(zlib.crc32(f"{key}|{k}".encode()) % 100000)
    def latent(key, k):
        return (np.arange(256, dtype=np.float32).reshape(SHAPE) / 1024 + value(key, k)).astype(np.float32)
    root, budget, role, ident, count = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    store = DirectoryLatentStore(root, budget)
    KEYS = [f"w{w}/p{i}" for w in range(3) for i in range(8)]
""")

WRITER = COMMON + textwrap.dedent("""
    rng = random.Random(ident)
    for i in range(count):
        key = f"w{ident}/p{rng.randrange(8)}"
        store.put(key, prompt=key, model="m", n=10, latents={k: latent(key, k) for k in (2, 5)})
    print(json.dumps({"puts": count}))
""")

READER = COMMON + textwrap.dedent("""
    rng = random.Random(100 + ident)
    out = {"hits": 0, "bad": [], "reasons": {}}
    deadline = time.time() + count
    while time.time() < deadline:
        key, k = rng.choice(KEYS), rng.choice((2, 5))
        try:
            got = store.get(key, k, model="m", n=10, shape=SHAPE)
        except CacheMiss as e:
            out["reasons"][e.reason] = out["reasons"].get(e.reason, 0) + 1
            continue
        out["hits"] += 1
        if not np.array_equal(got.array, latent(key, got.k)):
            out["bad"].append([key, got.k])
    print(json.dumps(out))
""")

ACCESS = COMMON + textwrap.dedent("""
    for key_k in sys.argv[6:]:
        key, k = key_k.rsplit(":", 1)
        for _ in range(count):
            store.get(key, int(k), model="m", n=10, shape=SHAPE)
    print(json.dumps({"ok": True}))
""")

PUT_KEYS = COMMON + textwrap.dedent("""
    for key in sys.argv[6:]:
        store.put(key, prompt=key, model="m", n=10, latents={k: latent(key, k) for k in (2, 5)})
    print(json.dumps({"ok": True}))
""")


def spawn(code: str, root: Path, budget: int, role: str, ident: int, count: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, str(root), str(budget), role, str(ident), str(count), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(p: subprocess.Popen, timeout: float = 60) -> dict:
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err[-2000:]
    return json.loads(out.strip().splitlines()[-1])


def one_latent_bytes(tmp_path: Path) -> int:
    p = spawn(PUT_KEYS, tmp_path / "probe", 1 << 20, "probe", 0, 0, "w0/p0")
    finish(p)
    return DirectoryLatentStore(tmp_path / "probe", 1 << 20).stats().used_bytes // 2


def disk_bytes_locked(root: Path) -> tuple[int, int]:
    """Files on disk and the index's accounting, read together under the store's shared lock."""
    fd = os.open(root / "index.lock", os.O_RDONLY)
    try:
        fcntl.lockf(fd, fcntl.LOCK_SH)
        size = 0
        for f in (root / "data").glob("*/*"):
            try:
                size += f.stat().st_size
            except FileNotFoundError:
                pass
        import sqlite3

        with sqlite3.connect(f"file:{root / 'index.sqlite'}?mode=ro", uri=True) as db:
            used = db.execute("SELECT COALESCE(SUM(bytes),0) FROM latents").fetchone()[0]
        return size, used
    finally:
        fcntl.lockf(fd, fcntl.LOCK_UN)
        os.close(fd)


def test_writers_and_readers_no_torn_reads_budget_kept(tmp_path):
    one = one_latent_bytes(tmp_path)
    budget = 10 * one  # 5 of the 24 possible entries fit: constant eviction
    root = tmp_path / "shared"
    DirectoryLatentStore(root, budget)  # create it before the race
    writers = [spawn(WRITER, root, budget, "w", w, 60) for w in range(3)]
    readers = [spawn(READER, root, budget, "r", r, 4) for r in range(3)]
    peak_disk = peak_used = samples = 0
    while any(p.poll() is None for p in writers):
        disk, used = disk_bytes_locked(root)
        peak_disk, peak_used, samples = max(peak_disk, disk), max(peak_used, used), samples + 1
        time.sleep(0.01)
    wres = [finish(p) for p in writers]
    rres = [finish(p) for p in readers]
    assert sum(w["puts"] for w in wres) == 180
    assert samples > 5 and 0 < peak_used <= budget and peak_disk <= budget
    assert all(r["bad"] == [] for r in rres), rres
    assert not any("corrupt" in r["reasons"] or "store_error" in r["reasons"] for r in rres), rres
    assert sum(r["hits"] for r in rres) > 10, rres  # the readers really raced the writers
    store = DirectoryLatentStore(root, budget)
    files = {p.relative_to(root).as_posix() for p in (root / "data").glob("*/*")}
    assert store.stats().used_bytes == sum((root / f).stat().st_size for f in files) <= budget
    assert len(files) == store.stats().latents
    assert all(not f.split("/")[-1].startswith(".tmp-") for f in files)


def test_lcbfu_frequency_is_shared_between_processes(tmp_path):
    one = one_latent_bytes(tmp_path)
    root = tmp_path / "shared"
    budget = 4 * one
    finish(spawn(PUT_KEYS, root, budget, "put", 0, 0, "w0/p0", "w0/p1"))
    # Another process reads w0/p0 at K=2 four times: score 5*2/10 = 1.0 beats the unread K=5 latents (0.5).
    finish(spawn(ACCESS, root, budget, "read", 0, 4, "w0/p0:2"))
    finish(spawn(PUT_KEYS, root, budget, "put", 0, 0, "w0/p2"))  # needs two slots
    steps = {e.key: e.steps for e in DirectoryLatentStore(root, budget).list_entries()}
    # Evicted: w0/p1@2 (0.2) then the older of the 0.5 ties (w0/p0@5); the well-read w0/p0@2 stays.
    assert steps == {"w0/p0": (2,), "w0/p1": (5,), "w0/p2": (2, 5)}
