"""Patient-level, stratified train/val/test splits and k folds; leakage checks.

Unit of splitting
    Rows are merged into *units* with union-find (connected components) over a
    shared ``subject`` or a shared ``dup_group``; a unit never crosses a split or a
    fold. Subject ids are compared as plain strings across datasets (the same id
    in two sources is treated as one patient: conservative).

Stratum
    ``(dataset, group)`` of the unit (its most frequent value; ties: the smallest).

Source splits
    Units whose source gives a ``source_split`` keep it: ``test`` stays test,
    ``val`` stays val. ``train`` units are divided into train/val in the ratio
    ``train:val`` -- unless their dataset already ships a val split, then they all
    stay train. Units without a source split get the full train/val/test division.

Rounding rule (per stratum of ``n`` units)
    Quotas ``n * fraction`` are floored, the remaining units go to the largest
    fractional parts (ties: the earlier split in train, val, test). Then, when
    ``n`` is at least the number of splits with a positive fraction, every such
    split gets at least one unit, taken from the largest split. Examples with
    70/15/15: n=10 -> 7/2/1, n=20 -> 14/3/3, n=7 -> 5/1/1, n=3 -> 1/1/1,
    n=2 -> 2/0/0.

Empty splits
    A small cohort can leave a data set without val or test patients (two units per
    stratum: 2/0/0). :func:`check_split_sizes` names every data set that lacks a split it
    should have and raises :class:`EmptySplitError` before any later stage runs, unless
    ``allow_empty_splits`` is set; then its messages are warnings for the data card and
    the report. A data set "should have" every split with a positive fraction, except
    when all its units carry source splits: then exactly those (with val when the source
    gives train, as above).

Folds
    ``fold`` is a stratified k-fold over the development pool (train + val units);
    test rows get ``fold = -1``. Within each stratum (sorted), units are shuffled
    with the seed and dealt round-robin, continuing where the previous stratum
    stopped so fold sizes stay balanced. ``n_folds = 0`` disables folds (all -1).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from brainxai.config import MappingConfig
from brainxai.manifest import SPLITS


class EmptySplitError(ValueError):
    """A data set would have no patients in a split it needs (see :func:`check_split_sizes`)."""


class LeakageError(ValueError):
    """A subject or duplicate group would be seen by two splits (or by a stage it must not)."""

    def __init__(self, message: str, offenders: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.offenders: list[str] = list(offenders)


@dataclass(frozen=True)
class SplitConfig(MappingConfig):
    """Split fractions, number of folds and seed."""

    train: float = 0.70
    val: float = 0.15
    test: float = 0.15
    n_folds: int = 5
    seed: int = 0
    #: go on (with a warning in the data card and the report) when a data set has no
    #: patients in val or test; otherwise :class:`EmptySplitError` stops ingestion
    allow_empty_splits: bool = False

    def __post_init__(self) -> None:
        fr = (self.train, self.val, self.test)
        if any(f < 0 for f in fr) or not math.isclose(sum(fr), 1.0, abs_tol=1e-6):
            raise ValueError(f"split fractions must be >= 0 and sum to 1, got {fr}")
        if self.train <= 0:
            raise ValueError("the train fraction must be positive")
        if self.n_folds < 0 or self.n_folds == 1:
            raise ValueError("n_folds must be 0 (no folds) or >= 2")

    def fractions(self) -> dict[str, float]:
        return {"train": self.train, "val": self.val, "test": self.test}


def allocate(n: int, fractions: dict[str, float]) -> dict[str, int]:
    """Integer counts per split for ``n`` units (largest remainder; see module doc)."""
    names = list(fractions)
    total = sum(fractions.values())
    quota = [round(n * fractions[k] / total, 9) for k in names]
    base = [math.floor(q) for q in quota]
    order = sorted(range(len(names)), key=lambda i: (-(quota[i] - base[i]), i))
    for i in order[: n - sum(base)]:
        base[i] += 1
    positive = [i for i, k in enumerate(names) if fractions[k] > 0]
    if n >= len(positive):
        for i in positive:
            if base[i] == 0:
                j = max(range(len(names)), key=lambda m: (base[m], -m))
                base[j] -= 1
                base[i] += 1
    return dict(zip(names, base, strict=True))


def _seed_for(seed: int, key: str) -> np.random.Generator:
    h = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    return np.random.default_rng([seed, h])


def _mode(s: pd.Series) -> str:
    c = s.astype(str).value_counts()
    return str(min(c[c == c.max()].index))


def units_of(manifest: pd.DataFrame) -> pd.Series:
    """Unit key per row: rows sharing a subject or dup_group (transitively) share a unit.

    The key is the smallest ``subject`` (else ``record_id``) of the unit.
    """
    n = len(manifest)
    if n == 0:
        return pd.Series([], dtype=object, index=manifest.index)
    subj = manifest["subject"].fillna("").astype(str).to_numpy()
    dup = manifest["dup_group"].fillna("").astype(str).to_numpy()
    keys = np.concatenate([np.char.add("s:", subj[subj != ""]), np.char.add("d:", dup[dup != ""])])
    uniq, inv = np.unique(keys, return_inverse=True)
    rows_s = np.flatnonzero(subj != "")
    rows_d = np.flatnonzero(dup != "")
    src = np.concatenate([rows_s, rows_d])
    dst = n + inv
    g = coo_matrix((np.ones(len(src)), (src, dst)), shape=(n + len(uniq),) * 2)
    lab = connected_components(g, directed=False)[1][:n]
    name = np.where(subj != "", subj, manifest["record_id"].astype(str).to_numpy())
    key = pd.Series(name).groupby(lab).transform("min").to_numpy()
    return pd.Series(key, index=manifest.index, dtype=object)


def assign_splits(manifest: pd.DataFrame, cfg: SplitConfig) -> pd.DataFrame:
    """Fill ``split`` and ``fold`` at the patient (unit) level; returns a copy.

    Raises :class:`LeakageError` when one unit carries two different source splits.
    """
    df = manifest.copy()
    df["_unit"] = units_of(df)
    src = df.get("source_split", pd.Series("", index=df.index)).fillna("").astype(str)
    df["_src"] = src
    g = df.groupby("_unit")
    units = pd.DataFrame(
        {
            "dataset": g["dataset"].agg(_mode),
            "group": g["group"].agg(_mode),
            "n_src": g["_src"].agg(lambda s: len(set(s) - {""})),
            "src": g["_src"].agg(lambda s: ",".join(sorted(set(s) - {""}))),
        }
    )
    bad = units[units["n_src"] > 1]
    if len(bad):
        paths = df[df["_unit"].isin(bad.index)]["path"].astype(str).tolist()
        raise LeakageError(
            f"{len(bad)} patients/duplicate groups span several source splits: "
            f"{list(bad.index)[:10]}",
            offenders=paths,
        )
    ds_has_val = set(df.loc[df["_src"] == "val", "dataset"].astype(str))
    units["split"] = ""
    fr = cfg.fractions()
    dev_fr = {"train": cfg.train, "val": cfg.val}
    for (dataset, group), sub in units.groupby(["dataset", "group"], sort=True):
        stratum = f"{dataset}|{group}"
        fixed = sub[sub["src"].isin(["test", "val"])]
        units.loc[fixed.index, "split"] = fixed["src"]
        free = sub[sub["src"] == ""]
        _deal(units, free, allocate(len(free), fr), _seed_for(cfg.seed, "free|" + stratum))
        tr = sub[sub["src"] == "train"]
        if dataset in ds_has_val:
            units.loc[tr.index, "split"] = "train"
        else:
            _deal(units, tr, allocate(len(tr), dev_fr), _seed_for(cfg.seed, "train|" + stratum))
    units["fold"] = -1
    if cfg.n_folds:
        start = 0
        dev = units[units["split"].isin(["train", "val"])]
        for (dataset, group), sub in dev.groupby(["dataset", "group"], sort=True):
            keys = np.array(sorted(sub.index))
            keys = keys[_seed_for(cfg.seed, f"fold|{dataset}|{group}").permutation(len(keys))]
            units.loc[keys, "fold"] = (start + np.arange(len(keys))) % cfg.n_folds
            start = (start + len(keys)) % cfg.n_folds
    df["split"] = units.loc[df["_unit"], "split"].to_numpy()
    df["fold"] = units.loc[df["_unit"], "fold"].to_numpy().astype("int64")
    out = df.drop(columns=["_unit", "_src"])
    return out.astype({"split": "string", "fold": "int64"})


def _deal(units: pd.DataFrame, sub: pd.DataFrame, counts: dict[str, int], rng) -> None:
    keys = np.array(sorted(sub.index))
    keys = keys[rng.permutation(len(keys))]
    labels = np.repeat(list(counts), list(counts.values()))
    units.loc[keys, "split"] = labels


def _expected_splits(part: pd.DataFrame, cfg: SplitConfig) -> list[str]:
    """Splits data set ``part`` should have patients in (module doc, "Empty splits")."""
    positive = [k for k, f in cfg.fractions().items() if f > 0]
    src = part.get("source_split", pd.Series("", index=part.index)).fillna("").astype(str)
    if (src == "").any():
        return positive
    want = set(src)
    if "train" in want and "val" not in want and cfg.val > 0:
        want.add("val")
    return [k for k in SPLITS if k in want]


def split_sizes(manifest: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Patients (distinct ``subject``) per data set and split: ``{dataset: {split: n}}``."""
    out: dict[str, dict[str, int]] = {}
    for dataset, part in manifest.groupby("dataset", sort=True):
        n = part.groupby(part["split"].astype(str))["subject"].nunique()
        out[str(dataset)] = {k: int(n.get(k, 0)) for k in SPLITS}
    return out


