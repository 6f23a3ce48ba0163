"""A tiny study written in the stages' own schemas, for the report tests.

Stage writers are used where they exist (``data_card``, ``summarise``/``compare``,
``save_heatmaps``, ``write_json``); the rest are tables with the stages' columns. Values
are chosen so the report's numbers are known by construction:

* fine-tuning: ``simclr`` predicts every test image right (macro-F1 1.000 at every
  fraction), ``random`` always predicts class 0;
* pseudo-labels: glioma refined Dice 0.8 and 0.6 (mean 0.700), pcnsl 0.5;
* xai: one gold-list collapse (class 0 at epoch 2: gold list 0 of 2, AUC 0.95).
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import yaml
from PIL import Image

from brainxai.evaluation.aggregate import compare, summarise
from brainxai.ingest.datacard import data_card
from brainxai.jsonio import write_json
from brainxai.labels import kaggle_classes
from brainxai.xai.heatmap_store import HeatmapRecord, heatmap_filename, save_heatmaps

REPO = Path(__file__).resolve().parents[1]
K = len(kaggle_classes())
N_TEST = 12  # images, 2 per patient
REPORT = {"dpi": 40, "gallery_2d_images": 3, "gallery_2d_models": 2, "gallery_3d_images": 1}


def params(root: Path) -> dict:
    """The repo's params (smoke profile merged) with a small report section."""
    from brainxai.config import load_params

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["report"] = {**raw.get("report", {}), **REPORT}
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_params(root / "params.yaml", profile="smoke")


def _png(path: Path, array: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)
    return path.as_posix()


def _ingest(root: Path) -> pd.DataFrame:
    rows = []
    for i in range(24):
        split = ["train", "train", "val", "test"][i % 4]
        rows.append(
            {
                "record_id": f"r{i:03d}",
                "dataset": "kaggle17",
                "subject": f"synth2d/kg{i // 2:03d}",
                "path": f"data/raw/synth/kaggle2d/img{i:03d}.png",
                "label": kaggle_classes()[i % K],
                "sequence": "T1",
                "group": kaggle_classes()[i % K].split()[0],
                "split": split,
                "fold": i % 2 if split != "test" else -1,
                "subject_source": "sidecar",
                "dup_group": "dg-1" if i < 2 else "",  # one near-duplicate pair, labels differ
                "ndim": 2,
            }
        )
    man = pd.DataFrame(rows)
    # patients keep one split: split by patient index
    man["split"] = man["subject"].map(
        {s: ["train", "train", "val", "test"][j % 4] for j, s in enumerate(man["subject"].unique())}
    )
    man["fold"] = np.where(man["split"] == "test", -1, 0)
    quarantine = pd.DataFrame(
        [{"dataset": "kaggle17", "path": "bad.png", "reason": "truncated", "detail": "x"}]
    )
    card, md = data_card(man, quarantine, found=25, ignored=0)
    (root / "data/processed").mkdir(parents=True, exist_ok=True)
    man.to_parquet(root / "data/processed/manifest.parquet")
    write_json(root / "reports/datacard.json", card)
    (root / "reports/datacard.md").write_text(md)
    return man


#: init -> the class it always predicts (None: always the true class)
FINETUNE_RULES: dict[str, int | None] = {"random": 0, "simclr": None}


def _finetune(root: Path) -> pd.DataFrame:
    return write_finetune(root, FINETUNE_RULES)


def write_finetune(root: Path, rules: dict[str, int | None]) -> pd.DataFrame:
    """Fine-tuning outputs of inits that each always predict one class (``None``: the true
    one), written by ``summarise`` / ``compare``; returns the summary."""
    names = kaggle_classes()
    y = np.arange(N_TEST) % K
    rows = []
    for init, rule in rules.items():
        for fraction in (0.5, 1.0):
            for seed in (0, 1):
                pred = y if rule is None else np.full_like(y, rule)
                for j in range(N_TEST):
                    p = np.full(K, 0.1 / (K - 1))
                    p[pred[j]] = 0.9
                    run = f"{init}__finetune__f{fraction:g}__s{seed}"
                    rows.append(
                        {
                            "run": run,
                            "init": init,
                            "protocol": "finetune",
                            "fraction": fraction,
                            "seed": seed,
                            "record_id": f"t{j:02d}",
                            "subject": f"p{j // 2}",
                            "y_true": int(y[j]),
                            "y_pred": int(pred[j]),
                            "probs": p.tolist(),
                        }
                    )
    preds = pd.DataFrame(rows)
    rep = root / "reports/finetune"
    rep.mkdir(parents=True, exist_ok=True)
    preds.to_parquet(rep / "predictions.parquet")
    summary = summarise(preds, names, metrics=("macro_f1", "accuracy"), n_boot=100)
    summary.to_csv(rep / "summary.csv", index=False)
    comp = compare(preds, names, metric="macro_f1", n_boot=100)
    comp.to_csv(rep / "comparisons.csv", index=False)
    return summary


def _pseudolabel(root: Path) -> pd.DataFrame:
    dice = {"glioma": [0.8, 0.6], "pcnsl": [0.5, 0.5]}
    rows = []
    for label, values in dice.items():
        for k, d in enumerate(values):
            rows.append(
                {
                    "subject": f"synth3d/{label}{k}",
                    "session": "",
                    "label": label,
                    "split": "test",
                    "proposer": "classical",
                    "status": "ok",
                    "empty": False,
                    "flag": "",
                    "dice_coarse": d - 0.2,
                    "dice_refined": d,
                    "dice_union": d - 0.1,
                    "hd95_refined": 3.0,
                    "detected_refined": True,
                    "box_iou": 0.5,
                }
            )
    table = pd.DataFrame(rows)
    table.to_parquet(root / "data/processed/pseudolabels.parquet")
    return table


