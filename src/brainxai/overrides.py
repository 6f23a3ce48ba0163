"""Per-run parameter overrides, checked against the typed stage configs.

One mechanism serves every entry point, and an override always wins over the profile:

* the command line: ``brainxai <command> --set key.path=value`` (repeatable);
* the Prefect flows and deployments: the ``overrides`` parameter, a list of the same
  ``key.path=value`` strings;
* DVC: the top-level ``overrides:`` mapping of ``params.yaml``
  (``dvc exp run -S '++overrides.key.path=value'``), which every stage lists as a param
  dependency per section.

:func:`brainxai.config.load_params` resolves shared keys, then the profile, then the
file's ``overrides`` mapping, then the explicit ``overrides`` argument. A value is parsed
as YAML (``3`` is an int, ``[1, 2]`` a list, ``null`` None, ``hdbet`` a string).

Each override is checked before it is applied (:func:`apply_overrides`): every key of its
path must exist, either in the resolved params or as a field of the typed config that
parses that section (:data:`TYPED_SECTIONS`), else :class:`OverrideError` names the
valid keys at that level; the value must match the field's type hint (or, for a key no
config types, the type of the value it replaces). Then every typed section an override
touched is built, so the config's own checks (``__post_init__``) run at once.
"""

from __future__ import annotations

import dataclasses
import importlib
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, get_args, get_origin, get_type_hints

import yaml

from brainxai.config import OVERRIDES_KEY, config_from_mapping, deep_merge

#: Keys an override may not set: the profile is chosen with ``--profile`` / ``profile:``.
RESERVED = ("profile", "profiles", OVERRIDES_KEY)

Path_ = tuple[str, ...]


class OverrideError(ValueError):
    """An override names an unknown key, has a value of the wrong type, or is malformed."""


def _ref(target: str) -> Callable[[], Any]:
    """Lazy ``module:attribute`` (the config modules import torch: only what is touched)."""

    def load() -> Any:
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)

    return load


#: params.yaml section (path) -> the config class that parses it; ``drop``: keys the flow
#: removes before parsing (read by the flow itself, e.g. ``xai.runner``).
TYPED_SECTIONS: dict[Path_, tuple[Callable[[], Any], tuple[str, ...]]] = {
    ("synth",): (_ref("brainxai.synth:SynthConfig"), ()),
    ("ingest", "config"): (_ref("brainxai.ingest:IngestConfig"), ()),
    ("split",): (_ref("brainxai.splits:SplitConfig"), ()),
    ("difficulty",): (_ref("brainxai.baseline:BaselineConfig"), ()),
    ("standardize", "config"): (_ref("brainxai.standardize:StandardizeConfig"), ()),
    ("pretrain", "data"): (_ref("brainxai.ssl.config:DataConfig"), ()),
    ("pretrain", "train"): (_ref("brainxai.ssl.config:TrainConfig"), ()),
    ("pretrain", "augment"): (_ref("brainxai.ssl.config:AugmentConfig"), ()),
    ("pretrain", "knn"): (_ref("brainxai.ssl.config:KnnConfig"), ()),
    ("finetune",): (_ref("brainxai.finetune.config:FinetuneConfig"), ()),
    ("pseudolabel", "config"): (_ref("brainxai.pseudolabel.config:PseudolabelConfig"), ()),
    ("classify3d",): (_ref("brainxai.classify3d.config:Classify3DConfig"), ()),
    ("xai",): (_ref("brainxai.xai.stage_config:XaiConfig"), ("runner",)),
    ("report",): (_ref("brainxai.report.config:ReportConfig"), ()),
    ("registry",): (_ref("brainxai.registry.config:RegistryConfig"), ()),
    ("plan",): (_ref("brainxai.plan:PlanConfig"), ()),
}
#: ``pretrain.<framework>`` sections: parsed by the framework's own config class.
_FRAMEWORKS = _ref("brainxai.ssl.frameworks:FRAMEWORKS")
_PRETRAIN_SHARED = {p[1] for p in TYPED_SECTIONS if p[0] == "pretrain"}


def _section_class(path: Path_) -> tuple[type | None, tuple[str, ...]]:
    """The config class parsing the params section at ``path`` (None: untyped)."""
    if path in TYPED_SECTIONS:
        load, drop = TYPED_SECTIONS[path]
        return load(), drop
    if len(path) == 2 and path[0] == "pretrain" and path[1] not in _PRETRAIN_SHARED:
        frameworks = _FRAMEWORKS()
        if path[1] in frameworks:
            return frameworks[path[1]][0], ()
    return None, ()


