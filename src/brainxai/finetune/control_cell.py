"""Run one planted control end to end (:mod:`brainxai.finetune.controls`): build the
cache variant in memory, fine-tune through the real runs' code path
(:func:`brainxai.finetune.cell.run_finetune`), then measure what the control is built to
show on its selected checkpoint: test / val macro-F1 against the chance interval, GradCAM
pointing game on lesion masks, relevance mass outside the head and on the tag, C-Score.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import ndimage

from brainxai.devices import torch_device
from brainxai.finetune.cell import CellData, run_finetune
from brainxai.finetune.config import POSITIVE_CONTROLS, BackboneSpec, FinetuneConfig
from brainxai.finetune.controls import (
    ControlsConfig,
    burn_tags,
    chance_interval,
    head_masks,
    occlusion_reliance,
    outside_mass,
    paste_lesion,
    permute_labels,
    pick_donors,
    pointing_baselines,
    tag_geometry,
    tag_slots,
)
from brainxai.finetune.data import CLASS_NAMES
from brainxai.finetune.evaluate import forward_batches, macro_f1
from brainxai.finetune.model import load_classifier
from brainxai.finetune.runs import RunSpec
from brainxai.labels import parse_kaggle_folder
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


@dataclass(frozen=True)
class Planted:
    """A control's data: its cache variant and, where the control moved the lesions
    (``pasted``), the lesion mask of every cache row at the cache's size (else None: the
    masks on disk hold)."""

    cache: Cache
    lesion: np.ndarray | None = None


def pasted_variant(cache: Cache, cfg: ControlsConfig, root: Path) -> Planted:
    """:func:`brainxai.finetune.controls.paste_lesion` on every tumour image: its lesion on
    a normal slice of its split (:func:`~brainxai.finetune.controls.pick_donors`). A tumour
    image with no lesion mask, or with no normal slice to go on, leaves the cell's data
    (``ok`` False, with the reason), counted, never silently."""
    index = cache.index.reset_index(drop=True)
    size = cache.images.shape[-1]
    ok = index["ok"].to_numpy(bool)
    normal = ok & (index["group"].astype(str) == NORMAL_GROUP).to_numpy()
    tumour = ok & ~normal
    lesion_all = np.zeros(cache.images.shape, dtype=bool)
    has_mask = np.zeros(len(index), dtype=bool)
    pos = np.flatnonzero(tumour)
    masks, _ = masks_2d(index.iloc[pos], root, size)
    if cfg.paste_margin_px > 0:  # the core and the tissue around it (oedema, mass effect)
        masks = np.stack([ndimage.binary_dilation(m, iterations=cfg.paste_margin_px)
                          if m.any() else m for m in masks])  # fmt: skip
    source_mask = dict(zip(pos, masks, strict=True))  # index position -> its cut-out
    has_mask[pos] = masks.any(axis=(1, 2))
    parsed = [parse_kaggle_folder(str(lab)) for lab in index["label"]]
    seqs = np.array([p[1] if p else "" for p in parsed], dtype=object)
    splits = index["split"].astype(str).to_numpy()
    donors = pick_donors(splits, seqs, tumour & has_mask, normal,
                         dict(cfg.paste_donor_sequence), cfg.seed)  # fmt: skip
    images = np.array(cache.images, dtype=np.uint8, copy=True)
    rows = index["row"].to_numpy()
    heads = head_masks(images[rows[normal]], cfg.head_threshold, cfg.head_smooth_px,
                       cfg.head_noise_k)  # fmt: skip
    head_of = dict(zip(np.flatnonzero(normal), heads, strict=True))
    for i in np.flatnonzero(donors >= 0):
        rng = np.random.default_rng([cfg.seed, int(i)])
        d, r = int(donors[i]), int(rows[i])
        images[r], lesion_all[r] = paste_lesion(images[rows[d]], cache.images[r],
                                                source_mask[i], head_of[d], rng,
                                                cfg.paste_tries)  # fmt: skip
    reason = np.where(~has_mask, "pasted control: tumour image without a lesion mask",
                      "pasted control: no normal slice of its split and sequence")  # fmt: skip
    dropped = tumour & (donors < 0)
    index = index.assign(
        ok=ok & ~dropped,
        reason=np.where(dropped, reason, index.get("reason", pd.Series("", index=index.index))
                        .fillna("").astype(str)),
    )  # fmt: skip
    return Planted(Cache(images, index), lesion_all)


def variant(control: str, cache: Cache, cfg: ControlsConfig, root: Path | None = None) -> Planted:
    """The data a control trains on: tags in train/val (``shortcut``), labels permuted
    within the training split (``random_labels``), lesions moved onto normal slices
    (``pasted``; needs the study ``root`` for the masks), unchanged (``positive``)."""
    index = cache.index.reset_index(drop=True)
    if control == "shortcut":
        size = cache.images.shape[-1]
        tag_px, margin = tag_geometry(cfg, size)
        slots = tag_slots(len(CLASS_NAMES), size, tag_px, margin)
        rows = index.loc[index["ok"] & index["split"].isin(["train", "val"]), "row"].to_numpy()
        ids = _class_ids(index, len(cache.images))
        return Planted(Cache(burn_tags(cache.images, ids, rows, slots, tag_px, cfg.tag_value),
                             index))  # fmt: skip
    if control == "random_labels":
        train = np.flatnonzero((index["ok"] & (index["split"] == "train")).to_numpy())
        return Planted(Cache(cache.images, index.assign(
            label=permute_labels(index["label"], train, cfg.seed))))  # fmt: skip
    if control == "pasted":
        if root is None:
            raise ValueError("the pasted control needs the study root (its lesion masks)")
        return pasted_variant(cache, cfg, root)
    if control == "positive":
        return Planted(cache)
    raise ValueError(f"unknown control {control!r}")


def _inputs(images: np.ndarray, size: int) -> torch.Tensor:
    """(N, 1, S, S) float in [0, 1] at the model's input size (as the xai stage feeds)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float()[:, None] / 255.0
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                          align_corners=False)  # fmt: skip
    return x.clamp_(0.0, 1.0)


