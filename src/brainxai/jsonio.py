"""Strict JSON for metrics files (``dvc metrics show``, MLflow artifacts, reports).

``json.dumps`` writes ``NaN``/``Infinity`` by default, which is not JSON (DVC, browsers
and ``jq`` reject it). Undefined numbers - e.g. a macro AUROC with one class present -
become ``null`` here; numpy scalars/arrays, tuples and paths become plain JSON.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from brainxai.atomic import write_text_atomic


def strict(obj: Any) -> Any:
    """A JSON-able copy of ``obj`` with every non-finite float replaced by ``None``."""
    if isinstance(obj, dict):
        return {str(k): strict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set):
        return [strict(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return strict(obj.tolist())
    if isinstance(obj, np.generic):
        return strict(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, str | int | bool):
        return obj
    return str(obj)


def write_json(path: str | Path, obj: Any, indent: int = 2) -> Path:
    """Write ``strict(obj)`` (sorted keys, trailing newline) atomically; parents are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(strict(obj), indent=indent, sort_keys=True, allow_nan=False)
    write_text_atomic(path, text + "\n")
    return path
