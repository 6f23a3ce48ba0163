"""MRI standardization (paper 003, Eq. 1): skull stripping, N4, SyN to MNI152, QC.

``X_proc = F_SyN(F_N4(F_BET(X_raw)))`` per subject session, after reorientation to
RAS+ and resampling to the target spacing; intensity normalisation and QC after.
Public API: :class:`StandardizeConfig`, :func:`standardize_subject` (one session, files
+ QC), :func:`subject_table` / :func:`extend_manifest` (manifest in/out),
:mod:`~brainxai.standardize.accuracy` (against the synthetic ground truth).
"""

from brainxai.standardize.config import StandardizeConfig
from brainxai.standardize.errors import REASONS, BadInput
from brainxai.standardize.manifest import extend_manifest, subject_table
from brainxai.standardize.pipeline import output_files, read_qc, standardize_subject, write_qc
from brainxai.standardize.threads import set_threads, threads_per_worker

__all__ = [
    "REASONS",
    "BadInput",
    "StandardizeConfig",
    "extend_manifest",
    "output_files",
    "read_qc",
    "set_threads",
    "standardize_subject",
    "subject_table",
    "threads_per_worker",
    "write_qc",
]
