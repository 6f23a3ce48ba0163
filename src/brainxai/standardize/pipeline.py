"""One subject through Eq. 1 of paper 003: ``X_proc = F_SyN(F_N4(F_BET(X_raw)))``.

Per session: every sequence is loaded and validated, reoriented to the canonical
orientation and resampled to the target spacing; the reference sequence (T1C+ by
default) is skull-stripped, bias-corrected inside the brain and registered to the
MNI152 brain template (rigid -> affine -> SyN); the other sequences are rigidly
co-registered to the reference, bias-corrected with the same brain mask and carried
to MNI through the same transforms; intensities are normalised inside the brain; QC
measures and a montage are written. Nothing here holds more than one subject.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ants

from brainxai.atomic import atomic_path, write_text_atomic
from brainxai.standardize.bias import n4
from brainxai.standardize.config import StandardizeConfig
from brainxai.standardize.errors import BadInput
from brainxai.standardize.normalize import normalize
from brainxai.standardize.orient import canonical, load_volume, resample
from brainxai.standardize.qc import dice, intensity_stats, montage, mutual_information
from brainxai.standardize.register import apply, coregister, register, set_seed
from brainxai.standardize.skullstrip import strip
from brainxai.standardize.template import load_template

SPACE = "MNI152NLin2009"


def slug(sequence: str) -> str:
    """File-name-safe sequence name: ``T1C+`` -> ``T1Cplus``."""
    return re.sub(r"[^A-Za-z0-9]", "", sequence.replace("+", "plus"))


def output_files(out_dir: Path, sequences: list[str], lesion: bool) -> dict[str, str]:
    """Every file :func:`standardize_subject` writes (keys: ``std:<seq>``, ``mask``...)."""
    files = {f"std:{s}": str(out_dir / f"{slug(s)}_space-{SPACE}.nii.gz") for s in sequences}
    files["mask"] = str(out_dir / f"brain_space-{SPACE}_mask.nii.gz")
    files["native_mask"] = str(out_dir / "brain_space-native_mask.nii.gz")
    if lesion:
        files["lesion"] = str(out_dir / f"lesion_space-{SPACE}_mask.nii.gz")
    files["qc"] = str(out_dir / "qc.json")
    return files


def _save(img: ants.ANTsImage, path: str | Path, dtype: str = "float32") -> str:
    out = img.clone("unsigned char") if dtype == "uint8" else img
    with atomic_path(path) as tmp:
        ants.image_write(out, str(tmp))
    return str(path)


#: The path-valued entries of ``qc.json``: a name -> path dict and lists of paths.
_PATH_DICTS = ("files",)
_PATH_LISTS = ("xfm_fwd", "xfm_inv")


def _map_paths(result: Mapping[str, Any], fn: Any) -> dict[str, Any]:
    out = dict(result)
    for key in _PATH_DICTS:
        if key in out:
            out[key] = {k: fn(v) for k, v in out[key].items()}
    for key in _PATH_LISTS:
        if key in out:
            out[key] = [fn(v) for v in out[key]]
    if "coregistration" in out:
        out["coregistration"] = {k: [fn(v) for v in vs] for k, vs in out["coregistration"].items()}
    return out


def write_qc(result: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``qc.json`` atomically with every path relative to the file's directory.

    The session directory (or the whole study tree) can then be moved or copied
    elsewhere and :func:`read_qc` still finds the files.
    """
    path = Path(path)
    base = path.parent

    def rel(p: str) -> str:
        return Path(os.path.relpath(Path(p), base)).as_posix()

    doc = {**_map_paths(result, rel), "paths_relative_to": "qc.json directory"}
    text = json.dumps(doc, indent=1, sort_keys=True, default=float) + "\n"
    return write_text_atomic(path, text)


def read_qc(path: str | Path) -> dict[str, Any]:
    """Read ``qc.json``; its (relative) paths are resolved against the file's directory.

    Absolute paths (files written before paths were relative) are returned unchanged.
    """
    path = Path(path)
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc.pop("paths_relative_to", None)
    base = path.parent
    return _map_paths(doc, lambda p: str(base / p))