def _resized_masks(masks: np.ndarray, size: int) -> np.ndarray:
    """(N, S, S) bool masks at ``size`` (nearest), as the model sees the images."""
    if masks.shape[-1] == size:
        return np.asarray(masks, dtype=bool)
    m = torch.from_numpy(np.ascontiguousarray(masks, dtype=np.float32))[:, None]
    return (F.interpolate(m, size=(size, size), mode="nearest")[:, 0] > 0.5).numpy()


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
    lesion: np.ndarray | None = None,
) -> dict[str, Any]:
    """``cam_method`` (and ``compare_methods``) on (at most ``explain_images``) test images
    of the true class: pointing
    game on lesion masks (tumour classes), relevance outside the head and on the tag,
    C-Score; a ``shortcut`` model is explained on test images carrying their tag.
    ``lesion``: the masks of every cache row where the control moved the lesions (else
    the masks on disk under ``root``)."""
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
    head = head_masks((x_clean[:, 0] * 255).numpy(), ccfg.head_threshold, ccfg.head_smooth_px,
                      ccfg.head_noise_k)  # fmt: skip
    tag = ((x - x_clean).abs()[:, 0] > 0.25).numpy()
    if lesion is None:
        lesion, _ = masks_2d(table, root, image_size)
    else:
        lesion = _resized_masks(lesion[rows], image_size)
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
        if control in POSITIVE_CONTROLS:
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
    source: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train the control's cell and measure it; returns the numbers :func:`verdicts`
    reads, the history, the checkpoints and the test predictions. ``source``
    (:func:`brainxai.finetune.stage.positive_source`): the study's own cell this control
    is (the positive control: random-init full fine-tuning), measured instead of trained
    again; its history is the checkpoints' validation scores."""
    if source is not None and control != "positive":
        raise ValueError(f"only the positive control reuses a study cell, not {control!r}")
    spec = RunSpec(f"ctrl-{control.replace('_', '-')}", "finetune", ccfg.fraction, ccfg.seed)
    if int(ccfg.epochs.get(control, 0)) > 0:
        cfg = dataclasses.replace(
            cfg, tune=dataclasses.replace(cfg.tune, epochs=int(ccfg.epochs[control]))
        )
    planted = variant(control, cache, ccfg, root)
    var = planted.cache
    data = CellData.of(var, train_record_ids)
    if source is None:
        res = run_finetune(spec, cfg, backbone, var, data, "", "", run_dir)
    else:
        res = {"checkpoints": source["checkpoints"],
               "predictions": pd.read_parquet(source["predictions"]),
               "history": [{"epoch": c["epoch"], "val_macro_f1": c["val_macro_f1"]}
                           for c in source["checkpoints"]],
               "selected_epoch": source["selected_epoch"], "n_train": source["n_train"],
               "seconds": source["seconds"]}  # fmt: skip
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
        "reused_run": source["run"] if source else "",
    }
    # the explanations are judged on the control's test split (clean for the shortcut, its
    # tags burned in by explain; the lesions moved for the pasted control)
    measured |= explain(control, model.cpu(), var, data.test.reset_index(drop=True), root,
                        ccfg, backbone.image_size, cam_layers, planted.lesion)  # fmt: skip
    measured["n_dropped"] = int(cache.index["ok"].sum() - var.index["ok"].sum())
    return {"control": control, "measured": measured, "history": res["history"],
            "checkpoints": res["checkpoints"], "predictions": preds}  # fmt: skip


__all__ = ["Planted", "control_run_name", "explain", "pasted_variant", "run_control", "variant"]
