"""Study parameters: ``params.yaml`` with profiles.

``params.yaml`` has shared top-level keys (``seed``, ``paths``…), the name of the
active ``profile`` and a ``profiles`` mapping (``smoke`` for CPU/CI minutes,
``full`` for paper scale on GPU). :func:`load_params` returns the shared keys
deep-merged with the chosen profile's section, so a stage reads one flat mapping
such as ``params["synth"]``. Every knob lives in the file; code holds no study
constants.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

PARAMS_FILE = "params.yaml"
ROOT_ENV = "BRAINXAI_ROOT"
PROFILE_ENV = "BRAINXAI_PROFILE"


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
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Resolve ``params.yaml`` for one profile.

    Profile precedence: argument, then ``$BRAINXAI_PROFILE``, then the file's
    ``profile`` key. ``overrides`` (nested mapping) is merged last.
    """
    path = Path(path) if path else project_root() / PARAMS_FILE
    raw = yaml.safe_load(path.read_text()) or {}
    profiles = raw.get("profiles", {})
    name = profile or os.environ.get(PROFILE_ENV) or raw.get("profile")
    if not name:
        raise ValueError(f"{path}: no profile chosen and no 'profile' key")
    if name not in profiles:
        raise KeyError(f"{path}: unknown profile {name!r}; known: {sorted(profiles)}")
    shared = {k: v for k, v in raw.items() if k not in ("profiles", "profile")}
    params = deep_merge(shared, profiles[name])
    params["profile"] = name
    if overrides:
        params = deep_merge(params, overrides)
    return params


def params_digest(params: Mapping[str, Any]) -> str:
    """Stable short hash of a (sub)set of parameters, for cache keys and run tags."""
    blob = json.dumps(params, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
