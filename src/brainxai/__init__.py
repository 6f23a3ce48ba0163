"""brainxai: self-supervised learning and explainability on brain-tumour MRI.

The domain library: plain typed functions and classes, no Prefect, MLflow or DVC.
Orchestration lives in the top-level ``tasks`` and ``flows`` packages.
"""

__version__ = "0.1.0"
