"""Demo-profile calibration: does random-init full fine-tuning learn the 2D task on CPU?

Not a speed claim. Generates a 2D Kaggle-layout cohort sized for the demo profile's power
target (test split >= 30 patients and >= 250 images), ingests and splits it by patient,
decodes it once, then fine-tunes a random-init ResNet per ``--arch`` x ``--size`` with the
stage's own code (:func:`brainxai.finetune.tune.finetune`) and reports the test macro-F1
of the final epoch with the running BatchNorm statistics of training and after precise-BN
re-estimation on training images (:mod:`brainxai.ssl.batchnorm`), plus seconds per run
and the CAM grid of ``layer3``/``layer4`` at that input size.

Usage: ``python benchmarks/calibrate_demo.py [--per-group 34] [--slices 3]
[--arch resnet18-w16 resnet18-w32] [--size 128] [--epochs 30] [--keep DIR]``
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from calibrate_difficulty import make_cohort2d  # this folder is on sys.path for a script

from brainxai import synth
from brainxai.config import load_params
from brainxai.finetune.config import FinetuneConfig
from brainxai.finetune.data import CLASS_NAMES, encode_labels, select_images
from brainxai.finetune.evaluate import forward_batches, macro_f1
from brainxai.finetune.model import build_classifier
from brainxai.finetune.tune import finetune
from brainxai.ingest import IngestConfig, ingest
from brainxai.splits import SplitConfig, assign_splits
from brainxai.ssl.batchnorm import recalibrate_batchnorm
from brainxai.ssl.cache import Cache, build_cache

REPO = Path(__file__).resolve().parents[1]


def test_f1(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, size: int) -> float:
    """Macro-F1 of ``model`` (eval mode, centre views) on ``images``."""
    logits = forward_batches(model, images, size, 256, torch.device("cpu"))
    return macro_f1(labels, logits.argmax(1).numpy())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-group", type=int, default=34)
    ap.add_argument("--slices", type=int, default=3)
    ap.add_argument("--arch", nargs="+", default=["resnet18-w16", "resnet18-w32"])
    ap.add_argument("--size", type=int, nargs="+", default=[128])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--bn-images", type=int, default=1024)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", type=Path, default=None, help="reuse/keep the cohort here")
    args = ap.parse_args()
    params = load_params(REPO / "params.yaml", profile="smoke")
    cfg = dataclasses.replace(
        synth.SynthConfig.from_dict(params["synth"]),
        n_subjects_2d_per_group=args.per_group,
        slices_per_subject=args.slices,
    )
    # the 2D layout needs no DICOM salt (a salt in params is refused by newer ingest code)
    icfg = IngestConfig.from_dict(
        {k: v for k, v in params["ingest"]["config"].items() if k != "dicom_salt"}
    )
    scfg = SplitConfig.from_dict(params["split"])
    base = FinetuneConfig.from_dict(params["finetune"]).tune
    root = args.keep or Path(tempfile.mkdtemp(prefix="calib-demo-"))
    try:
        t0 = time.perf_counter()
        if not (root / "kaggle2d_meta" / "subjects.csv").exists():
            make_cohort2d(root, cfg, int(params["seed"]), args.workers)
        res = ingest(root / "kaggle2d", "kaggle17", icfg, base_dir=root,
                     sidecar=root / "kaggle2d_meta" / "subjects.csv")  # fmt: skip
        manifest = assign_splits(res.manifest, scfg)
        items = select_images(manifest, ("kaggle17",))
        test = items[items["split"] == "test"]
        print(f"cohort: {len(items)} images, {items['subject'].nunique()} patients; test "
              f"{len(test)} images / {test['subject'].nunique()} patients; "
              f"{time.perf_counter() - t0:.0f} s")  # fmt: skip
        torch.set_num_threads(max(1, torch.get_num_threads()))
        cpu = torch.device("cpu")
        for size in args.size:
            cdir = root / f"cache{size}"
            if not (cdir / "index.parquet").exists():
                build_cache(items, root, cdir, size, args.workers)
            cache = Cache.open(cdir)
            idx = cache.index
            sel = {s: idx[idx["ok"] & (idx["split"] == s)] for s in ("train", "val", "test")}
            x = {s: cache.images[d["row"].to_numpy()] for s, d in sel.items()}
            y = {s: encode_labels(d["label"]) for s, d in sel.items()}
            for arch in args.arch:
                tc = dataclasses.replace(
                    base, epochs=args.epochs, batch_size=args.batch, lr=args.lr,
                    max_steps_per_epoch=0, patience=0, bn_recalibration_images=0,
                )  # fmt: skip
                model = build_classifier(arch, len(CLASS_NAMES), 0.449, 0.226, backbone_seed=0)
                t1 = time.perf_counter()
                hist = finetune(model, x["train"], y["train"], x["val"], y["val"], tc, size, 0)
                secs = time.perf_counter() - t1

                raw = test_f1(model, x["test"], y["test"], size)
                recalibrate_batchnorm(model, x["train"], size, 256, cpu, args.bn_images, 0)
                precise = test_f1(model, x["test"], y["test"], size)
                steps = args.epochs * -(-len(x["train"]) // args.batch)
                print(f"{arch:<14} {size:4d}px grid l3 {size // 16}x{size // 16} "
                      f"l4 {size // 32}x{size // 32} | {steps} steps {secs:6.0f} s | "
                      f"last val F1 {hist.history[-1]['val_macro_f1']:.3f} | test macro-F1 "
                      f"running BN {raw:.3f}, precise BN {precise:.3f}")  # fmt: skip
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
