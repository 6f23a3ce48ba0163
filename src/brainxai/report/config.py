"""Report settings (:class:`ReportConfig`, the ``report`` section of ``params.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass

from brainxai.config import MappingConfig


@dataclass(frozen=True)
class ReportConfig(MappingConfig):
    """What the report shows and how figures are drawn.

    ``metric`` is the fine-tuning headline metric (a ``summary.csv`` metric); the per-class
    tables and confusion matrices show the best init at the largest label fraction of
    ``protocol``. ``cam_method`` is the explanation method of the galleries and trajectory
    figures (falls back to the first method found). ``qc_montages`` standardization montages
    are shown, lowest brain Dice first.
    """

    out_dir: str = "reports/report"
    title: str = "brainxai study report"
    dpi: int = 110
    metric: str = "macro_f1"
    protocol: str = "finetune"
    qc_montages: int = 4
    cam_method: str = "gradcam"
    gallery_2d_models: int = 4
    gallery_2d_images: int = 6
    gallery_3d_images: int = 3
    overlay_alpha: float = 0.45
    max_list_rows: int = 12
    ci_level: float = 0.95

    def __post_init__(self) -> None:
        if self.dpi < 30:
            raise ValueError("dpi must be >= 30")
        for name in (
            "qc_montages",
            "gallery_2d_models",
            "gallery_2d_images",
            "gallery_3d_images",
            "max_list_rows",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if not 0.0 <= self.overlay_alpha <= 1.0:
            raise ValueError("overlay_alpha must be within [0, 1]")
        if not 0.0 < self.ci_level < 1.0:
            raise ValueError("ci_level must be within (0, 1)")
