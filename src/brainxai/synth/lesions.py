"""Lesion phenotypes: where each tumour arises, its shape and its sub-regions.

A lesion is one or more *foci*, each an implicit shape in MNI (template) space:
a rotated ellipsoid whose normalised radius ``r(p)`` is perturbed by a smooth random
field (random Fourier features of a Gaussian process, so the shape is analytic and can
be evaluated at any warped coordinate without resampling). Sub-regions are nested
level sets of ``r``:

* necrosis / fluid: ``r < 1 - ring`` (glioblastoma necrosis, abscess pus, cyst fluid);
  small "bubbles" of fluid inside solid tumour (neurocytoma, cystic schwannoma);
* enhancing: the rest of the core (a ring, or the whole solid tumour);
* non-enhancing solid: an infiltrative rim beyond the enhancing margin (glioma) or the
  non-enhancing part of a heterogeneous tumour (neurocytoma);
* oedema: ``r < oedema ratio`` outside the core, vasogenic, hence mostly in white
  matter (applied to the parenchyma by :mod:`brainxai.synth.synthesis`).

Meningiomas are cut by the dural plane they grow from (convexity or falx), so they are
extra-axial with a broad dural base. Each focus also displaces the surrounding brain
(mass effect: incompressible radial push ``s^3 = t^3 - R_m^3``). Placement, size and
appearance per phenotype come from :data:`VARIANTS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import ndtri

from brainxai.labels import PHENOTYPES
from brainxai.synth.anatomy import Anatomy

Range = tuple[float, float]

#: Lesion sub-regions, in the order of the lesion dseg codes 1..4.
REGIONS: tuple[str, ...] = ("enhancing", "necrosis", "solid", "oedema")
#: Vasogenic oedema spreads along white matter; grey matter takes this relative share.
GM_OEDEMA_WEIGHT = 0.3
#: Number of random Fourier features of each shape/texture field.
N_FOURIER = 24
#: Bound (in standard deviations) of a Fourier field, used for the reach of a focus.
MAX_NOISE_SD = 2.5
#: Mass-effect displacement is tapered to zero between these multiples of its radius.
MASS_TAPER = (3.0, 4.0)


@dataclass(frozen=True)
class Phenotype:
    """Shape and placement parameters of one lesion variant (lengths in mm)."""

    probability: float  # relative frequency of this variant within its phenotype
    radius_mm: Range  # mean radius of the tumour core (before ``lesion_size``)
    elongation: Range  # longest / shortest semi-axis
    irregularity: float  # amplitude of the radial shape noise (0 = smooth ellipsoid)
    irregularity_mm: float  # correlation length of the shape noise
    ring_mm: Range | None = None  # enhancing rim around a necrotic/fluid centre
    fluid_only: bool = False  # whole core is fluid (simple cyst)
    rim: Range = (0.0, 0.0)  # non-enhancing infiltrative rim, fraction of the radius
    oedema: Range = (1.0, 1.0)  # oedema radius / core radius (1 = none)
    cyst_fraction: Range = (0.0, 0.0)  # fluid bubbles in the solid part (fraction)
    cyst_mm: float = 3.0  # size of those bubbles
    enhancing_fraction: float = 1.0  # share of the solid part that enhances
    mass_effect: float = 0.5  # radius of the displaced volume / core radius
    n_foci: tuple[int, ...] = (1,)  # choices of the number of foci (multifocal PCNSL)


#: Variants per phenotype: typical radiological appearance (sizes at diagnosis).
VARIANTS: dict[str, dict[str, Phenotype]] = {
    # High-grade glioma: hemispheric WM, irregular, thick irregular enhancing ring around
    # necrosis, infiltrative non-enhancing rim, large FLAIR/T2 oedema, mass effect.
    "glioma": {
        "glioblastoma": Phenotype(
            1.0,
            (14.0, 24.0),
            (1.0, 1.5),
            0.25,
            10.0,
            ring_mm=(3.0, 7.0),
            rim=(0.08, 0.2),
            oedema=(1.5, 2.1),
            mass_effect=0.55,
        ),
    },
    # Extra-axial, dural based, homogeneous avid enhancement, little oedema.
    "meningioma": {
        "convexity": Phenotype(
            0.7, (12.0, 22.0), (1.0, 1.3), 0.06, 20.0, oedema=(1.0, 1.25), mass_effect=0.8
        ),
        "falx": Phenotype(
            0.3, (12.0, 20.0), (1.0, 1.3), 0.06, 20.0, oedema=(1.0, 1.2), mass_effect=0.8
        ),
    },
    # Cerebellopontine angle, elongated towards the internal auditory canal, enhancing,
    # sometimes cystic, no oedema.
    "schwannoma": {
        "vestibular": Phenotype(
            1.0,
            (8.0, 14.0),
            (1.2, 1.6),
            0.08,
            12.0,
            oedema=(1.0, 1.08),
            cyst_fraction=(0.0, 0.25),
            cyst_mm=4.0,
            mass_effect=0.6,
        ),
    },
    # Intraventricular near the foramen of Monro, "bubbly": solid parts with many small
    # cysts, heterogeneous moderate enhancement, no oedema.
    "neurocytoma": {
        "central": Phenotype(
            1.0,
            (10.0, 18.0),
            (1.0, 1.4),
            0.12,
            8.0,
            cyst_fraction=(0.2, 0.35),
            cyst_mm=3.0,
            enhancing_fraction=0.55,
            mass_effect=0.4,
        ),
    },
    # Periventricular / deep, homogeneous enhancement, moderate oedema, may be multifocal.
    "pcnsl": {
        "deep": Phenotype(
            1.0,
            (8.0, 15.0),
            (1.0, 1.4),
            0.1,
            10.0,
            oedema=(1.3, 1.7),
            mass_effect=0.3,
            n_foci=(1, 1, 2, 3),
        ),
    },
    # Midline pineal or suprasellar, homogeneous enhancement, small cysts, mild oedema.
    "germinoma": {
        "pineal": Phenotype(
            0.6,
            (7.0, 13.0),
            (1.0, 1.3),
            0.08,
            10.0,
            oedema=(1.0, 1.15),
            cyst_fraction=(0.0, 0.15),
            mass_effect=0.3,
        ),
        "suprasellar": Phenotype(
            0.4,
            (7.0, 12.0),
            (1.0, 1.3),
            0.08,
            10.0,
            oedema=(1.0, 1.1),
            cyst_fraction=(0.0, 0.15),
            mass_effect=0.3,
        ),
    },
    # Abscess: thin smooth enhancing ring, fluid (pus) centre, large oedema.
    # Cyst: CSF-like fluid, no enhancement, no oedema.
    "other": {
        "abscess": Phenotype(
            0.6,
            (8.0, 16.0),
            (1.0, 1.2),
            0.03,
            20.0,
            ring_mm=(2.0, 3.0),
            oedema=(1.7, 2.3),
            mass_effect=0.4,
        ),
        "cyst": Phenotype(
            0.4, (8.0, 18.0), (1.0, 1.3), 0.03, 20.0, fluid_only=True, mass_effect=0.3
        ),
    },
    "normal": {},
}

#: Fixed anatomical sites (MNI mm) and their jitter (mm std).
PINEAL_MM = (0.0, -33.0, 2.0)
SUPRASELLAR_MM = (0.0, 2.0, -12.0)
SITE_JITTER_MM = 2.0
#: Cerebellopontine angle box (|x|, y, z ranges, MNI mm).
CPA_BOX_MM = ((20.0, 28.0), (-45.0, -30.0), (-40.0, -30.0))
#: Lateral-ventricle region near the foramen of Monro (|x|, y, z ranges, MNI mm).
MONRO_BOX_MM = ((2.0, 14.0), (-10.0, 15.0), (5.0, 25.0))
#: Deep periventricular region of PCNSL: distance to ventricles and box (|x|, y, z).
PCNSL_VENTRICLE_DIST_MM = (3.0, 12.0)
PCNSL_BOX_MM = ((0.0, 35.0), (-45.0, 30.0), (-5.0, 35.0))
#: Falx meningioma bases (y, z ranges on the midline, MNI mm).
FALX_BOX_MM = ((-60.0, 30.0), (15.0, 55.0))
#: Dome meningioma: body centre this fraction of its radius inside the dural plane.
MENINGIOMA_BODY_OFFSET = 0.45

assert set(VARIANTS) == set(PHENOTYPES), "every phenotype needs a VARIANTS entry"


@dataclass(frozen=True)
class FourierField:
    """Unit-variance smooth random field ``sqrt(2/K) sum cos(w_k . (p - c) + phi_k)``."""

    omega: np.ndarray  # (K, 3) rad/mm
    phase: np.ndarray  # (K,)

    @classmethod
    def draw(cls, rng: np.random.Generator, length_mm: float) -> FourierField:
        omega = rng.standard_normal((N_FOURIER, 3)) / length_mm
        return cls(
            omega.astype(np.float32), rng.uniform(0, 2 * np.pi, N_FOURIER).astype(np.float32)
        )

    def __call__(self, rel: np.ndarray) -> np.ndarray:
        return np.sqrt(2.0 / N_FOURIER) * np.cos(rel @ self.omega.T + self.phase).sum(axis=1)


@dataclass(frozen=True, eq=False)
class Focus:
    """One lesion focus in template space."""

    centre: np.ndarray  # (3,) MNI mm
    radii: np.ndarray  # (3,) semi-axes, mm
    axes: np.ndarray  # (3, 3) rotation, columns = principal axes
    shape_noise: FourierField
    texture_noise: FourierField  # enhancing vs non-enhancing split
    cyst_noise: FourierField
    irregularity: float
    ring: float  # necrotic/fluid centre where r < 1 - ring (0 = none)
    fluid_only: bool
    rim: float
    oedema: float
    cyst_threshold: float  # bubbles where cyst_noise > threshold (inf = none)
    enhancing_threshold: float  # enhancing where texture_noise > threshold
    cut_point: np.ndarray | None = None  # dural plane (meningioma)
    cut_normal: np.ndarray | None = None  # outward normal of that plane
    mass_radius: float = 0.0

    @property
    def mean_radius(self) -> float:
        return float(np.prod(self.radii) ** (1.0 / 3.0))

    @property
    def reach(self) -> float:
        """Radius (mm) beyond which the focus has no effect (oedema included)."""
        return float(
            self.radii.max() * (1 + self.rim) * self.oedema * (1 + MAX_NOISE_SD * self.irregularity)
            + 4.0
        )

    def evaluate(self, rel: np.ndarray, edge_mm: float) -> np.ndarray:
        """Sub-region fractions (4, n) at points ``rel = p - centre`` (mm).

        Enhancing, necrosis and solid are fractions of the intracranial volume; the last
        row is the oedema *zone* (the synthesis turns the white matter, and
        ``GM_OEDEMA_WEIGHT`` of the grey matter, inside it into oedema).
        """
        out = np.zeros((4, len(rel)), np.float32)
        q = rel @ self.axes / self.radii
        radial = np.clip(1.0 + self.irregularity * self.shape_noise(rel), 0.3, None)
        r = (np.linalg.norm(q, axis=1) / radial).astype(np.float32)
        scale = self.mean_radius / edge_mm

        def soft(x: np.ndarray) -> np.ndarray:  # x in units of the mean radius
            return np.clip(0.5 + x * scale, 0.0, 1.0)

        if self.oedema > 1.0:
            out[3] = soft(self.oedema - r)
        inner = np.flatnonzero(r < 1.0 + self.rim + 1.0 / scale)
        if inner.size == 0:
            return out
        r, sub = r[inner], rel[inner]
        cut = 1.0
        if self.cut_normal is not None:
            signed = (sub + self.centre - self.cut_point) @ self.cut_normal
            cut = np.clip(0.5 - signed / edge_mm, 0.0, 1.0)
        outer = soft(1.0 + self.rim - r) * cut  # whole tumour core
        margin = soft(1.0 - r) * cut  # inside the enhancing margin
        centre = soft(1.0 - self.ring - r) * cut if self.ring > 0 else np.zeros_like(r)
        if self.fluid_only:
            centre = margin = outer
        solid_part = margin - centre  # enhancing ring, or the whole solid tumour
        if np.isfinite(self.cyst_threshold):
            bubbles = solid_part * np.clip(
                0.5 + (self.cyst_noise(sub) - self.cyst_threshold) * 2.0, 0.0, 1.0
            )
        else:
            bubbles = np.zeros_like(r)
        solid_part = solid_part - bubbles
        if np.isfinite(self.enhancing_threshold):
            share = np.clip(
                0.5 + (self.texture_noise(sub) - self.enhancing_threshold) * 2.0, 0.0, 1.0
            )
        else:
            share = np.ones_like(r)
        out[0, inner] = solid_part * share
        out[1, inner] = centre + bubbles
        out[2, inner] = solid_part * (1.0 - share) + (outer - margin)
        out[3, inner] *= 1.0 - outer
        return out

    def to_dict(self) -> dict[str, Any]:
        d = {
            "centre_mm": np.round(self.centre, 4).tolist(),
            "radii_mm": np.round(self.radii, 4).tolist(),
            "axes": np.round(self.axes, 6).tolist(),
            "irregularity": self.irregularity,
            "ring": round(self.ring, 6),
            "fluid_only": self.fluid_only,
            "rim": round(self.rim, 6),
            "oedema_ratio": round(self.oedema, 6),
            "mass_radius_mm": round(self.mass_radius, 4),
        }
        if self.cut_normal is not None:
            d["dural_plane"] = {
                "point_mm": np.round(self.cut_point, 4).tolist(),
                "normal": np.round(self.cut_normal, 6).tolist(),
            }
        return d


@dataclass(frozen=True, eq=False)
class LesionModel:
    """A subject's lesion (empty for ``normal``)."""

    phenotype: str
    variant: str
    foci: tuple[Focus, ...] = field(default_factory=tuple)

    def evaluate(self, p: np.ndarray, edge_mm: float) -> np.ndarray:
        """Sub-region fractions (4, N) at template points ``p`` (N, 3) (max over foci)."""
        out = np.zeros((len(REGIONS), len(p)), np.float32)
        for f in self.foci:
            centre = f.centre.astype(p.dtype)
            near = np.flatnonzero(((p - centre) ** 2).sum(axis=1) <= f.reach**2)
            if near.size:
                vals = f.evaluate(p[near] - f.centre, edge_mm)
                out[:, near] = np.maximum(out[:, near], vals)
        core = out[:3].sum(axis=0)
        over = core > 1.0
        out[:3, over] /= core[over]
        return out

    def push(self, p: np.ndarray, strength: float) -> tuple[np.ndarray, np.ndarray]:
        """Mass effect: where to sample the *displaced* brain, for the points it moves.

        The brain at distance ``t`` from a focus came from ``s = (t^3 - R_m^3)^(1/3)``
        (an incompressible sphere of radius ``R_m`` inflated at the centre); the
        displacement (< R_m/27 beyond 3 R_m) is tapered to zero between 3 and 4 R_m.
        Returns the indices of the moved points and their source coordinates.
        """
        moved = np.zeros(len(p), bool)
        out = p.copy() if self.foci else p
        for f in self.foci:
            rm = f.mass_radius * strength
            if rm <= 0:
                continue
            rel = out - f.centre.astype(p.dtype)
            t2 = (rel**2).sum(axis=1)
            near = np.flatnonzero(t2 < (MASS_TAPER[1] * rm) ** 2)
            t = np.maximum(np.sqrt(t2[near]), 1e-3)
            s = np.cbrt(np.maximum(t**3 - rm**3, 0.0))
            taper = np.clip(
                (MASS_TAPER[1] * rm - t) / ((MASS_TAPER[1] - MASS_TAPER[0]) * rm), 0.0, 1.0
            )
            factor = 1.0 - taper * (1.0 - s / t)
            out[near] = f.centre + rel[near] * factor[:, None]
            moved[near] = True
        idx = np.flatnonzero(moved)
        return idx, out[idx]

    def to_dict(self) -> dict[str, Any]:
        return {
            "phenotype": self.phenotype,
            "variant": self.variant,
            "foci": [f.to_dict() for f in self.foci],
        }


