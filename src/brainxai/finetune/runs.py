"""One cell of the study matrix: (initialisation, protocol, label fraction, seed).

Run names are ``f"{init}__{protocol}__f{fraction:g}__s{seed}"``, e.g.
``simclr__probe__f0.05__s1`` or ``random__finetune__f1__s0``: only ``[a-z0-9._-]``
characters, so they are safe as directory names on every file system and as MLflow run
names. Checkpoints go to ``<out_dir>/<run>/epoch-XXXX.pt``
(:func:`brainxai.ssl.checkpoint.checkpoint_path`).

Training phases (paper 004 §3.1): an epoch is ``transfer`` while the backbone is frozen
(every linear-probe epoch; the first ``frozen_epochs`` of a two-phase run) and
``finetune`` once every layer trains (every full fine-tuning epoch; the rest of a
two-phase run). :func:`frozen_epochs` and :func:`phase_of` give both per run and epoch;
the checkpoint index carries them so trajectory plots can mark the boundary.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from brainxai.finetune.config import PROTOCOLS, BackboneSpec, FinetuneConfig

_NAME = re.compile(rf"^(?P<init>[a-z0-9_-]+?)__(?P<protocol>{'|'.join(PROTOCOLS)})"
                   r"__f(?P<f>[0-9.e+-]+)__s(?P<seed>-?\d+)$")  # fmt: skip
LOADER = "brainxai.finetune.model:load_classifier"
#: Phase names: backbone frozen (transfer learning) / every layer trained (fine-tuning).
PHASES: tuple[str, str] = ("transfer", "finetune")


@dataclass(frozen=True)
class RunSpec:
    init: str
    protocol: str
    fraction: float
    seed: int

    @property
    def name(self) -> str:
        return run_name(self.init, self.protocol, self.fraction, self.seed)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_name(init: str, protocol: str, fraction: float, seed: int) -> str:
    return f"{init}__{protocol}__f{float(fraction):g}__s{int(seed)}"


def parse_run_name(name: str) -> RunSpec:
    m = _NAME.match(name)
    if not m:
        raise ValueError(f"not a fine-tuning run name: {name!r}")
    return RunSpec(m["init"], m["protocol"], float(m["f"]), int(m["seed"]))


def frozen_epochs(protocol: str, cfg: FinetuneConfig) -> int:
    """Epochs at the start of a run of ``protocol`` with the backbone frozen: all of them
    for the probe, none for full fine-tuning, ``twophase.frozen_epochs`` for paper 004's."""
    if protocol == "probe":
        return cfg.probe.epochs
    if protocol == "twophase":
        return cfg.twophase.frozen_epochs
    if protocol == "finetune":
        return 0
    raise ValueError(f"unknown protocol {protocol!r}; known: {list(PROTOCOLS)}")


def phase_of(epoch: int, frozen: int) -> str:
    """``transfer`` for epochs ``1 .. frozen`` (backbone frozen), else ``finetune``."""
    return PHASES[0] if int(epoch) <= int(frozen) else PHASES[1]


def checkpoint_meta(
    spec: RunSpec,
    backbone: BackboneSpec,
    class_names: list[str],
    epoch: int,
    backbone_path: str,
    phase: str | None = None,
) -> dict[str, Any]:
    """The checkpoint ``meta`` of :mod:`brainxai.finetune.model` (every ``META_KEYS`` entry,
    plus ``phase`` when given).

    ``backbone_seed`` is the run's seed: it draws the head (and, for ``random``, the
    backbone) before training.
    """
    extra = {} if phase is None else {"phase": phase}
    return extra | {
        "arch": backbone.arch,
        "num_classes": len(class_names),
        "class_names": list(class_names),
        "input_mean": backbone.input_mean,
        "input_std": backbone.input_std,
        "image_size": backbone.image_size,
        "epoch": int(epoch),
        "run": spec.name,
        "init": spec.init,
        "protocol": spec.protocol,
        "fraction": float(spec.fraction),
        "seed": int(spec.seed),
        "backbone_path": str(backbone_path),
        "backbone_seed": int(spec.seed),
    }
