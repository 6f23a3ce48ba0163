"""Voxel-wise MLP refinement of the coarse prior (paper 003, Tumor-Localizer, Sec. 3.2).

Features per voxel: every sequence's intensity and its local mean and standard deviation
in cubes of side ``scales_mm`` (``E[x]``, ``sqrt(E[x^2] - E[x]^2)`` with box filters), and
optionally the template-space coordinates (mm / 100). Training set: the prior's
high-confidence voxels ``P > tau`` (positives) against brain voxels farther than
``negative_margin_mm`` outside the coarse mask, at most ``n_positive`` / ``n_negative``
of each (seeded). The MLP (torch; the GPU when
present, the same code on the CPU) predicts inside the brain within ``search_mm`` of the
coarse mask; components of ``p >= threshold`` touching the coarse mask are kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from brainxai.devices import resolve_device
from brainxai.pseudolabel.config import RefineConfig
from brainxai.pseudolabel.volumes import SubjectVolumes

COORD_SCALE_MM = 100.0


def _odd(n: float) -> int:
    """The odd cube side (voxels) nearest above ``n``: 3 mm at 1 mm -> 3, 4 mm at 2 mm -> 3."""
    k = max(1, round(n))
    return k if k % 2 else k + 1


def voxel_features(subject: SubjectVolumes, idx: np.ndarray, cfg: RefineConfig) -> np.ndarray:
    """``(len(idx), F)`` float32 features of the voxels ``idx`` (flat indices), vectorised."""
    cols = []
    for seq in cfg.sequences:
        x = subject.volumes[seq].astype(np.float32)
        cols.append(x.ravel()[idx])
        for s in cfg.scales_mm:
            size = [_odd(s / sp) for sp in subject.spacing]
            mean = ndimage.uniform_filter(x, size, mode="nearest")
            sq = ndimage.uniform_filter(x * x, size, mode="nearest")
            cols.append(mean.ravel()[idx])
            cols.append(np.sqrt(np.maximum(sq.ravel()[idx] - cols[-1] ** 2, 0.0)))
    if cfg.use_coords:
        ijk = np.stack(np.unravel_index(idx, subject.shape), axis=1).astype(np.float64)
        xyz = ijk @ subject.affine[:3, :3].T + subject.affine[:3, 3]
        cols += [c.astype(np.float32) / COORD_SCALE_MM for c in xyz.T]
    return np.stack(cols, axis=1).astype(np.float32)


def _mlp(n_in: int, hidden: tuple[int, ...]) -> torch.nn.Sequential:
    layers: list[torch.nn.Module] = []
    for h in hidden:
        layers += [torch.nn.Linear(n_in, h), torch.nn.ReLU()]
        n_in = h
    layers.append(torch.nn.Linear(n_in, 1))
    return torch.nn.Sequential(*layers)


@dataclass
class VoxelMLP:
    """A trained MLP with its feature standardisation."""

    net: torch.nn.Sequential
    mean: np.ndarray
    std: np.ndarray
    device: str
    final_loss: float

    def predict_proba(self, x: np.ndarray, batch: int = 262144) -> np.ndarray:
        out = np.empty(len(x), dtype=np.float32)
        xs = (x - self.mean) / self.std
        with torch.inference_mode():
            for i in range(0, len(x), batch):
                t = torch.from_numpy(xs[i : i + batch]).to(self.device)
                out[i : i + batch] = torch.sigmoid(self.net(t)).squeeze(1).float().cpu().numpy()
        return out


def train_mlp(x: np.ndarray, y: np.ndarray, cfg: RefineConfig, seed: int) -> VoxelMLP:
    """Minibatch Adam on the BCE, seeded.

    Unbalanced by default: with ``n_negative / n_positive`` negatives per positive, normal
    tissue that also fills a box's corners scores ``f_box / (f_box + ratio * f_far)`` and
    stays below 0.5, while tumour (absent from the negatives) scores near 1.
    ``balanced`` weighs positives by ``n_neg / n_pos`` instead.
    """
    device = resolve_device(cfg.device)
    mean = x.mean(axis=0)
    std = np.maximum(x.std(axis=0), 1e-6)
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = _mlp(x.shape[1], cfg.hidden).to(device)
    xt = torch.from_numpy((x - mean) / std).to(device)
    yt = torch.from_numpy(y.astype(np.float32)).to(device)
    n_pos = float(y.sum())
    balance = (len(y) - n_pos) / max(n_pos, 1.0) if cfg.balanced else 1.0
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor([balance], device=device))
    opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    loss = torch.zeros(())
    for _ in range(cfg.epochs):
        perm = torch.randperm(len(y), generator=gen).to(device)
        for i in range(0, len(y), cfg.batch_size):
            b = perm[i : i + cfg.batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(xt[b]).squeeze(1), yt[b])
            loss.backward()
            opt.step()
    return VoxelMLP(net.eval(), mean, std, device, float(loss.detach().cpu()))


def _sample(idx: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return idx if len(idx) <= n else np.sort(rng.choice(idx, size=n, replace=False))


def refine(
    subject: SubjectVolumes,
    prior: np.ndarray,
    coarse: np.ndarray,
    tau: float,
    cfg: RefineConfig,
    seed: int,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The refined mask and what happened (counts; ``flag`` when it could not train)."""
    brain = subject.brain
    info: dict[str, Any] = {"n_positive": 0, "n_negative": 0, "flag": ""}
    pos = np.flatnonzero(((prior > tau) & brain).ravel())
    if len(pos) < cfg.min_positive:
        info["flag"] = "too_few_positive"
        return np.zeros_like(brain), info
    outside = ndimage.distance_transform_edt(~coarse, sampling=subject.spacing)
    neg = np.flatnonzero((brain & (outside > cfg.negative_margin_mm)).ravel())
    if len(neg) < cfg.min_positive:
        info["flag"] = "too_few_negative"
        return np.zeros_like(brain), info
    rng = np.random.default_rng(seed)
    pos, neg = _sample(pos, cfg.n_positive, rng), _sample(neg, cfg.n_negative, rng)
    near = outside <= cfg.search_mm
    region = np.flatnonzero((brain & near).ravel())
    feats = voxel_features(subject, np.concatenate([pos, neg, region]), cfg)
    n_train = len(pos) + len(neg)
    y = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    model = train_mlp(feats[:n_train], y, cfg, seed)
    proba = model.predict_proba(feats[n_train:])
    hit = np.zeros(brain.size, dtype=bool)
    hit[region[proba >= cfg.threshold]] = True
    hit = hit.reshape(brain.shape)
    labels, n = ndimage.label(hit)
    touching = np.unique(labels[coarse & hit])
    refined = np.isin(labels, touching[touching > 0]) if n else hit
    info.update(
        n_positive=len(pos), n_negative=len(neg), n_region=len(region),
        final_loss=round(model.final_loss, 5), device=model.device,
    )  # fmt: skip
    return refined, info
