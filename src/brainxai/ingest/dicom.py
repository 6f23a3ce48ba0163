"""Layout ``dicom``: DICOM series -> de-identified NIfTI volumes.

* A *unit* (one ``found``) is a series (grouped by SeriesInstanceUID) or a file
  that looked like DICOM (``.dcm/.dicom/.ima`` or no ending with the ``DICM``
  preamble) but whose header cannot be read.
* Slices are sorted by ImagePositionPatient projected on the slice normal
  (from ImageOrientationPatient), else by InstanceNumber; every slice's pixel
  data is decoded (pydicom, or SimpleITK/GDCM for transfer syntaxes pydicom has no
  decoder for) before SimpleITK's ImageSeriesReader converts the sorted list.
* De-identification: PatientID, PatientName and PatientBirthDate never leave this
  module: ``subject`` = ``dcm-`` + salted sha256 of PatientID, session/series are
  salted hashes of the UIDs, output files are named by those hashes, the NIfTI
  carries no DICOM tags (metadata dictionary cleared; NIfTI ``descrip`` stays
  empty) and error details are scrubbed of the three values. Paths of quarantined
  files keep no folder or file name that contains a PHI value seen in the source's
  headers (PatientID and its parts, PatientName components, birth date): such a
  component becomes ``phi-<salted hash>``.
* The salt is a secret (with it, ``sha256(salt + PatientID)`` can be reversed by
  trying IDs): it comes from ``$BRAINXAI_DICOM_SALT`` or the file
  ``IngestConfig.dicom_salt_file`` (default ``.brainxai/dicom_salt`` under the study
  root, git-ignored), never from params, and is never logged (:func:`dicom_salt`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError

from brainxai.atomic import atomic_path
from brainxai.ingest.common import Candidate, Discovery, Reject, pmap, salted_hash, walk
from brainxai.ingest.config import IngestConfig
from brainxai.labels import DIAGNOSES_3D

log = logging.getLogger(__name__)

#: Environment variable holding the DICOM pseudonym salt (wins over the salt file).
SALT_ENV = "BRAINXAI_DICOM_SALT"


def dicom_salt(cfg: IngestConfig, base_dir: Path | str) -> str:
    """The secret pseudonym salt: ``$BRAINXAI_DICOM_SALT``, else the first line of
    ``cfg.dicom_salt_file`` (relative to ``base_dir``); ``ValueError`` if neither is set.
    The error names the file, never a salt."""
    env = os.environ.get(SALT_ENV, "").strip()
    if env:
        return env
    f = Path(cfg.dicom_salt_file)
    f = f if f.is_absolute() else Path(base_dir) / f
    if f.is_file():
        text = f.read_text().strip()
        if text:
            return text.splitlines()[0].strip()
    raise ValueError(
        f"the dicom layout needs a secret salt for its pseudonyms: set ${SALT_ENV} or write "
        f"one to {f} (keep it out of git and params.yaml), e.g. "
        f"`mkdir -p {f.parent} && python -c 'import secrets; print(secrets.token_hex(32))' > {f}`"
    )


def salt_id(salt: str) -> str:
    """A one-way id of the salt (for cache keys: a new salt re-runs ingestion)."""
    return hashlib.sha256(f"brainxai-dicom-salt-id\0{salt}".encode()).hexdigest()[:16]


DICOM_EXT: tuple[str, ...] = (".dcm", ".dicom", ".ima")
_CONTRAST = {
    "+C",
    "C+",
    "POST",
    "GD",
    "GAD",
    "GADO",
    "CE",
    "CONTRAST",
    "POSTCONTRAST",
    "ENHANCED",
    "T1C",
    "T1CE",
    "T1+C",
    "T1C+",
    "T1GD",
    "T1POST",
    "KM",
}
_T1_ALIASES = {"MPRAGE", "MP", "SPGR", "BRAVO", "VIBE", "TFE", "FFE"}


def sequence_from_text(description: str, protocol: str = "", contrast_agent: str = "") -> str:
    """MR sequence from SeriesDescription/ProtocolName: FLAIR, T1C+, T2, T1 or "".

    FLAIR wins; then any contrast token (``+C``, ``POST``, ``GD``, ``CE``, ...) or a
    ContrastBolusAgent makes a non-T2 series ``T1C+``; then T2; then T1 (also
    MPRAGE/SPGR/...).
    """
    text = f"{description} {protocol}".upper()
    tokens = {t for t in re.split(r"[^A-Z0-9+]+", text) if t}
    if any(t.startswith("FLAIR") or t in {"TIRM", "DARKFLUID"} for t in tokens):
        return "FLAIR"
    t2 = any(t.startswith("T2") for t in tokens)
    t1 = any(t.startswith("T1") for t in tokens) or bool(_T1_ALIASES & tokens)
    contrast = bool(_CONTRAST & tokens) or any("+C" in t for t in tokens)
    if (contrast or contrast_agent.strip()) and not t2:
        return "T1C+"
    if t2:
        return "T2"
    return "T1" if t1 else ""


@dataclass
class Header:
    """The few header fields ingestion needs (PHI only kept for scrubbing)."""

    path: Path
    series_uid: str
    study_uid: str
    patient_id: str
    rows: int
    cols: int
    ipp: tuple[float, ...] | None
    iop: tuple[float, ...] | None
    instance: int | None
    description: str
    protocol: str
    contrast_agent: str
    phi: tuple[str, ...] = field(default_factory=tuple, repr=False)


def _floats(v: object, n: int) -> tuple[float, ...] | None:
    try:
        out = tuple(float(x) for x in v)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and all(np.isfinite(out)) else None


def read_header(path: Path) -> Header | Reject:
    """Header of one file (no pixel data)."""
    force = path.name.lower().endswith(DICOM_EXT)
    try:
        if path.stat().st_size == 0:
            return Reject(path, "empty_file", "0 bytes")
    except OSError as exc:
        return Reject(path, "decode_error", f"cannot stat ({type(exc).__name__})")
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=force)
        uid = str(ds.get("SeriesInstanceUID", "") or "")
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    except (InvalidDicomError, OSError, ValueError, TypeError, KeyError, EOFError) as exc:
        if path.stat().st_size == 0:
            return Reject(path, "empty_file", "0 bytes")
        return Reject(path, "decode_error", f"unreadable DICOM header ({type(exc).__name__})")
    if not uid or not rows or not cols:
        return Reject(path, "decode_error", "DICOM without SeriesInstanceUID/Rows/Columns")
    inst = ds.get("InstanceNumber")
    values = [str(ds.get(k, "") or "") for k in _PHI_TAGS]
    parts = [p for v in values[:3] for p in re.split(r"[\^\s,._\-/]+", v) if len(p) >= 3]
    phi = tuple(sorted({s.strip() for s in [*values, *parts] if len(s.strip()) >= 2}))
    return Header(
        path=path,
        series_uid=uid,
        study_uid=str(ds.get("StudyInstanceUID", "") or ""),
        patient_id=str(ds.get("PatientID", "") or "").strip(),
        rows=rows,
        cols=cols,
        ipp=_floats(ds.get("ImagePositionPatient"), 3),
        iop=_floats(ds.get("ImageOrientationPatient"), 6),
        instance=int(inst) if inst not in (None, "") else None,
        description=str(ds.get("SeriesDescription", "") or ""),
        protocol=str(ds.get("ProtocolName", "") or ""),
        contrast_agent=str(ds.get("ContrastBolusAgent", "") or ""),
        phi=phi,
    )


def sort_slices(headers: list[Header]) -> tuple[list[Header], np.ndarray | None]:
    """Slices in order along the normal, and their positions (None: InstanceNumber order)."""
    if all(h.ipp is not None and h.iop is not None for h in headers):
        iop = np.array(headers[0].iop)
        normal = np.cross(iop[:3], iop[3:])
        pos = np.array([np.dot(h.ipp, normal) for h in headers])
        order = np.argsort(pos, kind="stable")
        return [headers[i] for i in order], pos[order]
    key = [(h.instance if h.instance is not None else 10**9, h.path.as_posix()) for h in headers]
    order = sorted(range(len(headers)), key=key.__getitem__)
    return [headers[i] for i in order], None


def _decode_slice(path: Path) -> str | None:
    """None if the slice's pixel data decodes fully, else the error text."""
    try:
        ds = pydicom.dcmread(path)
        arr = ds.pixel_array
        if arr.size != int(ds.Rows) * int(ds.Columns) * int(ds.get("NumberOfFrames", 1) or 1):
            return "pixel data has the wrong size"
        return None
    except (NotImplementedError, RuntimeError) as exc:  # no pydicom decoder: try GDCM
        if "decod" not in str(exc).lower() and "plugin" not in str(exc).lower():
            return f"{type(exc).__name__}: {exc}"
        try:
            sitk.ReadImage(str(path))
            return None
        except RuntimeError as exc2:
            return f"GDCM: {str(exc2).splitlines()[0] if str(exc2) else 'error'}"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


