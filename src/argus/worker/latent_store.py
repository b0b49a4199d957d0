"""The shared latent store of approximate caching: checkpoint latents of full runs, by prompt key.

One store is shared by every worker replica of a service (in Kubernetes a ReadWriteMany
volume mounted at /var/lib/argus/latents), survives restarts and is bounded by a byte
budget. The unit of caching and eviction is one checkpoint latent (a prompt key at step
K); eviction is LCBFU: the latent with the lowest `access frequency × K/N` goes first
(ties: least recently used), because a latent at a larger K saves more compute per hit.

Keys are chosen by the router: ``<tenant>/<digest>`` (e.g. ``alice/3f2a…``). The tenant
is everything before the last ``/``; a key without ``/`` belongs to tenant ``default``.
Each entry records its tenant, prompt text, model identity, N and latent shape/dtype, so
the router's similarity index can rebuild itself from `list_entries()` after a restart.

Directory layout (the default implementation, `DirectoryLatentStore`)::

    <root>/index.sqlite   entries, latents (bytes, checksum, frequency), tombstones
    <root>/index.lock     fcntl lock serialising every index change across processes
    <root>/data/<ab>/<sha256(key)>-k<K>-<token>.lat   one latent: header + payload

Every change of the index and of the data files happens under the exclusive lock, so the
bytes on disk never exceed the budget and a tmp file seen while holding the lock is a
crash leftover. A latent file is written to a tmp name, fsynced and renamed, and its name
is unique per write, so a reader sees either a whole file or none (never a torn or
replaced one); its payload's SHA-256 is checked on every read.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol

import numpy as np

from argus.worker.latent_file import CorruptLatent, atomic_write, decode_latent, encode_latent, unlink_quiet

MAX_KEY_LEN = 512
TOMBSTONES_KEPT = 4096  # recent evictions remembered, so a miss can say "evicted"


class StoreError(ValueError):
    """A latent-store operation failed; `reason` is a short machine-readable cause."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason


class CacheMiss(StoreError):
    """No usable latent: reason is missing, evicted, corrupt, incompatible, bad_key or store_error."""


class StoreWriteError(StoreError):
    """A put failed: reason is full, read_only, bad_key or io; the store is unchanged."""


@dataclass(frozen=True)
class Latent:
    """A stored latent at step `k` of an `n`-step schedule."""

    key: str
    k: int
    n: int
    array: np.ndarray


@dataclass(frozen=True)
class EntryInfo:
    """One prompt's entry as listed for the router's similarity index."""

    key: str
    tenant: str
    prompt: str
    model: str
    n: int
    shape: tuple[int, ...]
    steps: tuple[int, ...]  # checkpoint steps K still stored
    bytes: int


@dataclass(frozen=True)
class StoreStats:
    """Occupancy of the store."""

    used_bytes: int
    budget_bytes: int
    entries: int
    latents: int


class LatentStore(Protocol):
    """What the worker and the router need from a latent store."""

    def put(self, key: str, *, prompt: str, model: str, n: int, latents: dict[int, np.ndarray]) -> None:
        """Store a full run's checkpoint latents {K: array} under `key` (replacing older ones)."""

    def get(self, key: str, k: int, *, model: str, n: int, shape: tuple[int, ...]) -> Latent:
        """The stored latent of `key` at the largest K' <= k; raise CacheMiss naming why not."""

    def list_entries(self) -> list[EntryInfo]:
        """Every entry with at least one stored latent."""

    def stats(self) -> StoreStats:
        """Bytes used against the budget and entry counts."""


def tenant_of(key: str) -> str:
    """Tenant part of a store key: everything before the last '/', else 'default'."""
    return key.rsplit("/", 1)[0] if "/" in key else "default"


