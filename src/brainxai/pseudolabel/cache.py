"""Response cache for VLM answers: one JSON file per (image, prompt, model, settings).

The key is ``sha256`` of the image's pixel hash, the exact prompt text, the model id
and the generation settings, so a re-run (or a run resumed after a crash) never asks
the model again for a slice it has answered; the raw text is stored (not the parsed
boxes), so a parser change re-parses without re-querying. Writes are atomic
(:func:`brainxai.atomic.atomic_open`: temporary file, fsync, ``os.replace``): a crash
never leaves a half-written entry, and processes or threads may share one cache directory.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from brainxai.atomic import atomic_open, is_temp


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
        with atomic_open(path, "w", encoding="utf-8") as fh:
            json.dump({"text": text, **(meta or {})}, fh)

    def __len__(self) -> int:
        if not self.root.exists():
            return 0
        return sum(1 for p in self.root.glob("*/*.json") if not is_temp(p))
