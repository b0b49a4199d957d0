"""Similarity index over the prompts whose latents are cached: nearest neighbour → largest usable K.

Brute force over unit-norm float32 rows (a dot product is the cosine): 100k × 384 is 147 MiB and
one search is a single matrix-vector product. Rows live in per-tenant namespaces; a search sees
only the caller's tenant unless cross-tenant reuse is enabled (a shared cache leaks prompts).

The latent store is the source of truth: the index is bounded, mirrors its evictions through
`remove` or `sync`, and after a restart is reloaded from a snapshot (`save`/`load`) and reconciled
with the store's entry list, or rebuilt from that list alone. Every router replica does this
against the same store (a ReadWriteMany volume), which is how replicas share one cache.
"""

from __future__ import annotations

import bisect
import json
import os
import tempfile
import time
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Protocol

import numpy as np

from argus.prompt.embedder import Embedder, normalize

INDEX_FORMAT = "argus-similarity-index"
INDEX_VERSION = 1

# The NIRVANA prototype's CLIP thresholds (Agarwal et al., NSDI 2024, as the Argus paper uses them):
# similarity above s allows skipping K steps.
PUBLISHED_CLIP_THRESHOLDS = ((0.95, 25), (0.90, 20), (0.85, 15), (0.75, 10), (0.65, 5))


class SimilarityIndexError(ValueError):
    """The index or its snapshot is invalid; the message names the file (when known) and the problem."""


@dataclass(frozen=True)
class LatentEntry:
    """One latent-store entry as the index needs it: checkpoints stored at `steps` for `prompt`."""

    key: str
    tenant: str
    prompt: str
    steps: tuple[int, ...]


class LatentEntrySource(Protocol):
    """Anything that lists the latent store's entries; argus.worker.latent_store.DirectoryLatentStore fits as is.

    Its EntryInfo has the LatentEntry fields (plus model, n, shape, bytes), so no adapter is needed.
    """

    def list_entries(self) -> Iterable[LatentEntry]:
        """Every entry currently stored."""


@dataclass(frozen=True)
class Thresholds:
    """Calibrated similarity → K table of one encoder: the largest K whose threshold the similarity exceeds."""

    encoder: str
    table: tuple[tuple[float, int], ...]  # (similarity threshold, K), any order
    source: str = ""  # how the table was obtained ("calibrated on <profile>", "published CLIP (uncalibrated)")

    def __post_init__(self):
        for s, k in self.table:
            if not (-1.0 <= float(s) <= 1.0) or int(k) < 1:
                raise SimilarityIndexError(f"thresholds: ({s}, {k}) must have similarity in [-1, 1] and K >= 1")

    def k_for(self, similarity: float) -> int:
        """Largest K allowed at this similarity (0: a miss)."""
        return max((k for s, k in self.table if similarity > s), default=0)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"encoder": self.encoder, "table": [[float(s), int(k)] for s, k in self.table], "source": self.source}

    @classmethod
    def from_dict(cls, raw, where: str = "thresholds") -> "Thresholds":
        """Validate the JSON form."""
        try:
            table = tuple((float(s), int(k)) for s, k in raw["table"])
            return cls(encoder=str(raw["encoder"]), table=table, source=str(raw.get("source", "")))
        except (KeyError, TypeError, ValueError) as e:
            raise SimilarityIndexError(f"{where}: malformed threshold table ({e})") from None

    @classmethod
    def published_clip(cls, encoder: str) -> "Thresholds":
        """The prototype's CLIP table, labelled as uncalibrated for `encoder`."""
        src = "published CLIP thresholds (NIRVANA prototype)"
        if not encoder.startswith("clip"):
            src += "; NOT calibrated for this encoder: run argus profile + argus train"
        return cls(encoder=encoder, table=PUBLISHED_CLIP_THRESHOLDS, source=src)


@dataclass(frozen=True)
class Neighbour:
    """The most similar cached prompt and the K it allows."""

    key: str
    tenant: str
    similarity: float
    k: int  # largest usable K: allowed by the thresholds AND stored as a checkpoint of this entry


