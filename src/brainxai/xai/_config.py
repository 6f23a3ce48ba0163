"""Shared (YAML) mapping <-> frozen-dataclass conversion for the xai configs."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def config_from_dict(cls: type[T], d: dict[str, Any] | None) -> T:
    """Build ``cls`` from a mapping; unknown keys are an error, lists become tuples."""
    d = dict(d or {})
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} key(s): {unknown}; valid keys: {sorted(names)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def config_to_dict(obj: Any) -> dict[str, Any]:
    """JSON-able mapping (tuples become lists); ``config_from_dict`` round-trips it."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(obj).items()}
