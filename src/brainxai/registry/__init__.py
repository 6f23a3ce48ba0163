"""Model registry logic without MLflow: which checkpoints are registered, which one is the
``champion`` of each task (on VALIDATION metrics only), and the registry settings."""

from brainxai.registry.champion import Selection, best_per_group, select_champion
from brainxai.registry.config import FamilyConfig, RegistryConfig

__all__ = ["FamilyConfig", "RegistryConfig", "Selection", "best_per_group", "select_champion"]
