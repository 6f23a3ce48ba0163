"""Sources without patient ids (issue 17.4): the policy (fail | group | allow) on a replica
of the Kaggle layout without ids built by the synthetic generator, where the true patient
of every image is known (its subjects.csv, kept out of ingestion); the clustering, the
borrowing of sidecar ids and the optimism numbers by construction; the data card."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from brainxai.ingest import IngestConfig, LeakageError, ingest
from brainxai.ingest.datacard import data_card, grouping_banner
from brainxai.ingest.grouping import (
    SubjectGroupingConfig,
    apply_policy,
    embed_gray,
    grouping_report,
    knn_pairs,
    split_optimism,
)
from brainxai.splits import SplitConfig, assign_splits
from brainxai.synth import SynthConfig, generate_kaggle2d

#: 4 patients per tumour group (24 in all, ~200 images): every split gets patients.
REPLICA = SynthConfig(
    n_subjects_2d_per_group=4, slices_per_subject=3, image_size_min=96, image_size_max=160
)
SEEDS = range(5)


def policy(name: str, **kw) -> IngestConfig:
    return IngestConfig(min_side_2d=32, subject_grouping=SubjectGroupingConfig(policy=name), **kw)


@pytest.fixture(scope="module")
def replica(tmp_path_factory):
    """(base dir, true patient per manifest path): images without any id on disk; the
    generator's subjects.csv is the ground truth, outside the image tree."""
    base = tmp_path_factory.mktemp("replica")
    generate_kaggle2d(base / "images", base / "meta", REPLICA, seed=11)
    truth = pd.read_csv(base / "meta" / "subjects.csv")
    return base, truth.assign(path="images/" + truth["path"])


def straddling(manifest: pd.DataFrame, truth: pd.DataFrame, seed: int) -> float:
    """Share of true patients with images in both train and test after the split."""
    split = assign_splits(manifest, SplitConfig(seed=seed, n_folds=0))
    true = split["path"].map(truth.set_index("path")["subject"])
    assert true.notna().all()
    sides = split.assign(true=true.to_numpy(), split=split["split"].astype(str))
    both = sides.groupby("true")["split"].agg(lambda s: {"train", "test"} <= set(s))
    return float(both.mean())


def test_group_keeps_every_true_patient_on_one_side_and_allow_does_not(replica):
    base, truth = replica
    grouped = ingest(base / "images", "kaggle17", policy("group"), base_dir=base)
    allowed = ingest(base / "images", "kaggle17", policy("allow"), base_dir=base)
    assert len(grouped.manifest) == len(allowed.manifest) == len(truth)
    assert (grouped.manifest["subject_source"] == "embedding_group").all()
    assert (allowed.manifest["subject_source"] == "phash_group").all()
    g = [straddling(grouped.manifest, truth, s) for s in SEEDS]
    a = [straddling(allowed.manifest, truth, s) for s in SEEDS]
    # measured on this replica: group 0 of 24 patients on both sides for every seed,
    # allow 50-67 % (perceptual hashes join only near copies of one image)
    assert g == [0.0] * len(SEEDS)
    assert min(a) > 0.25
    # a cluster never mixes tumour groups (a patient has one diagnosis)
    assert grouped.manifest.groupby("subject")["group"].nunique().eq(1).all()
    assert grouped.embeddings.keys() == set(grouped.manifest["record_id"])

    # the data card: policy, banner, and the optimism of each split
    reports = {}
    for name, res in (("group", grouped), ("allow", allowed)):
        split = assign_splits(res.manifest, SplitConfig(seed=0, n_folds=0))
        rep = grouping_report(split, res.embeddings, SubjectGroupingConfig(policy=name))
        card, md = data_card(split, res.quarantine, res.found, res.ignored, grouping=rep)
        assert card["subject_grouping"]["images_without_ids"] == len(split)
        assert md.startswith("# Data card\n\n> **PATIENT IDS UNKNOWN")
        assert f"## Patients without ids (policy `{name}`)" in md
        reports[name] = rep["optimism"]["kaggle17"]
    g, a = reports["group"], reports["allow"]
    # kept apart: test images are nearer their split-mates than any training image; leaky:
    # a training twin as often as an image-level split would give (measured: 0.00 vs
    # chance 0.55; 0.86 vs chance 0.84)
    assert g["median_gap"] > 0 > a["median_gap"]
    assert g["test_nearest_in_train"] < g["chance"] / 2
    assert a["test_nearest_in_train"] >= a["chance"] - 0.1


