"""Thread budget per worker: ITK (ANTs) and torch, so parallel workers don't oversubscribe."""

from __future__ import annotations

import os


def threads_per_worker(cores: int | None, workers: int) -> int:
    """``cores // workers`` (at least 1); ``cores=None`` means ``os.cpu_count()``."""
    return max(1, int(cores or os.cpu_count() or 1) // max(1, workers))


def set_threads(n: int) -> None:
    """Cap ITK's global default thread count (read by every ANTs filter) and torch's."""
    n = max(1, int(n))
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(n)
    import torch

    torch.set_num_threads(n)
