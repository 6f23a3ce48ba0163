"""Embedded synthetic brain-tumour MRI generator (the project's default data).

Subjects are built from nilearn's MNI152 2009 template and tissue maps: per-subject
head pose, smooth non-linear warp, head shells (extra-axial CSF, skull, diploe, scalp),
phenotype-specific lesions placed in MNI space (so masks deform with the anatomy),
T1 / T1C+ / T2 / FLAIR contrast, bias field and Rician noise, on varied grids.

Two seeded, deterministic exports share the generator:

* :func:`generate_cohort3d` - BIDS-like 3D cohort with ground-truth derivatives;
* :func:`generate_kaggle2d` - 2D slices in the 17-class Kaggle folder layout.
"""

from brainxai.synth.cohort import (
    finalize_cohort3d,
    generate_cohort3d,
    plan_cohort3d,
    subject_files,
    write_subject3d,
)
from brainxai.synth.config import SynthConfig
from brainxai.synth.slices import (
    finalize_kaggle2d,
    generate_kaggle2d,
    plan_kaggle2d,
    write_subject2d,
)
from brainxai.synth.spec import SubjectSpec
from brainxai.synth.synthesis import (
    SubjectModel,
    SubjectVolumes,
    build_model,
    render,
    synthesize_subject,
    template_lesion,
)

__all__ = [
    "SubjectModel",
    "SubjectSpec",
    "SubjectVolumes",
    "SynthConfig",
    "build_model",
    "finalize_cohort3d",
    "finalize_kaggle2d",
    "generate_cohort3d",
    "generate_kaggle2d",
    "plan_cohort3d",
    "plan_kaggle2d",
    "render",
    "subject_files",
    "synthesize_subject",
    "template_lesion",
    "write_subject2d",
    "write_subject3d",
]
