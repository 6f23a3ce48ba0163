"""Synthetic MRI generator: configuration, anatomy, phenotypes, geometry and contrast."""

from __future__ import annotations

import numpy as np
import pytest

from brainxai.labels import DIAGNOSES_3D, KAGGLE_GROUPS, PHENOTYPES, SEQUENCES_3D
from brainxai.synth import (
    SynthConfig,
    build_model,
    plan_cohort3d,
    plan_kaggle2d,
    render,
    synthesize_subject,
    template_lesion,
)
from brainxai.synth.anatomy import load_anatomy
from brainxai.synth.lesions import CPA_BOX_MM, PINEAL_MM, SUPRASELLAR_MM
from brainxai.synth.spec import make_specs

nib = pytest.importorskip("nibabel")

#: Coarse output grid (3 mm) keeps each rendered subject well under a second.
FAST = SynthConfig(spacing_choices=((1.5, 1.5, 1.5),))
SEED = 1234


def _specs_for(phenotype: str, n: int = 1, seed: int = SEED):
    return make_specs(seed, "3d", [phenotype] * n, f"t-{phenotype}-")


def _model(phenotype: str, cfg: SynthConfig = FAST, index: int = 0, **kw):
    return build_model(_specs_for(phenotype, index + 1)[index], cfg, **kw)


@pytest.fixture(scope="module")
def anat():
    return load_anatomy(FAST.resolution_mm, FAST.head_pad_mm, FAST.tissue_sharpness)


# --- configuration and plans --------------------------------------------------------------


def test_config_from_dict_rejects_unknown_keys_and_round_trips():
    with pytest.raises(ValueError, match="unknown SynthConfig key"):
        SynthConfig.from_dict({"noise": 0.01, "nosie": 0.02})
    cfg = SynthConfig.from_dict(
        {"noise": 0, "spacing_choices": [[1, 1, 2]], "fov_margin_mm": [0, 5]}
    )
    assert cfg.noise == 0.0 and cfg.spacing_choices == ((1, 1, 2),)
    assert cfg.fov_margin_mm == (0, 5)
    assert SynthConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="orientation"):
        SynthConfig(orientation_choices=("RAR",))


def test_plans_are_balanced_shuffled_and_deterministic():
    cfg = SynthConfig(n_subjects_3d_per_class=3, n_subjects_2d_per_group=2)
    plan = plan_cohort3d(cfg, SEED)
    assert [s.subject_id for s in plan] == [f"sub-{i:03d}" for i in range(1, 13)]
    assert sorted(s.diagnosis for s in plan) == sorted(list(DIAGNOSES_3D) * 3)
    assert [s.diagnosis for s in plan] != [d for d in DIAGNOSES_3D for _ in range(3)]
    assert plan == plan_cohort3d(cfg, SEED) and plan != plan_cohort3d(cfg, SEED + 1)
    plan2d = plan_kaggle2d(cfg, SEED)
    assert sorted(s.phenotype for s in plan2d) == sorted(list(KAGGLE_GROUPS) * 2)
    # 3D and 2D exports never share a subject's random stream.
    assert {s.spawn_key for s in plan}.isdisjoint({s.spawn_key for s in plan2d})


# --- template anatomy --------------------------------------------------------------------


def test_template_anatomy(anat):
    res3 = anat.resolution_mm**3 / 1000.0
    assert 1300 < (anat.dist < 0).sum() * res3 < 2200  # intracranial volume, ml
    assert 10 < anat.ventricles.sum() * res3 < 60  # MNI152 ventricles, ml
    assert np.all(anat.gm + anat.wm + anat.csf <= 1.0 + 1e-5)
    # head shells fit in the padded grid
    assert anat.dist[0].min() > 25 and anat.dist[:, :, 0].min() > 15


# --- phenotypes: placement in template space ---------------------------------------------


def _template_core(model):
    maps = template_lesion(model)
    return maps[:3].sum(0) >= 0.5, maps


