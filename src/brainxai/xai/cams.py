"""CAM heatmaps in 2-D and 3-D (paper 004 §3.3) plus the gradient baselines.

Methods (:data:`METHODS`): ``gradcam``, ``gradcam++``, ``layercam``, ``eigencam``,
``scorecam``, ``ms-gradcam++`` (pytorch-grad-cam 1.5.7 classes, subclassed) and the
gradient family ``smoothgrad``, ``ig``, ``lrp`` (LRP-ε via Captum;
:mod:`brainxai.xai.gradients`).

With activations ``A`` (N, C, *s) of the target layer and gradients ``G = ∂f_k/∂A``:

* GradCAM ``Σ_c mean_s(G_c) A_c``; LayerCAM ``Σ_c max(G_c, 0) ⊙ A_c``;
* GradCAM++ ``Σ_c w_c A_c`` with ``w_c = Σ_s α_cs max(G_cs, 0)``,
  ``α = G² / (2G² + (Σ_s A_c) G³ + ε)`` (0 where G = 0) — Chattopadhay et al. Eq. 19 as
  in pytorch-grad-cam, over *all* spatial axes (:func:`gradcampp_weights`);
* EigenCAM: projection of the pixel-centred (P, C) activation matrix on its first right
  singular vector, with the sign chosen so the map correlates positively with the
  summed activation (SVD's sign is arbitrary; an unfixed sign would flip maps between
  checkpoints and fake a C-Score change);
* ScoreCAM ``Σ_c softmax_c(f_k(x ⊙ Â_c)) A_c`` with ``Â_c`` the upsampled, min-max
  normalised channel; only the ``scorecam_max_masks`` channels with the largest mean
  activation are scored (paper 004: max_N = 32; the rest weigh 0), masked inputs go
  through the model ``scorecam_batch_size`` at a time;
* MS-GradCAM++ (paper 004 Eq. 7): the mean of the GradCAM++ maps at three depths
  (:mod:`brainxai.xai.layers`), each upsampled to the input size and normalised.

Every CAM is ReLU'd, upsampled to the input's spatial size (bilinear in 2-D, trilinear in
3-D, ``align_corners=False``) and min-max normalised per map to [0, 1]. Fixes over
pytorch-grad-cam 1.5.7: ScoreCAM upsamples in 2-D only (fails on 5-D input); 3-D maps are
resized with a cubic spline (``scipy.ndimage.zoom``: overshoot) on the CPU; activations
and gradients are copied to the CPU and weights computed in numpy (#356) — here
everything stays on the model's device, and EigenCAM gets a deterministic sign.

Side effects: every computation runs on :func:`frozen_copy` — a deep copy in eval mode,
parameters frozen, in-place ReLUs disabled (pytorch-grad-cam #147) — so the model being
trained keeps its parameters, gradients, buffers, hooks and train/eval mode.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, LayerCAM, ScoreCAM
from pytorch_grad_cam.activations_and_gradients import ActivationsAndGradients
from torch import nn

from brainxai.config import MappingConfig
from brainxai.devices import torch_device
from brainxai.xai import gradients as grads_mod
from brainxai.xai.layers import target_layers
from brainxai.xai.minmax import minmax_normalise

CAM_METHODS = ("gradcam", "gradcam++", "layercam", "eigencam", "scorecam", "ms-gradcam++")
GRADIENT_METHODS = ("smoothgrad", "ig", "lrp")
METHODS = CAM_METHODS + GRADIENT_METHODS
#: CAMs that are a function of one forward and one backward pass (target-layer activations
#: and ∂f_k/∂A): several of them share that pass (:meth:`Explainer.heatmaps_many`).
SHARED_PASS_METHODS = ("gradcam", "gradcam++", "layercam", "eigencam", "ms-gradcam++")


def pass_groups(methods: Sequence[str]) -> list[list[str]]:
    """``methods`` in groups computed together: the :data:`SHARED_PASS_METHODS` among them
    in one group (first), every other method alone - so a method that fails (LRP on a
    layer without a rule) fails only itself."""
    unique = list(dict.fromkeys(methods))
    shared = [m for m in unique if m in SHARED_PASS_METHODS]
    return ([shared] if shared else []) + [[m] for m in unique if m not in shared]


@dataclass(frozen=True)
class CamConfig(MappingConfig):
    """Heatmap knobs (defaults: paper 004 for CAMs, Smilkov et al. / Sundararajan et al.)."""

    #: Images per forward/backward pass.
    batch_size: int = 16
    #: ScoreCAM: channels scored per image (paper 004 "max_N = 32"); None = all channels.
    scorecam_max_masks: int | None = 32
    #: ScoreCAM: masked inputs per forward pass.
    scorecam_batch_size: int = 32
    #: SmoothGrad: noisy copies per image and σ as a fraction of the image's range.
    smoothgrad_samples: int = 16
    smoothgrad_noise: float = 0.15
    #: Integrated Gradients: Gauss–Legendre points and the constant baseline image x'.
    ig_steps: int = 32
    ig_baseline: float = 0.0
    #: LRP-ε stabiliser ε (Captum's default; relevance is conserved up to the biases).
    lrp_epsilon: float = 1e-9
    #: How SmoothGrad/IG/LRP attributions (N, C, *s) become a map (gradients.reduce_attribution).
    attribution: str = "abs"
    #: Override the registry: deep target layer name(s) and the three MS-GradCAM++ depths.
    layers: tuple[str, ...] = ()
    multiscale_layers: tuple[str, ...] = ()
    #: Seed of the SmoothGrad noise (per image: (seed, image index)).
    seed: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.scorecam_batch_size < 1:
            raise ValueError("batch sizes must be >= 1")
        if self.scorecam_max_masks is not None and self.scorecam_max_masks < 1:
            raise ValueError("scorecam_max_masks must be >= 1 or None")
        if self.smoothgrad_samples < 1 or self.ig_steps < 1:
            raise ValueError("smoothgrad_samples and ig_steps must be >= 1")
        if self.smoothgrad_noise < 0:
            raise ValueError("smoothgrad_noise must be >= 0")
        if self.lrp_epsilon < 0:
            raise ValueError("lrp_epsilon must be >= 0")
        if self.attribution not in grads_mod.ATTRIBUTION_REDUCTIONS:
            raise ValueError(f"attribution must be one of {grads_mod.ATTRIBUTION_REDUCTIONS}")
        if self.multiscale_layers and len(self.multiscale_layers) != 3:
            raise ValueError("multiscale_layers needs exactly three names")


@dataclass(frozen=True)
class Heatmaps:
    """One method's maps for a batch: (N, *spatial) float32 in [0, 1], probs, classes."""

    method: str
    maps: np.ndarray
    probs: np.ndarray
    targets: np.ndarray
    layers: tuple[str, ...]


