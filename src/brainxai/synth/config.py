"""Every knob of the synthetic MRI generator, in one frozen dataclass.

Defaults are the *smoke* profile (2 mm MNI template, a few dozen subjects, well under
two minutes on two CPU cores). Phenotype and tissue intensity tables are documented
module-level tables in :mod:`brainxai.synth.lesions` and :mod:`brainxai.synth.contrast`.
"""

from __future__ import annotations

from dataclasses import dataclass

from brainxai.config import MappingConfig, json_ready

#: Axis codes accepted in ``orientation_choices`` (three letters, one of R/L, A/P, S/I each).
_AXIS_PAIRS = ({"R", "L"}, {"A", "P"}, {"S", "I"})

Range = tuple[float, float]


@dataclass(frozen=True)
class SynthConfig(MappingConfig):
    """Generator parameters (lengths in mm, angles in degrees, fractions in [0, 1])."""

    # --- template and cohort size -------------------------------------------------
    #: MNI152 2009 template resolution shipped with nilearn (1 or 2 mm).
    resolution_mm: int = 2
    #: Template grid padding so that the skull/scalp shell fits around the brain.
    head_pad_mm: float = 24.0
    #: Exponent sharpening the tissue probability maps into partial-volume fractions
    #: (``p_k**g / sum_j p_j**g``); 1 keeps nilearn's probabilities unchanged.
    tissue_sharpness: float = 2.0
    #: 3D cohort: subjects per diagnosis in ``labels.DIAGNOSES_3D``.
    n_subjects_3d_per_class: int = 6
    #: 2D Kaggle-layout set: subjects per group in ``labels.KAGGLE_GROUPS``.
    n_subjects_2d_per_group: int = 6
    #: Axial slices exported per 2D subject and sequence.
    slices_per_subject: int = 3

    # --- 2D export ------------------------------------------------------------------
    image_size_min: int = 192
    image_size_max: int = 512
    #: Relative width/height difference allowed for non-square images.
    image_aspect_jitter: float = 0.1
    #: Fraction of 2D images saved as JPEG (the rest PNG).
    jpeg_fraction: float = 0.5
    jpeg_quality: tuple[int, int] = (80, 95)
    #: Lesion slices are drawn among those whose lesion area is at least this
    #: fraction of the largest lesion cross-section.
    slice_min_area_fraction: float = 0.25
    #: Template-space (MNI z, mm) range of the random axial levels of normal subjects.
    normal_slice_z_mm: Range = (-10.0, 50.0)
    #: Upper display window: this percentile of the slice times a jitter in ``window_jitter``.
    window_percentile: float = 99.5
    window_jitter: Range = (0.95, 1.15)

    # --- difficulty -----------------------------------------------------------------
    #: Scales each lesion sub-region's deviation from the tissue it replaces (1 = nominal).
    lesion_contrast: float = 1.0
    #: Scales lesion radii (1 = nominal phenotype sizes).
    lesion_size: float = 1.0
    #: Rician noise std as a fraction of the white-matter T1 signal.
    noise: float = 0.03
    #: Scales every phenotype's mass effect (0 = no displacement of the brain).
    mass_effect: float = 1.0

    # --- contrast -------------------------------------------------------------------
    #: Per-subject multiplicative jitter (std) of every tissue/lesion intensity.
    intensity_jitter: float = 0.05
    #: Scanner gain range: stored integers = gain * normalised intensity.
    gain_range: Range = (600.0, 1400.0)
    #: Standard deviation of the log bias field (0.2 ~ +-20 % shading).
    bias_strength: float = 0.2
    #: Correlation length of the bias field.
    bias_length_mm: float = 140.0

    # --- geometry -------------------------------------------------------------------
    #: Std (per component) of the random smooth displacement field.
    deform_amplitude_mm: float = 2.0
    #: Width of the Gaussian kernel smoothing the displacement noise (larger = smoother).
    deform_smoothness_mm: float = 40.0
    #: Max absolute head rotation about each axis.
    rotation_deg: float = 10.0
    #: Max absolute head translation per axis.
    translation_mm: float = 10.0
    #: Max absolute relative head-size change per axis (affine scaling).
    scale_range: float = 0.08
    #: Max absolute shear coefficient.
    shear: float = 0.03
    #: Voxel spacings as multiples of ``resolution_mm`` per voxel axis (the last is the
    #: slice direction, thick for 2D-acquired series).
    spacing_choices: tuple[tuple[float, float, float], ...] = (
        (1.0, 1.0, 1.0),
        (0.9, 0.9, 1.25),
        (1.0, 1.0, 1.5),
        (1.2, 1.2, 1.0),
    )
    #: NIfTI voxel-axis codes (``nibabel.aff2axcodes``): RAS/LAS (dcm2niix), LPS (ITK/DICOM),
    #: PSR (sagittal acquisition, permuted axis order).
    orientation_choices: tuple[str, ...] = ("RAS", "LPS", "LAS", "PSR")
    #: Field-of-view margin added around the head per side (negative crops the scalp).
    fov_margin_mm: Range = (-6.0, 20.0)

    # --- head shells (thickness ranges, drawn per subject) ---------------------------
    #: Extra-axial CSF beyond the closed brain envelope (subarachnoid space).
    csf_rim_mm: Range = (1.0, 3.5)
    #: Inner and outer tables of the skull (cortical bone, dark on every sequence).
    skull_table_mm: Range = (1.5, 2.5)
    #: Diploe (fatty marrow, bright on T1).
    marrow_mm: Range = (2.0, 4.5)
    #: Scalp (subcutaneous fat and muscle).
    scalp_mm: Range = (4.0, 8.0)

    # --- implementation -------------------------------------------------------------
    #: Max voxels sampled per chunk (bounds memory at 1 mm).
    chunk_voxels: int = 4_000_000

    # -------------------------------------------------------------------------------
    def __post_init__(self) -> None:
        checks = [
            (self.resolution_mm in (1, 2), "resolution_mm must be 1 or 2"),
            (self.n_subjects_3d_per_class >= 0, "n_subjects_3d_per_class must be >= 0"),
            (self.n_subjects_2d_per_group >= 0, "n_subjects_2d_per_group must be >= 0"),
            (self.slices_per_subject >= 1, "slices_per_subject must be >= 1"),
            (16 <= self.image_size_min <= self.image_size_max, "need 16 <= image_size_min <= max"),
            (0.0 <= self.jpeg_fraction <= 1.0, "jpeg_fraction must be in [0, 1]"),
            (self.lesion_contrast >= 0 and self.lesion_size > 0, "lesion_contrast/size invalid"),
            (self.noise >= 0 and self.bias_strength >= 0, "noise/bias_strength must be >= 0"),
            (len(self.spacing_choices) > 0, "spacing_choices is empty"),
            (len(self.orientation_choices) > 0, "orientation_choices is empty"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"SynthConfig: {msg}")
        for sp in self.spacing_choices:
            if len(sp) != 3 or min(sp) <= 0:
                raise ValueError(f"SynthConfig: bad spacing choice {sp!r}")
        for code in self.orientation_choices:
            if len(code) != 3 or any(sum(c in pair for c in code) != 1 for pair in _AXIS_PAIRS):
                raise ValueError(f"SynthConfig: bad orientation code {code!r}")


__all__ = ["SynthConfig", "json_ready"]
