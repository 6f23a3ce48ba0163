"""Input-gradient baselines: SmoothGrad (Smilkov et al. 2017) and Integrated Gradients
(Sundararajan et al. 2017), with torch autograd (paper 002 finds SmoothGrad the most
reliable method on neuroimaging; paper 004 §6 names both as the gradient baselines), and
Layer-wise Relevance Propagation (Bach et al. 2015; LRP-ε with Captum's ``LRP``), the
decomposition paper 001's benchmark asks for beside them.

* target score ``f_k(x)``: the class-``k`` logit; a single-logit (sigmoid) model scores
  class 1 by its logit and class 0 by minus it (:func:`target_scores`);
* SmoothGrad ``(1/n) Σ_s ∇_x f_k(x + ε_s)``, ``ε_s ~ N(0, σ²)``, ``σ = noise · (max x − min x)``
  per image; the noise of image ``i`` comes from a generator seeded with ``(seed, i)`` so
  batching never changes the result;
* Integrated Gradients ``(x − x') ⊙ ∫₀¹ ∇f_k(x' + α(x − x')) dα``, the integral by
  ``steps``-point Gauss–Legendre quadrature on [0, 1]; completeness
  ``Σ IG ≈ f_k(x) − f_k(x')`` is the check (:func:`ig_completeness_gap`);
* LRP-ε (:func:`lrp`): ``f_k(x)`` redistributed layer by layer, ``R_i = Σ_j a_i w_ij
  R_j / (z_j + ε sign(z_j))``; convolutions, linear, BatchNorm and pooling layers of any
  dimension take the ε-rule, reshapes, identities, dropouts and activations pass relevance
  on unchanged. Residual additions of torchvision
  ResNet blocks are routed through Captum's ``Addition_Module`` (on a copy), so relevance is
  split between the two branches in proportion to their contributions instead of being
  counted twice; relevance is conserved (``Σ R = f_k(x)``) in a bias-free network
  (:func:`lrp_conservation_gap`). A model with another parametrised layer (e.g. LayerNorm,
  attention) or a ruled module used twice raises :class:`LRPUnsupportedError`.

Every function takes a batch ``x`` (N, C, *spatial) already on the model's device and a
model in eval mode whose parameters need no gradient (see ``cams.frozen_copy``).
"""

from __future__ import annotations

import copy
import types
from typing import Any

import numpy as np
import torch
from torch import nn

ATTRIBUTION_REDUCTIONS = ("abs", "positive", "signed")

#: Layers that take the LRP-ε rule: an affine map or a pooling of their input, or a layer
#: that keeps every value in eval mode (reshape, identity, dropout: there the rule hands
#: each value's relevance on unchanged, z = a).
LRP_EPSILON_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d,
    nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
    nn.Flatten, nn.Unflatten, nn.Identity, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
)  # fmt: skip
#: Elementwise activations (output shape = input shape): relevance passes unchanged
#: (Captum's identity rule), as Captum does itself for ReLU and Tanh.
LRP_IDENTITY_LAYERS: tuple[type[nn.Module], ...] = (
    nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SiLU, nn.GELU, nn.Hardswish, nn.Sigmoid,
)  # fmt: skip


class LRPUnsupportedError(ValueError):
    """The model has a layer LRP has no rule for, or uses a ruled module twice."""