def check_key(key: object) -> str:
    """Return `key` if it is a valid store key, else raise StoreError(reason='bad_key')."""
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LEN:
        raise StoreError("bad_key", f"key must be a non-empty string of at most {MAX_KEY_LEN} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in key) or key.startswith("/") or key.endswith("/"):
        raise StoreError("bad_key", f"key {key[:60]!r} has control characters or an empty tenant/digest")
    return key


def lcbfu_score(freq: float, k: int, n: int) -> float:
    """LCBFU value of a latent: access frequency × K/N (lowest is evicted first)."""
    return freq * k / n


_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries(key TEXT PRIMARY KEY, tenant TEXT NOT NULL, prompt TEXT NOT NULL,
  model TEXT NOT NULL, n INTEGER NOT NULL, shape TEXT NOT NULL, dtype TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS latents(key TEXT NOT NULL, k INTEGER NOT NULL, n INTEGER NOT NULL, file TEXT NOT NULL,
  bytes INTEGER NOT NULL, checksum TEXT NOT NULL, freq REAL NOT NULL, last_access REAL NOT NULL,
  PRIMARY KEY(key, k));
CREATE TABLE IF NOT EXISTS tombstones(key TEXT NOT NULL, k INTEGER NOT NULL, at REAL NOT NULL, PRIMARY KEY(key, k));
"""


class DirectoryLatentStore:
    """A LatentStore in one directory, safe under concurrent processes on one host or a shared volume."""

    def __init__(self, root: str | Path, budget_bytes: int, clock: Callable[[], float] = time.time):
        """Open (creating if needed) the store; a read-only directory opens for reads only."""
        if budget_bytes <= 0:
            raise ValueError(f"budget_bytes={budget_bytes}: must be positive")
        self.root = Path(root)
        self.budget = int(budget_bytes)
        self.clock = clock
        self.read_only = False
        self._thread_lock = threading.Lock()  # fcntl locks are per process; threads need their own
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        try:
            (self.root / "data").mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(self.root / "index.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            if e.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                raise
            self.read_only = True
            try:
                self._lock_fd = os.open(self.root / "index.lock", os.O_RDONLY)
            except FileNotFoundError:
                self._lock_fd = None
        if not self.read_only:
            with self._locked():
                self._db().executescript(_SCHEMA)
                self._sweep()

    # ---- the LatentStore interface ------------------------------------------------------------
    def put(self, key: str, *, prompt: str, model: str, n: int, latents: dict[int, np.ndarray]) -> None:
        """Store checkpoint latents {K: array} of one full run, evicting by LCBFU to stay in budget."""
        try:
            check_key(key)
        except StoreError as e:
            raise StoreWriteError("bad_key", str(e)) from None
        if self.read_only:
            raise StoreWriteError("read_only", f"{self.root} is read-only")
        if not latents:
            return
        arrays = {int(k): np.ascontiguousarray(a, dtype=np.float32) for k, a in latents.items()}
        shapes = {a.shape for a in arrays.values()}
        if len(shapes) != 1 or any(not 0 < k < n for k in arrays):
            raise StoreWriteError("io", f"latents must share one shape and have 0 < K < N={n}")
        blobs = {k: encode_latent(key, k, n, model, a) for k, a in arrays.items()}
        need = sum(len(b) for b, _ in blobs.values())
        if need > self.budget:
            raise StoreWriteError("full", f"entry needs {need} bytes, budget is {self.budget}")
        kh = hashlib.sha256(key.encode()).hexdigest()
        written: list[Path] = []
        try:
            with self._locked():
                db = self._db()
                now = self.clock()
                # 1) Make room first (own transaction, files removed at once), so the bytes on
                # disk stay within the budget even while the new files are being written.
                db.execute("BEGIN IMMEDIATE")
                try:
                    old = db.execute("SELECT k, file, freq FROM latents WHERE key=?", (key,)).fetchall()
                    db.execute("DELETE FROM latents WHERE key=?", (key,))
                    db.execute("DELETE FROM entries WHERE key=?", (key,))
                    used = db.execute("SELECT COALESCE(SUM(bytes), 0) FROM latents").fetchone()[0]
                    victims = self._choose_victims(db, used + need - self.budget)
                    for vkey, vk, _ in victims:
                        self._drop(db, vkey, vk, now)
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                for rel in [f for _, f, _ in old] + [f for _, _, f in victims]:
                    unlink_quiet(self.root / rel)
                freq = {k: f for k, _, f in old}  # a re-stored prompt keeps the frequency it earned
                # 2) Write the files (tmp + fsync + rename), then index them in one transaction.
                rows = []
                for k, (blob, checksum) in blobs.items():
                    rel = f"data/{kh[:2]}/{kh}-k{k}-{uuid.uuid4().hex[:12]}.lat"
                    atomic_write(self.root / rel, blob)
                    written.append(self.root / rel)
                    rows.append((key, k, n, rel, len(blob), checksum, max(1.0, freq.get(k, 1.0)), now))
                db.execute("BEGIN IMMEDIATE")
                try:
                    db.execute("INSERT INTO entries VALUES (?,?,?,?,?,?,?,?)",
                               (key, tenant_of(key), prompt, model, n, json.dumps(list(shapes.pop())), "float32", now))
                    db.executemany("INSERT INTO latents VALUES (?,?,?,?,?,?,?,?)", rows)
                    db.executemany("DELETE FROM tombstones WHERE key=? AND k=?", [(key, k) for k in blobs])
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
        except (OSError, sqlite3.Error) as e:
            for p in written:
                unlink_quiet(p)
            raise StoreWriteError(_write_reason(e), f"{type(e).__name__}: {e}") from None

    def get(self, key: str, k: int, *, model: str, n: int, shape: tuple[int, ...]) -> Latent:
        """The latent of `key` at the largest stored K' <= k; counts an access on success."""
        try:
            check_key(key)
        except StoreError as e:
            raise CacheMiss("bad_key", str(e)) from None
        if self.read_only and not (self.root / "index.sqlite").exists():
            raise CacheMiss("missing", f"no latent for {key!r}: the read-only store is empty")
        kk, rel = 0, ""
        try:
            with self._locked(shared=self.read_only):
                db = self._db()
                entry = db.execute("SELECT model, n, shape FROM entries WHERE key=?", (key,)).fetchone()
                row = db.execute("SELECT k, file, checksum FROM latents WHERE key=? AND k<=? AND k>0 "
                                 "ORDER BY k DESC LIMIT 1", (key, k)).fetchone()
                if entry is None or row is None:
                    gone = db.execute("SELECT 1 FROM tombstones WHERE key=? AND k<=?", (key, k)).fetchone()
                    raise CacheMiss("evicted" if gone else "missing", f"no latent for {key!r} at K<={k}")
                if entry[0] != model or entry[1] != n or tuple(json.loads(entry[2])) != tuple(shape):
                    raise CacheMiss("incompatible", f"{key!r} holds model={entry[0]} N={entry[1]} "
                                    f"shape={json.loads(entry[2])}; wanted {model} N={n} shape={list(shape)}")
                kk, rel, checksum = row
            array = decode_latent(self.root / rel, key, kk, n, model, checksum)
        except StoreError:
            raise
        except FileNotFoundError:
            # Evicted or replaced by another process between the lookup and the read.
            raise CacheMiss("evicted", f"latent of {key!r} at K={kk} vanished") from None
        except CorruptLatent as e:
            self._forget(key, kk, rel)
            raise CacheMiss("corrupt", str(e)) from None
        except (OSError, sqlite3.Error) as e:
            raise CacheMiss("store_error", f"{type(e).__name__}: {e}") from None
        if not self.read_only:
            try:
                with self._locked():
                    self._db().execute("UPDATE latents SET freq=freq+1, last_access=? WHERE key=? AND k=? AND file=?",
                                       (self.clock(), key, kk, rel))
            except (OSError, sqlite3.Error):
                pass  # the latent is good; losing one frequency count must not fail the hit
        return Latent(key, kk, n, array)

    def list_entries(self) -> list[EntryInfo]:
        """Every entry with at least one stored latent, oldest first."""
        rows = self._query("SELECT e.key, e.tenant, e.prompt, e.model, e.n, e.shape, "
                           "group_concat(l.k), SUM(l.bytes) FROM entries e JOIN latents l ON l.key=e.key "
                           "GROUP BY e.key ORDER BY e.created, e.key")
        return [EntryInfo(key, tenant, prompt, model, n, tuple(json.loads(shape)),
                          tuple(sorted(int(x) for x in ks.split(","))), int(size))
                for key, tenant, prompt, model, n, shape, ks, size in rows]

    def stats(self) -> StoreStats:
        """Bytes used against the budget and entry counts."""
        rows = self._query("SELECT COALESCE(SUM(bytes),0), COUNT(*), COUNT(DISTINCT key) FROM latents")
        used, count, entries = rows[0] if rows else (0, 0, 0)
        return StoreStats(int(used), self.budget, int(entries), int(count))

    def scores(self) -> dict[tuple[str, int], float]:
        """LCBFU score of every stored latent (for tests and diagnostics)."""
        return {(key, k): lcbfu_score(f, k, n) for key, k, n, f in self._query("SELECT key, k, n, freq FROM latents")}

    # ---- internals ----------------------------------------------------------------------------
    def _query(self, sql: str) -> list[tuple]:
        if self.read_only and not (self.root / "index.sqlite").exists():
            return []  # a read-only directory nobody ever wrote to: an empty store
        with self._locked(shared=True):
            return self._db().execute(sql).fetchall()

    def _db(self) -> sqlite3.Connection:
        # One connection per process: a forked child must never reuse its parent's.
        if self._conn is None or self._pid != os.getpid():
            path = self.root / "index.sqlite"
            if self.read_only:
                self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=30)
            else:
                self._conn = sqlite3.connect(path, isolation_level=None, timeout=30)
            self._pid = os.getpid()
        return self._conn

    @contextlib.contextmanager
    def _locked(self, shared: bool = False) -> Iterator[None]:
        with self._thread_lock:  # fcntl locks are per process; threads of one process need this too
            if self._lock_fd is None:
                yield
                return
            fcntl.lockf(self._lock_fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.lockf(self._lock_fd, fcntl.LOCK_UN)

    def _choose_victims(self, db: sqlite3.Connection, excess: int) -> list[tuple[str, int, str]]:
        victims, freed = [], 0
        if excess <= 0:
            return victims
        for key, k, rel, size in db.execute(
                "SELECT key, k, file, bytes FROM latents ORDER BY freq * k * 1.0 / n ASC, last_access ASC, key, k"):
            if freed >= excess:
                break
            victims.append((key, k, rel))
            freed += size
        return victims

    def _drop(self, db: sqlite3.Connection, key: str, k: int, now: float) -> None:
        db.execute("DELETE FROM latents WHERE key=? AND k=?", (key, k))
        db.execute("INSERT OR REPLACE INTO tombstones VALUES (?,?,?)", (key, k, now))
        if db.execute("SELECT 1 FROM latents WHERE key=? LIMIT 1", (key,)).fetchone() is None:
            db.execute("DELETE FROM entries WHERE key=?", (key,))
        db.execute("DELETE FROM tombstones WHERE rowid IN (SELECT rowid FROM tombstones ORDER BY at DESC "
                   "LIMIT -1 OFFSET ?)", (TOMBSTONES_KEPT,))

    def _forget(self, key: str, k: int, rel: str) -> None:
        """Remove a corrupt latent so later requests do not keep reading it."""
        if self.read_only:
            return
        try:
            with self._locked():
                db = self._db()
                db.execute("BEGIN IMMEDIATE")
                if db.execute("SELECT 1 FROM latents WHERE key=? AND k=? AND file=?", (key, k, rel)).fetchone():
                    self._drop(db, key, k, self.clock())
                    db.execute("DELETE FROM tombstones WHERE key=? AND k=?", (key, k))
                db.execute("COMMIT")
                unlink_quiet(self.root / rel)
        except (OSError, sqlite3.Error):
            pass

    def _sweep(self) -> None:
        """Under the lock at open: drop crash leftovers (tmp files, orphan files, rows without files)."""
        db = self._db()
        known = {r[0] for r in db.execute("SELECT file FROM latents")}
        for p in (self.root / "data").glob("*/*"):
            rel = p.relative_to(self.root).as_posix()
            if p.name.startswith(".tmp-") or rel not in known:
                unlink_quiet(p)
        for key, k, rel in db.execute("SELECT key, k, file FROM latents").fetchall():
            if not (self.root / rel).exists():
                db.execute("DELETE FROM latents WHERE key=? AND k=?", (key, k))
        db.execute("DELETE FROM entries WHERE key NOT IN (SELECT key FROM latents)")


def _write_reason(e: Exception) -> str:
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return "full"
    if isinstance(e, OSError) and e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return "read_only"
    text = str(e).lower()
    if "readonly" in text or "read-only" in text:
        return "read_only"
    if "full" in text:
        return "full"
    return "io"
