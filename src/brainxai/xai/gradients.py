"""Input-gradient baselines: SmoothGrad (Smilkov et al. 2017) and Integrated Gradients
(Sundararajan et al. 2017), with torch autograd (paper 002 finds SmoothGrad the most
reliable method on neuroimaging; paper 004 §6 names both as the gradient baselines).

* target score ``f_k(x)``: the class-``k`` logit; a single-logit (sigmoid) model scores
  class 1 by its logit and class 0 by minus it (:func:`target_scores`);
* SmoothGrad ``(1/n) Σ_s ∇_x f_k(x + ε_s)``, ``ε_s ~ N(0, σ²)``, ``σ = noise · (max x − min x)``
  per image; the noise of image ``i`` comes from a generator seeded with ``(seed, i)`` so
  batching never changes the result;
* Integrated Gradients ``(x − x') ⊙ ∫₀¹ ∇f_k(x' + α(x − x')) dα``, the integral by
  ``steps``-point Gauss–Legendre quadrature on [0, 1]; completeness
  ``Σ IG ≈ f_k(x) − f_k(x')`` is the check (:func:`ig_completeness_gap`).

Every function takes a batch ``x`` (N, C, *spatial) already on the model's device and a
model in eval mode whose parameters need no gradient (see ``cams.frozen_copy``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

ATTRIBUTION_REDUCTIONS = ("abs", "positive", "signed")


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
