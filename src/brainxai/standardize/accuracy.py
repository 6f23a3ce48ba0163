"""Accuracy of standardization against the synthetic generator's ground truth.

The generator (:mod:`brainxai.synth`) knows, per subject, the intracranial (brain) mask,
the tissue labels, the lesion, the multiplicative bias field and the exact scanner ->
MNI mapping. These functions compare the stage's outputs with them:

* :func:`brain_mask_dice` - predicted vs true brain mask on the predicted grid; with
  ``exclude_rim_mm`` the truth is eroded by the extra-axial CSF rim, i.e. the brain
  surface without the CSF shell (HD-BET's definition of "brain");
* :func:`tissue_dice` - true tissue labels warped to MNI through the saved forward
  transforms vs the template's CSF/GM/WM labels;
* :func:`template_lesion_mask` - the generator's lesion core in template space, the
  reference for the lesion mask carried through the same transforms;
* :func:`wm_cov` - coefficient of variation of white matter before/after N4 and after
  dividing by the known bias field (the floor N4 can reach).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import ants
import nibabel as nib
import numpy as np
from scipy import ndimage

from brainxai.labels import TISSUE_LABELS
from brainxai.standardize.qc import coefficient_of_variation, dice
from brainxai.standardize.register import apply
from brainxai.standardize.template import CSF, GM, WM, Template

_CODE = {name: code for code, name in TISSUE_LABELS.items()}


def _on_grid(path_or_img: str | Path | ants.ANTsImage, grid: ants.ANTsImage) -> np.ndarray:
    img = (
        path_or_img
        if isinstance(path_or_img, ants.ANTsImage)
        else ants.image_read(str(path_or_img))
    )
    return ants.resample_image_to_target(img, grid, interp_type="nearestNeighbor").numpy()


def brain_mask_dice(
    pred: ants.ANTsImage, truth_path: str | Path, exclude_rim_mm: float = 0.0
) -> float:
    """Dice of ``pred`` (0/1) with the true brain mask resampled onto its grid."""
    truth = _on_grid(truth_path, pred) > 0
    if exclude_rim_mm > 0:
        depth = ndimage.distance_transform_edt(truth, sampling=pred.spacing)
        truth = depth > exclude_rim_mm
    return dice(pred.numpy() > 0, truth)


def tissue_dice(truth_dseg: str | Path, fwd: Sequence[str], template: Template) -> dict[str, float]:
    """Dice per tissue (csf, gm, wm) of the warped true labels vs the template labels."""
    dseg = ants.image_read(str(truth_dseg))
    warped = apply(dseg, template.t1, list(fwd), kind="label").numpy()
    ref = template.tissue.numpy()
    out = {}
    for name, code in (("csf", CSF), ("gm", GM), ("wm", WM)):
        out[name] = dice(np.rint(warped) == _CODE[name], ref == code)
    return out


def template_lesion_mask(model, grid: ants.ANTsImage) -> np.ndarray:
    """The generator's tumour core (fraction >= 0.5) in template space, on ``grid``."""
    from brainxai.synth import template_lesion

    core = template_lesion(model)[:3].sum(0) >= 0.5
    img = ants.from_nibabel_nifti(nib.Nifti1Image(core.astype(np.float32), model.anatomy.affine))
    return _on_grid(img, grid) > 0


def wm_cov(
    image: ants.ANTsImage,
    corrected: ants.ANTsImage,
    bias_path: str | Path,
    dseg_path: str | Path,
    lesion_dseg_path: str | Path | None = None,
) -> dict[str, float]:
    """WM coefficient of variation: raw, N4-corrected, and raw / true bias (oracle).

    White matter = true tissue label ``wm`` away from any lesion/oedema (the generator
    merges oedema into WM), eroded by one voxel against partial volume.
    """
    wm = _on_grid(dseg_path, image) == _CODE["wm"]
    if lesion_dseg_path is not None:
        wm &= _on_grid(lesion_dseg_path, image) == 0
    wm = ndimage.binary_erosion(wm)
    bias = ants.resample_image_to_target(
        ants.image_read(str(bias_path)), image, interp_type="linear"
    )
    x = image.numpy()
    oracle = x / np.maximum(bias.numpy(), 1e-3)
    return {
        "before": coefficient_of_variation(x, wm),
        "after": coefficient_of_variation(corrected.numpy(), wm),
        "oracle": coefficient_of_variation(oracle, wm),
    }