class _Namespace:
    """One tenant's rows in blocks that double up to BLOCK_MAX rows: growing never copies, so the peak
    memory is the steady state, and a small tenant holds a small block."""

    BLOCK_MIN, BLOCK_MAX = 64, 4096

    def __init__(self, dim: int):
        self.dim = dim
        self.blocks: list[np.ndarray] = []
        self.starts: list[int] = []
        self.n = 0
        self.keys: list[str] = []
        self.steps: list[tuple[int, ...]] = []

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for b in self.blocks)

    def _loc(self, row: int) -> tuple[np.ndarray, int]:
        b = bisect.bisect_right(self.starts, row) - 1
        return self.blocks[b], row - self.starts[b]

    def append(self, vec: np.ndarray, key: str, steps: tuple[int, ...]) -> int:
        cap = (self.starts[-1] + len(self.blocks[-1])) if self.blocks else 0
        if self.n == cap:
            size = min(self.BLOCK_MAX, max(self.BLOCK_MIN, cap))
            self.blocks.append(np.zeros((size, self.dim), dtype=np.float32))
            self.starts.append(cap)
        blk, off = self._loc(self.n)
        blk[off] = vec
        self.keys.append(key)
        self.steps.append(steps)
        self.n += 1
        return self.n - 1

    def row(self, row: int) -> np.ndarray:
        blk, off = self._loc(row)
        return blk[off]

    def move_last_to(self, row: int) -> None:
        last = self.n - 1
        if row != last:
            dst, i = self._loc(row)
            dst[i] = self.row(last)
            self.keys[row] = self.keys[last]
            self.steps[row] = self.steps[last]
        self.keys.pop()
        self.steps.pop()
        self.n = last
        # Drop an emptied trailing block so a shrinking tenant gives memory back.
        if self.blocks and self.starts[-1] >= self.n and self.starts[-1] > 0:
            self.blocks.pop()
            self.starts.pop()

    def scores(self, q: np.ndarray) -> np.ndarray:
        """Cosine of every row with q [dim] → [n], or with each of Q.T [dim, g] → [n, g]."""
        parts = []
        for start, blk in zip(self.starts, self.blocks):
            m = min(len(blk), self.n - start)
            if m <= 0:
                break
            parts.append(blk[:m] @ q)
        return np.concatenate(parts) if parts else np.zeros((0,) + q.shape[1:], dtype=np.float32)

    def matrix(self) -> np.ndarray:
        return np.concatenate([blk for blk in self.blocks])[: self.n] if self.blocks else \
            np.zeros((0, self.dim), dtype=np.float32)