def target_scores(logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """``f_k(x)`` per sample: logit k, or ±logit for a single-logit binary model."""
    if logits.ndim != 2:
        raise ValueError(f"model output must be (N, K) logits, got {tuple(logits.shape)}")
    classes = classes.to(logits.device).long()
    if logits.shape[1] == 1:
        sign = torch.where(classes == 1, 1.0, -1.0).to(logits.dtype)
        return sign * logits[:, 0]
    return logits.gather(1, classes[:, None])[:, 0]


def probs_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over K logits; ``[1 − σ(z), σ(z)]`` for a single logit."""
    if logits.shape[1] == 1:
        p = torch.sigmoid(logits[:, 0])
        return torch.stack([1 - p, p], dim=1)
    return torch.softmax(logits, dim=1)


def input_gradient(model: torch.nn.Module, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """``∇_x f_k(x)`` for every sample of the batch (samples are independent in eval mode)."""
    xg = x.detach().requires_grad_(True)
    with torch.enable_grad():
        score = target_scores(model(xg), classes).sum()
        (grad,) = torch.autograd.grad(score, xg)
    return grad


def smoothgrad(
    model: torch.nn.Module,
    x: torch.Tensor,
    classes: torch.Tensor,
    n_samples: int = 16,
    noise: float = 0.15,
    seed: int = 0,
    index_offset: int = 0,
) -> torch.Tensor:
    """SmoothGrad attributions (N, C, *spatial); ``noise = 0`` gives the plain gradient."""
    if n_samples < 1:
        raise ValueError("n_samples must be >= 1")
    flat = x.reshape(len(x), -1)
    sigma = noise * (flat.amax(dim=1) - flat.amin(dim=1))
    sigma = sigma.reshape(-1, *([1] * (x.ndim - 1)))
    if noise == 0:
        return input_gradient(model, x, classes)
    gens = [_generator(seed, index_offset + i, x.device) for i in range(len(x))]
    total = torch.zeros_like(x)
    for _ in range(n_samples):
        eps = torch.stack(
            [torch.randn(x.shape[1:], generator=g, device=x.device, dtype=x.dtype) for g in gens]
        )
        total += input_gradient(model, x + sigma * eps, classes)
    return total / n_samples


def gauss_legendre_01(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of the ``steps``-point Gauss–Legendre rule on [0, 1]."""
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    return (nodes + 1) / 2, weights / 2


def integrated_gradients(
    model: torch.nn.Module,
    x: torch.Tensor,
    classes: torch.Tensor,
    steps: int = 32,
    baseline: torch.Tensor | float = 0.0,
) -> torch.Tensor:
    """Integrated Gradients attributions (N, C, *spatial) against ``baseline`` x'."""
    if steps < 1:
        raise ValueError("steps must be >= 1")
    base = torch.as_tensor(baseline, dtype=x.dtype, device=x.device).expand_as(x)
    delta = x - base
    alphas, weights = gauss_legendre_01(steps)
    total = torch.zeros_like(x)
    for a, w in zip(alphas, weights, strict=True):
        total += float(w) * input_gradient(model, base + float(a) * delta, classes)
    return delta * total


def ig_completeness_gap(
    model: torch.nn.Module,
    x: torch.Tensor,
    classes: torch.Tensor,
    attributions: torch.Tensor,
    baseline: torch.Tensor | float = 0.0,
) -> torch.Tensor:
    """Per sample ``Σ IG − (f_k(x) − f_k(x'))`` (0 for exact completeness)."""
    base = torch.as_tensor(baseline, dtype=x.dtype, device=x.device).expand_as(x)
    with torch.no_grad():
        diff = target_scores(model(x), classes) - target_scores(model(base), classes)
    return attributions.reshape(len(x), -1).sum(dim=1) - diff


def lrp_ready(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose torchvision ResNet blocks add their two branches through a
    Captum ``Addition_Module`` (LRP then splits relevance between them); every other
    module, weight and buffer as in ``model``."""
    from captum.attr._utils.custom_modules import Addition_Module
    from torchvision.models.resnet import BasicBlock, Bottleneck

    clone = copy.deepcopy(model)
    for m in clone.modules():
        if isinstance(m, BasicBlock | Bottleneck):
            m.lrp_add = Addition_Module()
            forward = _bottleneck_forward if isinstance(m, Bottleneck) else _basic_forward
            m.forward = types.MethodType(forward, m)
    return clone.eval()


def _basic_forward(self: Any, x: torch.Tensor) -> torch.Tensor:
    """torchvision ``BasicBlock.forward`` with the residual sum as a module."""
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.bn2(self.conv2(out))
    identity = self.downsample(x) if self.downsample is not None else x
    return self.relu(self.lrp_add(out, identity))


def _bottleneck_forward(self: Any, x: torch.Tensor) -> torch.Tensor:
    """torchvision ``Bottleneck.forward`` with the residual sum as a module."""
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.relu(self.bn2(self.conv2(out)))
    out = self.bn3(self.conv3(out))
    identity = self.downsample(x) if self.downsample is not None else x
    return self.relu(self.lrp_add(out, identity))


def _attach_lrp_rules(model: nn.Module, epsilon: float) -> None:
    """A rule on every leaf module (Captum removes them after each call)."""
    from captum.attr._core.lrp import SUPPORTED_NON_LINEAR_LAYERS
    from captum.attr._utils.custom_modules import Addition_Module
    from captum.attr._utils.lrp_rules import EpsilonRule, IdentityRule

    for name, m in model.named_modules():
        if list(m.children()):
            continue
        if isinstance(m, LRP_EPSILON_LAYERS) or isinstance(m, Addition_Module):
            m.rule = EpsilonRule(epsilon)
        elif type(m) in SUPPORTED_NON_LINEAR_LAYERS:
            continue  # Captum passes relevance through ReLU / Dropout / Tanh itself
        elif isinstance(m, LRP_IDENTITY_LAYERS):
            m.rule = IdentityRule()
        else:
            raise LRPUnsupportedError(
                f"LRP has no rule for layer {name or '<model>'} ({type(m).__name__})"
            )


def _check_single_use(model: nn.Module, x: torch.Tensor) -> None:
    """Captum's LRP cannot handle a ruled module called twice in one forward pass."""
    from captum.attr._core.lrp import SUPPORTED_NON_LINEAR_LAYERS

    calls: dict[str, int] = {}
    handles = [
        m.register_forward_hook(lambda mod, i, o, n=name: calls.__setitem__(n, calls.get(n, 0) + 1))
        for name, m in model.named_modules()
        if not list(m.children()) and type(m) not in SUPPORTED_NON_LINEAR_LAYERS
    ]
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for h in handles:
            h.remove()
    reused = sorted(n for n, c in calls.items() if c > 1)
    if reused:
        raise LRPUnsupportedError(f"LRP needs each ruled layer used once; reused: {reused[:5]}")


def lrp(
    model: nn.Module, x: torch.Tensor, classes: torch.Tensor, epsilon: float = 1e-9
) -> torch.Tensor:
    """LRP-ε relevance (N, C, *spatial) of ``f_k(x)`` (Captum ``LRP``) on ``model`` as given
    (use :func:`lrp_ready` on ResNets first). A single-logit model's class 0 is explained
    as ``−logit`` (relevance sign-flipped), as in :func:`target_scores`."""
    from captum.attr import LRP

    _check_single_use(model, x)
    _attach_lrp_rules(model, epsilon)
    classes = classes.to(x.device).long()
    with torch.no_grad():
        single = model(x[:1]).shape[1] == 1
    target = torch.zeros_like(classes) if single else classes
    with torch.enable_grad():
        rel = LRP(model).attribute(x.detach().clone().requires_grad_(True), target=target)
    if single:
        sign = torch.where(classes == 1, 1.0, -1.0).to(rel.dtype)
        rel = rel * sign.reshape(-1, *([1] * (rel.ndim - 1)))
    return rel.detach()


def lrp_conservation_gap(
    model: nn.Module, x: torch.Tensor, classes: torch.Tensor, relevance: torch.Tensor
) -> torch.Tensor:
    """Per sample ``Σ R − f_k(x)`` (0 for a conservative decomposition)."""
    with torch.no_grad():
        score = target_scores(model(x), classes)
    return relevance.reshape(len(x), -1).sum(dim=1) - score


def reduce_attribution(attr: torch.Tensor, mode: str = "abs") -> torch.Tensor:
    """(N, C, *spatial) attributions -> (N, *spatial) map over channels.

    ``abs``: Σ_c |a| (SmoothGrad's magnitude map); ``positive``: max(Σ_c a, 0);
    ``signed``: Σ_c a.
    """
    if mode == "abs":
        return attr.abs().sum(dim=1)
    if mode == "positive":
        return attr.sum(dim=1).clamp_min(0)
    if mode == "signed":
        return attr.sum(dim=1)
    raise ValueError(f"attribution reduction must be one of {ATTRIBUTION_REDUCTIONS}, got {mode!r}")


def _generator(seed: int, index: int, device: Any) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(int(seed) * 1_000_003 + int(index))
    return g
