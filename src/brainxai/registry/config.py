"""Registry settings (``params.registry``): one :class:`FamilyConfig` per task."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from brainxai.config import MappingConfig, config_from_mapping

#: MLflow registered-model names and aliases: letters, digits, ``-`` and ``_``.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class FamilyConfig(MappingConfig):
    """One task's registered model.

    ``metric`` is a VALIDATION metric of the candidate table (never a test metric);
    ``group_by`` columns make one registered version per group (its best row, alias
    ``<g1>-<g2>``); ``exclude`` maps a column to values never made champion (e.g. the
    3D ``oracle`` row, which needs the true lesion mask); ``tie_break`` orders equal
    metrics (``"-col"`` = descending), the candidate key last.
    """

    name: str
    metric: str
    group_by: tuple[str, ...] = ()
    maximize: bool = True
    exclude: dict[str, tuple[str, ...]] = field(default_factory=dict)
    tie_break: tuple[str, ...] = ()
    enabled: bool = True

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"registered model name {self.name!r}: use letters, digits, - and _")
        object.__setattr__(
            self, "exclude", {str(k): tuple(str(v) for v in vs) for k, vs in self.exclude.items()}
        )


@dataclass(frozen=True)
class RegistryConfig(MappingConfig):
    """``ssl`` backbones, fine-tuned ``classifier_2d`` and ``classifier_3d`` families."""

    ssl: FamilyConfig
    classifier_2d: FamilyConfig
    classifier_3d: FamilyConfig
    champion_alias: str = "champion"

    def __post_init__(self) -> None:
        if not _NAME.match(self.champion_alias) or self.champion_alias == "latest":
            raise ValueError(f"alias {self.champion_alias!r} is not a valid MLflow alias")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> RegistryConfig:
        nested = {k: FamilyConfig for k in ("ssl", "classifier_2d", "classifier_3d")}
        return config_from_mapping(cls, d, nested=nested)


def alias_for(*parts: Any) -> str:
    """An MLflow alias from group values (``("simclr", "probe")`` -> ``simclr-probe``).

    Aliases may not look like a version (``v3``) or be ``latest``; such values get a
    ``g-`` prefix.
    """
    alias = re.sub(r"[^A-Za-z0-9_-]+", "_", "-".join(str(p) for p in parts)).strip("_-")
    if not alias or alias == "latest" or re.fullmatch(r"[vV]\d+", alias):
        alias = f"g-{alias}"
    return alias