@pytest.mark.parametrize("phenotype", PHENOTYPES)
def test_lesion_site_in_template_space(phenotype, anat):
    for index in range(2):
        model = _model(phenotype, index=index)
        core, _ = _template_core(model)
        if phenotype == "normal":
            assert core.sum() == 0 and not model.lesion.foci
            continue
        assert core.sum() * anat.resolution_mm**3 / 1000 > 0.3, "lesion too small"
        xyz = anat.grid_mm()[core]
        com = xyz.mean(0)
        # intracranial: inside the envelope plus the subject's extra-axial CSF rim
        assert np.all(anat.dist[core] < model.shells.csf_rim + 1.0)
        if phenotype == "schwannoma":  # cerebellopontine angle
            (xlo, xhi), (ylo, yhi), (zlo, zhi) = CPA_BOX_MM
            assert xlo - 5 < abs(com[0]) < xhi + 5
            assert ylo - 5 < com[1] < yhi + 5 and zlo - 5 < com[2] < zhi + 5
        elif phenotype == "germinoma":  # midline pineal or suprasellar
            assert abs(com[0]) < 5
            d = min(np.linalg.norm(com - np.array(s)) for s in (PINEAL_MM, SUPRASELLAR_MM))
            assert d < 8
        elif phenotype == "meningioma":  # extra-axial: reaches the dura, outside the brain
            assert anat.dist[core].max() > -2.0
            assert (~anat.brain[core]).mean() > 0.02 or abs(com[0]) < 25  # falx
        elif phenotype == "neurocytoma":  # intraventricular
            assert (core & anat.ventricles).sum() > 0
            assert (
                anat.ventricle_dist[
                    tuple(np.round(anat.voxel(model.lesion.foci[0].centre)).astype(int))
                ]
                == 0
            )
        elif phenotype == "glioma":  # hemispheric white matter
            assert anat.wm[core].mean() > 0.5 and abs(com[0]) > 10
        elif phenotype == "pcnsl":  # deep, periventricular
            for f in model.lesion.foci:
                ijk = tuple(np.round(anat.voxel(f.centre)).astype(int))
                assert anat.ventricle_dist[ijk] <= 12.5 and anat.dist[ijk] < -20
        elif phenotype == "other":
            assert anat.brain[core].mean() > 0.9


def test_glioma_has_necrotic_core_enhancing_ring_and_oedema(anat):
    _, maps = _template_core(_model("glioma"))
    enh, nec, solid, oedema = (m.sum() for m in maps)
    assert nec > 0 and enh > 0 and solid > 0
    assert oedema > enh  # large vasogenic oedema


def _local_jacobian(model, template_point: np.ndarray, h: float = 2.0) -> float:
    """det(d p_template / d y_scanner) at a template point (central differences)."""
    geom = model.geometry
    y = (geom.head_affine @ np.r_[template_point, 1.0])[:3]
    cols = [
        (
            geom.template_coords((y + h * e)[None].astype(np.float32))
            - geom.template_coords((y - h * e)[None].astype(np.float32))
        )[0]
        / (2 * h)
        for e in np.eye(3)
    ]
    return float(np.linalg.det(np.stack(cols, axis=1)))


def test_deformed_lesion_volume_matches_template_volume_times_jacobian(anat):
    for phenotype in ("glioma", "germinoma", "meningioma", "other"):
        model = _model(phenotype)
        _, maps = _template_core(model)
        template_ml = maps[:3].sum() * anat.resolution_mm**3 / 1000
        vol = render(model)
        native_ml = vol.lesion_fraction.sum() * vol.voxel_ml
        # affine determinant alone (the smooth warp is nearly volume-preserving) ...
        expected = template_ml * abs(model.geometry.pose["determinant"])
        assert native_ml == pytest.approx(expected, rel=0.15), phenotype
        # ... and with the local Jacobian of the full chain at the lesion centre
        local = template_ml / _local_jacobian(model, model.lesion.foci[0].centre)
        assert native_ml == pytest.approx(local, rel=0.06), phenotype
        # the hard mask is the thresholded soft fraction, and lies inside the head
        assert vol.lesion_ml == pytest.approx(native_ml, rel=0.2)
        assert np.all(vol.brain_mask[vol.lesion_mask > 0] == 1)


# --- rendering: labels, contrast, bias, orientation --------------------------------------


@pytest.fixture(scope="module")
def rendered():
    """One rendered subject per phenotype (fast grid)."""
    return {p: render(_model(p), keep_clean=True) for p in PHENOTYPES}