def test_fail_stops_ingestion_naming_the_files(replica):
    base, truth = replica
    with pytest.raises(LeakageError, match="no patient id") as err:
        ingest(base / "images", "kaggle17", policy("fail"), base_dir=base)
    assert len(err.value.offenders) == len(truth)


def test_sidecar_ids_are_kept_and_lent_to_the_images_without(replica, tmp_path):
    """Ids for the T1 images only: those keep their ids, the T2 / T1C+ images borrow the id
    of the most similar T1 image of their cluster; no true patient is split."""
    base, truth = replica
    t1 = truth[truth["sequence"] == "T1"].assign(
        path=lambda d: d["path"].str.removeprefix("images/"), mask_path=""
    )
    sidecar = tmp_path / "subjects.csv"
    t1.to_csv(sidecar, index=False)
    res = ingest(base / "images", "kaggle17", policy("group"), base_dir=base, sidecar=sidecar)
    man = res.manifest.set_index("path")
    given = man["subject_source"] == "sidecar"
    assert given.sum() == len(t1)
    true = truth.set_index("path")["subject"]
    assert (man.loc[given, "subject"] == true[man.index[given]]).all()
    borrowed = man.loc[~given]
    assert (borrowed["subject_source"] == "embedding_group").all()
    assert borrowed["subject"].isin(set(t1["subject"])).all()  # ids come from the sidecar
    right = (borrowed["subject"] == true[borrowed.index]).mean()
    assert right >= 0.95  # measured 0.985 (130 of 132)
    assert [straddling(res.manifest, truth, s) for s in SEEDS] == [0.0] * len(SEEDS)


def _unit(deg: float) -> np.ndarray:
    return np.array([np.cos(np.radians(deg)), np.sin(np.radians(deg))])


def test_knn_links_and_policy_by_construction():
    """Six images: two tight pairs (1 deg apart) and two loners; with one neighbour and a
    0.99 floor the pairs link and the loners stay alone; the image without id in the
    pair with an id borrows it, the others become their own patients."""
    angles = [0, 1, 60, 61, 120, 180]
    emb = np.stack([_unit(a) for a in angles])
    pairs = knn_pairs(emb, 1, 0.99)
    assert sorted(map(tuple, pairs.tolist())) == [(0, 1), (1, 0), (2, 3), (3, 2)]
    assert knn_pairs(emb, 1, -1.0).shape == (6, 2)  # every image links to its neighbour
    df = pd.DataFrame({
        "record_id": [f"r{i}" for i in range(6)], "path": [f"p{i}" for i in range(6)],
        "dataset": "kaggle17", "group": "glioma", "source_split": "", "dup_group": "",
        "subject": ["A", "", "", "", "", ""],
        "subject_source": ["sidecar"] + ["phash_group"] * 5,
    })  # fmt: skip
    cfg = SubjectGroupingConfig(neighbours=1, min_similarity=0.99)
    out, notes = apply_policy(df, {f"r{i}": e for i, e in enumerate(emb)}, cfg)
    assert out["subject"].tolist() == ["A", "A", "eg-r2", "eg-r2", "eg-r4", "eg-r5"]
    assert out["subject_source"].tolist() == ["sidecar"] + ["embedding_group"] * 5
    assert "5 images without patient id grouped into 4 embedding clusters" in notes[0]
    # a perceptual-hash group links what the embeddings do not
    linked, _ = apply_policy(df.assign(dup_group=["", "", "", "", "dg-x", "dg-x"]),
                             {f"r{i}": e for i, e in enumerate(emb)}, cfg)  # fmt: skip
    assert linked["subject"].tolist()[4:] == ["eg-r4", "eg-r4"]
    # another tumour group is another stratum: no link across it
    other = df.assign(group=["glioma", "meningioma", "glioma", "glioma", "glioma", "glioma"])
    split_up, _ = apply_policy(other, {f"r{i}": e for i, e in enumerate(emb)}, cfg)
    assert split_up.loc[1, "subject"] == "eg-r1"
    unchanged, none = apply_policy(df, {}, SubjectGroupingConfig(policy="allow"))
    assert unchanged is df and none == []


