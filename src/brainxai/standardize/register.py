"""Registration with ANTs (Avants et al. 2008/2009): rigid -> affine -> SyN, and transforms.

:func:`register` runs the stages one call each, every call starting from the previous
result; ANTs collapses the initial transform into its output (``-z 1``), so the last
stage's lists are the whole chain: ``fwd`` maps moving->fixed (apply to a moving-space
image, reference = fixed grid), ``inv`` maps fixed->moving (heatmaps/masks back to
native space). Files are copied to ``out_dir`` with stable names.

ANTs writes every stage's transforms under an output prefix (by default a fresh temp
file name per call, never removed). Each :func:`register`/:func:`coregister` call
writes into its own ``brainxai-ants-*`` working directory instead, which
:meth:`Transforms.save` (after copying) or :meth:`Transforms.discard` removes.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import ants
import numpy as np

from brainxai.atomic import copy_atomic
from brainxai.standardize.config import RegistrationConfig
from brainxai.standardize.errors import BadInput
from brainxai.standardize.orient import APPLY_INTERP, ImageKind


@dataclass(frozen=True)
class Transforms:
    """ANTs transform lists (files), in ``ants.apply_transforms`` order."""

    fwd: tuple[str, ...]
    inv: tuple[str, ...]
    inv_invert: tuple[bool, ...]  # whichtoinvert flags for ``inv``
    work_dir: str | None = None  # ANTs' working directory, removed by save()/discard()

    def discard(self) -> None:
        """Remove ANTs' working directory (the transform files are gone afterwards)."""
        if self.work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def save(self, out_dir: Path, prefix: str) -> Transforms:
        """Copy the files to ``out_dir/<prefix>_<kind>...``, drop the working directory,
        and return the new lists."""
        out_dir.mkdir(parents=True, exist_ok=True)
        names: dict[str, str] = {}
        for f in dict.fromkeys(self.fwd + self.inv):
            src = Path(f)
            if src.name.endswith("InverseWarp.nii.gz"):
                dst = out_dir / f"{prefix}_inverse_warp.nii.gz"
            elif src.name.endswith("Warp.nii.gz"):
                dst = out_dir / f"{prefix}_warp.nii.gz"
            else:
                dst = out_dir / f"{prefix}_affine.mat"
            copy_atomic(src, dst)
            names[f] = str(dst)
        self.discard()
        return Transforms(
            tuple(names[f] for f in self.fwd), tuple(names[f] for f in self.inv), self.inv_invert
        )


def set_seed(seed: int) -> None:
    """ANTs' registration sampling seed (``--random-seed``) for reproducible results."""
    ants.config._random_seed = int(seed)


def _linear(
    fixed: ants.ANTsImage,
    moving: ants.ANTsImage,
    kind: str,
    iterations: tuple[int, ...],
    shrink: tuple[int, ...],
    sigmas: tuple[float, ...],
    sampling: float,
    initial: list[str] | None,
    mask: ants.ANTsImage | None = None,
    outprefix: str = "",
) -> dict:
    return ants.registration(
        fixed,
        moving,
        type_of_transform=kind,
        initial_transform=initial,
        aff_iterations=tuple(iterations),
        aff_shrink_factors=tuple(shrink),
        aff_smoothing_sigmas=tuple(sigmas),
        aff_random_sampling_rate=sampling,
        mask=mask,
        outprefix=outprefix,
    )


def register(
    fixed: ants.ANTsImage,
    moving: ants.ANTsImage,
    cfg: RegistrationConfig,
    *,
    transform: str | None = None,
    syn_iterations: tuple[int, ...] | None = None,
    mask: ants.ANTsImage | None = None,
) -> Transforms:
    """Rigid -> affine -> SyN (up to ``transform``); raises BadInput if ANTs fails."""
    last = transform or cfg.transform
    work = tempfile.mkdtemp(prefix="brainxai-ants-")
    try:
        out = _linear(
            fixed, moving, "Rigid", cfg.rigid_iterations, cfg.shrink_factors,
            cfg.smoothing_sigmas, cfg.sampling_rate, None, mask, f"{work}/rigid_",
        )  # fmt: skip
        if last in ("Affine", "SyN"):
            out = _linear(
                fixed, moving, "Affine", cfg.affine_iterations, cfg.shrink_factors,
                cfg.smoothing_sigmas, cfg.sampling_rate, out["fwdtransforms"], mask,
                f"{work}/affine_",
            )  # fmt: skip
        if last == "SyN":
            out = ants.registration(
                fixed,
                moving,
                type_of_transform="SyNOnly",
                initial_transform=out["fwdtransforms"],
                syn_metric=cfg.syn_metric,
                reg_iterations=tuple(syn_iterations or cfg.syn_iterations),
                grad_step=cfg.grad_step,
                flow_sigma=cfg.flow_sigma,
                total_sigma=cfg.total_sigma,
                mask=mask,
                outprefix=f"{work}/syn_",
            )
    except RuntimeError as exc:
        shutil.rmtree(work, ignore_errors=True)
        raise BadInput("registration_failed", str(exc)) from exc
    fwd, inv = tuple(out["fwdtransforms"]), tuple(out["invtransforms"])
    if not fwd:
        shutil.rmtree(work, ignore_errors=True)
        raise BadInput("registration_failed", "ANTs returned no transform")
    invert = tuple(f.endswith(".mat") for f in inv)
    return Transforms(fwd, inv, invert, work)


def coregister(
    fixed: ants.ANTsImage, moving: ants.ANTsImage, cfg: RegistrationConfig
) -> Transforms:
    """Rigid co-registration of another sequence of the session to the reference (MI)."""
    work = tempfile.mkdtemp(prefix="brainxai-ants-")
    try:
        out = _linear(
            fixed, moving, "Rigid", cfg.coreg_iterations, cfg.coreg_shrink_factors,
            cfg.coreg_smoothing_sigmas, cfg.sampling_rate, None, None, f"{work}/coreg_",
        )  # fmt: skip
    except RuntimeError as exc:
        shutil.rmtree(work, ignore_errors=True)
        raise BadInput("registration_failed", f"co-registration: {exc}") from exc
    fwd, inv = tuple(out["fwdtransforms"]), tuple(out["invtransforms"])
    return Transforms(fwd, inv, (True,), work)


def apply(
    img: ants.ANTsImage,
    reference: ants.ANTsImage,
    transforms: list[str] | tuple[str, ...],
    kind: ImageKind = "intensity",
    interp: str = "linear",
    invert: tuple[bool, ...] | None = None,
) -> ants.ANTsImage:
    """Resample ``img`` onto ``reference`` through ``transforms`` (nearest/label for masks)."""
    method = APPLY_INTERP.get(kind, interp)
    out = ants.apply_transforms(
        reference,
        img,
        transformlist=list(transforms),
        interpolator=method,
        whichtoinvert=list(invert) if invert is not None else None,
    )
    if kind == "mask":
        out = out.new_image_like((out.numpy() > 0.5).astype(np.float32))
    return out