# ----------------------------------------------------------------------------- model copy


def frozen_copy(model: nn.Module, device: Any = None) -> nn.Module:
    """Deep copy in eval mode on ``device``: no parameter grads, no in-place ReLU."""
    clone = copy.deepcopy(model)
    for p in clone.parameters():
        p.grad = None
        p.requires_grad_(False)
    for m in clone.modules():
        if isinstance(m, nn.ReLU | nn.ReLU6 | nn.LeakyReLU | nn.ELU | nn.SiLU | nn.Hardswish):
            m.inplace = False
    return clone.to(torch_device(device)).eval()


# ------------------------------------------------------------------------ N-D CAM pieces


def spatial_dims(x: torch.Tensor) -> tuple[int, ...]:
    return tuple(range(2, x.ndim))


def upsample(maps: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """(N, *s) -> (N, *size): bilinear (2-D) / trilinear (3-D), align_corners=False."""
    size = tuple(int(s) for s in size)
    if tuple(maps.shape[1:]) == size:
        return maps
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(size)]
    return F.interpolate(maps[:, None], size=size, mode=mode, align_corners=False)[:, 0]


def _expand(w: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return w.reshape(*w.shape, *([1] * (like.ndim - w.ndim)))


def gradcam_weights(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """GradCAM channel weights: spatial mean of the gradients, (N, C)."""
    return grads.mean(dim=spatial_dims(grads))


def gradcampp_weights(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """GradCAM++ channel weights (Chattopadhay et al. Eq. 19) over all spatial axes, (N, C)."""
    axes = spatial_dims(activations)
    g2 = grads * grads
    g3 = g2 * grads
    sum_a = activations.sum(dim=axes, keepdim=True)
    alpha = g2 / (2 * g2 + sum_a * g3 + 1e-6)
    alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
    return (grads.clamp_min(0) * alpha).sum(dim=axes)


def weighted_sum(weights: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """``Σ_c w_c A_c`` -> (N, *s)."""
    return (_expand(weights, activations) * activations).sum(dim=1)


def eigen_projection(activations: torch.Tensor) -> torch.Tensor:
    """EigenCAM map (N, *s): first principal component of each sample's activations."""
    n, c = activations.shape[:2]
    x = torch.nan_to_num(activations.float()).reshape(n, c, -1).transpose(1, 2)  # (N, P, C)
    x = x - x.mean(dim=1, keepdim=True)
    v = torch.linalg.svd(x, full_matrices=False).Vh[:, 0, :]  # (N, C)
    proj = torch.einsum("npc,nc->np", x, v)
    sign = torch.sign((proj * x.sum(dim=2)).sum(dim=1))
    proj = proj * torch.where(sign == 0, torch.ones_like(sign), sign)[:, None]
    return proj.reshape(n, *activations.shape[2:])


class _DeviceActivationsAndGradients(ActivationsAndGradients):
    """pytorch-grad-cam's hook holder, but tensors stay on the model's device; ``recording``
    switches the hooks off (ScoreCAM's masked forward passes must not pile up)."""

    def __init__(self, model: nn.Module, layers: list[nn.Module]) -> None:
        self.recording = True
        super().__init__(model, layers, None, detach=True)

    def save_activation(self, module: nn.Module, input: Any, output: torch.Tensor) -> None:
        if self.recording:
            self.activations.append(output.detach())

    def save_gradient(self, module: nn.Module, input: Any, output: torch.Tensor) -> None:
        if not self.recording or not getattr(output, "requires_grad", False):
            return

        def _store(grad: torch.Tensor) -> None:
            self.gradients = [grad.detach(), *self.gradients]

        output.register_hook(_store)


def _record_pass(
    model: nn.Module,
    layers: list[nn.Module],
    cams: Any,
    x: torch.Tensor,
    targets: list[Any],
) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor] | None:
    """One forward and one backward pass of ``Σ_i f_{k_i}(x_i)`` (pytorch-grad-cam's
    loss) recording each layer's output and its gradient: ``(activations, gradients,
    logits)`` in ``layers``' order, or None when a layer did not run exactly once. The
    CAM objects' own hooks (``cams``) record nothing meanwhile."""
    acts: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(layers))}
    grads: dict[int, list[torch.Tensor]] = {i: [] for i in range(len(layers))}

    def hook(i: int) -> Any:
        def save(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            acts[i].append(output.detach())
            if output.requires_grad:
                output.register_hook(lambda g: grads[i].append(g.detach()))

        return save

    handles = [la.register_forward_hook(hook(i)) for i, la in enumerate(layers)]
    holders = [c.activations_and_grads for c in cams]
    for h in holders:
        h.recording = False
    try:
        with torch.enable_grad():
            logits = model(x)
            model.zero_grad()
            loss = sum([t(o) for t, o in zip(targets, logits, strict=True)])
            loss.backward()  # type: ignore[union-attr]
    finally:
        for h in holders:
            h.recording = True
        for handle in handles:
            handle.remove()
    if any(len(acts[i]) != 1 or len(grads[i]) != 1 for i in acts):
        return None
    n = range(len(layers))
    return [acts[i][0] for i in n], [grads[i][0] for i in n], logits.detach()


class ClassTarget:
    """pytorch-grad-cam target: the class-k logit (±logit for a single-logit model)."""

    def __init__(self, category: int) -> None:
        self.category = int(category)

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        out = output[None] if output.ndim == 1 else output
        cls = torch.full((len(out),), self.category, device=out.device)
        score = grads_mod.target_scores(out, cls)
        return score[0] if output.ndim == 1 else score


class _NDCam:
    """Mixin over a pytorch-grad-cam class: N-D maps computed on the model's device."""

    target_layers: list[nn.Module]
    activations_and_grads: Any
    uses_gradients: bool

    def _setup_nd(self) -> None:
        self.activations_and_grads.release()
        self.activations_and_grads = _DeviceActivationsAndGradients(self.model, self.target_layers)  # type: ignore[attr-defined]
        self.compute_input_gradient = self.uses_gradients  # frozen params: grads flow to x

    def cam_nd(
        self, x: torch.Tensor, targets: list[ClassTarget], acts: torch.Tensor, grads: Any
    ) -> torch.Tensor:
        raise NotImplementedError

    def compute_cam_per_layer(
        self, input_tensor: torch.Tensor, targets: list[ClassTarget], eigen_smooth: bool
    ) -> list[torch.Tensor]:
        acts = list(self.activations_and_grads.activations)
        grads = list(self.activations_and_grads.gradients)
        size = input_tensor.shape[2:]
        out = []
        for i in range(len(self.target_layers)):
            g = grads[i].float() if i < len(grads) else None
            cam = self.cam_nd(input_tensor, targets, acts[i].float(), g).clamp_min(0)
            out.append(minmax_normalise(upsample(cam, size)))
        return out

    def aggregate_multi_layers(self, cam_per_target_layer: list[torch.Tensor]) -> torch.Tensor:
        """Mean of the per-layer normalised maps (MS-GradCAM++, paper 004 Eq. 7)."""
        return torch.stack(cam_per_target_layer, dim=1).mean(dim=1)


class GradCAMND(_NDCam, GradCAM):
    def cam_nd(self, x, targets, acts, grads):  # type: ignore[override]
        return weighted_sum(gradcam_weights(acts, grads), acts)


class GradCAMPlusPlusND(_NDCam, GradCAMPlusPlus):
    def cam_nd(self, x, targets, acts, grads):  # type: ignore[override]
        return weighted_sum(gradcampp_weights(acts, grads), acts)


class LayerCAMND(_NDCam, LayerCAM):
    def cam_nd(self, x, targets, acts, grads):  # type: ignore[override]
        return (grads.clamp_min(0) * acts).sum(dim=1)


class EigenCAMND(_NDCam, EigenCAM):
    def cam_nd(self, x, targets, acts, grads):  # type: ignore[override]
        return eigen_projection(acts)


class ScoreCAMND(_NDCam, ScoreCAM):
    max_masks: int | None = 32
    batch_size: int = 32

    def cam_nd(self, x, targets, acts, grads):  # type: ignore[override]
        return weighted_sum(self.score_weights(x, targets, acts), acts)

    def score_weights(
        self, x: torch.Tensor, targets: list[ClassTarget], acts: torch.Tensor
    ) -> torch.Tensor:
        """Softmax over the scored channels of ``f_k(x ⊙ Â_c)``; unscored channels 0."""
        n, c = acts.shape[:2]
        m = c if self.max_masks is None else min(c, self.max_masks)
        if m < c:
            idx = acts.reshape(n, c, -1).mean(dim=2).topk(m, dim=1).indices
        else:
            idx = torch.arange(c, device=acts.device).expand(n, c)
        sel = torch.gather(acts, 1, _expand(idx, acts).expand(n, m, *acts.shape[2:]))
        classes = torch.tensor([t.category for t in targets], device=x.device)
        rows = torch.arange(n, device=x.device).repeat_interleave(m)
        cols = torch.arange(m, device=x.device).repeat(n)
        scores = torch.empty(n * m, device=x.device)
        self.activations_and_grads.recording = False
        try:
            with torch.no_grad():
                for s in range(0, n * m, self.batch_size):
                    r, k = rows[s : s + self.batch_size], cols[s : s + self.batch_size]
                    mask = minmax_normalise(upsample(sel[r, k], x.shape[2:]))
                    logits = self.model(x[r].detach() * mask[:, None])
                    scores[s : s + len(r)] = grads_mod.target_scores(logits, classes[r])
        finally:
            self.activations_and_grads.recording = True
        weights = torch.zeros(n, c, device=acts.device)
        return weights.scatter_(1, idx, torch.softmax(scores.reshape(n, m), dim=1))


_CAM_CLASSES: dict[str, type] = {
    "gradcam": GradCAMND,
    "gradcam++": GradCAMPlusPlusND,
    "layercam": LayerCAMND,
    "eigencam": EigenCAMND,
    "scorecam": ScoreCAMND,
    "ms-gradcam++": GradCAMPlusPlusND,
}


def make_cam(method: str, model: nn.Module, layers: list[nn.Module], config: CamConfig) -> Any:
    """A pytorch-grad-cam object with the N-D fixes, hooked on ``model``'s ``layers``."""
    cam = _CAM_CLASSES[method](model, layers)
    cam._setup_nd()
    if isinstance(cam, ScoreCAMND):
        cam.max_masks = config.scorecam_max_masks
        cam.batch_size = config.scorecam_batch_size
    return cam


# ------------------------------------------------------------------------------ explainer


def _as_batch(images: Any) -> torch.Tensor:
    x = (
        images.detach().cpu()
        if isinstance(images, torch.Tensor)
        else torch.from_numpy(np.asarray(images))
    )
    if x.ndim not in (4, 5):
        raise ValueError(f"images must be (N, C, H, W) or (N, C, D, H, W), got {tuple(x.shape)}")
    return x.float()


class Explainer:
    """Heatmaps of a frozen copy of ``model`` (the original is never touched).

    ``explainer.heatmaps(images, method, targets)`` runs in batches of
    ``config.batch_size`` on ``device`` (default: CUDA when available) and returns
    :class:`Heatmaps` on the CPU. Use as a context manager (or call :meth:`close`) to
    remove the hooks from the copy.
    """

    def __init__(self, model: nn.Module, config: CamConfig | None = None, device: Any = None):
        self.config = config or CamConfig()
        self.device = torch_device(device)
        self.model = frozen_copy(model, self.device)
        self._cams: dict[str, Any] = {}
        self._lrp_model: nn.Module | None = None

    def layer_names(self, method: str) -> tuple[str, ...]:
        """Fully qualified target-layer names used by ``method`` (empty for gradients)."""
        from brainxai.xai.layers import target_layer_names

        if method in GRADIENT_METHODS:
            return ()
        multi = method == "ms-gradcam++"
        names = self.config.multiscale_layers if multi else self.config.layers
        return tuple(target_layer_names(self.model, multiscale=multi, names=names or None))

    def grid(self, images: Any) -> tuple[int, ...]:
        """Spatial shape of the deep CAM layer's activation for ``images``: the grid a CAM
        resolves before it is upsampled to the input (a 2 x 2 grid can only name a
        quadrant; paper 004 fixes the layer, this says what it resolves)."""
        layer = target_layers(self.model, names=self.config.layers or None)[0]
        seen: list[tuple[int, ...]] = []
        hook = layer.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[2:])))
        try:
            with torch.no_grad():
                self.model(_as_batch(images)[:1].to(self.device))
        finally:
            hook.remove()
        return seen[0]

    def _cam(self, method: str) -> Any:
        if method not in self._cams:
            multi = method == "ms-gradcam++"
            names = self.config.multiscale_layers if multi else self.config.layers
            layers = target_layers(self.model, multiscale=multi, names=names or None)
            self._cams[method] = make_cam(method, self.model, layers, self.config)
        return self._cams[method]

    def predict(self, images: Any) -> np.ndarray:
        """Class probabilities (N, K) of the copy, batched."""
        x = _as_batch(images)
        out = []
        with torch.no_grad():
            for s in range(0, len(x), self.config.batch_size):
                logits = self.model(x[s : s + self.config.batch_size].to(self.device))
                out.append(grads_mod.probs_from_logits(logits).float().cpu())
        return torch.cat(out).numpy()

    def _targets(self, x: torch.Tensor, targets: Any) -> tuple[np.ndarray | None, np.ndarray]:
        """``(probs, classes)``: the given ``targets`` (probs None: a method's own forward
        pass gives them), or the predicted class of each image with its probabilities."""
        probs = self.predict(x) if targets is None else None
        classes = probs.argmax(axis=1) if probs is not None else np.asarray(targets, np.int64)
        if classes.shape != (len(x),):
            raise ValueError(f"targets must be ({len(x)},), got {classes.shape}")
        return probs, classes

    def heatmaps(self, images: Any, method: str, targets: Any = None) -> Heatmaps:
        """Maps of ``method`` for every image; ``targets`` (N,) classes, default: predicted."""
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        x = _as_batch(images)
        probs, classes = self._targets(x, targets)
        maps, logits = [], []
        bs = self.config.batch_size
        for s in range(0, len(x), bs):
            xb = x[s : s + bs].to(self.device)
            cb = torch.as_tensor(classes[s : s + bs], device=self.device)
            m, z = self._batch(method, xb, cb, s)
            maps.append(m.float().cpu())
            logits.append(z.float())
        if probs is None:  # the logits of the CAM's own forward pass: no extra pass
            probs = grads_mod.probs_from_logits(torch.cat(logits)).cpu().numpy()
        return Heatmaps(
            method=method,
            maps=torch.cat(maps).numpy(),
            probs=probs.astype(np.float32),
            targets=classes.astype(np.int64),
            layers=self.layer_names(method),
        )

    def heatmaps_many(
        self, images: Any, methods: Sequence[str], targets: Any = None
    ) -> dict[str, Heatmaps]:
        """``{method: heatmaps(images, method, targets)}`` for several methods, the same
        maps: the :data:`SHARED_PASS_METHODS` among them read their activations and
        gradients from one forward and one backward pass per batch on the union of their
        target layers (a GradCAM, GradCAM++, LayerCAM, EigenCAM and MS-GradCAM++ of one
        checkpoint are five functions of the same tensors); every other method runs
        alone."""
        for m in methods:
            if m not in METHODS:
                raise ValueError(f"method must be one of {METHODS}, got {m!r}")
        shared = [m for m in dict.fromkeys(methods) if m in SHARED_PASS_METHODS]
        out = self._shared_heatmaps(images, shared, targets) if len(shared) > 1 else {}
        for m in dict.fromkeys(methods):
            if m not in out:
                out[m] = self.heatmaps(images, m, targets)
        return {m: out[m] for m in dict.fromkeys(methods)}

    def _shared_heatmaps(
        self, images: Any, methods: list[str], targets: Any
    ) -> dict[str, Heatmaps]:
        """The shared pass of :meth:`heatmaps_many`; ``{}`` (each method then runs alone)
        when a target layer does not run exactly once per forward pass."""
        x = _as_batch(images)
        probs, classes = self._targets(x, targets)
        cams = {m: self._cam(m) for m in methods}
        layers = list({id(la): la for c in cams.values() for la in c.target_layers}.values())
        slot = {id(la): i for i, la in enumerate(layers)}
        maps: dict[str, list[torch.Tensor]] = {m: [] for m in methods}
        logits = []
        bs = self.config.batch_size
        for s in range(0, len(x), bs):
            xb = x[s : s + bs].to(self.device).detach().requires_grad_(True)
            targets_b = [ClassTarget(int(k)) for k in classes[s : s + bs].tolist()]
            got = _record_pass(self.model, layers, cams.values(), xb, targets_b)
            if got is None:
                return {}
            acts, grads, z = got
            for m, cam in cams.items():
                idx = [slot[id(la)] for la in cam.target_layers]
                holder = cam.activations_and_grads
                holder.activations = [acts[i] for i in idx]
                holder.gradients = [grads[i] for i in idx] if cam.uses_gradients else []
                try:
                    per_layer = cam.compute_cam_per_layer(xb, targets_b, False)
                    maps[m].append(cam.aggregate_multi_layers(per_layer).detach().float().cpu())
                finally:
                    holder.clear()
            logits.append(z.float())
        if probs is None:  # the logits of the shared forward pass
            probs = grads_mod.probs_from_logits(torch.cat(logits)).cpu().numpy()
        return {
            m: Heatmaps(
                method=m,
                maps=torch.cat(maps[m]).numpy(),
                probs=probs.astype(np.float32),
                targets=classes.astype(np.int64),
                layers=self.layer_names(m),
            )
            for m in methods
        }

    def _batch(
        self, method: str, x: torch.Tensor, classes: torch.Tensor, offset: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(maps, logits) of one batch on the device."""
        cfg = self.config
        if method in GRADIENT_METHODS:
            with torch.no_grad():
                logits = self.model(x)
            if method == "smoothgrad":
                attr = grads_mod.smoothgrad(
                    self.model,
                    x,
                    classes,
                    cfg.smoothgrad_samples,
                    cfg.smoothgrad_noise,
                    cfg.seed,
                    offset,
                )
            elif method == "lrp":
                if self._lrp_model is None:  # residual sums as modules, on its own copy
                    self._lrp_model = grads_mod.lrp_ready(self.model)
                attr = grads_mod.lrp(self._lrp_model, x, classes, cfg.lrp_epsilon)
            else:
                attr = grads_mod.integrated_gradients(
                    self.model, x, classes, cfg.ig_steps, cfg.ig_baseline
                )
            return minmax_normalise(grads_mod.reduce_attribution(attr, cfg.attribution)), logits
        cam = self._cam(method)
        targets = [ClassTarget(int(k)) for k in classes.tolist()]
        try:
            with torch.enable_grad() if cam.uses_gradients else torch.no_grad():
                maps = cam.forward(x, targets).detach()
            return maps, cam.outputs.detach()
        finally:
            cam.outputs = None
            cam.activations_and_grads.clear()

    def close(self) -> None:
        """Remove every hook from the copy."""
        for cam in self._cams.values():
            cam.activations_and_grads.release()
        self._cams.clear()
        self._lrp_model = None

    def __enter__(self) -> Explainer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def compute_heatmaps(
    model: nn.Module,
    images: Any,
    method: str,
    targets: Any = None,
    config: CamConfig | None = None,
    device: Any = None,
) -> Heatmaps:
    """One-shot :meth:`Explainer.heatmaps` (copies the model; prefer an Explainer for many)."""
    with Explainer(model, config, device) as ex:
        return ex.heatmaps(images, method, targets)
