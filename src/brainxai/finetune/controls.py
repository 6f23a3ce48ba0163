"""Planted controls: do the metrics catch a wrong model? (issue 15, item 4)

Each control is one fine-tuning cell (random init, one fraction, one seed) on the same
code path as the real runs (:func:`brainxai.finetune.cell.run_finetune`), on a variant of
the decoded cache whose truth is known by construction:

* ``shortcut`` - *right for the wrong reasons*. A bright square tag at a class-specific
  position outside the head (where scanner annotations sit) is burned into every training
  and validation image of its class; test images are clean. A model that uses the tag
  scores high on val and drops on test; explained on test images carrying their class's
  tag, its relevance lies outside the brain and its lesion pointing game is near 0 - while
  its C-Score can stay high: consistency without correctness (paper 004, §5).
* ``random_labels`` - labels permuted within the training split (val and test keep the
  truth): test macro-F1 must fall inside the chance interval and gold lists stay empty.
* ``positive`` - *right for the right reasons*: the lesion-driven model (clean data).
  GradCAM's pointing game on the tumour classes must reach ``pointing_min`` and beat the
  random-heatmap and centre-prior baselines by ``baseline_ratio``. This cell is the study's
  own random-init full fine-tuning run at the controls' fraction and seed; where the study
  trains it, that model is measured (``positive_from_run``), not trained a second time.
* ``pasted`` - the positive control with a known answer (the known-signal benchmarks of
  papers 001 / 002): every tumour image's lesion is cut out along its mask and pasted at a
  random position inside the head of a *normal* slice of the same split (and sequence), its
  mask moving with it. Slice level and anatomy no longer tell the tumour type - on the
  clean slices they do, because each phenotype grows at its own site - so the lesion is the
  only evidence of it, and a correct explanation must point at it. Same targets as
  ``positive``.

:func:`verdicts` turns the measured numbers into pass / fail / uninformative rows; a
target missed is reported with its number, never lowered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage
from skimage.filters import threshold_otsu

from brainxai.finetune.config import CONTROLS, POSITIVE_CONTROLS, ControlsConfig
from brainxai.finetune.evaluate import macro_f1
from brainxai.xai.baselines import centre_gaussian_baseline, random_baseline
from brainxai.xai.groundtruth import pointing_game, relevance_mass_accuracy

# ----------------------------------------------------------------------------- variants


def tag_slots(n_classes: int, size: int, tag_px: int, margin_px: int) -> np.ndarray:
    """Top-left corner ``(row, col)`` of each class's tag: spread along the top and the
    bottom border (first half of the classes on top), never overlapping; (K, 2) int."""
    top = (n_classes + 1) // 2
    rows = np.where(np.arange(n_classes) < top, margin_px, size - margin_px - tag_px)
    pos_in_row = np.where(np.arange(n_classes) < top, np.arange(n_classes),
                          np.arange(n_classes) - top)  # fmt: skip
    per_row = max(top, n_classes - top)
    span = size - 2 * margin_px - tag_px
    if per_row * tag_px > span + tag_px:
        raise ValueError(f"{n_classes} tags of {tag_px} px do not fit along a {size} px side")
    cols = margin_px + np.round(pos_in_row * span / max(per_row - 1, 1)).astype(int)
    return np.stack([rows, cols], axis=1).astype(np.int64)


def tag_geometry(cfg: ControlsConfig, size: int) -> tuple[int, int]:
    """``(tag_px, margin_px)`` of a ``size`` px cache."""
    return max(2, round(cfg.tag_size * size)), round(cfg.tag_margin * size)


def burn_tags(
    images: np.ndarray, classes: np.ndarray, rows: np.ndarray, slots: np.ndarray, tag_px: int,
    value: int,
) -> np.ndarray:  # fmt: skip
    """A copy of uint8 ``images`` (N, S, S) with class ``classes[i]``'s tag burned into
    every row ``i`` in ``rows`` (other rows, and rows of class -1, untouched)."""
    out = np.array(images, dtype=np.uint8, copy=True)
    for i in np.asarray(rows, dtype=np.int64):
        if classes[i] < 0:  # not a labelled image: no class, no tag
            continue
        r, c = slots[int(classes[i])]
        out[i, r : r + tag_px, c : c + tag_px] = value
    return out


def tag_masks(classes: np.ndarray, slots: np.ndarray, tag_px: int, size: int) -> np.ndarray:
    """(N, S, S) bool: where image ``i``'s class tag is."""
    out = np.zeros((len(classes), size, size), dtype=bool)
    for i, k in enumerate(np.asarray(classes, dtype=np.int64)):
        r, c = slots[k]
        out[i, r : r + tag_px, c : c + tag_px] = True
    return out


