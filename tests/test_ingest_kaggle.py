"""kaggle17 layout: long/accented folder names, sidecar, every quarantine reason of 2D files."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from brainxai.ingest import IngestConfig, ingest
from brainxai.ingest.datacard import data_card
from brainxai.ingest.grouping import SubjectGroupingConfig
from brainxai.labels import kaggle_folder, parse_kaggle_folder
from brainxai.manifest import COLUMNS, QUARANTINE_COLUMNS

#: Policy "allow": images without patient ids keep their perceptual-hash groups (what this
#: file checks; the embedding grouping of policy "group" is tests/test_ingest_grouping.py).
ALLOW = SubjectGroupingConfig(policy="allow")
CFG = IngestConfig(min_side_2d=32, phash_threshold=4, subject_grouping=ALLOW)


def smooth(seed: int, size: int = 96) -> Image.Image:
    """A smooth random grey image; different seeds are far apart in phash."""
    r = (np.random.default_rng(seed).random((8, 8)) * 255).astype(np.uint8)
    return Image.fromarray(r).resize((size, size), Image.BICUBIC)


def save(img: Image.Image, path: Path, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kw)
    return path


def half(src: Path, dst: Path) -> Path:
    b = src.read_bytes()
    dst.write_bytes(b[: len(b) // 2])
    return dst


@pytest.fixture
def kaggle_tree(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "kaggle"
    g1 = root / kaggle_folder("glioma", "T1")
    men = root / unicodedata.normalize("NFD", kaggle_folder("meningioma", "T1C+"))
    nt2 = root / kaggle_folder("normal", "T2")
    gt2 = root / kaggle_folder("glioma", "T2")
    save(smooth(1), g1 / "g1.png")
    save(smooth(2), g1 / "g2.png")
    save(smooth(3), g1 / "g3.png")
    save(smooth(2), g1 / "g2_re.jpg", quality=85)  # near duplicate of g2.png
    (g1 / "corrupt.jpg").write_bytes(np.random.default_rng(0).bytes(4000))
    half(save(smooth(10), g1 / "tmp.png"), g1 / "trunc.png").parent.joinpath("tmp.png").unlink()
    half(save(smooth(11), g1 / "tmp.jpg"), g1 / "trunc.jpg").parent.joinpath("tmp.jpg").unlink()
    (g1 / "empty.png").write_bytes(b"")
    save(Image.new("L", (64, 64), 0), g1 / "constant.png")
    save(smooth(12, 16), g1 / "tiny.png")
    save(smooth(4), men / "m1.jpg")
    save(smooth(5), men / "m2.jpg")
    save(smooth(6), nt2 / "n1.png")
    (nt2 / "n1_copy.png").write_bytes((nt2 / "n1.png").read_bytes())  # exact, same label
    save(smooth(7), gt2 / "x.png")
    (nt2 / "x_conf.png").write_bytes((gt2 / "x.png").read_bytes())  # exact, other label
    save(smooth(8), root / "Foo T3" / "f.png")
    save(smooth(9), root / "NORMAL T1C+" / "z.png")  # the 17-class set has no normal T1C+
    save(smooth(13), root / "stray.png")
    for junk in (".DS_Store", "Thumbs.db", "notes.txt"):
        (root / junk).write_bytes(b"junk")
    meta = tmp_path / "meta"
    save(Image.new("L", (96, 96), 0), meta / "masks" / "g1.png")
    save(Image.new("L", (50, 50), 0), meta / "masks" / "m1.png")  # wrong size: not used
    rel_m1 = f"{kaggle_folder('meningioma', 'T1C+')}/m1.jpg"  # NFC in the sidecar, NFD on disk
    pd.DataFrame(
        [
            {
                "path": f"{g1.name}/g1.png",
                "subject": "S1",
                "group": "glioma",
                "sequence": "T1",
                "slice_index": 3,
                "mask_path": "masks/g1.png",
            },
            {
                "path": f"{g1.name}/g3.png",
                "subject": "S2",
                "group": "meningioma",
                "sequence": "T1",
                "slice_index": 4,
                "mask_path": "",
            },
            {
                "path": rel_m1,
                "subject": "S3",
                "group": "meningioma",
                "sequence": "T1C+",
                "slice_index": 5,
                "mask_path": "masks/m1.png",
            },
        ]
    ).to_csv(meta / "subjects.csv", index=False)
    return root, meta / "subjects.csv"


def test_folder_names_nfc_and_nfd_parse():
    for group, seq in (("meningioma", "T1C+"), ("neurocytoma", "T2"), ("other", "T1")):
        name = kaggle_folder(group, seq)
        for form in ("NFC", "NFD"):
            assert parse_kaggle_folder(unicodedata.normalize(form, name)) == (group, seq)


def test_kaggle_counts_reasons_and_rows(kaggle_tree, tmp_path):
    root, sidecar = kaggle_tree
    nfd = [d for d in os.listdir(root) if d.startswith("Meningioma")]
    assert (
        nfd
        and unicodedata.is_normalized("NFD", nfd[0])
        and not unicodedata.is_normalized("NFC", nfd[0])
    )
    res = ingest(root, "kaggle17", CFG, base_dir=tmp_path, sidecar=sidecar)
    man, q = res.manifest, res.quarantine
    assert res.found == 19 and res.ignored == 3
    assert len(man) == 6 and len(q) == 13
    assert len(man) + len(q) == res.found
    assert list(man.columns) == list(COLUMNS) and list(q.columns) == list(QUARANTINE_COLUMNS)
    reasons = q.set_index(q["path"].str.rsplit("/", n=1).str[-1])["reason"].to_dict()
    assert reasons == {
        "corrupt.jpg": "decode_error",
        "trunc.png": "truncated",
        "trunc.jpg": "truncated",
        "empty.png": "empty_file",
        "constant.png": "constant_image",
        "tiny.png": "bad_shape",
        "g3.png": "mislabelled",
        "n1_copy.png": "duplicate",
        "x.png": "conflicting_labels",
        "x_conf.png": "conflicting_labels",
        "f.png": "unknown_label",
        "z.png": "unknown_label",
        "stray.png": "bad_layout",
    }
    assert "n1.png" in q.loc[q["reason"] == "duplicate", "detail"].iloc[0]
    by = man.set_index(man["path"].str.rsplit("/", n=1).str[-1])
    assert sorted(by.index) == ["g1.png", "g2.png", "g2_re.jpg", "m1.jpg", "m2.jpg", "n1.png"]
    assert man["path"].is_monotonic_increasing
    assert all(p.startswith("kaggle/") for p in man["path"])
    assert by.loc["g1.png", "label"] == "glioma T1" and by.loc["g1.png", "group"] == "glioma"
    assert by.loc["m1.jpg", "label"] == "meningioma T1C+" and by.loc["m1.jpg", "sequence"] == "T1C+"
    assert (by.loc["g1.png", "subject"], by.loc["g1.png", "subject_source"]) == ("S1", "sidecar")
    assert (by.loc["m1.jpg", "subject"], by.loc["m1.jpg", "subject_source"]) == ("S3", "sidecar")
    assert by.loc["g1.png", "mask_path"] == "meta/masks/g1.png"
    assert by.loc["m1.jpg", "mask_path"] == ""
    assert res.notes == ["1 lesion masks do not match their image shape (not used)"]
    assert by.loc["g2.png", "dup_group"] != "" and (
        by.loc["g2.png", "dup_group"] == by.loc["g2_re.jpg", "dup_group"]
    )
    assert by.loc["g2.png", "subject"] == by.loc["g2_re.jpg", "subject"]
    assert by.loc["g2.png", "subject_source"] == "phash_group"
    assert (by.drop(index=["g2.png", "g2_re.jpg"])["dup_group"] == "").all()
    assert by.loc["g1.png", "shape"] == "96x96" and by.loc["g1.png", "spacing"] == ""
    assert by["phash"].str.fullmatch(r"[0-9a-f]{16}").all()
    assert by["record_id"].str.len().eq(16).all() and by["record_id"].is_unique
    assert (man["ndim"] == 2).all() and (man["fold"] == -1).all() and (man["split"] == "").all()
    # stable ids across runs and with a thread pool
    again = ingest(
        root, "kaggle17", IngestConfig(min_side_2d=32, workers=2, subject_grouping=ALLOW),
        tmp_path, sidecar,
    )  # fmt: skip
    pd.testing.assert_frame_equal(again.manifest, man)
    pd.testing.assert_frame_equal(again.quarantine, q)


def test_kaggle_without_sidecar_warns_in_card(kaggle_tree, tmp_path):
    root, _ = kaggle_tree
    res = ingest(root, "kaggle17", CFG, base_dir=tmp_path)
    assert res.found == 19 and len(res.manifest) == 7  # g3 is no longer "mislabelled"
    assert (res.manifest["subject_source"] == "phash_group").all()
    card, md = data_card(res.manifest, res.quarantine, res.found, res.ignored)
    assert card["totals"] == {
        "found": 19,
        "ingested": 7,
        "quarantined": 12,
        "ignored": 3,
        "invariant_holds": True,
    }
    assert card["subject_sources"] == {"phash_group": 7}
    assert any("NOT guaranteed" in w for w in card["warnings"])
    assert card["quarantine_by_reason"]["conflicting_labels"] == 2
    assert card["near_duplicates"]["n_groups"] == 1 and card["near_duplicates"]["n_images"] == 2
    assert "NOT guaranteed" in md
    assert "| kaggle17 | glioma T1 | T1 |" in md


def test_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown"):
        IngestConfig.from_dict({"min_side": 3})
    cfg = IngestConfig.from_dict({"allowed_labels": ["a", "b"], "workers": 2})
    assert cfg.allowed_labels == ("a", "b")
