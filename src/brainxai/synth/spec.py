"""Subject specifications: the cheap, volume-free plan of a cohort.

Each subject owns an independent random stream derived from ``(seed, export, index)``
with :class:`numpy.random.SeedSequence`, so any subject can be generated alone, in any
order or in parallel, and always comes out identical.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Export codes in the seed-sequence spawn key (3D cohort and 2D slice set never share
#: a subject's random stream even with the same seed).
EXPORT_CODES: dict[str, int] = {"3d": 3, "2d": 2}

#: Random streams of one subject, in spawn order.
STREAMS: tuple[str, ...] = ("demographics", "geometry", "lesion", "contrast", "noise", "export")

#: Age range at diagnosis (years) and female share per phenotype (epidemiology: germinoma
#: of the young and male, meningioma of older women, neurocytoma of young adults, ...).
DEMOGRAPHICS: dict[str, tuple[int, int, float]] = {
    "glioma": (40, 78, 0.40),
    "meningioma": (35, 82, 0.70),
    "schwannoma": (30, 72, 0.50),
    "neurocytoma": (18, 42, 0.50),
    "pcnsl": (45, 82, 0.45),
    "germinoma": (8, 28, 0.20),
    "other": (5, 80, 0.45),
    "normal": (18, 80, 0.50),
}


@dataclass(frozen=True)
class SubjectSpec:
    """Who a subject is and how to regenerate it (no volumes)."""

    subject_id: str
    index: int
    phenotype: str
    export: str  # "3d" | "2d"
    entropy: int
    spawn_key: tuple[int, ...]
    age: int
    sex: str

    @property
    def diagnosis(self) -> str:
        return self.phenotype

    def seed_sequence(self) -> np.random.SeedSequence:
        return np.random.SeedSequence(self.entropy, spawn_key=self.spawn_key)

    def rngs(self) -> dict[str, np.random.Generator]:
        """Independent generators per stream (see :data:`STREAMS`)."""
        children = self.seed_sequence().spawn(len(STREAMS))
        return {name: np.random.default_rng(c) for name, c in zip(STREAMS, children, strict=True)}


def make_specs(seed: int, export: str, phenotypes: list[str], prefix: str) -> list[SubjectSpec]:
    """Specs for a list of phenotypes: shuffled order (ids do not reveal the class)."""
    code = EXPORT_CODES[export]
    order = np.random.default_rng([seed, code]).permutation(len(phenotypes))
    specs = []
    for index, k in enumerate(order):
        phenotype = phenotypes[int(k)]
        spec = SubjectSpec(
            f"{prefix}{index + 1:03d}", index, phenotype, export, int(seed), (code, index), 0, ""
        )
        demo = spec.rngs()["demographics"]
        lo, hi, female = DEMOGRAPHICS[phenotype]
        age = int(demo.integers(lo, hi + 1))
        sex = "F" if demo.random() < female else "M"
        specs.append(
            SubjectSpec(
                spec.subject_id, index, phenotype, export, int(seed), (code, index), age, sex
            )
        )
    return specs
