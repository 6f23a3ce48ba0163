"""The one sha256 of a file's bytes (cache keys, output hashes, manifests, fingerprints)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

#: Bytes read at a time (hashlib drops the GIL on large reads).
CHUNK = 1 << 20


def update_with_file(h: Any, path: str | Path) -> Any:
    """Feed the bytes of ``path`` to the hash object ``h`` in chunks; return ``h``."""
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return h


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of the bytes of ``path``."""
    return update_with_file(hashlib.sha256(), path).hexdigest()
