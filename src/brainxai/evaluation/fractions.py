"""Nominal and effective label fractions, side by side in every table and plot (issue 17.5).

A nominal fraction ``f`` draws ``max(ceil(f * n_g), c_g)`` training patients per tumour group
(:mod:`brainxai.finetune.sampling`): rounding up and "every class at least once" make a
small ``f`` much larger than ``f`` — 1 % of a few dozen patients per group is one patient
per group, plus whoever is needed to cover the group's classes. The effective fraction is
what was really labelled: the share of the training split's patients and images in the
subset, averaged over the seeds' subsets (:func:`brainxai.finetune.sampling.effective_by_fraction`).
Tables keep the nominal fraction as the key (the conditions are named by it) and carry the
effective shares beside it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

#: Columns :func:`with_effective` adds (shares of the training split; mean labelled counts).
EFFECTIVE_COLUMNS = ("effective_patients", "effective_images", "labelled_patients",
                     "labelled_images")  # fmt: skip
#: Decimals of an effective percentage.
PERCENT_DIGITS = 1


def with_effective(table: pd.DataFrame, effective: pd.DataFrame | None) -> pd.DataFrame:
    """``table`` (a ``fraction`` column) with :data:`EFFECTIVE_COLUMNS` joined on the nominal
    fraction; unchanged without ``effective``. A nominal fraction that was not drawn raises."""
    if effective is None:
        return table
    out = table.drop(columns=[c for c in EFFECTIVE_COLUMNS if c in table])
    if out.empty:
        return out.assign(**{c: pd.Series(dtype=float) for c in EFFECTIVE_COLUMNS})
    eff = effective.set_index(effective["fraction"].astype(float).round(12))
    keys = out["fraction"].astype(float).round(12)
    missing = sorted(set(keys) - set(eff.index))
    if missing:
        raise ValueError(f"no effective fraction for nominal fraction(s) {missing}")
    for c in EFFECTIVE_COLUMNS:
        out[c] = keys.map(eff[c]).to_numpy(dtype=float)
    return out


def percent_label(fraction: float) -> str:
    """``0.01 → '1 %'``, ``0.005 → '0.5 %'``."""
    return f"{100 * fraction:g} %"


def effective_percent(share: float) -> str:
    """``0.24 → '24.0 %'``."""
    return f"{100 * share:.{PERCENT_DIGITS}f} %"


#: Label styles: a table header / cell, and a plot tick (three short lines).
STYLES = ("long", "tick")


def fraction_label(
    fraction: float, patients: float = float("nan"), images: float = float("nan"),
    style: str = "long",
) -> str:  # fmt: skip
    """The nominal fraction with the effective one beside it (nominal only when unknown):
    ``1 % (effective 24.0 % of patients, 15.6 % of images)``, or as a plot tick
    ``1 %`` / ``24.0 % P`` / ``15.6 % I`` on three lines."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}")
    nominal = percent_label(fraction)
    if not (np.isfinite(patients) and np.isfinite(images)):
        return nominal
    p, i = effective_percent(patients), effective_percent(images)
    if style == "tick":
        return f"{nominal}\n{p} P\n{i} I"
    return f"{nominal} (effective {p} of patients, {i} of images)"


def fraction_labels(table: pd.DataFrame, style: str = "long") -> Mapping[float, str]:
    """``{nominal fraction: label}`` for every fraction of ``table`` (its effective columns,
    when present, give the effective shares)."""
    out: dict[float, str] = {}
    for fraction, rows in table.groupby(table["fraction"].astype(float), sort=True):
        first = rows.iloc[0]
        out[float(fraction)] = fraction_label(
            float(fraction),
            float(first.get("effective_patients", np.nan)),
            float(first.get("effective_images", np.nan)),
            style,
        )
    return out
