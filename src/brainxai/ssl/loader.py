"""Batches of cached uint8 images on the training device, without re-decoding anything.

* **resident**: when the pretraining rows fit in ``resident_max_bytes``, they are copied to
  the device once (uint8: 4,300 images of 256^2 are 280 MB) and a batch is one index op on
  the device - no host work per step;
* **streamed**: otherwise a batch is gathered from the memory-mapped cache (indices
  sorted for locality), pinned on CUDA and copied asynchronously, with the next batch
  prepared by a background thread while the current step runs.

The order of epoch ``e`` is a permutation seeded by ``(seed, e)``: resuming at an epoch
boundary replays exactly the same batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch import Tensor


class BatchLoader:
    def __init__(
        self,
        images: np.ndarray,
        rows: np.ndarray,
        labels: np.ndarray,
        batch_size: int,
        device: torch.device,
        resident_max_bytes: int,
    ) -> None:
        if len(rows) < batch_size:
            raise ValueError(
                f"{len(rows)} pretraining images < batch_size {batch_size}: lower the batch"
            )
        self.images = images
        self.rows = np.asarray(rows, dtype=np.int64)
        self.labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        self.batch_size = batch_size
        self.device = device
        nbytes = len(rows) * int(np.prod(images.shape[1:]))
        self.resident = nbytes <= resident_max_bytes
        self._data: Tensor | None = None
        if self.resident:
            self._data = torch.from_numpy(np.ascontiguousarray(images[self.rows])).to(device)
            self._labels_dev = self.labels.to(device)

    @property
    def steps_per_epoch(self) -> int:
        return len(self.rows) // self.batch_size

    def order(self, seed: int, epoch: int) -> np.ndarray:
        """Positions (into ``rows``) of epoch ``epoch``'s full batches, ``(steps, batch)``."""
        perm = np.random.default_rng([seed, epoch]).permutation(len(self.rows))
        n = self.steps_per_epoch * self.batch_size
        return perm[:n].reshape(self.steps_per_epoch, self.batch_size)

    def _host_batch(self, pos: np.ndarray) -> tuple[Tensor, Tensor]:
        pos = np.sort(pos)
        x = torch.from_numpy(np.take(self.images, self.rows[pos], axis=0))
        y = self.labels[torch.from_numpy(pos)]
        if self.device.type == "cuda":
            x = x.pin_memory()
        return x, y

    def epoch(self, seed: int, epoch: int, max_steps: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield ``(images uint8 (B, H, W), labels (B,))`` on the device for one epoch."""
        batches = self.order(seed, epoch)
        if max_steps:
            batches = batches[:max_steps]
        if self.resident:
            assert self._data is not None
            for pos in batches:
                idx = torch.from_numpy(np.sort(pos)).to(self.device)
                yield self._data[idx], self._labels_dev[idx]
            return
        with ThreadPoolExecutor(max_workers=1) as pool:
            nxt = pool.submit(self._host_batch, batches[0]) if len(batches) else None
            for i in range(len(batches)):
                assert nxt is not None
                x, y = nxt.result()
                if i + 1 < len(batches):
                    nxt = pool.submit(self._host_batch, batches[i + 1])
                yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
