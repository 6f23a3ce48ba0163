"""N4 bias-field correction (Tustison et al., IEEE TMI 2010) inside the brain mask."""

from __future__ import annotations

import ants
import numpy as np

from brainxai.standardize.config import N4Config


def n4(img: ants.ANTsImage, mask: ants.ANTsImage, cfg: N4Config) -> ants.ANTsImage:
    """``img / b`` with the smooth field ``b`` fitted by N4 on the voxels of ``mask``.

    Intensities are shifted to be positive first (N4 works on log intensities).
    """
    if not cfg.enabled:
        return img
    x = img.numpy()
    shift = float(min(0.0, x.min()))
    pos = img - shift + 1.0 if shift < 0 else img + 1.0
    out = ants.n4_bias_field_correction(
        pos,
        mask=mask,
        shrink_factor=cfg.shrink_factor,
        convergence={"iters": list(cfg.iterations), "tol": cfg.tolerance},
        spline_param=cfg.spline_distance_mm,
    )
    corrected = out.numpy() - 1.0 + shift
    return img.new_image_like(corrected.astype(np.float32))
