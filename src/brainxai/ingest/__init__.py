"""Ingestion of brain-MRI sources into the manifest (see :mod:`brainxai.manifest`).

Layouts: ``kaggle17`` (17-class folder set), ``kermany`` (train|test/CLASS),
``bids`` (NIfTI cohort) and ``dicom`` (series -> NIfTI). Every found image file
ends in the manifest or in the quarantine (reason vocabulary:
:data:`brainxai.ingest.common.REASONS`).
"""

from brainxai.ingest.common import REASONS, record_id
from brainxai.ingest.config import LAYOUTS, IngestConfig, Layout
from brainxai.ingest.core import IngestResult, combine, deduplicate, ingest
from brainxai.splits import LeakageError

__all__ = [
    "LAYOUTS",
    "REASONS",
    "IngestConfig",
    "IngestResult",
    "Layout",
    "LeakageError",
    "combine",
    "deduplicate",
    "ingest",
    "record_id",
]