def _scrub(text: str, phi: tuple[str, ...]) -> str:
    for s in sorted(phi, key=len, reverse=True):
        text = text.replace(s, "<phi>")
    return text[:200]


def redact_path(path: Path, root: Path, phi: set[str] | frozenset[str], salt: str) -> Path:
    """``path`` under ``root`` with every component that contains a PHI value (case
    insensitive) replaced by ``phi-<salted hash>`` (a file keeps its ending)."""
    try:
        rel = Path(os.path.relpath(os.path.abspath(path), os.path.abspath(root)))
    except ValueError:
        rel = Path(path.name)
    low = [t.lower() for t in phi]
    out = []
    for i, part in enumerate(rel.parts):
        if part not in ("..", ".") and any(t in part.lower() for t in low):
            ext = "".join(Path(part).suffixes)[-12:] if i == len(rel.parts) - 1 else ""
            part = f"phi-{salted_hash(salt, part, 8)}{ext}"
        out.append(part)
    return Path(root, *out)


@dataclass(frozen=True)
class _Job:
    headers: tuple[Header, ...]
    labels: dict[str, str]
    allowed: frozenset[str]
    cfg: IngestConfig
    work_dir: Path
    salt: str = field(default="", repr=False)


def convert_series(job: _Job) -> Candidate | Reject:
    """Validate, sort and convert one series; never raises for bad data."""
    cfg, hs = job.cfg, list(job.headers)
    phi = tuple({s for h in hs for s in h.phi})
    first = sorted(hs, key=lambda h: h.path.as_posix())[0]
    where = f"series of {len(hs)} files"

    def reject(reason: str, detail: str) -> Reject:
        return Reject(first.path, reason, _scrub(f"{where}: {detail}", phi))

    pid = hs[0].patient_id
    label = job.labels.get(pid, "") if pid else ""
    if (label or cfg.require_label) and label not in job.allowed:
        return reject("unknown_label", f"label {label!r} not allowed" if label else "no label")
    if len({(h.rows, h.cols) for h in hs}) > 1 or len({h.iop for h in hs}) > 1:
        return reject("bad_shape", "slices differ in size or orientation")
    hs, pos = sort_slices(hs)
    if pos is not None and len(pos) > 1:
        gaps = np.diff(pos)
        med = float(np.median(gaps))
        if med <= 1e-6 or np.any(gaps <= 1e-6):
            return reject("bad_spacing", "several slices share one position")
        if np.any(np.abs(gaps - med) > 0.05 * med + 1e-3):
            return reject("bad_spacing", f"uneven slice gaps {gaps.min():.3g}..{gaps.max():.3g} mm")
    for i, h in enumerate(hs):
        err = _decode_slice(h.path)
        if err is not None:
            kind = (
                "truncated"
                if any(k in err.lower() for k in ("less than", "truncat", "short", "end of file"))
                else "decode_error"
            )
            return reject(kind, f"slice {i + 1}/{len(hs)} does not decode: {err}")
    salt = job.salt
    subject = f"dcm-{salted_hash(salt, pid)}" if pid else ""
    series = salted_hash(salt, hs[0].series_uid)
    session = f"ses-{salted_hash(salt, hs[0].study_uid, 8)}" if hs[0].study_uid else ""
    out = job.work_dir / (subject or "dcm-unknown") / f"{series}.nii.gz"
    try:
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames([str(h.path) for h in hs])
        reader.MetaDataDictionaryArrayUpdateOff()
        reader.LoadPrivateTagsOff()
        img = reader.Execute()
        for key in img.GetMetaDataKeys():
            img.EraseMetaData(key)
        with atomic_path(out) as tmp:
            sitk.WriteImage(img, str(tmp), True)
    except RuntimeError as exc:
        return reject("decode_error", f"SimpleITK: {str(exc).strip().splitlines()[-1][:120]}")
    return Candidate(
        path=out,
        ndim=3,
        label=label,
        group=label,
        sequence=sequence_from_text(hs[0].description, hs[0].protocol, hs[0].contrast_agent),
        subject=subject,
        subject_source="dicom" if subject else "",
        session=session,
        series=series,
    )


