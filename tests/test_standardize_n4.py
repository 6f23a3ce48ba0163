"""N4 bias correction against fields known by construction.

* a two-compartment phantom multiplied by a hand-made smooth field: the corrected
  image's compartments are flat again and the estimated field equals the true one up
  to N4's free global scale;
* a generated head (the generator stores its bias field): the params' N4 removes most
  of the white-matter CoV the bias adds, i.e. it gets close to dividing by the truth.
"""

from __future__ import annotations

import ants
import numpy as np
import pytest
from scipy import ndimage

from brainxai.config import load_params
from brainxai.labels import TISSUE_LABELS
from brainxai.standardize.bias import n4
from brainxai.standardize.config import N4Config
from brainxai.standardize.qc import coefficient_of_variation
from brainxai.synth import SynthConfig, plan_cohort3d, synthesize_subject

from .conftest import REPO

WM = {name: code for code, name in TISSUE_LABELS.items()}["wm"]


def _params_n4(profile: str) -> N4Config:
    cfg = load_params(REPO / "params.yaml", profile=profile)["standardize"]["config"]
    return N4Config.from_dict(cfg["n4"])


def _ants(x: np.ndarray, spacing: float) -> ants.ANTsImage:
    return ants.from_numpy(x.astype(np.float32), spacing=(spacing,) * 3)


@pytest.mark.parametrize("profile", ["smoke", "full"])
def test_phantom_field_is_recovered(profile):
    """Sphere (inner 100, shell 60) x exp(0.25 x/R + 0.15 (y/R)^2), 1 % noise, 2 mm."""
    n, sp = 64, 2.0
    c = (np.indices((n, n, n)) - (n - 1) / 2) / (n / 2)  # -1..1 per axis
    r = np.sqrt((c**2).sum(0))
    brain = r < 0.85
    inner = r < 0.5
    clean = np.where(inner, 100.0, 60.0) * brain
    field = np.exp(0.25 * c[0] + 0.15 * c[1] ** 2)
    rng = np.random.default_rng(0)
    x = clean * field + rng.normal(0, 1.0, clean.shape) * brain
    core = ndimage.binary_erosion(inner, iterations=2)

    out = n4(_ants(x, sp), _ants(brain, sp), _params_n4(profile)).numpy()

    before = coefficient_of_variation(x, core)
    after = coefficient_of_variation(out, core)
    floor = coefficient_of_variation(x / field, core)  # = the 1 % noise
    assert before > 5 * floor  # the field dominates by construction
    assert after < 1.5 * floor
    # the estimated field x / out equals the true one up to a global factor
    est = np.log(x[brain] / np.maximum(out[brain], 1e-6))
    true = np.log(field[brain])
    assert np.corrcoef(est, true)[0, 1] > 0.98
    # both compartments flat: ratio of their means back to 100 / 60
    assert out[core].mean() / out[brain & (r > 0.6) & (r < 0.8)].mean() == pytest.approx(
        100 / 60, rel=0.03
    )


def test_generated_head_bias_mostly_removed():
    """The generator's own field: N4 (params) removes >= 80 % of the bias-induced CoV."""
    cfg = SynthConfig.from_dict(
        {
            "n_subjects_3d_per_class": 1,
            "n_subjects_2d_per_group": 1,
            "spacing_choices": [[2.0, 2.0, 2.0]],
            "image_size_min": 96,
            "image_size_max": 200,
            "bias_strength": 0.3,
        }
    )
    vol = synthesize_subject(plan_cohort3d(cfg, 5)[0], cfg)
    sp = float(vol.model.geometry.grid.spacing[0])
    x = vol.images["T1C+"].astype(np.float32)
    brain = vol.brain_mask > 0
    wm = ndimage.binary_erosion((vol.tissue_dseg == WM) & (vol.lesion_dseg == 0))

    out = n4(_ants(x, sp), _ants(brain, sp), _params_n4("smoke")).numpy()

    before = coefficient_of_variation(x, wm)
    after = coefficient_of_variation(out, wm)
    oracle = coefficient_of_variation(x / np.maximum(vol.bias, 1e-3), wm)
    assert before > 1.2 * oracle
    assert (before - after) / (before - oracle) >= 0.8
