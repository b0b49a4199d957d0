"""Real filesystem faults under the worker: a read-only store volume and a full disk.

A child process holds a user+mount namespace (`unshare`) with a real read-only bind mount
and a real 64 KiB tmpfs; the worker (in the test process) reaches both through
/proc/<child>/root, so its writes really fail with EROFS and ENOSPC. Root ignores file
modes, so chmod could not fake either.

Cases: read-only store: a resume from an entry written earlier still hits (reads work),
a full run with STORE_KEY is served, counts a write error and stores nothing; full disk:
the full run is served with the same image, counts a write error, the store stays
consistent; once space is freed the next full run is stored and a resume hits again even
while the disk is full (a lost frequency count must not fail a hit).
"""

from __future__ import annotations

import errno
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from argus.worker.latent_store import DirectoryLatentStore
from argus.worker.service import CountingMetrics, WorkerService, WorkRequest, open_store
from argus.worker.settings import WorkerSettings

N = 6
LEVELS = ("cache-k0", "cache-k2", "cache-k3")


def _can_unshare() -> bool:
    if not shutil.which("unshare"):
        return False
    r = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True)
    return r.returncode == 0


pytestmark = pytest.mark.skipif(not _can_unshare(), reason="needs user namespaces (unshare) for real mounts")

@pytest.fixture
def mounts(tmp_path):
    """(read-only dir, 64 KiB tmpfs dir): real mounts in a child mount namespace, reached via /proc/<pid>/root."""
    ro, full = tmp_path / "ro", tmp_path / "full"
    ro.mkdir()
    full.mkdir()
    store = DirectoryLatentStore(ro, 1 << 24)
    holder = subprocess.Popen(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
         f"mount --bind -o ro {ro} {ro} && mount -t tmpfs -o size=64k tmpfs {full} && echo ready && exec sleep 600"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        base = Path(f"/proc/{holder.pid}/root")
        yield store, base / ro.relative_to("/"), base / full.relative_to("/")
    finally:
        holder.kill()
        holder.wait()


def fill(path: Path) -> int:
    """Write until the filesystem is full; return the errno that stopped it."""
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"x" * 1024)
        except OSError as e:
            return e.errno
    return 0


def serve(pipeline, root: Path, level: str, reqs: list[WorkRequest]):
    """A worker of `level` over the store at `root`, as the Triton model builds it; its responses and counts."""
    settings = WorkerSettings(level=level, steps=N, levels=LEVELS, latent_store=str(root))
    metrics = CountingMetrics()
    svc = WorkerService(settings, pipeline=pipeline, store=open_store(settings, metrics), metrics=metrics)
    return svc, svc.handle(reqs), dict(metrics.counts)


def fox(**kw) -> WorkRequest:
    return WorkRequest("a red fox in the snow", 11, 32, 32, **kw)


def close(a, b) -> bool:
    return np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_read_only_store(pipeline, mounts, caplog):
    writable, ro, _ = mounts
    settings = WorkerSettings(level="cache-k0", steps=N, levels=LEVELS, latent_store=str(writable.root))
    (ref,) = WorkerService(settings, pipeline=pipeline, store=writable, metrics=CountingMetrics()).handle(
        [fox(store_key="t/fox")])
    svc, (hit,), counts = serve(pipeline, ro, "cache-k2", [fox(cache_key="t/fox")])
    assert svc.store.read_only and (hit.info.cache_hit, hit.info.k_used) == (True, 2)
    assert close(hit.image, ref.image) and counts == {("cache", "hit", ""): 1}
    svc, (full,), counts = serve(pipeline, ro, "cache-k0", [fox(store_key="t/new")])
    assert full.error is None and np.array_equal(full.image, ref.image)
    assert counts == {("store_error", "write"): 1}
    assert "latent store write failed (read_only)" in caplog.text
    assert [e.key for e in svc.store.list_entries()] == ["t/fox"]


def test_full_disk(pipeline, mounts, caplog):
    _, _, disk = mounts
    svc, _, _ = serve(pipeline, disk, "cache-k0", [])  # the store exists before the disk fills
    assert svc.store is not None and not svc.store.read_only
    assert fill(disk / "filler") == errno.ENOSPC
    svc, (res,), counts = serve(pipeline, disk, "cache-k0", [fox(store_key="t/fox")])
    assert res.error is None and res.info.steps_run == N
    assert counts == {("store_error", "write"): 1}
    assert "latent store write failed (full)" in caplog.text
    assert svc.store.list_entries() == [] and svc.store.stats().used_bytes == 0
    assert not [p for p in disk.glob("data/*/*")]  # no half-written latent left behind
    (disk / "filler").unlink()
    svc, (again,), counts = serve(pipeline, disk, "cache-k0", [fox(store_key="t/fox")])
    assert counts == {} and [e.key for e in svc.store.list_entries()] == ["t/fox"]
    assert np.array_equal(again.image, res.image)
    assert fill(disk / "filler") == errno.ENOSPC
    svc, (hit,), counts = serve(pipeline, disk, "cache-k3", [fox(cache_key="t/fox")])
    assert (hit.info.cache_hit, hit.info.k_used) == (True, 3) and close(hit.image, res.image)
    assert counts == {("cache", "hit", ""): 1}