def empty_splits(manifest: pd.DataFrame, cfg: SplitConfig) -> list[str]:
    """One message per data set that has no patients in a split it should have."""
    need = sum(1 for f in cfg.fractions().values() if f > 0)
    sizes = split_sizes(manifest)
    messages = []
    for dataset, part in manifest.groupby("dataset", sort=True):
        counts = sizes[str(dataset)]
        missing = [k for k in _expected_splits(part, cfg) if counts[k] == 0]
        if not missing:
            continue
        strata = part.groupby(part["group"].astype(str))["subject"].nunique()
        small = int((strata < need).sum())
        messages.append(
            f"data set {dataset}: no patients in {' and '.join(missing)} "
            f"({', '.join(f'{k} {counts[k]}' for k in SPLITS)} patients; {small} of "
            f"{len(strata)} diagnosis groups have fewer than {need} patients, too few to "
            f"give each split one): no {' or '.join(missing)} score can be computed for it"
        )
    return messages


def check_split_sizes(manifest: pd.DataFrame, cfg: SplitConfig) -> list[str]:
    """:func:`empty_splits` of a split manifest: raise :class:`EmptySplitError` naming
    them unless ``cfg.allow_empty_splits``; else return them (warnings to publish)."""
    messages = empty_splits(manifest, cfg)
    if messages and not cfg.allow_empty_splits:
        raise EmptySplitError(
            "the cohort is too small for its splits: "
            + "; ".join(messages)
            + ". Add patients, or set split.allow_empty_splits: true in params.yaml to go on "
            "with this warning in the data card and the report."
        )
    return messages


