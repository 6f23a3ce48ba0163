"""Known-transform round trip: a synthetic head with a known pose + smooth warp.

The generator maps every native point ``y`` to template space exactly
(``model.geometry.template_coords``). After registering the subject to the MNI152
brain template, template points pulled back through the saved inverse transforms must
land where the generator says they came from (within a few mm at 2 mm voxels).
"""

from __future__ import annotations

from pathlib import Path

import ants
import numpy as np
import pytest

from brainxai.standardize import StandardizeConfig
from brainxai.standardize.qc import dice
from brainxai.standardize.register import apply, register, set_seed
from brainxai.standardize.template import load_template
from brainxai.synth import SynthConfig, plan_cohort3d, synthesize_subject

TINY = {
    "n_subjects_3d_per_class": 1,
    "n_subjects_2d_per_group": 1,
    "slices_per_subject": 2,
    "spacing_choices": [[1.0, 1.0, 1.5]],
    "orientation_choices": ["LPS"],
    "image_size_min": 96,
    "image_size_max": 200,
}
SMOKE_REG = {
    "rigid_iterations": [100, 50],
    "affine_iterations": [100, 50],
    "shrink_factors": [4, 2],
    "smoothing_sigmas": [2.0, 1.0],
    "syn_iterations": [30, 15, 0],
    "grad_step": 0.2,
}


def _ants_from_ras(data: np.ndarray, affine: np.ndarray) -> ants.ANTsImage:
    import nibabel as nib

    return ants.from_nibabel_nifti(nib.Nifti1Image(data.astype(np.float32), affine))


@pytest.fixture(scope="module")
def subject():
    cfg = SynthConfig.from_dict(TINY)
    return synthesize_subject(plan_cohort3d(cfg, 11)[0], cfg)


def test_known_transform_round_trip(subject, tmp_path):
    vol = subject
    conf = StandardizeConfig.from_dict({"spacing_mm": 2.0, "registration": SMOKE_REG})
    set_seed(1)
    brain = vol.brain_mask.astype(np.float32)
    img = _ants_from_ras(vol.images["T1C+"] * brain, vol.affine)
    tmpl = load_template(2.0)
    raw = register(tmpl.t1, img, conf.registration)
    work = Path(raw.work_dir)
    assert work.is_dir() and all(Path(f).parent == work for f in raw.fwd + raw.inv)
    tx = raw.save(tmp_path, "to_mni")
    # ANTs' outputs (every stage's, intermediate ones included) live and die in one dir
    assert not work.exists()
    assert all(Path(f).parent == tmp_path for f in tx.fwd + tx.inv)

    # template points inside the brain (MNI RAS mm) -> ITK LPS physical coordinates
    rng = np.random.default_rng(0)
    ijk = np.argwhere(tmpl.brain.numpy() > 0)
    ijk = ijk[rng.choice(len(ijk), 400, replace=False)].astype(float)
    lps = np.array([tmpl.brain.origin]) + (ijk * 2.0) @ np.asarray(tmpl.brain.direction).T
    import pandas as pd

    pts = pd.DataFrame(lps, columns=["x", "y", "z"])
    native = ants.apply_transforms_to_points(
        3, pts, list(tx.fwd)
    ).to_numpy()  # points move with the forward list's inverse, i.e. template -> native
    world_ras = native * np.array([-1.0, -1.0, 1.0])
    truth = vol.model.geometry.template_coords(world_ras.astype(np.float32))
    mni_ras = lps * np.array([-1.0, -1.0, 1.0])
    err = np.linalg.norm(truth - mni_ras, axis=1)
    # initial misplacement (pose + warp) is far larger than what is left
    before = np.linalg.norm(
        vol.model.geometry.template_coords(mni_ras.astype(np.float32)) - mni_ras, axis=1
    )
    assert np.median(before) > 5.0
    assert np.median(err) < 2.5 and np.percentile(err, 90) < 5.0, (
        np.median(err),
        np.percentile(err, 90),
    )
    # the brain mask carried through the forward transforms overlaps the template's
    warped = apply(_ants_from_ras(brain, vol.affine), tmpl.t1, tx.fwd, kind="mask")
    assert set(np.unique(warped.numpy())) <= {0.0, 1.0}
    assert dice(warped.numpy(), tmpl.envelope.numpy()) > 0.9
