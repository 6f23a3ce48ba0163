"""Refinement and the whole session on a phantom with a known lesion.

The phantom: an ellipsoidal brain of two tissues with noise, a spherical enhancing
lesion (bright on T1C+, FLAIR and T2, dark on T1) and a FLAIR/T2 oedema shell around it.
A deliberately degraded prior (the lesion's bounding cuboid, grown by 3 voxels) must be
improved by the voxel MLP; the classical proposer must find the lesion; a session
without any box must give empty masks and the ``no_box`` flag, not an error.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from brainxai.pseudolabel import PseudolabelConfig, make_proposer, pseudolabel_subject
from brainxai.pseudolabel.config import RefineConfig
from brainxai.pseudolabel.metrics import dice
from brainxai.pseudolabel.proposers.classical import ClassicalProposer
from brainxai.pseudolabel.refine import refine, voxel_features
from brainxai.pseudolabel.volumes import SubjectVolumes, load_mask

SHAPE = (40, 48, 36)
SPACING = (2.0, 2.0, 2.0)
CENTRE = (26, 28, 18)
RADIUS = 4.5  # voxels
FAST = RefineConfig(n_positive=1500, n_negative=4500, epochs=20)  # test-sized training set


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Two shared CPU cores: torch's intra-op threads only contend in these tiny fits."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def phantom(seed: int = 0, lesion: bool = True) -> tuple[SubjectVolumes, np.ndarray]:
    """(volumes, truth): z-scored-like intensities on a 2 mm grid, affine centred."""
    rng = np.random.default_rng(seed)
    grid = np.indices(SHAPE).astype(np.float32)
    c = [(n - 1) / 2 for n in SHAPE]
    r = np.sqrt(sum(((g - ci) / (0.45 * n)) ** 2 for g, ci, n in zip(grid, c, SHAPE, strict=True)))
    brain = r <= 1.0
    gm = brain & (r > 0.75)
    d = np.sqrt(sum((g - ci) ** 2 for g, ci in zip(grid, CENTRE, strict=True)))
    truth = (d <= RADIUS) & lesion
    oedema = (d > RADIUS) & (d <= RADIUS + 1.5) & lesion  # a thin oedema rim
    base = {"T1": (0.5, -0.5), "T1C+": (0.5, -0.5), "T2": (-0.5, 0.5), "FLAIR": (-0.3, 0.4)}
    lesion_shift = {"T1": -1.0, "T1C+": 3.0, "T2": 1.5, "FLAIR": 1.5}
    oedema_shift = {"T1": -0.5, "T1C+": -0.4, "T2": 1.5, "FLAIR": 1.5}
    vols = {}
    for seq, (wm_v, gm_v) in base.items():
        x = np.where(gm, gm_v, wm_v).astype(np.float32)
        x[truth] += lesion_shift[seq]
        x[oedema] += oedema_shift[seq]
        x += rng.normal(0.0, 0.25, SHAPE).astype(np.float32)
        vols[seq] = np.where(brain, x, 0.0).astype(np.float32)
    affine = np.diag([*SPACING, 1.0])
    affine[:3, 3] = [-s * (n - 1) / 2 for s, n in zip(SPACING, SHAPE, strict=True)]
    return SubjectVolumes(vols, brain, affine, SPACING), truth


def save_phantom(sub: SubjectVolumes, truth: np.ndarray, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for seq, v in sub.volumes.items():
        files[seq] = out / f"{seq.replace('+', 'plus')}.nii.gz"
        nib.save(nib.Nifti1Image(v, sub.affine), files[seq])
    for name, m in (("brain", sub.brain), ("lesion", truth)):
        files[name] = out / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(m.astype(np.uint8), sub.affine), files[name])
    return files


def test_features_are_vectorised_local_statistics() -> None:
    sub, _ = phantom()
    cfg = RefineConfig(sequences=("T1C+",), scales_mm=(6.0,), use_coords=True)
    idx = np.ravel_multi_index(([10, 26], [24, 28], [18, 18]), SHAPE)
    f = voxel_features(sub, idx, cfg)
    assert f.shape == (2, 1 + 2 + 3)
    x = sub.volumes["T1C+"]
    np.testing.assert_allclose(f[0, 1], x[9:12, 23:26, 17:20].mean(), rtol=1e-5)  # 3^3 cube
    np.testing.assert_allclose(f[0, 2], x[9:12, 23:26, 17:20].std(), rtol=1e-4)
    np.testing.assert_allclose(f[1, 3:], (sub.affine @ [26, 28, 18, 1])[:3] / 100.0, rtol=1e-6)


def test_mlp_refinement_improves_a_degraded_prior() -> None:
    sub, truth = phantom()
    lo = [int(np.floor(c - RADIUS)) - 2 for c in CENTRE]
    hi = [int(np.ceil(c + RADIUS)) + 3 for c in CENTRE]
    prior = np.zeros(SHAPE, np.float32)
    prior[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = 1.0  # bounding box grown by 2 voxels
    coarse = prior >= 0.5
    refined, info = refine(sub, prior, coarse, tau=0.9, cfg=FAST, seed=0)
    d_coarse, d_refined = dice(coarse, truth), dice(refined, truth)
    assert d_coarse < 0.25 and d_refined > d_coarse + 0.3, (d_coarse, d_refined, info)
    again, _ = refine(sub, prior, coarse, tau=0.9, cfg=FAST, seed=0)
    np.testing.assert_array_equal(refined, again)  # seeded: same numbers on the CPU


def test_classical_proposer_boxes_the_lesion() -> None:
    sub, truth = phantom()
    cfg = PseudolabelConfig()
    answers = ClassicalProposer(cfg.classical, cfg.slices).propose(sub)
    boxed = {a.k for a in answers if a.boxes}
    lesion_slices = set(np.flatnonzero(truth.any(axis=(0, 1))).tolist())
    near = set(range(min(lesion_slices) - 2, max(lesion_slices) + 3))  # smoothing spreads 2 mm
    assert lesion_slices <= boxed <= near
    for a in answers:
        for b in a.boxes:
            assert b.i0 <= CENTRE[0] < b.i1 and b.j0 <= CENTRE[1] < b.j1


def test_session_end_to_end_and_empty_session(tmp_path: Path) -> None:
    cfg = PseudolabelConfig.from_dict({"refine": {"n_positive": 1500, "n_negative": 4500,
                                                  "epochs": 20}})  # fmt: skip
    prop = make_proposer(cfg)
    sub, truth = phantom()
    f = save_phantom(sub, truth, tmp_path / "in")
    images = {s: f[s] for s in ("T1", "T1C+", "T2", "FLAIR")}
    rec = pseudolabel_subject(images, f["brain"], tmp_path / "out", cfg, prop,
                              lesion_mask=f["lesion"])  # fmt: skip
    assert rec["flag"] == "" and not rec["empty"] and rec["n_boxes"] > 0
    assert rec["dice_refined"] > rec["dice_coarse"] + 0.1 and rec["dice_refined"] > 0.5
    assert rec["detected_union"] and rec["box_iou"] > 0.4
    union = load_mask(rec["files"]["union"])
    assert union.shape == SHAPE and dice(union, truth) == rec["dice_union"]
    # no lesion anywhere: empty masks and a flag, not a crash
    sub0, truth0 = phantom(seed=1, lesion=False)
    f0 = save_phantom(sub0, truth0, tmp_path / "in0")
    rec0 = pseudolabel_subject({s: f0[s] for s in images}, f0["brain"], tmp_path / "out0", cfg,
                               prop, lesion_mask=f0["lesion"])  # fmt: skip
    assert rec0["empty"] and rec0["flag"] == "no_box" and rec0["voxels_union"] == 0
    assert rec0["dice_union"] == 1.0 and rec0["hd95_union"] == 0.0  # both empty
    assert not load_mask(rec0["files"]["union"]).any()
