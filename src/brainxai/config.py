"""Study parameters: ``params.yaml`` with profiles.

``params.yaml`` has shared top-level keys (``seed``, ``paths``…), the name of the
active ``profile`` and a ``profiles`` mapping (``smoke`` for CPU/CI minutes,
``full`` for paper scale on GPU). :func:`load_params` returns the shared keys
deep-merged with the chosen profile's section, then the file's ``overrides`` mapping,
then the caller's overrides (``--set``; :mod:`brainxai.overrides`), so a stage reads
one flat mapping such as ``params["synth"]`` and an explicit override always wins over
the profile. Every knob lives in the file; code holds no study constants.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self, TypeVar, get_type_hints

import yaml

T = TypeVar("T")

PARAMS_FILE = "params.yaml"
ROOT_ENV = "BRAINXAI_ROOT"
PROFILE_ENV = "BRAINXAI_PROFILE"
#: The params.yaml mapping merged after the profile (see :mod:`brainxai.overrides`).
OVERRIDES_KEY = "overrides"


def project_root(start: str | Path | None = None) -> Path:
    """The study's root: ``$BRAINXAI_ROOT``, else the nearest parent holding params.yaml."""
    env = os.environ.get(ROOT_ENV)
    if env:
        return Path(env).resolve()
    here = Path(start or Path.cwd()).resolve()
    for cand in (here, *here.parents):
        if (cand / PARAMS_FILE).is_file():
            return cand
    raise FileNotFoundError(
        f"no {PARAMS_FILE} in {here} or its parents; run from the study root or set {ROOT_ENV}"
    )


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: values of ``over`` win; nested mappings merge."""
    out = copy.deepcopy(dict(base))
    for key, val in over.items():
        if isinstance(val, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], val)
        else:
            out[key] = copy.deepcopy(val)
    return out


def load_params(
    path: str | Path | None = None,
    profile: str | None = None,
    overrides: Mapping[str, Any] | Sequence[str] | None = None,
) -> dict[str, Any]:
    """Resolve ``params.yaml`` for one profile.

    Profile precedence: argument, then ``$BRAINXAI_PROFILE``, then the file's
    ``profile`` key. Then the file's ``overrides`` mapping (what ``dvc exp run -S
    '++overrides.<key>=<value>'`` sets) and last ``overrides`` (a nested mapping or
    ``key.path=value`` strings, as ``--set`` gives them) are merged on top, each checked
    against the resolved params and the typed stage configs
    (:func:`brainxai.overrides.apply_overrides`: an unknown key or a wrong type raises
    :class:`~brainxai.overrides.OverrideError` naming the valid keys).
    """
    path = Path(path) if path else project_root() / PARAMS_FILE
    raw = yaml.safe_load(path.read_text()) or {}
    profiles = raw.get("profiles", {})
    name = profile or os.environ.get(PROFILE_ENV) or raw.get("profile")
    if not name:
        raise ValueError(f"{path}: no profile chosen and no 'profile' key")
    if name not in profiles:
        raise KeyError(f"{path}: unknown profile {name!r}; known: {sorted(profiles)}")
    shared = {k: v for k, v in raw.items() if k not in ("profiles", "profile", OVERRIDES_KEY)}
    params = deep_merge(shared, profiles[name])
    params["profile"] = name
    from brainxai.overrides import apply_overrides, as_mapping, file_overrides, leaves

    layers = [
        (f"{path.name} {OVERRIDES_KEY}", file_overrides(raw.get(OVERRIDES_KEY), path)),
        ("override", as_mapping(overrides)),
    ]
    for origin, layer in layers:
        if leaves(layer):
            params = apply_overrides(params, layer, origin)
    return params


def params_digest(params: Mapping[str, Any]) -> str:
    """Stable short hash of a (sub)set of parameters, for cache keys and run tags."""
    blob = json.dumps(params, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def json_ready(obj: Any) -> Any:
    """Recursively turn tuples into lists (stable JSON/YAML dumps of configs)."""
    if isinstance(obj, dict):
        return {k: json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_ready(v) for v in obj]
    return obj


def _coerce(value: Any, hint: Any) -> Any:
    if isinstance(value, list):
        return tuple(_coerce(v, None) for v in value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def config_from_mapping(
    cls: type[T], d: Mapping[str, Any] | None, nested: Mapping[str, type] | None = None
) -> T:
    """Build the frozen config dataclass ``cls`` from a ``params.yaml`` section.

    Unknown keys raise ``ValueError`` naming the valid ones (a typo must never fall back
    to a default); YAML lists become tuples (recursively); ints given for ``float``
    fields become floats; keys in ``nested`` are sub-sections built with that class's
    ``from_dict``. Every stage's ``Config.from_dict`` goes through here.
    """
    d = dict(d or {})
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {unknown}; valid keys: {sorted(names)}")
    try:
        hints = get_type_hints(cls)
    except (NameError, TypeError):
        hints = {}
    out: dict[str, Any] = {}
    for key, value in d.items():
        sub = (nested or {}).get(key)
        if sub is not None and not dataclasses.is_dataclass(value):
            out[key] = sub.from_dict(value)  # type: ignore[attr-defined]
        else:
            out[key] = _coerce(value, hints.get(key))
    return cls(**out)


def config_to_mapping(obj: Any) -> dict[str, Any]:
    """JSON-able mapping of a config dataclass; ``config_from_mapping`` round-trips it."""
    return json_ready(dataclasses.asdict(obj))


class MappingConfig:
    """Base of every frozen config dataclass built from a ``params.yaml`` section: the one
    spelling ``Config.from_dict(section)`` (:func:`config_from_mapping`) and
    ``config.to_dict()`` (:func:`config_to_mapping`). A config with nested sections or
    extra checks overrides ``from_dict`` and still ends in :func:`config_from_mapping`."""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None = None) -> Self:
        return config_from_mapping(cls, d)

    def to_dict(self) -> dict[str, Any]:
        return config_to_mapping(self)