def _in_box(xyz: tuple[np.ndarray, ...], box: tuple[Range, ...]) -> np.ndarray:
    """Broadcast test of MNI axes against a box whose first range applies to ``|x|``."""
    x, y, z = np.abs(xyz[0]), xyz[1], xyz[2]
    return (
        (x >= box[0][0])
        & (x <= box[0][1])
        & (y >= box[1][0])
        & (y <= box[1][1])
        & (z >= box[2][0])
        & (z <= box[2][1])
    )


def _pick(rng: np.random.Generator, anat: Anatomy, *conditions: np.ndarray) -> np.ndarray:
    """A random template voxel (MNI mm) satisfying all ``conditions``.

    If none does (e.g. a very large ``lesion_size``), the last conditions - the
    preferences - are dropped one by one; the first is the site itself and is kept.
    """
    for n in range(len(conditions), 0, -1):
        ok = np.broadcast_to(np.logical_and.reduce(conditions[:n]), anat.shape)
        idx = np.flatnonzero(ok)
        if idx.size:
            ijk = np.array(np.unravel_index(idx[rng.integers(idx.size)], anat.shape), float)
            return anat.mm(ijk)
    raise RuntimeError("no candidate voxel for lesion placement")


def _gradient_at(anat: Anatomy, xyz: np.ndarray) -> np.ndarray:
    """Unit gradient of the envelope distance at a point (outward surface normal)."""
    ijk = np.round(anat.voxel(xyz)).astype(int)
    g = np.array(
        [anat.dist[tuple(ijk + e)] - anat.dist[tuple(ijk - e)] for e in np.eye(3, dtype=int)]
    )
    return g / max(float(np.linalg.norm(g)), 1e-6)


