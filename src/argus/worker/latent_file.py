"""One latent on disk: a small self-describing file with a checksum, written atomically.

Layout: MAGIC, a 4-byte little-endian header length, a JSON header (key, K, N, model,
shape, dtype, SHA-256 of the payload), then the float32 little-endian payload. The
header repeats what the index says, so a misplaced or swapped file is caught as well as
a damaged one.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

import numpy as np

MAGIC = b"ARGUSLAT1\n"


class CorruptLatent(Exception):
    """A latent file is damaged or is not the latent the index names."""


def encode_latent(key: str, k: int, n: int, model: str, a: np.ndarray) -> tuple[bytes, str]:
    """File bytes of one latent and the SHA-256 of its payload."""
    payload = a.astype("<f4", copy=False).tobytes()
    checksum = hashlib.sha256(payload).hexdigest()
    header = json.dumps({"key": key, "k": k, "n": n, "model": model, "shape": list(a.shape), "dtype": "<f4",
                         "sha256": checksum}, sort_keys=True).encode()
    return MAGIC + struct.pack("<I", len(header)) + header + payload, checksum


def decode_latent(path: Path, key: str, k: int, n: int, model: str, checksum: str) -> np.ndarray:
    """Read and verify one latent file; raise CorruptLatent unless it is exactly the latent named."""
    blob = path.read_bytes()
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 4:
        raise CorruptLatent(f"{path.name}: not a latent file")
    hlen = struct.unpack("<I", blob[len(MAGIC):len(MAGIC) + 4])[0]
    start = len(MAGIC) + 4
    try:
        header = json.loads(blob[start:start + hlen])
    except ValueError:
        raise CorruptLatent(f"{path.name}: unreadable header") from None
    payload = blob[start + hlen:]
    if hashlib.sha256(payload).hexdigest() != checksum or header.get("sha256") != checksum:
        raise CorruptLatent(f"{path.name}: checksum mismatch")
    if (header.get("key"), header.get("k"), header.get("n"), header.get("model")) != (key, k, n, model):
        raise CorruptLatent(f"{path.name}: header names another latent")
    shape = tuple(header.get("shape") or ())
    if int(np.prod(shape)) * 4 != len(payload):
        raise CorruptLatent(f"{path.name}: payload size does not match shape {shape}")
    return np.frombuffer(payload, dtype="<f4").reshape(shape).astype(np.float32)


def atomic_write(path: Path, blob: bytes) -> None:
    """Write `blob` to a tmp file, fsync, rename: readers see the whole file or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{path.name}"
    try:
        with open(tmp, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        unlink_quiet(tmp)
        raise


def unlink_quiet(path: Path) -> None:
    """Remove a file that may already be gone."""
    try:
        path.unlink()
    except FileNotFoundError:
        pass
