"""The SHA256 of a file, read in blocks (standard library only: the Slicer module lists models with it)."""

from __future__ import annotations

import hashlib
import os


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA256 hex digest of a file (streamed)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