def _is_dicom_candidate(path: Path) -> bool:
    name = path.name.lower()
    if name.endswith(DICOM_EXT):
        return True
    if "." in name or name == "dicomdir":
        return False
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def read_labels(path: Path | None, cfg: IngestConfig) -> dict[str, str]:
    """PatientID -> label from the optional labels CSV (read only, kept in memory)."""
    if path is None:
        return {}
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    for col in (cfg.dicom_id_column, cfg.dicom_label_column):
        if col not in df.columns:
            raise ValueError(f"labels CSV lacks column {col!r}")
    return {
        str(k).strip(): str(v).strip().lower()
        for k, v in zip(df[cfg.dicom_id_column], df[cfg.dicom_label_column], strict=True)
        if str(v).strip()
    }


def discover(
    root: Path,
    cfg: IngestConfig,
    labels_csv: Path | None,
    work_dir: Path,
    salt: str,
) -> Discovery:
    """Read headers, group series, convert each to NIfTI under ``work_dir``.

    ``salt``: the secret pseudonym salt (:func:`dicom_salt`)."""
    if not salt:
        raise ValueError(f"the dicom layout needs a non-empty salt (${SALT_ENV})")
    disc = Discovery()
    files, ignored = walk(
        root, ("",), consumed=[labels_csv] if labels_csv else [], rejects=disc.rejects,
        follow_outside=cfg.follow_symlinks_outside_root,
    )  # fmt: skip
    cands = [f for f in files if _is_dicom_candidate(f)]
    disc.ignored = ignored + len(files) - len(cands)
    series: dict[str, list[Header]] = {}
    for h in pmap(read_header, cands, cfg.workers, cfg.pool):
        if isinstance(h, Reject):
            disc.rejects.append(h)
        else:
            series.setdefault(h.series_uid, []).append(h)
    labels = read_labels(labels_csv, cfg)
    allowed = frozenset(cfg.allowed_labels or DIAGNOSES_3D)
    jobs = [
        _Job(tuple(hs), labels, allowed, cfg, work_dir, salt)
        for _, hs in sorted(series.items(), key=lambda kv: min(h.path.as_posix() for h in kv[1]))
    ]
    for res in pmap(convert_series, jobs, cfg.workers, cfg.pool):
        (disc.rejects if isinstance(res, Reject) else disc.candidates).append(res)
    phi = {t for hs in series.values() for h in hs for t in h.phi}
    for r in disc.rejects:  # folder/file names of real exports carry patient names
        r.path = redact_path(r.path, root, phi, salt)
    log.info("dicom: %d series, %d units quarantined", len(jobs), len(disc.rejects))
    return disc


_PHI_TAGS = ("PatientID", "PatientName", "PatientBirthDate", "OtherPatientIDs", "PatientAddress")

__all__ = [
    "SALT_ENV",
    "dicom_salt",
    "discover",
    "read_header",
    "redact_path",
    "salt_id",
    "sequence_from_text",
    "sort_slices",
]