def head_mask(image: np.ndarray, floor: float, smooth_px: float, noise_k: float) -> np.ndarray:
    """(S, S) bool: the head of one magnitude image. The background's noise rises above any
    low fixed threshold pixel by pixel (median 6, p95 12 grey levels in the demo cache), so:
    smooth (Gaussian, ``smooth_px``), split background from tissue (Otsu 1979), threshold at
    the background's median + ``noise_k`` robust SDs (MAD; never below ``floor``), keep the
    largest connected region, fill its holes."""
    sm = ndimage.gaussian_filter(np.asarray(image, dtype=np.float32), smooth_px)
    if sm.max() <= sm.min():  # a flat image has no head
        return np.zeros(sm.shape, dtype=bool)
    bg = sm[sm < threshold_otsu(sm)]
    med = float(np.median(bg)) if bg.size else 0.0
    mad = float(np.median(np.abs(bg - med))) * 1.4826 if bg.size else 0.0
    fg = sm > max(floor, med + noise_k * mad)
    lab, n = ndimage.label(fg)
    if n > 1:
        fg = lab == 1 + int(np.argmax(ndimage.sum(fg, lab, range(1, n + 1))))
    return ndimage.binary_fill_holes(fg)


def head_masks(
    images: np.ndarray, threshold: float, smooth_px: float = 1.0, noise_k: float = 6.0
) -> np.ndarray:
    """(N, S, S) bool: :func:`head_mask` of each image (``threshold``: its floor)."""
    return np.stack([head_mask(im, threshold, smooth_px, noise_k) for im in np.asarray(images)])


def permute_labels(labels: pd.Series, rows: np.ndarray, seed: int) -> pd.Series:
    """``labels`` with the entries at positions ``rows`` permuted among themselves."""
    out = labels.copy()
    pos = np.asarray(rows, dtype=np.int64)
    perm = np.random.default_rng(seed).permutation(pos)
    out.iloc[pos] = labels.iloc[perm].to_numpy()
    return out


def lesion_box(mask: np.ndarray) -> tuple[slice, slice]:
    """The bounding box of a non-empty (S, S) mask."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def paste_lesion(
    donor: np.ndarray,
    source: np.ndarray,
    mask: np.ndarray,
    head: np.ndarray,
    rng: np.random.Generator,
    tries: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Copy the lesion pixels of ``source`` (``mask``, non-empty) into ``donor`` at a random
    position: the first of ``tries`` uniform draws of the lesion box's corner at which the
    whole lesion lies inside the donor's ``head``, else the draw with the fewest lesion
    pixels outside it. Returns the new image and the moved mask (the lesion's truth)."""
    rows, cols = lesion_box(mask)
    crop = mask[rows, cols]
    h, w = crop.shape
    size_r, size_c = donor.shape
    best: tuple[int, int, int] | None = None
    for _ in range(max(1, tries)):
        r = int(rng.integers(0, size_r - h + 1))
        c = int(rng.integers(0, size_c - w + 1))
        outside = int((crop & ~head[r : r + h, c : c + w]).sum())
        if best is None or outside < best[0]:
            best = (outside, r, c)
        if outside == 0:
            break
    assert best is not None
    _, r, c = best
    image = np.array(donor, copy=True)
    moved = np.zeros_like(mask, dtype=bool)
    moved[r : r + h, c : c + w] = crop
    image[moved] = source[rows, cols][crop]
    return image, moved