# ------------------------------------------------------------------------------ parsing


def parse_assignments(items: Iterable[str]) -> dict[str, Any]:
    """``["a.b=1", "c=[2, 3]"]`` -> ``{"a": {"b": 1}, "c": [2, 3]}`` (values parsed as YAML;
    a later assignment of the same key wins)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        path = tuple(key.strip().split("."))
        if not sep or not all(path):
            raise OverrideError(f"override {item!r}: expected key.path=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise OverrideError(f"override {item!r}: value is not valid YAML: {exc}") from exc
        node = out
        for i, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise OverrideError(
                    f"override {item!r}: {'.'.join(path[: i + 1])} is also set to a value"
                )
            node = child
        node[path[-1]] = value
    return out


def as_mapping(overrides: Mapping[str, Any] | Sequence[str] | None) -> dict[str, Any]:
    """A nested override mapping from either a mapping or ``key.path=value`` strings."""
    if overrides is None:
        return {}
    if isinstance(overrides, Mapping):
        return dict(overrides)
    if isinstance(overrides, str):
        return parse_assignments([overrides])
    return parse_assignments(overrides)


def file_overrides(section: Any, path: Any) -> dict[str, Any]:
    """The ``overrides`` mapping of params.yaml ``path``: each entry a section (a mapping),
    since DVC stages depend on ``overrides.<section>``; scalar keys such as ``seed`` are set
    directly (no profile changes them)."""
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise OverrideError(f"{path}: {OVERRIDES_KEY} must be a mapping of sections")
    scalars = sorted(k for k, v in section.items() if not isinstance(v, Mapping))
    if scalars:
        raise OverrideError(
            f"{path}: {OVERRIDES_KEY}.{scalars[0]} is not a section: set top-level scalars "
            f"such as {scalars[0]!r} directly (no profile changes them)"
        )
    return dict(section)


def leaves(mapping: Mapping[str, Any], prefix: Path_ = ()) -> list[tuple[Path_, Any]]:
    """``(path, value)`` of every non-mapping value (empty mappings set nothing)."""
    out: list[tuple[Path_, Any]] = []
    for key, value in mapping.items():
        path = (*prefix, str(key))
        if isinstance(value, Mapping):
            out.extend(leaves(value, path))
        else:
            out.append((path, value))
    return out


# --------------------------------------------------------------------------- type checks


def _hints(cls: type) -> dict[str, Any]:
    try:
        return get_type_hints(cls)
    except (NameError, TypeError):
        return {}


def _unwrap_optional(hint: Any) -> Any:
    """``X | None`` -> ``X`` (other unions and plain hints unchanged)."""
    if get_origin(hint) in (typing.Union, types.UnionType):
        arms = [a for a in get_args(hint) if a is not type(None)]
        if len(arms) == 1:
            return arms[0]
    return hint


def _describe(hint: Any) -> str:
    if get_origin(hint) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(hint))
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "")


def type_ok(value: Any, hint: Any) -> bool:
    """Whether a YAML-parsed ``value`` fits the type hint ``hint`` (unknown hints: yes)."""
    if hint is Any or isinstance(hint, typing.TypeVar):
        return True
    origin, args = get_origin(hint), get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(type_ok(value, a) for a in args)
    if origin is Literal:
        return value in args
    if hint is type(None) or hint is None:
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (tuple, list) or hint in (tuple, list):
        if not isinstance(value, list | tuple):
            return False
        if not args:
            return True
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return len(value) == len(args) and all(map(type_ok, value, args))
        return all(type_ok(v, args[0]) for v in value)
    if origin in (dict, Mapping) or hint in (dict, Mapping) or dataclasses.is_dataclass(hint):
        return isinstance(value, Mapping)
    return True


def _same_kind(value: Any, old: Any) -> bool:
    """Untyped keys: the new value must be of the kind of the value it replaces."""
    if old is None:
        return True
    if isinstance(old, bool):
        return isinstance(value, bool)
    if isinstance(old, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(old, float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(old, list | tuple):
        return isinstance(value, list | tuple)
    if isinstance(old, Mapping):
        return isinstance(value, Mapping)
    return isinstance(value, type(old))


def _level(hint: Any) -> tuple[str, Any] | None:
    """How the keys below a value of type ``hint`` are typed: ``("fields", cls)`` (a
    config dataclass), ``("names", value_hint)`` (a ``dict[str, X]``: any key, values of
    type X) or None (untyped: the keys params.yaml has)."""
    if dataclasses.is_dataclass(hint):
        return ("fields", hint)
    if get_origin(hint) in (dict, Mapping):
        args = get_args(hint)
        return ("names", _unwrap_optional(args[1]) if len(args) == 2 else Any)
    if hint in (dict, Mapping):
        return ("names", Any)
    return None


def check_leaf(params: Mapping[str, Any], path: Path_, value: Any, origin: str) -> Path_ | None:
    """Check one override against ``params`` (resolved, before the override) and the typed
    configs; return the typed section it falls in (None: untyped)."""
    dotted = ".".join(path)
    if path[0] in RESERVED:
        raise OverrideError(
            f"{origin}: {dotted}: {path[0]!r} cannot be overridden (choose the profile with "
            "--profile or the params.yaml 'profile' key)"
        )
    node: Any = params  # the params value at the current level (None: not in params)
    level: tuple[str, Any] | None = None
    section: Path_ | None = None
    extra: tuple[str, ...] = ()  # keys the section's flow reads itself (untyped)
    hint: Any = None
    for i, key in enumerate(path):
        here = path[:i]
        if level is None and here:
            cls, drop = _section_class(here)
            if cls is not None:
                level, section, extra = ("fields", cls), here, drop
        fields: dict[str, Any] = {}
        if level is not None and level[0] == "fields":
            types_ = _hints(level[1])
            fields = {f.name: types_.get(f.name, Any) for f in dataclasses.fields(level[1])}
        have = set(node) if isinstance(node, Mapping) else set()
        if (level is None or level[0] == "fields") and key not in set(fields) | have:
            where = ".".join(here) or "the top level"
            valid = sorted(
                (have | set(fields) | set(extra if here == section else ())) - set(RESERVED)
            )
            if key not in valid:
                raise OverrideError(
                    f"{origin}: unknown key {dotted!r}: valid keys of {where}: {valid}"
                )
        if key in fields:
            hint = _unwrap_optional(fields[key])
        elif level is not None and level[0] == "names":
            hint = level[1]
        else:
            hint = None
        node = node.get(key) if isinstance(node, Mapping) else None
        if hint is None:
            level = None
        elif hint is Any:
            level = ("names", Any)
        else:
            level = _level(hint)
        if i < len(path) - 1 and level is None and not isinstance(node, Mapping):
            raise OverrideError(f"{origin}: {'.'.join(path[: i + 1])} is not a mapping")
    if hint is None or hint is Any:
        ok, expected = _same_kind(value, node), type(node).__name__
    else:
        ok, expected = type_ok(value, hint), _describe(hint)
    if not ok:
        raise OverrideError(
            f"{origin}: {dotted} = {value!r}: expected {expected}, got {type(value).__name__}"
        )
    return section


def _get(params: Mapping[str, Any], path: Path_) -> Any:
    node: Any = params
    for key in path:
        node = node.get(key, {}) if isinstance(node, Mapping) else {}
    return node


def build_section(params: Mapping[str, Any], path: Path_) -> Any:
    """The typed config of the section at ``path`` (raises what its constructor raises)."""
    cls, drop = _section_class(path)
    if cls is None:
        return None
    section = {k: v for k, v in dict(_get(params, path) or {}).items() if k not in drop}
    build = getattr(cls, "from_dict", None)
    if build is None:
        return config_from_mapping(cls, section)
    return build(section)


def apply_overrides(
    params: Mapping[str, Any], overrides: Mapping[str, Any], origin: str = "override"
) -> dict[str, Any]:
    """``params`` with ``overrides`` (nested) deep-merged on top, after checking every key
    and value (module docstring); ``origin`` names where the overrides came from."""
    found = leaves(overrides)
    sections = {check_leaf(params, path, value, origin) for path, value in found}
    merged = deep_merge(params, overrides)
    for section in sorted(s for s in sections if s is not None):
        try:
            build_section(merged, section)
        except (ValueError, TypeError, KeyError) as exc:
            touched = sorted(".".join(p) for p, _ in found if p[: len(section)] == section)
            raise OverrideError(
                f"{origin}: {', '.join(touched)}: {'.'.join(section)} rejects it: {exc}"
            ) from exc
    return merged