def test_masks_and_labels_are_consistent(rendered):
    for phenotype, vol in rendered.items():
        shape = vol.images["T1"].shape
        for arr in (vol.lesion_mask, vol.lesion_dseg, vol.brain_mask, vol.tissue_dseg, vol.bias):
            assert arr.shape == shape
        assert set(np.unique(vol.lesion_mask)) <= {0, 1}
        assert np.array_equal(vol.lesion_mask == 1, np.isin(vol.lesion_dseg, (1, 2, 3)))
        assert set(np.unique(vol.tissue_dseg)) <= set(range(7))
        assert {1, 2, 3, 4, 5} <= set(np.unique(vol.tissue_dseg))
        if phenotype == "normal":
            assert vol.lesion_mask.sum() == 0 and vol.lesion_dseg.max() == 0
        else:
            assert vol.lesion_mask.sum() > 0, phenotype
            assert np.mean(vol.tissue_dseg[vol.lesion_mask == 1] == 6) > 0.9
        # the brain mask is the intracranial volume: more than the brain, less than the head
        brain_ml = vol.brain_mask.sum() * vol.voxel_ml
        assert 1200 < brain_ml < 2600, (phenotype, brain_ml)
        assert vol.tissue_dseg[vol.brain_mask == 0].max() in (4, 5)  # skull, scalp outside


def _wm_normalised(vol, seq: str) -> np.ndarray:
    img = vol.images[seq].astype(np.float64)
    wm = (vol.tissue_dseg == 3) & (vol.lesion_dseg == 0)
    return img / np.median(img[wm])


def test_enhancement_phenotypes(rendered):
    for phenotype in ("glioma", "meningioma", "pcnsl", "germinoma", "schwannoma"):
        vol = rendered[phenotype]
        enh = vol.lesion_dseg == 1
        assert enh.sum() > 5, phenotype
        delta = _wm_normalised(vol, "T1C+")[enh].mean() - _wm_normalised(vol, "T1")[enh].mean()
        assert delta > 0.5, (phenotype, delta)
    # a simple cyst: CSF-like fluid, no enhancement
    for index in range(12):
        model = _model("other", index=index)
        if model.lesion.variant == "cyst":
            break
    else:
        pytest.fail("no cyst drawn")
    vol = render(model)
    fluid = vol.lesion_dseg == 2
    assert fluid.sum() > 5 and not np.any(vol.lesion_dseg == 1)
    delta = _wm_normalised(vol, "T1C+")[fluid].mean() - _wm_normalised(vol, "T1")[fluid].mean()
    assert abs(delta) < 0.1
    # fluid: dark on T1, bright on T2, suppressed on FLAIR
    assert _wm_normalised(vol, "T1")[fluid].mean() < 0.5
    assert _wm_normalised(vol, "T2")[fluid].mean() > 1.6
    assert _wm_normalised(vol, "FLAIR")[fluid].mean() < 0.5


def test_glioma_oedema_is_bright_on_flair(rendered):
    vol = rendered["glioma"]
    oedema = vol.lesion_dseg == 4
    assert oedema.sum() > 20
    assert _wm_normalised(vol, "FLAIR")[oedema].mean() > 1.4


def test_bias_field_is_smooth_and_exactly_applied():
    cfg = SynthConfig(spacing_choices=((1.5, 1.5, 1.5),), noise=0.0, bias_strength=0.3)
    vol = synthesize_subject(_specs_for("glioma")[0], cfg, keep_clean=True)
    bias = vol.bias.astype(np.float64)
    assert 0.4 < bias.min() and bias.max() < 2.5 and bias.std() > 0.03
    log_b = np.log(bias)
    spacing = np.asarray(vol.model.geometry.grid.spacing)
    for axis in range(3):
        grad = np.abs(np.diff(log_b, axis=axis)) / spacing[axis]
        assert grad.max() < 0.02  # per mm: a coil profile, not texture
    gain = vol.model.contrast.gain
    for s, seq in enumerate(SEQUENCES_3D):
        expected = np.rint(vol.clean[seq] * vol.bias * gain[s])
        assert np.abs(vol.images[seq] - expected).max() <= 1


@pytest.mark.parametrize("code", ["RAS", "LPS", "LAS", "PSR", "PLS"])
def test_grid_affine_encodes_orientation_and_spacing(code):
    cfg = SynthConfig(spacing_choices=((1.0, 1.25, 1.5),))
    grid = _model("normal", cfg, axcodes=code).geometry.grid
    assert "".join(nib.aff2axcodes(grid.affine)) == code
    assert np.allclose(nib.affines.voxel_sizes(grid.affine), [2.0, 2.5, 3.0])
    assert grid.axcodes == code


def test_rician_noise_floor_in_background(rendered):
    vol = rendered["normal"]
    t1 = vol.images["T1"]
    bg = vol.tissue_dseg == 0
    assert t1[bg].min() >= 0 and t1[bg].mean() > 0  # magnitude noise, never negative
    assert t1[bg].mean() < 0.1 * t1[vol.tissue_dseg == 3].mean()