def pick_donors(
    splits: np.ndarray,
    sequences: np.ndarray,
    recipients: np.ndarray,
    normals: np.ndarray,
    fallback: dict[str, str],
    seed: int,
) -> np.ndarray:
    """For each row: a random ``normals`` row of the same split and sequence (else of the
    sequence ``fallback`` names for it: a contrast-enhanced T1 has no normal slices, a T1
    stands in), -1 for rows that are not ``recipients`` or have no such normal row. Donors
    never cross a split, so no patient's anatomy leaks between train, val and test."""
    rng = np.random.default_rng(seed)
    out = np.full(len(splits), -1, dtype=np.int64)
    pool: dict[tuple[str, str], np.ndarray] = {}
    pairs = zip(splits[normals], sequences[normals], strict=True)
    for key in {(str(a), str(b)) for a, b in pairs}:
        pool[key] = np.flatnonzero(normals & (splits == key[0]) & (sequences == key[1]))
    for i in np.flatnonzero(recipients):
        seq = str(sequences[i])
        cands = pool.get((str(splits[i]), seq))
        if cands is None and seq in fallback:
            cands = pool.get((str(splits[i]), fallback[seq]))
        if cands is not None and len(cands):
            out[i] = int(rng.choice(cands))
    return out


# ------------------------------------------------------------------------------ metrics