def _spread(df: pd.DataFrame, key: str, by: str) -> pd.Series:
    k = df[key].fillna("").astype(str)
    d = df[k != ""]
    n = d.groupby(key)[by].nunique()
    return n[n > 1]


def check_leakage(manifest: pd.DataFrame) -> None:
    """Raise :class:`LeakageError` if a subject or dup_group is in two splits or two folds."""
    split = manifest["split"].fillna("").astype(str)
    if (~split.isin(SPLITS)).any():
        raise ValueError("check_leakage needs every row to have a split (train/val/test)")
    problems: list[str] = []
    offenders: list[str] = []
    dev = manifest[split.isin(["train", "val"]) & (manifest["fold"] >= 0)]
    for key in ("subject", "dup_group"):
        for frame, col in ((manifest, "split"), (dev, "fold")):
            bad = _spread(frame, key, col)
            if len(bad):
                problems.append(f"{len(bad)} {key}s in several {col}s: {list(bad.index)[:10]}")
                offenders += frame[frame[key].isin(bad.index)]["path"].astype(str).tolist()
    if problems:
        raise LeakageError("; ".join(problems), offenders=sorted(set(offenders)))


def check_subset_leakage(
    manifest: pd.DataFrame,
    used_record_ids: Iterable[str],
    allowed_splits: Iterable[str] = ("train",),
) -> None:
    """Raise :class:`LeakageError` if records used by a stage reach outside ``allowed_splits``.

    Checks the used rows' own split and every other row of their subjects and
    duplicate groups (e.g. SSL pretraining may only see training patients).
    Unknown record ids are a ``KeyError``.
    """
    used = set(map(str, used_record_ids))
    allowed = set(allowed_splits)
    rid = manifest["record_id"].astype(str)
    missing = used - set(rid)
    if missing:
        raise KeyError(f"{len(missing)} record ids not in the manifest: {sorted(missing)[:5]}")
    mine = manifest[rid.isin(used)]
    outside = ~manifest["split"].astype(str).isin(allowed)
    offenders = set(mine.loc[outside[rid.isin(used)], "record_id"].astype(str))
    for key in ("subject", "dup_group"):
        keys = set(mine[key].fillna("").astype(str)) - {""}
        linked = manifest[manifest[key].astype(str).isin(keys) & outside]
        offenders |= set(linked["record_id"].astype(str))
    if offenders:
        raise LeakageError(
            f"{len(offenders)} records of splits outside {sorted(allowed)} are used or linked "
            "(same subject/duplicate group) to used records",
            offenders=sorted(offenders),
        )
