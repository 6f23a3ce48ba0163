"""Ingestion settings (:class:`IngestConfig`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from brainxai.config import MappingConfig, config_from_mapping
from brainxai.ingest.grouping import SubjectGroupingConfig

Layout = Literal["kaggle17", "kermany", "bids", "dicom"]
LAYOUTS: tuple[str, ...] = get_args(Layout)


@dataclass(frozen=True)
class IngestConfig(MappingConfig):
    """How to scan, validate and de-duplicate one source.

    ``phash_threshold`` is a Hamming distance in bits of a 64-bit perceptual hash;
    3D volumes carry three such hashes (central axial/coronal/sagittal slices) and
    are near duplicates when *every* one of the three is within the threshold.
    ``leakage_policy`` decides what happens when the source itself puts duplicates
    (or one subject) into two of its own splits: ``"error"`` raises
    :class:`brainxai.splits.LeakageError`; ``"quarantine"`` keeps the copies in the
    most held-out split (test > val > train) and quarantines the others
    (``source_leakage``). ``subject_grouping`` decides what becomes of images whose source
    gives no patient id (``fail`` | ``group`` | ``allow``;
    :mod:`brainxai.ingest.grouping`).
    """

    layout: Layout | None = None
    min_side_2d: int = 64
    min_dim_3d: int = 16
    phash_threshold: int = 4
    #: Labels accepted instead of the layout's default vocabulary
    #: (kaggle17: the 17 classes; bids/dicom: ``labels.DIAGNOSES_3D``; kermany: classes).
    allowed_labels: tuple[str, ...] | None = None
    #: If False, an image with *no* label information is kept with label "".
    require_label: bool = True
    kermany_classes: tuple[str, ...] = ("CNV", "DME", "DRUSEN", "NORMAL")
    #: Applied to the file stem; the named group ``subject`` (else group 1) is the id.
    kermany_subject_regex: str = r"^(?P<subject>[A-Za-z]+-\d+)-\d+$"
    bids_label_column: str = "diagnosis"
    bids_mask_dir: str = "derivatives/truth"
    #: File holding the secret salt for hashing DICOM PatientID / UIDs (relative to the
    #: study root, outside git); ``$BRAINXAI_DICOM_SALT`` wins. The salt itself never
    #: lives in a config (it would be logged): see :func:`brainxai.ingest.dicom.dicom_salt`.
    dicom_salt_file: str = ".brainxai/dicom_salt"
    dicom_id_column: str = "PatientID"
    dicom_label_column: str = "diagnosis"
    leakage_policy: Literal["error", "quarantine"] = "error"
    workers: int = 1
    pool: Literal["thread", "process"] = "thread"
    modality: str = "MR"
    #: Declared-size caps, checked on the header before any pixel data is read:
    #: 3D ``prod(shape) * dtype itemsize`` in bytes, 2D ``width * height`` in pixels.
    max_bytes_3d: int = 268_435_456
    max_pixels_2d: int = 25_000_000
    #: Read symbolic links whose target lies outside the source root (default: quarantine).
    follow_symlinks_outside_root: bool = False
    #: Images without patient ids: policy and embedding clusters (issue 17.4).
    subject_grouping: SubjectGroupingConfig = field(default_factory=SubjectGroupingConfig)

    def __post_init__(self) -> None:
        if self.layout is not None and self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.min_side_2d < 1 or self.min_dim_3d < 2:
            raise ValueError("min_side_2d must be >= 1 and min_dim_3d >= 2")
        if not 0 <= self.phash_threshold <= 64:
            raise ValueError("phash_threshold must be within 0..64")
        if self.leakage_policy not in ("error", "quarantine"):
            raise ValueError("leakage_policy must be 'error' or 'quarantine'")
        if self.pool not in ("thread", "process"):
            raise ValueError("pool must be 'thread' or 'process'")
        if self.workers < 1:
            raise ValueError("workers must be >= 1")
        if self.max_bytes_3d < 1 or self.max_pixels_2d < 1:
            raise ValueError("max_bytes_3d and max_pixels_2d must be >= 1")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> IngestConfig:
        """Build from a (YAML) mapping (:func:`brainxai.config.config_from_mapping`);
        label lists are read as strings."""
        d = dict(d or {})
        if "dicom_salt" in d:
            raise ValueError(
                "ingest.config.dicom_salt is not read from params (params are logged, so the "
                "pseudonyms would be reversible): set $BRAINXAI_DICOM_SALT or write the salt "
                "to the file named by ingest.config.dicom_salt_file (default "
                ".brainxai/dicom_salt, git-ignored)"
            )
        for key in ("allowed_labels", "kermany_classes"):
            if d.get(key) is not None:
                d[key] = [str(x) for x in d[key]]
        return config_from_mapping(cls, d, {"subject_grouping": SubjectGroupingConfig})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