def standardize_subject(
    images: Mapping[str, str | Path],
    out_dir: str | Path,
    cfg: StandardizeConfig,
    *,
    lesion_mask: str | Path | None = None,
    keep_intermediate: bool = False,
) -> dict[str, Any]:
    """Standardize one session; write its files under ``out_dir``; return paths + QC.

    Raises :class:`BadInput` (with a reason) for data that cannot be standardized.
    ``keep_intermediate`` also writes the native-grid reference before/after N4.
    """
    out_dir = Path(out_dir)
    ref_seq = cfg.reference_sequence
    if ref_seq not in images:
        raise BadInput("missing_reference", f"no {ref_seq} among {sorted(images)}")
    set_seed(cfg.seed)
    seconds: dict[str, float] = {}
    t = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        seconds[name] = seconds.get(name, 0.0) + now - t
        t = now

    raw = {seq: load_volume(p) for seq, p in images.items()}
    grid = {
        seq: resample(canonical(img, cfg.orientation), cfg.spacing_mm, "intensity",
                      cfg.intensity_interpolation)
        for seq, img in raw.items()
    }  # fmt: skip
    ref = grid[ref_seq]
    lap("load_resample")
    brain = strip(ref, cfg.skullstrip, cfg.registration, cfg.spacing_mm)
    lap("skullstrip")
    ref_n4 = n4(ref, brain, cfg.n4)
    lap("n4")
    tmpl = load_template(cfg.spacing_mm, cfg.skullstrip.envelope_closing_mm)
    tx = register(tmpl.t1, ref_n4 * brain, cfg.registration).save(out_dir / "xfm", "to_mni")
    lap("register")

    files = output_files(out_dir, list(images), lesion_mask is not None)
    mni_mask = apply(brain, tmpl.t1, tx.fwd, kind="mask")
    mask_np = mni_mask.numpy()
    if mask_np.sum() == 0:
        raise BadInput("registration_failed", "brain mask is empty after registration")
    coreg: dict[str, list[str]] = {}
    stats: dict[str, dict[str, float]] = {}
    ref_mni = None
    for seq, img in grid.items():
        if seq == ref_seq:
            on_ref = ref_n4
        else:
            if cfg.registration.coregister == "rigid":
                co = coregister(ref, img, cfg.registration).save(
                    out_dir / "xfm", f"{slug(seq)}_to_ref"
                )
                coreg[seq] = list(co.fwd)
                on_ref = apply(img, ref, co.fwd)
            else:
                on_ref = ants.resample_image_to_target(img, ref, interp_type="linear")
            on_ref = n4(on_ref, brain, cfg.n4)
        mni = apply(on_ref * brain, tmpl.t1, tx.fwd)
        if seq == ref_seq:
            ref_mni = mni
        norm = normalize(mni.numpy(), mask_np, cfg.normalize)
        stats[seq] = intensity_stats(norm, mask_np)
        _save(mni.new_image_like(norm), files[f"std:{seq}"])
    lap("coregister_warp")

    _save(mni_mask, files["mask"], "uint8")
    _save(brain, files["native_mask"], "uint8")
    if lesion_mask is not None:
        lesion = load_volume(lesion_mask, "mask")
        _save(apply(lesion, tmpl.t1, tx.fwd, kind="mask"), files["lesion"], "uint8")
    if keep_intermediate:
        files["native_ref"] = _save(ref, out_dir / "ref_space-native.nii.gz")
        files["native_ref_n4"] = _save(ref_n4, out_dir / "ref_space-native_n4.nii.gz")
    assert ref_mni is not None
    qc: dict[str, Any] = {
        "brain_dice": dice(mask_np, tmpl.brain.numpy()),
        "mutual_information": mutual_information(tmpl.t1, ref_mni * mni_mask),
        "brain_ml_native": float(brain.numpy().sum()) * cfg.spacing_mm**3 / 1000.0,
        "stats": stats,
    }
    reasons = []
    if qc["brain_dice"] < cfg.qc.min_brain_dice:
        reasons.append(f"brain_dice {qc['brain_dice']:.3f} < {cfg.qc.min_brain_dice}")
    if qc["mutual_information"] < cfg.qc.min_mutual_information:
        reasons.append(
            f"mutual_information {qc['mutual_information']:.3f} < {cfg.qc.min_mutual_information}"
        )
    qc["qc_pass"] = not reasons
    qc["qc_reason"] = "; ".join(reasons)
    if cfg.qc.montage:
        files["montage"] = str(
            montage(ref_mni.numpy(), mask_np, out_dir / "montage.png", title=str(out_dir.name))
        )
    lap("qc")
    qc["seconds"] = {k: round(v, 3) for k, v in seconds.items()}
    qc["seconds_total"] = round(sum(seconds.values()), 3)
    qc["backend"] = cfg.skullstrip.backend
    result = {
        "files": files,
        "xfm_fwd": list(tx.fwd),
        "xfm_inv": list(tx.inv),
        "xfm_inv_invert": list(tx.inv_invert),
        "coregistration": coreg,
        "qc": qc,
    }
    write_qc(result, files["qc"])
    return result