def _place(
    rng: np.random.Generator,
    anat: Anatomy,
    phenotype: str,
    variant: str,
    radius: float,
    csf_rim_mm: float,
    others: list[np.ndarray],
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Centre (and dural plane) of a focus at the site typical of the phenotype."""
    x, y, z = anat.axes_mm()
    depth = -anat.dist
    side = 1.0 if rng.random() < 0.5 else -1.0
    if phenotype == "glioma":
        site = (anat.wm >= 0.9) & (np.abs(x) >= 18.0)
        room = (depth >= radius + 10.0) & (anat.ventricle_dist >= 0.5 * radius)
        return _pick(rng, anat, site, room), None, None
    if phenotype == "meningioma":
        if variant == "falx":
            base = np.array([0.0, rng.uniform(*FALX_BOX_MM[0]), rng.uniform(*FALX_BOX_MM[1])])
            normal = np.array([-side, 0.0, 0.0])
        else:
            surface = (np.abs(anat.dist) <= anat.resolution_mm) & (z >= 0.0)
            surface &= (np.abs(x) >= 15.0) & (y >= -80.0) & (y <= 50.0)
            point = _pick(rng, anat, surface)
            normal = _gradient_at(anat, point)
            base = point + normal * (csf_rim_mm - 1.0)  # dura = inner skull table
        centre = base - normal * MENINGIOMA_BODY_OFFSET * radius
        return centre, base, normal
    if phenotype == "schwannoma":
        lo = np.array([b[0] for b in CPA_BOX_MM])
        hi = np.array([b[1] for b in CPA_BOX_MM])
        centre = rng.uniform(lo, hi)
        centre[0] *= side
        return centre, None, None
    if phenotype == "neurocytoma":
        ok = anat.ventricles & _in_box((x, y, z), MONRO_BOX_MM)
        return _pick(rng, anat, ok), None, None
    if phenotype == "pcnsl":
        lo, hi = PCNSL_VENTRICLE_DIST_MM
        site = (anat.gm + anat.wm >= 0.8) & (anat.ventricle_dist >= lo)
        site &= (anat.ventricle_dist <= hi) & _in_box((x, y, z), PCNSL_BOX_MM)
        apart = np.ones(anat.shape, bool)
        for c in others:  # separate foci
            apart &= (x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2 >= (2.2 * radius) ** 2
        return _pick(rng, anat, site, apart), None, None
    if phenotype == "germinoma":
        site = np.array(PINEAL_MM if variant == "pineal" else SUPRASELLAR_MM)
        return site + rng.normal(0.0, SITE_JITTER_MM, 3), None, None
    if phenotype == "other":
        site = (anat.gm >= 0.25) & (anat.wm >= 0.25) & (np.abs(x) >= 15.0)
        room = (depth >= radius + 8.0) & (anat.ventricle_dist >= radius)
        return _pick(rng, anat, site, room), None, None
    raise KeyError(f"no placement rule for phenotype {phenotype!r}")


def _random_axes(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return q * np.sign(np.diag(r))


def draw_lesion(
    rng: np.random.Generator,
    anat: Anatomy,
    phenotype: str,
    lesion_size: float = 1.0,
    csf_rim_mm: float = 2.0,
) -> LesionModel:
    """Draw a lesion of ``phenotype`` (variant, foci, shapes, sub-regions) in MNI space."""
    if phenotype not in VARIANTS:
        raise KeyError(f"unknown phenotype {phenotype!r}; expected one of {PHENOTYPES}")
    variants = VARIANTS[phenotype]
    if not variants:
        return LesionModel(phenotype, "none")
    names = sorted(variants)
    probs = np.array([variants[n].probability for n in names])
    variant = names[rng.choice(len(names), p=probs / probs.sum())]
    ph = variants[variant]
    n_foci = int(ph.n_foci[rng.integers(len(ph.n_foci))])
    foci: list[Focus] = []
    for i in range(n_foci):
        radius = rng.uniform(*ph.radius_mm) * lesion_size * (0.75 if i else 1.0)
        elong = rng.uniform(*ph.elongation)
        radii = radius * np.array([elong, 1.0, 1.0]) / np.cbrt(elong)
        if phenotype == "schwannoma":  # long axis towards the internal auditory canal
            axes = np.eye(3)
        else:
            axes = _random_axes(rng)
        centre, cut_point, cut_normal = _place(
            rng, anat, phenotype, variant, radius, csf_rim_mm, [f.centre for f in foci]
        )
        ring = 0.0
        if ph.ring_mm is not None:
            ring = min(rng.uniform(*ph.ring_mm) / radius, 0.8)
        cyst = rng.uniform(*ph.cyst_fraction)
        foci.append(
            Focus(
                centre=centre,
                radii=radii,
                axes=axes,
                shape_noise=FourierField.draw(rng, ph.irregularity_mm),
                texture_noise=FourierField.draw(rng, 6.0),
                cyst_noise=FourierField.draw(rng, ph.cyst_mm),
                irregularity=ph.irregularity,
                ring=ring,
                fluid_only=ph.fluid_only,
                rim=rng.uniform(*ph.rim),
                oedema=rng.uniform(*ph.oedema),
                cyst_threshold=float(ndtri(1.0 - cyst)) if cyst > 0.01 else float("inf"),
                enhancing_threshold=float(ndtri(1.0 - ph.enhancing_fraction))
                if ph.enhancing_fraction < 1.0
                else -float("inf"),
                cut_point=cut_point,
                cut_normal=cut_normal,
                mass_radius=ph.mass_effect * radius,
            )
        )
    return LesionModel(phenotype, variant, tuple(foci))