class SimilarityIndex:
    """Bounded, per-tenant nearest-neighbour index of cached prompts."""

    def __init__(self, thresholds: Thresholds, dim: int, capacity: int = 100_000, cross_tenant: bool = False):
        """An empty index for embeddings of `thresholds.encoder` with `dim` dimensions, at most `capacity` rows."""
        if capacity < 1:
            raise SimilarityIndexError(f"index capacity must be >= 1, got {capacity}")
        self.thresholds = thresholds
        self.encoder = thresholds.encoder
        self.dim = dim
        self.capacity = capacity
        self.cross_tenant = cross_tenant
        self._ns: dict[str, _Namespace] = {}
        self._where: dict[str, tuple[str, int]] = {}  # key -> (tenant, row)
        self._age: OrderedDict[str, None] = OrderedDict()  # insertion order: the oldest is evicted when full
        self._added_at: dict[str, float] = {}  # time.monotonic() of each key's last add (see sync's `since`)

    def __len__(self) -> int:
        """Number of entries."""
        return len(self._where)

    def __contains__(self, key: str) -> bool:
        """True when `key` is indexed."""
        return key in self._where

    def keys(self) -> set[str]:
        """All indexed keys."""
        return set(self._where)

    @property
    def nbytes(self) -> int:
        """Bytes held by the embedding rows (the bulk of the index's memory)."""
        return sum(ns.nbytes for ns in self._ns.values())

    def add(self, key: str, tenant: str, embedding: np.ndarray, steps: Iterable[int]) -> list[str]:
        """Index (or re-index) one entry; returns the keys evicted to stay within capacity (oldest first)."""
        vec = normalize(np.asarray(embedding, dtype=np.float32).reshape(1, -1))[0]
        if vec.shape[0] != self.dim:
            raise SimilarityIndexError(f"embedding of {key!r} has {vec.shape[0]} dimensions, index expects {self.dim}")
        self.remove(key)
        evicted = []
        while len(self._where) >= self.capacity:
            oldest = next(iter(self._age))
            self.remove(oldest)
            evicted.append(oldest)
        ns = self._ns.get(tenant)
        if ns is None:
            ns = self._ns[tenant] = _Namespace(self.dim)
        self._where[key] = (tenant, ns.append(vec, key, tuple(sorted(int(s) for s in steps))))
        self._age[key] = None
        self._added_at[key] = time.monotonic()
        return evicted

    def remove(self, key: str) -> bool:
        """Drop one entry (the store evicted it); False when it was not indexed."""
        loc = self._where.pop(key, None)
        if loc is None:
            return False
        self._age.pop(key, None)
        self._added_at.pop(key, None)
        tenant, row = loc
        ns = self._ns[tenant]
        moved = ns.keys[ns.n - 1]
        ns.move_last_to(row)  # the last row fills the hole so rows stay dense
        if moved != key:
            self._where[moved] = (tenant, row)
        if ns.n == 0:
            del self._ns[tenant]
        return True

    def search(self, embedding: np.ndarray, tenant: str, exclude: str | None = None) -> Neighbour | None:
        """Nearest cached prompt visible to `tenant` (its own namespace, or all when cross-tenant is on)."""
        q = np.asarray(embedding, dtype=np.float32).reshape(-1)
        if q.shape[0] != self.dim:
            raise SimilarityIndexError(f"query has {q.shape[0]} dimensions, index expects {self.dim}")
        spaces = self._ns.items() if self.cross_tenant else ([(tenant, self._ns[tenant])] if tenant in self._ns else [])
        best: tuple[float, str, int] | None = None
        for name, ns in spaces:
            sims = ns.scores(q)
            if exclude is not None:
                loc = self._where.get(exclude)
                if loc is not None and loc[0] == name:
                    sims[loc[1]] = -np.inf
            if sims.size == 0:
                continue
            i = int(np.argmax(sims))
            if np.isfinite(sims[i]) and (best is None or sims[i] > best[0]):
                best = (float(sims[i]), name, i)
        if best is None:
            return None
        sim, name, i = best
        return self._neighbour(name, i, sim)

    def search_many(self, embeddings: np.ndarray, tenants: list[str]) -> list[Neighbour | None]:
        """`search` for many queries at once: one matrix product per namespace reads its rows once for all."""
        q = np.asarray(embeddings, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim or q.shape[0] != len(tenants):
            raise SimilarityIndexError(f"queries of shape {q.shape} for {len(tenants)} tenants, index expects [n, {self.dim}]")
        best_sim = np.full(len(tenants), -np.inf)
        best: list[tuple[str, int] | None] = [None] * len(tenants)
        groups: dict[str | None, list[int]] = {}
        for i, t in enumerate(tenants):
            groups.setdefault(None if self.cross_tenant else t, []).append(i)
        for group, idx in groups.items():
            names = list(self._ns) if group is None else ([group] if group in self._ns else [])
            for name in names:
                sims = self._ns[name].scores(q[idx].T)  # [n, g]
                if sims.shape[0] == 0:
                    continue
                rows = sims.argmax(0)
                top = sims[rows, np.arange(len(idx))]
                for j, i in enumerate(idx):
                    if top[j] > best_sim[i]:
                        best_sim[i], best[i] = float(top[j]), (name, int(rows[j]))
        return [None if b is None else self._neighbour(b[0], b[1], best_sim[i]) for i, b in enumerate(best)]

    def _neighbour(self, name: str, row: int, sim: float) -> Neighbour:
        ns = self._ns[name]
        allowed = self.thresholds.k_for(sim)
        usable = max((s for s in ns.steps[row] if s <= allowed), default=0)
        return Neighbour(key=ns.keys[row], tenant=name, similarity=float(sim), k=usable)

    def sync(self, source: LatentEntrySource, embedder: Embedder, model: str | None = None,
             batch: int = 64, since: float | None = None) -> tuple[int, int]:
        """Reconcile with the store: drop keys it no longer holds, refresh stored K, embed new ones; (added, removed).

        With `model`, entries of another model identity are ignored (their latents cannot be resumed).
        `since` is the time.monotonic() at which `source` was listed: keys added at or after it are kept
        although the listing lacks them (a full run recorded while the listing was being applied; removing
        it made the next similar prompt miss its own fresh latent).
        """
        entries = {e.key: e for e in source.list_entries()
                   if model is None or getattr(e, "model", model) == model}
        gone = [k for k in self._where
                if k not in entries and (since is None or self._added_at.get(k, float("-inf")) < since)]
        for k in gone:
            self.remove(k)
        for k, (tenant, row) in self._where.items():
            if k not in entries:  # added after the listing
                continue
            steps = tuple(sorted(int(s) for s in entries[k].steps))
            if self._ns[tenant].steps[row] != steps:  # the store evicted some of this prompt's checkpoints
                self._ns[tenant].steps[row] = steps
        new = [e for k, e in entries.items() if k not in self._where]
        for i in range(0, len(new), batch):
            chunk = new[i:i + batch]
            vecs = embedder.encode([e.prompt for e in chunk])
            for e, v in zip(chunk, vecs):
                self.add(e.key, e.tenant, v, e.steps)
        return len(new), len(gone)

    def save(self, path: str | Path) -> None:
        """Write a snapshot atomically (a reader never sees half a file); float32 so a restart changes no K."""
        p = Path(path)
        keys, tenants, steps, rows = [], [], [], []
        for tenant, ns in self._ns.items():
            keys += ns.keys
            tenants += [tenant] * ns.n
            steps += [list(s) for s in ns.steps]
            rows.append(ns.matrix())
        mat = np.concatenate(rows) if rows else np.zeros((0, self.dim), dtype=np.float32)
        header = {"format": INDEX_FORMAT, "version": INDEX_VERSION, "encoder": self.encoder, "dim": self.dim,
                  "thresholds": self.thresholds.to_dict(), "keys": keys, "tenants": tenants, "steps": steps}
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
                         rows=mat.astype(np.float32))
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | Path, encoder: str, capacity: int = 100_000,
             cross_tenant: bool = False) -> "SimilarityIndex":
        """Read a snapshot written by `save`; errors name the file (wrong encoder included)."""
        p = Path(path)
        try:
            with np.load(p, allow_pickle=False) as z:
                header = json.loads(bytes(z["header"]).decode())
                rows = z["rows"].astype(np.float32)
        except FileNotFoundError:
            raise SimilarityIndexError(f"{p}: index snapshot not found") from None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            raise SimilarityIndexError(f"{p}: not a readable index snapshot ({e})") from None
        if not isinstance(header, dict) or header.get("format") != INDEX_FORMAT:
            raise SimilarityIndexError(f"{p}: not an {INDEX_FORMAT} file")
        if header.get("version") != INDEX_VERSION:
            raise SimilarityIndexError(f"{p}: index version {header.get('version')!r}, this Argus reads {INDEX_VERSION}")
        if header.get("encoder") != encoder:
            raise SimilarityIndexError(f"{p}: built with encoder {header.get('encoder')!r}, not {encoder!r}; rebuild it")
        keys, tenants, steps = header.get("keys", []), header.get("tenants", []), header.get("steps", [])
        if not (len(keys) == len(tenants) == len(steps) == rows.shape[0]) or rows.ndim != 2 \
                or rows.shape[1] != header.get("dim"):
            raise SimilarityIndexError(f"{p}: entry lists and rows disagree in length or dimension")
        idx = cls(Thresholds.from_dict(header["thresholds"], f"{p}: thresholds"), int(header["dim"]),
                  capacity, cross_tenant)
        for k, t, s, r in zip(keys, tenants, steps, rows):
            idx.add(k, t, r, s)
        return idx
