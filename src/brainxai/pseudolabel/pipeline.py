"""One session through the Tumor-Localizer (paper 003, Sec. 3.2): boxes -> prior -> MLP.

``answers = proposer(slices)``; ``B`` = stacked boxes; ``P = dilate(G * B)``;
coarse ``= P >= level``; refined ``= MLP(features | P > tau vs far)``; union ``=
refined u coarse`` — all in the standardized (MNI) grid, cut to the brain. The union is
also carried back to the native (reoriented, resampled) grid through the inverse
standardization transforms. With the truth mask the quality of every mask is measured.
A session without any box gets empty masks and the flag ``no_box``, not an error.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from brainxai.atomic import atomic_path, save_nifti_atomic, write_text_atomic
from brainxai.pseudolabel.config import PseudolabelConfig
from brainxai.pseudolabel.metrics import box_iou_per_slice, mask_quality
from brainxai.pseudolabel.proposers.base import Proposer
from brainxai.pseudolabel.refine import refine
from brainxai.pseudolabel.stack import coarse_prior
from brainxai.pseudolabel.volumes import load_mask, load_subject, save_mask

MASKS: tuple[str, ...] = ("coarse", "refined", "union")


def output_files(out_dir: Path, native: bool) -> dict[str, str]:
    files = {m: str(out_dir / f"{m}_space-MNI152NLin2009_mask.nii.gz") for m in MASKS}
    files["prior"] = str(out_dir / "prior_space-MNI152NLin2009.nii.gz")
    files["answers"] = str(out_dir / "answers.json")
    if native:
        files["native_union"] = str(out_dir / "union_space-native_mask.nii.gz")
    return files


def to_native(
    mask_path: str, native_ref: str, transforms: Sequence[str], invert: Sequence[bool], out: str
) -> str:
    """Template-space mask -> native grid through the saved inverse transforms (ANTs)."""
    import ants

    from brainxai.standardize.register import apply

    moved = apply(
        ants.image_read(mask_path), ants.image_read(native_ref), list(transforms),
        kind="mask", invert=tuple(invert),
    )  # fmt: skip
    with atomic_path(out) as tmp:
        ants.image_write(moved.clone("unsigned char"), str(tmp))
    return out


def pseudolabel_subject(
    images: Mapping[str, str | Path],
    brain_mask: str | Path,
    out_dir: str | Path,
    cfg: PseudolabelConfig,
    proposer: Proposer,
    *,
    lesion_mask: str | Path | None = None,
    native_ref: str | None = None,
    xfm_inv: Sequence[str] = (),
) -> dict[str, Any]:
    """Pseudo-label one session; write masks + answers under ``out_dir``; return a record."""
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    subject = load_subject(images, brain_mask)
    answers = proposer.propose(subject)
    t_prop = time.perf_counter()
    stack, prior = coarse_prior(answers, subject.shape, subject.spacing, cfg.prior,
                                cfg.slices.combine)  # fmt: skip
    brain = subject.brain
    coarse = (prior >= cfg.prior.coarse_level) & brain
    n_boxes = sum(len(a.boxes) for a in answers)
    flags = []
    if n_boxes == 0:
        flags.append("no_box")
        refined, info = np.zeros_like(brain), {"flag": ""}
    else:
        refined, info = refine(subject, prior, coarse, cfg.prior.tau, cfg.refine, cfg.seed)
        refined &= brain
    if info.get("flag"):
        flags.append(str(info["flag"]))
    malformed = sum(a.status == "malformed" for a in answers)
    if malformed:
        flags.append(f"malformed:{malformed}")
    union = refined | coarse
    masks = {"coarse": coarse, "refined": refined, "union": union}
    files = output_files(out_dir, native_ref is not None)
    for name, m in masks.items():
        save_mask(m, subject.affine, files[name])
    save_nifti_atomic(nib.Nifti1Image(prior.astype(np.float32), subject.affine), files["prior"])
    if native_ref is not None:
        invert = [t.endswith(".mat") for t in xfm_inv]
        to_native(files["union"], native_ref, xfm_inv, invert, files["native_union"])
    record: dict[str, Any] = {
        "n_slices": len({a.k for a in answers}),
        "n_answers": len(answers),
        "n_boxes": n_boxes,
        "n_malformed": malformed,
        "n_cached": sum(a.cached for a in answers),
        "empty": n_boxes == 0,
        "flag": ";".join(flags),
        "voxels_coarse": int(coarse.sum()),
        "voxels_refined": int(refined.sum()),
        "voxels_union": int(union.sum()),
        "refine": info,
        "seconds_propose": round(t_prop - t0, 3),
    }
    if lesion_mask is not None:
        truth = load_mask(lesion_mask)
        record.update(mask_quality(masks, truth, subject.spacing, cfg.hd95_empty_mm))
        ious = box_iou_per_slice(stack, truth)
        record["box_iou"] = float(np.mean(list(ious.values()))) if ious else float("nan")
        record["box_iou_slices"] = ious
        record["voxels_truth"] = int(truth.sum())
    record["seconds_total"] = round(time.perf_counter() - t0, 3)
    write_text_atomic(
        files["answers"],
        json.dumps({"record": record, "answers": [a.to_dict() for a in answers]}, indent=1) + "\n",
    )
    record["files"] = files
    return record