def _ssl(root: Path) -> None:
    hist = [
        {
            "epoch": e,
            "loss": 3.0 - 0.5 * e,
            "knn_accuracy": 0.1 * e,
            "lr": 0.01,
            "images_per_s": 10.0,
            "seconds": 1.0,
        }
        for e in (1.0, 2.0)
    ]
    summary = {
        "arch": "resnet18",
        "epochs": 2,
        "framework": "simclr",
        "image_size": 16,
        "device": "cpu",
        "history": hist,
        "final": hist[-1],
        "n_pretrain_images": 8,
    }
    write_json(root / "models/ssl/simclr/summary.json", summary)


def _standardize(root: Path) -> None:
    montage = root / "data/interim/standardized/s1/montage.png"
    _png(montage, np.tile(np.linspace(0, 255, 48), (16, 1)))
    qc = pd.DataFrame(
        [
            {
                "subject": "synth3d/s1",
                "session": "",
                "status": "ok",
                "reason": "",
                "qc_pass": True,
                "qc_reason": "",
                "brain_dice": 0.97,
                "mutual_information": 0.6,
                "montage": "data/interim/standardized/s1/montage.png",
            }
        ]
    )
    qc.to_parquet(root / "data/processed/standardize_qc.parquet")


def _xai(root: Path) -> None:
    out = root / "data/interim/xai"
    rng = np.random.default_rng(0)
    ids2d = [f"t{j:02d}" for j in range(4)]
    ev2d = []
    for j, rid in enumerate(ids2d):
        img = _png(root / f"data/raw/synth/kaggle2d/{rid}.png", rng.integers(0, 255, (20, 16)))
        mask = np.zeros((20, 16))
        mask[6:12, 4:10] = 255
        m = _png(root / f"data/raw/synth/kaggle2d_meta/masks/{rid}.png", mask)
        ev2d.append(
            {
                "record_id": rid,
                "subject": f"p{j}",
                "label": kaggle_classes()[j],
                "path": str(Path(img).relative_to(root)),
                "mask_path": str(Path(m).relative_to(root)),
                "row": j,
            }
        )
    (out / "evalsets").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(ev2d).to_parquet(out / "evalsets/finetune.parquet")
    vol = root / "data/interim/standardized/s1/T1Cplus.nii.gz"
    vol.parent.mkdir(parents=True, exist_ok=True)
    les = root / "data/interim/standardized/s1/lesion.nii.gz"
    nib.save(nib.Nifti1Image(rng.random((8, 8, 8)).astype(np.float32), np.eye(4)), vol)
    lesion = np.zeros((8, 8, 8), np.uint8)
    lesion[2:5, 3:6, 3:5] = 1
    nib.save(nib.Nifti1Image(lesion, np.eye(4)), les)
    ev3d = [
        {
            "record_id": "v1",
            "subject": "synth3d/s1",
            "label": "glioma",
            "path": str(vol.relative_to(root)),
            "mask_path": str(les.relative_to(root)),
            "row": -1,
        }
    ]
    pd.DataFrame(ev3d).to_parquet(out / "evalsets/classify3d.parquet")
    traj = []
    for model, family, n in (
        ("simclr__finetune__f1__s0", "finetune", 4),
        ("full/densenet/fold0", "classify3d", 1),
    ):
        for epoch in (1, 2):
            ckpt = f"{model}/epoch-{epoch:04d}"
            shape = (n, 16, 16) if family == "finetune" else (n, 8, 8, 8)
            rec = HeatmapRecord(
                checkpoint_id=ckpt,
                method="gradcam",
                maps=rng.random(shape).astype(np.float16),
                record_ids=np.array(ids2d if family == "finetune" else ["v1"]),
                labels=np.arange(n),
                targets=np.arange(n),
                probs=np.full((n, 4), 0.25),
                epoch=epoch,
            )
            save_heatmaps(out / "heatmaps" / model / heatmap_filename(ckpt, "gradcam"), rec)
            for klass in (-1, 0):
                collapse = family == "finetune" and epoch == 2 and klass == 0
                traj.append(
                    {
                        "model": model,
                        "method": "gradcam",
                        "checkpoint": ckpt,
                        "epoch": epoch,
                        "klass": klass,
                        "cscore": 0.5,
                        "gold_size": 0 if collapse else 2,
                        "support": 2,
                        "empty": False,
                        "auc": 0.95 if collapse else 0.6,
                        "accuracy": 0.5,
                        "family": family,
                    }
                )
    rep = root / "reports/xai"
    rep.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(traj).to_parquet(rep / "trajectory.parquet")
    pd.DataFrame(
        [
            {
                "family": "finetune",
                "run": "simclr__finetune__f1__s0",
                "method": "gradcam",
                "median_spearman": 0.8,
                "flag": True,
            }
        ]
    ).to_csv(rep / "randomisation.csv", index=False)


def make_report_study(root: Path, skip: tuple[str, ...] = ()) -> dict:
    """Write every stage's outputs except those in ``skip``; return ``params``."""
    root.mkdir(parents=True, exist_ok=True)
    p = params(root)
    writers = {
        "ingest": _ingest,
        "finetune": _finetune,
        "pseudolabel": _pseudolabel,
        "pretrain": _ssl,
        "standardize": _standardize,
        "xai": _xai,
    }
    for name, write in writers.items():
        if name not in skip:
            write(root)
    (root / "reports/metrics").mkdir(parents=True, exist_ok=True)
    (root / "reports/metrics/pseudolabel.json").write_text(json.dumps({"proposer": "classical"}))
    return p
