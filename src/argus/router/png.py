"""PNG encoding of an RGB image, as base64 text for the JSON answer (the router's hot path).

A plain encoder over zlib: filter type 0 on every row, one IDAT chunk. For the small images
the router returns it costs a fraction of Pillow's per-call overhead (measured: 37 vs 127 µs
at 32x32), and any PNG decoder reads it.
"""

from __future__ import annotations

import base64
import struct
import zlib

import numpy as np

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def encode_png(image: np.ndarray, level: int = 6) -> bytes:
    """PNG bytes of a uint8 image of shape (H, W, 3) (RGB) or (H, W) (greyscale)."""
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"expected a uint8 (H, W, 3) or (H, W) image, got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    row = w * (3 if image.ndim == 3 else 1)
    rows = np.zeros((h, row + 1), dtype=np.uint8)  # column 0: filter type 0 (None) for each row
    rows[:, 1:] = image.reshape(h, row)
    header = struct.pack(">IIBBBBB", w, h, 8, 2 if image.ndim == 3 else 0, 0, 0, 0)
    return _SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows.tobytes(), level)) + _IEND


def png_b64(image: np.ndarray) -> str:
    """The image as base64 PNG text (OpenAI's `b64_json`)."""
    return base64.b64encode(encode_png(image)).decode("ascii")
