"""Target layers for CAMs, per architecture (paper 004 §3.3: fixed target layers; three
depths for MS-GradCAM++).

The registry maps a backbone class to dotted module names *relative to that backbone*:
``deep`` (the single CAM layer: the last convolutional stage) and ``multiscale`` (three
depths, shallow → deep, for MS-GradCAM++; paper 004 uses conv3_block12 / pool4 /
conv5_block32 of DenseNet201, i.e. the end of dense block 2, the transition after
block 3 and the end of block 4). A registered backbone is found anywhere inside a
wrapper (``nn.Sequential(backbone, head)``, ``model.encoder``…), so fine-tuned
models that wrap a torchvision/MONAI network resolve without configuration.

Fallback for unregistered models: explicit module names (exact, or a unique dotted
suffix such as ``"layer4"`` matching ``"backbone.layer4"``); with no names, the last
``Conv2d``/``Conv3d`` module is the deep layer (multi-scale then needs names).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class LayerSpec:
    """Dotted module names relative to a registered backbone."""

    deep: str
    multiscale: tuple[str, str, str]


#: (module path of the class, class name) -> layer names. Module paths avoid importing
#: torchvision/MONAI just to build the registry.
REGISTRY: dict[tuple[str, str], LayerSpec] = {
    # torchvision ResNet-18/34/50/...: the four residual stages.
    ("torchvision.models.resnet", "ResNet"): LayerSpec("layer4", ("layer2", "layer3", "layer4")),
    # torchvision DenseNet-121/169/201 (2-D). denseblock4's output, not norm5: torchvision
    # applies F.relu(inplace=True) to norm5's output (pytorch-grad-cam #147).
    ("torchvision.models.densenet", "DenseNet"): LayerSpec(
        "features.denseblock4",
        ("features.denseblock2", "features.transition3", "features.denseblock4"),
    ),
    # MONAI DenseNet / DenseNet121 (2-D or 3-D, same module names).
    ("monai.networks.nets.densenet", "DenseNet"): LayerSpec(
        "features.denseblock4",
        ("features.denseblock2", "features.transition3", "features.denseblock4"),
    ),
}


def register_architecture(cls: type, deep: str, multiscale: Sequence[str]) -> None:
    """Add (or replace) a backbone class in :data:`REGISTRY`."""
    ms = tuple(multiscale)
    if len(ms) != 3:
        raise ValueError(f"multiscale needs three layer names, got {ms}")
    REGISTRY[(cls.__module__, cls.__qualname__)] = LayerSpec(deep, ms)  # type: ignore[arg-type]


def find_backbone(model: nn.Module) -> tuple[str, LayerSpec] | None:
    """First (prefix, spec) of a registered backbone inside ``model`` (pre-order), or None."""
    for name, module in model.named_modules():
        for klass in type(module).__mro__:
            spec = REGISTRY.get((klass.__module__, klass.__qualname__))
            if spec is not None:
                return name, spec
    return None


def get_module(model: nn.Module, name: str) -> nn.Module:
    """Module called ``name``: an exact dotted name or a unique dotted suffix of one."""
    modules = dict(model.named_modules())
    if name in modules:
        return modules[name]
    hits = [n for n in modules if n.endswith("." + name)]
    if len(hits) == 1:
        return modules[hits[0]]
    if not hits:
        raise KeyError(f"no module named {name!r} (or ending in '.{name}') in the model")
    raise KeyError(f"module name {name!r} is ambiguous: {hits}")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def target_layer_names(
    model: nn.Module, multiscale: bool = False, names: Sequence[str] | None = None
) -> list[str]:
    """Fully qualified names of the CAM target layer(s) of ``model``.

    ``names`` overrides the registry (each resolved by :func:`get_module`'s rules);
    otherwise the registered backbone decides; otherwise the last conv layer (deep only).
    """
    modules = dict(model.named_modules())
    if names:
        out = []
        for n in names:
            target = get_module(model, n)
            out.append(next(k for k, v in modules.items() if v is target))
        return out
    found = find_backbone(model)
    if found is not None:
        prefix, spec = found
        chosen = spec.multiscale if multiscale else (spec.deep,)
        return [_join(prefix, n) for n in chosen]
    if multiscale:
        raise ValueError(
            f"{type(model).__name__} is not in the target-layer registry: pass three "
            "layer names for MS-GradCAM++ (or register_architecture)"
        )
    convs = [n for n, m in modules.items() if isinstance(m, nn.Conv2d | nn.Conv3d)]
    if not convs:
        raise ValueError(f"{type(model).__name__} has no Conv2d/Conv3d layer: pass layer names")
    return [convs[-1]]


def target_layers(
    model: nn.Module, multiscale: bool = False, names: Sequence[str] | None = None
) -> list[nn.Module]:
    """The modules named by :func:`target_layer_names`."""
    modules = dict(model.named_modules())
    return [modules[n] for n in target_layer_names(model, multiscale, names)]
