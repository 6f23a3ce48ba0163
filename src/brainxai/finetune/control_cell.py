"""Run one planted control end to end (:mod:`brainxai.finetune.controls`): build the
cache variant in memory, fine-tune through the real runs' code path
(:func:`brainxai.finetune.cell.run_finetune`), then measure what the control is built to
show on its selected checkpoint: test / val macro-F1 against the chance interval, GradCAM
pointing game on lesion masks, relevance mass outside the head and on the tag, C-Score.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from brainxai.devices import torch_device
from brainxai.finetune.cell import CellData, run_finetune
from brainxai.finetune.config import BackboneSpec, FinetuneConfig
from brainxai.finetune.controls import (
    ControlsConfig,
    burn_tags,
    chance_interval,
    head_masks,
    occlusion_reliance,
    outside_mass,
    permute_labels,
    pointing_baselines,
    tag_geometry,
    tag_slots,
)
from brainxai.finetune.data import CLASS_NAMES
from brainxai.finetune.evaluate import forward_batches, macro_f1
from brainxai.finetune.model import load_classifier
from brainxai.finetune.runs import RunSpec
from brainxai.ssl.cache import Cache
from brainxai.xai.cams import CamConfig, Explainer
from brainxai.xai.cscore import cscore
from brainxai.xai.evalset import balanced_sample, masks_2d
from brainxai.xai.groundtruth import pointing_game, relevance_mass_accuracy

NORMAL_GROUP = "normal"


def control_run_name(control: str, cfg: ControlsConfig) -> str:
    return RunSpec(f"ctrl-{control.replace('_', '-')}", "finetune", cfg.fraction, cfg.seed).name


def _class_ids(index: pd.DataFrame, n_rows: int) -> np.ndarray:
    """Class id of every cache row (-1 where the row is not a valid labelled image)."""
    ids = np.full(n_rows, -1, dtype=np.int64)
    lookup = {name: i for i, name in enumerate(CLASS_NAMES)}
    ok = index[index["ok"]]
    ids[ok["row"].to_numpy()] = ok["label"].map(lookup).fillna(-1).astype(np.int64).to_numpy()
    return ids


def variant(control: str, cache: Cache, cfg: ControlsConfig) -> Cache:
    """The cache a control trains on: tags in train/val (``shortcut``), labels permuted
    within the training split (``random_labels``), unchanged (``positive``)."""
    index = cache.index.reset_index(drop=True)
    if control == "shortcut":
        size = cache.images.shape[-1]
        tag_px, margin = tag_geometry(cfg, size)
        slots = tag_slots(len(CLASS_NAMES), size, tag_px, margin)
        rows = index.loc[index["ok"] & index["split"].isin(["train", "val"]), "row"].to_numpy()
        ids = _class_ids(index, len(cache.images))
        return Cache(burn_tags(cache.images, ids, rows, slots, tag_px, cfg.tag_value), index)
    if control == "random_labels":
        train = np.flatnonzero((index["ok"] & (index["split"] == "train")).to_numpy())
        return Cache(cache.images, index.assign(label=permute_labels(index["label"], train,
                                                                      cfg.seed)))  # fmt: skip
    if control == "positive":
        return cache
    raise ValueError(f"unknown control {control!r}")


def _inputs(images: np.ndarray, size: int) -> torch.Tensor:
    """(N, 1, S, S) float in [0, 1] at the model's input size (as the xai stage feeds)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float()[:, None] / 255.0
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                          align_corners=False)  # fmt: skip
    return x.clamp_(0.0, 1.0)


def relevance_where(
    maps: np.ndarray,
    head: np.ndarray,
    tag: np.ndarray | None,
    lesion: np.ndarray,
    tumour: np.ndarray,
) -> dict[str, float]:
    """Where one method's maps put relevance: mass and argmax outside the head, mass on
    the tag (shortcut), pointing game on the lesion of the ``tumour`` images."""
    out = {
        "outside_head_mass": float(np.nanmean(outside_mass(maps, head))),
        "outside_head_pointing": float(np.nanmean(pointing_game(maps, ~head))),
    }
    if tag is not None:
        out["tag_mass"] = float(np.nanmean(relevance_mass_accuracy(maps, tag)))
    if tumour.any():
        out["pointing_tumour"] = float(np.nanmean(pointing_game(maps[tumour], lesion)))
    return out


