"""Response cache for VLM answers: one JSON file per (image, prompt, model, settings).

The key is ``sha256`` of the image's pixel hash, the exact prompt text, the model id
and the generation settings, so a re-run (or a run resumed after a crash) never asks
the model again for a slice it has answered; the raw text is stored (not the parsed
boxes), so a parser change re-parses without re-querying. Writes are atomic
(temporary file + ``os.replace``): a crash never leaves a half-written entry, and
processes or threads may share one cache directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def cache_key(image_sha: str, prompt: str, model: str, settings: dict[str, Any]) -> str:
    blob = json.dumps([image_sha, prompt, model, settings], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


class ResponseCache:
    """Raw answers on disk under ``root/<key[:2]>/<key>.json``; counts hits and misses."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> str | None:
        path = self._path(key)
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            self.misses += 1
            return None
        self.hits += 1
        return str(entry["text"])

    def put(self, key: str, text: str, meta: dict[str, Any] | None = None) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"text": text, **(meta or {})}, fh)
        os.replace(tmp, path)

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("*/*.json")) if self.root.exists() else 0
