"""Per-file validation: full decode, shape, spacing, intensities, perceptual hash.

Each function reads one file, keeps only small metadata and raises
:class:`~brainxai.ingest.common.Rejected` with a quarantine reason on failure,
so a scan never holds more than one image per worker in memory.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import imagehash
import nibabel as nib
import numpy as np
from nibabel.openers import ImageOpener
from PIL import Image, UnidentifiedImageError

from brainxai.hashing import file_sha256
from brainxai.ingest.common import Rejected, fmt_shape, fmt_spacing, spacing_ok


@dataclass(frozen=True)
class FileInfo:
    """What validation learned about a good file."""

    sha256: str
    ndim: int
    shape: str
    spacing: str
    phash: str


def _truncation(exc: BaseException) -> bool:
    msg = str(exc).lower()
    keys = (
        "truncat",
        "ended before",
        "smaller than requested",
        "mmap length",
        "end of file",
        "unexpected end",
    )
    return (
        isinstance(exc, EOFError | zlib.error)
        or any(k in msg for k in keys)
        or ("expected" in msg and "bytes" in msg)
    )


def _fail(exc: BaseException, what: str) -> Rejected:
    kind = "truncated" if _truncation(exc) else "decode_error"
    return Rejected(kind, f"{what}: {type(exc).__name__}: {str(exc)[:160]}")


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """Robust (0.5-99.5 percentile) rescale of a 2D array to uint8 for hashing."""
    a = np.asarray(arr, dtype=np.float64)
    lo, hi = np.percentile(a, [0.5, 99.5])
    if hi <= lo:
        lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        return np.zeros(a.shape, dtype=np.uint8)
    return (np.clip((a - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)


def phash_hex(gray: np.ndarray) -> str:
    """64-bit DCT perceptual hash (``imagehash.phash``) of a 2D array, as 16 hex digits."""
    return str(imagehash.phash(Image.fromarray(to_uint8(gray))))


def phash_volume(vol: np.ndarray) -> str:
    """Three concatenated phashes of the central slices along each axis (48 hex)."""
    return "".join(phash_hex(np.take(vol, vol.shape[ax] // 2, axis=ax)) for ax in range(3))


def _check_values(arr: np.ndarray) -> None:
    if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
        raise Rejected("nonfinite", f"{int((~np.isfinite(arr)).sum())} non-finite values")
    lo, hi = np.nanmin(arr), np.nanmax(arr)
    if lo == hi:
        raise Rejected("constant_image", f"every value is {float(lo):g}")


def examine_2d(path: Path, min_side: int, max_pixels: int | None = None) -> FileInfo:
    """Validate a 2D image file (PNG/JPEG/...): decode fully, size, values, phash.

    ``max_pixels`` caps ``width * height`` as declared by the header, before decoding.
    """
    if path.stat().st_size == 0:
        raise Rejected("empty_file", "0 bytes")
    digest = file_sha256(path)
    try:
        with Image.open(path) as im:
            if getattr(im, "n_frames", 1) > 1:
                raise Rejected("bad_shape", f"{im.n_frames} frames in one image file")
            w, h = im.size
            if max_pixels is not None and w * h > max_pixels:
                raise Rejected("too_large", f"{h}x{w} = {w * h} px declared > {max_pixels}")
            im.load()
            arr = np.asarray(im)
    except Rejected:
        raise
    except UnidentifiedImageError as exc:
        raise Rejected("decode_error", "not a recognised image format") from exc
    except (OSError, SyntaxError, ValueError, EOFError, zlib.error) as exc:
        raise _fail(exc, "decode") from exc
    if arr.ndim == 3:
        gray = arr[..., :3].mean(axis=-1) if arr.shape[-1] >= 3 else arr[..., 0]
    elif arr.ndim == 2:
        gray = arr
    else:
        raise Rejected("bad_shape", f"array of {arr.ndim} dimensions")
    h, w = gray.shape
    if min(h, w) < min_side:
        raise Rejected("bad_shape", f"{h}x{w} is smaller than {min_side} px on a side")
    _check_values(arr)
    return FileInfo(digest, 2, fmt_shape((h, w)), "", phash_hex(gray))


#: Largest |cosine| between two voxel axes of a valid affine (ANTs refuses > ~0.5 deg shear).
MAX_AXIS_COSINE = 0.0087
#: Relative tolerance between the affine's column lengths and the header voxel size.
SPACING_RTOL = 0.01


def affine_problem(affine: np.ndarray, zooms: tuple[float, ...]) -> str | None:
    """Why a voxel-to-world ``affine`` is unusable (not finite, singular, sheared, or its
    column lengths disagree with the voxel size ``zooms``), or None."""
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4) or not np.isfinite(a).all():
        return "affine is not a finite 4x4 matrix"
    m = a[:3, :3]
    norms = np.linalg.norm(m, axis=0)
    if norms.min() <= 1e-8 or np.linalg.matrix_rank(m, tol=1e-6 * norms.max()) < 3:
        return f"affine is singular (column lengths {fmt_spacing(norms)})"
    unit = m / norms
    cos = np.abs(unit.T @ unit - np.eye(3)).max()
    if cos > MAX_AXIS_COSINE:
        return f"affine axes are sheared (max |cos| {cos:.3g} between voxel axes)"
    z = np.asarray(zooms[:3], dtype=np.float64)
    if not np.allclose(norms, z, rtol=SPACING_RTOL, atol=1e-4):
        return f"affine spacing {fmt_spacing(norms)} != header voxel size {fmt_spacing(z)}"
    return None


def examine_nifti(path: Path, min_dim: int, max_bytes: int | None = None) -> FileInfo:
    """Validate a NIfTI volume: header, 3D shape, declared size, spacing, affine, full
    data read, values, phash. ``max_bytes`` caps ``prod(shape) * itemsize`` (header)."""
    if path.stat().st_size == 0:
        raise Rejected("empty_file", "0 bytes")
    digest = file_sha256(path)
    try:
        img = nib.load(str(path), mmap=False)
        shape = tuple(int(s) for s in img.shape)
    except Exception as exc:  # nibabel raises many types for garbage headers
        raise _fail(exc, "header") from exc
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise Rejected("bad_shape", f"{fmt_shape(shape)} is not a 3D volume")
    if min(shape) < min_dim:
        raise Rejected("bad_shape", f"{fmt_shape(shape)} has a side below {min_dim} voxels")
    if max_bytes is not None:
        itemsize = int(np.dtype(img.header.get_data_dtype()).itemsize)
        declared = int(np.prod([int(s) for s in img.shape], dtype=np.int64)) * itemsize
        if declared > max_bytes:
            raise Rejected(
                "too_large", f"{fmt_shape(img.shape)} x {itemsize} B = {declared} B > {max_bytes}"
            )
    zooms = _raw_zooms(path, img)
    if not spacing_ok(zooms):
        raise Rejected("bad_spacing", f"voxel size {zooms}")
    why = affine_problem(img.affine, zooms)
    if why is not None:
        raise Rejected("bad_affine", why)
    try:
        vol = np.asanyarray(img.dataobj).reshape(shape)
    except Exception as exc:
        raise _fail(exc, "data") from exc
    _check_values(vol)
    return FileInfo(digest, 3, fmt_shape(shape), fmt_spacing(zooms), phash_volume(vol))


def _raw_zooms(path: Path, img) -> tuple[float, ...]:
    """Voxel size as stored (nibabel's loader silently turns a 0 pixdim into 1)."""
    try:
        with ImageOpener(str(path)) as fh:
            hdr = type(img.header).from_fileobj(fh, check=False)
        return tuple(float(z) for z in hdr["pixdim"][1:4])
    except Exception:
        return tuple(float(z) for z in img.header.get_zooms()[:3])


def nifti_shape(path: Path) -> tuple[int, ...] | None:
    """Header-only 3D shape of a NIfTI file (``None`` if unreadable)."""
    try:
        shape = tuple(int(s) for s in nib.load(str(path)).shape)
    except Exception:
        return None
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def mask_shape(path: Path) -> tuple[int, ...] | None:
    """Header-only shape of a mask file: rows x cols for 2D images, else NIfTI shape."""
    if path.name.lower().endswith((".nii", ".nii.gz")):
        return nifti_shape(path)
    try:
        with Image.open(path) as im:
            return (im.height, im.width)
    except Exception:
        return None
