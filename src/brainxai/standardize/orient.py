"""Load, validate, reorient and resample volumes (issue step 1).

Canonical orientation: NIfTI **RAS+** by default (voxel axis i runs to the subject's
Right, j Anterior, k Superior), the orientation of the MNI152 template from nilearn.
ITK names orientations by the opposite ("from") letters, so RAS+ is ITK's ``LPI``.
Resampling never moves anatomy in physical space: it only changes the voxel grid, so
transforms estimated on a resampled image apply to the original file too.

Interpolators per image kind: intensities linear or B-spline, masks and label maps
nearest neighbour (so a mask stays binary and labels stay labels).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import ants
import nibabel as nib
import numpy as np

from brainxai.standardize.errors import BadInput

ImageKind = Literal["intensity", "mask", "label"]
_OPPOSITE = str.maketrans("RLAPSI", "LRPAIS")
#: ants.resample_image interp_type codes
_RESAMPLE_INTERP = {"linear": 0, "nearest": 1, "bSpline": 4}
#: ants.apply_transforms interpolator names per kind
APPLY_INTERP = {"mask": "nearestNeighbor", "label": "genericLabel"}


def itk_code(nifti_code: str) -> str:
    """NIfTI axis code (RAS, LPS...) -> ITK orientation string (LPI, RAI...)."""
    return nifti_code.upper().translate(_OPPOSITE)


def _raw_pixdim(path: str | Path, header_cls: type, default: np.ndarray) -> np.ndarray:
    """Voxel sizes as stored: nibabel replaces a zero pixdim by 1 when it checks a header."""
    try:
        with nib.openers.ImageOpener(str(path)) as fh:
            hdr = header_cls.from_fileobj(fh, check=False)
        return np.asarray(hdr["pixdim"][1:4], dtype=float)
    except Exception:
        return default


def load_volume(path: str | Path, kind: ImageKind = "intensity") -> ants.ANTsImage:
    """Read a NIfTI volume, rejecting 2D/4D, NaN/inf, zero spacing and empty images."""
    try:
        img = nib.load(str(path))
        shape = img.shape
        zooms = img.header.get_zooms()
    except Exception as exc:  # any reader error is the file's fault
        raise BadInput("unreadable", f"{path}: {exc}") from exc
    squeezed = tuple(n for n in shape if n > 1)
    if len(shape) < 3 or len(squeezed) < 3 or (len(shape) > 3 and int(np.prod(shape[3:])) > 1):
        raise BadInput("not_3d", f"{path}: shape {shape} is not a 3D volume")
    spacing = np.asarray(zooms[:3], dtype=float)
    if isinstance(img.header, nib.Nifti1Header):
        spacing = _raw_pixdim(path, type(img.header), spacing)
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise BadInput("zero_spacing", f"{path}: voxel spacing {tuple(spacing)} is not positive")
    try:
        data = np.asarray(img.dataobj, dtype=np.float32).reshape(shape[:3])
    except Exception as exc:
        raise BadInput("unreadable", f"{path}: {exc}") from exc
    if not np.all(np.isfinite(data)):
        raise BadInput("non_finite", f"{path}: {int((~np.isfinite(data)).sum())} NaN/inf voxels")
    if kind == "intensity" and float(data.max()) <= float(data.min()):
        raise BadInput("empty_image", f"{path}: constant image")
    try:  # ANTs/ITK refuse a singular or sheared direction (ValueError / RuntimeError)
        return ants.from_nibabel_nifti(nib.Nifti1Image(data, img.affine, img.header))
    except (ValueError, RuntimeError) as exc:
        raise BadInput("bad_affine", f"{path}: {exc}") from exc


def canonical(img: ants.ANTsImage, orientation: str = "RAS") -> ants.ANTsImage:
    """Permute/flip voxel axes to the canonical NIfTI ``orientation`` (no resampling)."""
    return ants.reorient_image2(img, itk_code(orientation))


def resample(img: ants.ANTsImage, spacing_mm: float, kind: ImageKind, interp: str = "linear"):
    """Resample to isotropic ``spacing_mm``: intensities ``interp``, masks/labels nearest."""
    code = _RESAMPLE_INTERP["nearest" if kind != "intensity" else interp]
    out = ants.resample_image(img, (spacing_mm,) * 3, use_voxels=False, interp_type=code)
    return out


def binary(img: ants.ANTsImage, threshold: float = 0.5) -> ants.ANTsImage:
    """0/1 float image from a mask or probability map."""
    return img.new_image_like((img.numpy() >= threshold).astype(np.float32))


def axcodes(img: ants.ANTsImage) -> str:
    """NIfTI axis code of an ANTs image (e.g. 'RAS')."""
    return img.orientation.translate(_OPPOSITE)