def explain(
    control: str,
    model: torch.nn.Module,
    cache: Cache,
    test: pd.DataFrame,
    root: Path,
    ccfg: ControlsConfig,
    image_size: int,
    cam_layers: tuple[str, ...],
) -> dict[str, Any]:
    """``cam_method`` (and ``compare_methods``) on (at most ``explain_images``) test images
    of the true class: pointing
    game on lesion masks (tumour classes), relevance outside the head and on the tag,
    C-Score; a ``shortcut`` model is explained on test images carrying their tag."""
    pick = balanced_sample(test["label"].astype(str).tolist(), ccfg.explain_images, ccfg.seed)
    table = test.iloc[pick].reset_index(drop=True)
    rows = table["row"].to_numpy()
    clean = np.asarray(cache.images[rows])
    labels = table["label"].map({n: i for i, n in enumerate(CLASS_NAMES)}).to_numpy(np.int64)
    shown = clean
    if control == "shortcut":
        size = clean.shape[-1]
        tag_px, margin = tag_geometry(ccfg, size)
        slots = tag_slots(len(CLASS_NAMES), size, tag_px, margin)
        shown = burn_tags(clean, labels, np.arange(len(clean)), slots, tag_px, ccfg.tag_value)
    x_clean, x = _inputs(clean, image_size), _inputs(shown, image_size)
    head = head_masks((x_clean[:, 0] * 255).numpy(), ccfg.head_threshold)
    tag = ((x - x_clean).abs()[:, 0] > 0.25).numpy()
    lesion, _ = masks_2d(table, root, image_size)
    tumour = (table["group"].astype(str) != NORMAL_GROUP).to_numpy() & lesion.any(axis=(1, 2))
    methods = list(dict.fromkeys([ccfg.cam_method, *ccfg.compare_methods]))
    with Explainer(model, CamConfig(layers=tuple(cam_layers))) as ex:
        maps = {m: ex.heatmaps(x, m, labels) for m in methods}
    hm = maps[ccfg.cam_method]
    per_method = {m: relevance_where(h.maps, head, tag if control == "shortcut" else None,
                                     lesion[tumour], tumour) for m, h in maps.items()}  # fmt: skip
    out: dict[str, Any] = {
        "n_explained": len(table),
        "n_tumour_masks": int(tumour.sum()),
        **per_method[ccfg.cam_method],
        "methods": per_method,
        "head_share": float(head.mean()),
        "cam_layers": list(hm.layers),
    }

    def predict(arr: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(arr)[:, None]).softmax(dim=1).numpy()

    grey = x[:, 0].numpy()
    if control == "shortcut":
        rel = occlusion_reliance(predict, grey, tag, labels, head)
        out["tag_reliance"], out["tag_occlusion"] = rel["reliance"], rel
    if tumour.any():
        out["baselines"] = pointing_baselines(lesion[tumour], ccfg.seed)
        if control == "positive":
            rel = occlusion_reliance(predict, grey[tumour], lesion[tumour], labels[tumour],
                                     head[tumour])  # fmt: skip
            out["lesion_reliance"], out["lesion_occlusion"] = rel["reliance"], rel
    cs = cscore(hm.maps, labels, hm.probs, tau=ccfg.tau)
    out["cscore"] = float(cs.global_score) if sum(cs.gold_size.values()) >= 2 else None
    out["classes_with_gold"] = int(sum(v >= 2 for v in cs.gold_size.values()))
    out["gold_images"] = int(sum(cs.gold_size.values()))
    out["n_classes"] = len(CLASS_NAMES)
    return out


def run_control(
    control: str,
    cache: Cache,
    train_record_ids: list[str],
    cfg: FinetuneConfig,
    ccfg: ControlsConfig,
    backbone: BackboneSpec,
    root: Path,
    run_dir: Path,
    cam_layers: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Train the control's cell and measure it; returns the numbers :func:`verdicts`
    reads, the history, the checkpoints and the test predictions."""
    spec = RunSpec(f"ctrl-{control.replace('_', '-')}", "finetune", ccfg.fraction, ccfg.seed)
    if int(ccfg.epochs.get(control, 0)) > 0:
        cfg = dataclasses.replace(
            cfg, tune=dataclasses.replace(cfg.tune, epochs=int(ccfg.epochs[control]))
        )
    var = variant(control, cache, ccfg)
    data = CellData.of(var, train_record_ids)
    res = run_finetune(spec, cfg, backbone, var, data, "", "", run_dir)
    selected = next(c for c in res["checkpoints"] if c["selected"])
    model, _ = load_classifier(selected["path"])
    model.eval()
    device = torch_device(cfg.tune.device)
    preds = res["predictions"]
    y, yhat = preds["y_true"].to_numpy(), preds["y_pred"].to_numpy()
    val_logits = forward_batches(model.to(device), var.images[data.val["row"].to_numpy()],
                                 backbone.image_size, cfg.tune.eval_batch_size, device)  # fmt: skip
    val_true = data.val["label"].map({n: i for i, n in enumerate(CLASS_NAMES)}).to_numpy()
    lo, hi = chance_interval(y, yhat, ccfg.n_permutations, ccfg.chance_level, ccfg.seed)
    measured = {
        "run": spec.name,
        "test_macro_f1": macro_f1(y, yhat),
        "val_macro_f1": macro_f1(val_true, val_logits.argmax(dim=1).numpy()),
        "chance_low": lo,
        "chance_high": hi,
        "selected_epoch": int(res["selected_epoch"]),
        "n_train": int(res["n_train"]),
        "seconds_train": float(res["seconds"]),
    }
    # the explanations are judged on the clean test split (the shortcut: with its tags)
    measured |= explain(control, model.cpu(), cache, data.test.reset_index(drop=True), root,
                        ccfg, backbone.image_size, cam_layers)  # fmt: skip
    return {"control": control, "measured": measured, "history": res["history"],
            "checkpoints": res["checkpoints"], "predictions": preds}  # fmt: skip


__all__ = ["control_run_name", "explain", "run_control", "variant"]