def test_optimism_numbers_by_hand():
    """Test images at 0 and 10 deg, training images at -20 and 30 deg: the nearest training
    image of each test image is 20 deg away, its split-mate 10 deg."""
    emb = {"t0": _unit(0), "t1": _unit(10), "a": _unit(-20), "b": _unit(30)}
    man = pd.DataFrame({
        "record_id": list(emb), "dataset": "d", "split": ["test", "test", "train", "train"],
        "subject_source": ["embedding_group"] * 3 + ["sidecar"],
    })  # fmt: skip
    o = split_optimism(man, emb, SubjectGroupingConfig())["d"]
    c20, c10 = np.cos(np.radians(20)), np.cos(np.radians(10))
    assert o["test_to_train"]["median"] == round(c20, 4) == o["test_to_train"]["max"]
    assert o["within_test"]["median"] == round(c10, 4)
    assert o["median_gap"] == round(round(c10, 4) - round(c20, 4), 4)
    assert o["test_nearest_in_train"] == 0.0 and o["chance"] == round(2 / 3, 4)
    assert (o["n_test"], o["n_train"], o["images_without_ids"]) == (2, 2, 3)


def test_silhouette_embedding_ignores_contrast_but_not_the_outline():
    """One head outline at two contrasts (inside dark or bright, like T1 vs T2 CSF) gives
    the same embedding; a shifted outline does not."""
    yy, xx = np.mgrid[:64, :80]
    head = ((yy - 32) / 26) ** 2 + ((xx - 40) / 30) ** 2 < 1
    inner = ((yy - 32) / 10) ** 2 + ((xx - 40) / 12) ** 2 < 1
    t1 = np.where(head, np.where(inner, 60.0, 200.0), 0.0)
    t2 = np.where(head, np.where(inner, 250.0, 90.0), 0.0)
    shifted = np.roll(t1, 12, axis=1)
    cfg = SubjectGroupingConfig()
    e1, e2, e3 = (embed_gray(a, cfg) for a in (t1, t2, shifted))
    assert e1.shape == (cfg.embedding_size**2,) and np.isclose(np.linalg.norm(e1), 1)
    assert np.allclose(e1, e2)
    assert float(e1 @ e3) < 0.9
    assert grouping_banner({"images_without_ids": 0, "policy": "group"}) is None
    with pytest.raises(ValueError, match="policy"):
        SubjectGroupingConfig(policy="ignore")


def test_report_opens_the_data_card_with_the_banner(tmp_path):
    """The HTML report's data-card section starts with the policy banner (a caution box
    for 'group') and shows the optimism numbers of the card."""
    from brainxai.jsonio import write_json
    from brainxai.report import build_report
    from tests.report_study import make_report_study

    params = make_report_study(tmp_path, skip=("finetune", "pseudolabel", "pretrain", "xai"))
    man = pd.read_parquet(tmp_path / "data/processed/manifest.parquet")
    man["subject_source"] = "embedding_group"
    emb = {r: _unit(7.0 * i) for i, r in enumerate(man["record_id"])}
    rep = grouping_report(man, emb, SubjectGroupingConfig(policy="group"))
    card, _ = data_card(man, pd.DataFrame(columns=["reason"]), len(man), 0, grouping=rep)
    write_json(tmp_path / "reports/datacard.json", card)
    html = build_report(tmp_path, params).html.read_text(encoding="utf-8")
    start = html.index('<section id="data-card">')
    sec = html[start : html.index("</section>", start)]
    assert 'data-status="caution"' in sec and "Patient ids unknown" in sec
    assert sec.index("Patient ids unknown") < sec.index("Found ")
    o = rep["optimism"]["kaggle17"]
    assert "Expected optimism of the split" in sec and str(o["median_gap"]) in sec