def outside_mass(maps: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Share of positive relevance outside ``inside`` per map: ``1 - Σ_in R⁺ / Σ R⁺``."""
    return 1.0 - relevance_mass_accuracy(maps, inside)


def occlusion_reliance(
    predict: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    evidence: np.ndarray,
    labels: np.ndarray,
    head: np.ndarray,
) -> dict[str, float]:
    """Does the model use ``evidence``? (occlusion, Zeiler & Fergus 2014): the mean drop of
    p(true class) when the evidence pixels take the image's median head value, minus the
    drop when the same region moved by half the image side is occluded the same way.

    ``predict`` maps ``(N, S, S)`` images to ``(N, K)`` probabilities; ``evidence`` and
    ``head`` are ``(N, S, S)`` bool; rows without evidence are left out."""
    keep = evidence.reshape(len(evidence), -1).any(axis=1)
    if not keep.any():
        return {"drop_evidence": float("nan"), "drop_elsewhere": float("nan"),
                "reliance": float("nan"), "n": 0}  # fmt: skip
    x, ev, hd, y = images[keep], evidence[keep], head[keep], labels[keep]
    size = x.shape[-1]
    moved = np.roll(ev, (size // 2, size // 2), axis=(1, 2))
    pairs = zip(x, hd, strict=True)
    fill = np.array([np.median(im[h]) if h.any() else np.median(im) for im, h in pairs])
    rows = np.arange(len(x))

    def p_true(arr: np.ndarray) -> np.ndarray:
        return np.asarray(predict(arr))[rows, y]

    def occluded(mask: np.ndarray) -> np.ndarray:
        return np.where(mask, fill[:, None, None], x).astype(x.dtype)

    p0 = p_true(x)
    drop_ev = float(np.mean(p0 - p_true(occluded(ev))))
    drop_else = float(np.mean(p0 - p_true(occluded(moved))))
    return {"drop_evidence": drop_ev, "drop_elsewhere": drop_else,
            "reliance": drop_ev - drop_else, "n": int(keep.sum())}  # fmt: skip


def chance_interval(
    y_true: np.ndarray, y_pred: np.ndarray, n: int, level: float, seed: int
) -> tuple[float, float]:
    """Central ``level`` interval of macro-F1 when the predictions are permuted against
    the truth (the model's own class frequencies, no information)."""
    rng = np.random.default_rng(seed)
    f1 = [macro_f1(y_true, rng.permutation(y_pred)) for _ in range(n)]
    lo, hi = np.quantile(f1, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def pointing_baselines(masks: np.ndarray, seed: int) -> dict[str, float]:
    """Pointing game of a random heatmap and of the centre prior on ``masks`` (N, S, S)."""
    shape = masks.shape
    return {
        "random": float(np.nanmean(pointing_game(random_baseline(shape, seed), masks))),
        "centre": float(np.nanmean(pointing_game(centre_gaussian_baseline(shape), masks))),
    }


# ----------------------------------------------------------------------------- verdicts


def _row(control: str, check: str, measured: float | None, target: str, passed: bool | None,
         note: str = "", comparison: bool = False) -> dict[str, Any]:  # fmt: skip
    """One verdict; ``comparison``: a control's criterion applied to a further method
    (:func:`method_rows`), not one of the issue's targets."""
    status = "uninformative" if passed is None else ("pass" if passed else "fail")
    value = None if measured is None or not np.isfinite(measured) else round(float(measured), 4)
    return {"control": control, "check": check, "measured": value, "target": target,
            "status": status, "note": note, "comparison": comparison}  # fmt: skip


def _finite(x: Any) -> bool:
    return x is not None and bool(np.isfinite(x))


def verdicts(m: dict[str, dict[str, Any]], cfg: ControlsConfig) -> list[dict[str, Any]]:
    """Pass / fail / uninformative per check, from :func:`measure`'s numbers per control."""
    rows: list[dict[str, Any]] = []
    for name in [c for c in POSITIVE_CONTROLS if c in m]:
        p = m[name]
        pg, base = p.get("pointing_tumour"), p.get("baselines", {})
        n = p.get("n_tumour_masks", 0)
        ok = _finite(pg) and n > 0
        rows.append(_row(name, "pointing game, tumour classes", pg,
                         f">= {cfg.pointing_min}", (pg >= cfg.pointing_min) if ok else None,
                         f"{n} test images with a lesion mask"))  # fmt: skip
        for which in ("random", "centre"):
            b = base.get(which)
            good = ok and _finite(b) and b > 0  # a zero baseline leaves the ratio undefined
            note = f"{which} baseline {b:.3f}" if _finite(b) else "no baseline"
            note += "; ratio undefined" if _finite(b) and b <= 0 else ""
            rows.append(_row(name, f"pointing game / {which} baseline",
                             pg / b if good and b > 0 else None, f">= {cfg.baseline_ratio}x",
                             (pg >= cfg.baseline_ratio * b) if good else None, note))  # fmt: skip
        rel = p.get("lesion_reliance")
        rows.append(_row(name, "model relies on the lesion (occlusion)", rel,
                         f">= {cfg.reliance_min}", rel >= cfg.reliance_min if _finite(rel)
                         else None, "p(true) drop, lesion occluded minus elsewhere"))  # fmt: skip
        rows.append(_row(name, "test macro-F1 above chance", p.get("test_macro_f1"),
                         f"> {p.get('chance_high', float('nan')):.3f}",
                         p.get("test_macro_f1", 0) > p.get("chance_high", 1)))  # fmt: skip
    if "shortcut" in m:
        s = m["shortcut"]
        rows.append(_row("shortcut", "val macro-F1 (tagged)", s.get("val_macro_f1"),
                         f">= {cfg.shortcut_val_min}",
                         s.get("val_macro_f1", 0) >= cfg.shortcut_val_min))  # fmt: skip
        drop = s.get("val_macro_f1", np.nan) - s.get("test_macro_f1", np.nan)
        rows.append(_row("shortcut", "val - test macro-F1 (clean test)", drop,
                         f">= {cfg.shortcut_drop_min}", drop >= cfg.shortcut_drop_min
                         if _finite(drop) else None))  # fmt: skip
        rel = s.get("tag_reliance")
        rows.append(_row("shortcut", "model relies on the tag (occlusion)", rel,
                         f">= {cfg.reliance_min}", rel >= cfg.reliance_min if _finite(rel)
                         else None, "p(true) drop, tag occluded minus elsewhere"))  # fmt: skip
        out = s.get("outside_head_mass")
        rows.append(_row("shortcut", "relevance mass outside the head", out,
                         f">= {cfg.shortcut_outside_min}",
                         out >= cfg.shortcut_outside_min if _finite(out) else None,
                         f"tag mass {s.get('tag_mass', float('nan')):.3f}"))  # fmt: skip
        pg = s.get("pointing_tumour")
        rows.append(_row("shortcut", "lesion pointing game", pg,
                         f"<= {cfg.shortcut_pointing_max}",
                         pg <= cfg.shortcut_pointing_max if _finite(pg) else None))  # fmt: skip
        cs = s.get("cscore")
        rows.append(_row("shortcut", "C-Score (reported, no target)", cs, "-", None,
                         "consistency without correctness" if _finite(cs) else
                         "fewer than 2 gold images per class"))  # fmt: skip
    rows += method_rows(m, cfg)
    for name in [c for c in POSITIVE_CONTROLS if c in m and "shortcut" in m]:
        rows += direction_rows(m["shortcut"], m[name], name)
    if "random_labels" in m:
        r = m["random_labels"]
        f1, lo, hi = r.get("test_macro_f1"), r.get("chance_low"), r.get("chance_high")
        rows.append(_row("random_labels", "test macro-F1 inside the chance interval", f1,
                         f"in [{lo:.3f}, {hi:.3f}]" if _finite(lo) else "-",
                         (lo <= f1 <= hi) if _finite(f1) and _finite(lo) else None))  # fmt: skip
        g = r.get("classes_with_gold")
        rows.append(_row("random_labels", "classes with a gold list of >= 2 images", g, "0",
                         g == 0 if g is not None else None,
                         f"{r.get('gold_images', 0)} gold images in all"))  # fmt: skip
    return rows


def method_rows(m: dict[str, dict[str, Any]], cfg: ControlsConfig) -> list[dict[str, Any]]:
    """The positive and shortcut criteria applied to every compared method (``cam_method``
    has its rows in :func:`verdicts`): pointing game on the lesion >= ``pointing_min`` and
    >= ``baseline_ratio`` x both baselines; relevance mass outside the head >=
    ``shortcut_outside_min``. Which methods find the planted evidence (paper 002 finds
    GradCAM failing and SmoothGrad reliable on neuroimaging with known signal)."""
    rows: list[dict[str, Any]] = []
    s = m.get("shortcut", {})
    pos = {c: m[c] for c in POSITIVE_CONTROLS if c in m}
    named = [k for p in pos.values() for k in p.get("methods", {})] + [*s.get("methods", {})]
    methods = [k for k in dict.fromkeys(named) if k != cfg.cam_method]
    for method in methods:
        for name, p in pos.items():
            if method not in p.get("methods", {}):
                continue
            base = [b for b in p.get("baselines", {}).values() if _finite(b)]
            pg = p["methods"][method].get("pointing_tumour")
            ok = _finite(pg) and p.get("n_tumour_masks", 0) > 0 and bool(base)
            floor = max([cfg.pointing_min, *(cfg.baseline_ratio * b for b in base)])
            rows.append(_row(name, f"{method}: pointing game, tumour classes", pg,
                             f">= {floor:.3f} (>= {cfg.pointing_min}, >= "
                             f"{cfg.baseline_ratio}x both baselines)",
                             pg >= floor if ok else None, "method comparison",
                             comparison=True))  # fmt: skip
        if method in s.get("methods", {}):
            out = s["methods"][method].get("outside_head_mass")
            tag = s["methods"][method].get("tag_mass", float("nan"))
            rows.append(_row("shortcut", f"{method}: relevance mass outside the head", out,
                             f">= {cfg.shortcut_outside_min}",
                             out >= cfg.shortcut_outside_min if _finite(out) else None,
                             f"method comparison; tag mass {tag:.3f}",
                             comparison=True))  # fmt: skip
    return rows


def direction_rows(
    shortcut: dict[str, Any], positive: dict[str, Any], name: str = "positive"
) -> list[dict[str, Any]]:
    """Per CAM method: does the shortcut model's relevance lie outside the head more than
    the lesion model's (mass, and the argmax)? The controls' direction, method by method;
    ``name``: which lesion model (a control of ``POSITIVE_CONTROLS``)."""
    rows = []
    per_s, per_p = shortcut.get("methods", {}), positive.get("methods", {})
    for method in [k for k in per_s if k in per_p]:
        for key, what in (("outside_head_mass", "relevance mass"),
                          ("outside_head_pointing", "argmax")):  # fmt: skip
            a, b = per_s[method].get(key), per_p[method].get(key)
            ok = _finite(a) and _finite(b)
            rows.append(_row(f"shortcut vs {name}", f"{method}: {what} outside the head, "
                             f"shortcut minus {name}", a - b if ok else None, "> 0",
                             a > b if ok else None,
                             f"shortcut {a:.3f}, {name} {b:.3f}" if ok else ""))  # fmt: skip
    return rows


__all__ = [
    "CONTROLS",
    "ControlsConfig",
    "burn_tags",
    "chance_interval",
    "direction_rows",
    "head_mask",
    "head_masks",
    "lesion_box",
    "method_rows",
    "occlusion_reliance",
    "outside_mass",
    "paste_lesion",
    "permute_labels",
    "pick_donors",
    "pointing_baselines",
    "tag_geometry",
    "tag_masks",
    "tag_slots",
    "verdicts",
]
