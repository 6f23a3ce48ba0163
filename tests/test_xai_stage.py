"""The explanation-tracking stage (flows/xai.py) on a tiny study built here: a 2D decoded
cache with lesion masks and three ResNet-18 checkpoints (one head-only), a 3D family on a
tiny MONAI DenseNet with its own loader (defined below), a corrupt checkpoint, a missing
index. Numbers are checked against predictions computed here, by construction, or by
counting."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

import tasks  # noqa: F401  (embedded defaults before prefect)
from brainxai.config import deep_merge
from brainxai.finetune.model import build_classifier, load_classifier, save_classifier
from brainxai.hashing import file_sha256
from brainxai.ssl.cache import IMAGES, INDEX, square
from brainxai.ssl.checkpoint import save_backbone
from brainxai.xai.checkpoints import select_checkpoints
from brainxai.xai.evalset import balanced_sample, images_2d, masks_2d
from brainxai.xai.heatmap_store import load_heatmaps
from brainxai.xai.stage_config import SelectConfig, XaiConfig
from brainxai.xai.trajectory import GLOBAL

REPO = Path(__file__).resolve().parents[1]
PARAMS = REPO / "params.yaml"
CLASSES = ["a", "b", "c"]
W, H, CACHE, SIZE = 48, 40, 40, 32
LOADER_2D = "brainxai.finetune.model:load_classifier"
LOADER_3D = "tests.test_xai_stage:load_tiny_densenet"


# ----------------------------------------------------------------------------- fixtures


def lesion(k: int, i: int) -> np.ndarray:
    """(H, W) bool: a class-specific rectangle, shifted by the image index."""
    m = np.zeros((H, W), dtype=bool)
    y0, x0 = (4 + 10 * k + i % 2, 6 + 12 * k + i % 3)
    m[y0 : y0 + 9, x0 : x0 + 11] = True
    return m


def write_cache(root: Path) -> pd.DataFrame:
    """12 test images (4 per class; one without a mask) + 3 train images, non-square."""
    rng = np.random.default_rng(0)
    rows, ims = [], []
    for split, n in (("test", 4), ("train", 1)):
        for k, name in enumerate(CLASSES):
            for i in range(n):
                rid = f"{split}-{name}{i}"
                m = lesion(k, i)
                img = (rng.uniform(0, 60, (H, W)) + 180 * m).astype(np.uint8)
                ip = Path("raw") / f"{rid}.png"
                (root / ip).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(img).save(root / ip)
                mp = "" if rid == "test-a0" else f"raw/{rid}_mask.png"
                if mp:
                    Image.fromarray((m * 255).astype(np.uint8)).save(root / mp)
                ims.append(square(Image.fromarray(img), CACHE))
                rows.append(
                    {"record_id": rid, "subject": f"s-{rid}", "split": split, "label": name,
                     "path": str(ip), "mask_path": mp, "row": len(rows), "ok": True, "reason": ""}
                )  # fmt: skip
    cdir = root / "data/interim/finetune"
    cdir.mkdir(parents=True)
    np.save(cdir / IMAGES, np.stack(ims))
    index = pd.DataFrame(rows)
    index.to_parquet(cdir / INDEX, index=False)
    return index


def meta(**kw) -> dict:
    base = dict(
        arch="resnet18", num_classes=3, class_names=CLASSES, input_mean=0.45, input_std=0.23,
        image_size=SIZE, epoch=1, run="r", init="random", protocol="finetune", fraction=1.0,
        seed=0, backbone_path="", backbone_seed=7,
    )  # fmt: skip
    return {**base, **kw}


def write_checkpoints(root: Path) -> pd.DataFrame:
    """Run ``full`` (epochs 1, 2: whole state) and run ``head`` (epoch 1: head only)."""
    d = root / "models/finetune"
    rows = []
    model = build_classifier("resnet18", 3, 0.45, 0.23, backbone_seed=7)
    for epoch in (1, 2):
        with torch.no_grad():
            model.head.weight.add_(0.05 * torch.randn_like(model.head.weight))
        p = save_classifier(d / f"full/epoch-{epoch:04d}.pt", model, meta(epoch=epoch, run="full"))
        rows.append({"run": "full", "init": "random", "fraction": 1.0, "epoch": epoch, "path": p})
    bb = save_backbone(model.backbone, d / "head/backbone.safetensors")
    p = save_classifier(
        d / "head/epoch-0001.pt",
        model,
        meta(run="head", init="simclr", fraction=0.1, backbone_path=str(bb)),
        head_only_state=True,
    )
    rows.append({"run": "head", "init": "simclr", "fraction": 0.1, "epoch": 1, "path": p})
    index = pd.DataFrame(rows).assign(
        protocol="finetune", seed=0, loader=LOADER_2D, kind="2d", selected=True, val_macro_f1=0.5
    )
    index["path"] = [str(Path(p).relative_to(root)) for p in index["path"]]
    index.to_parquet(d / "index.parquet", index=False)
    return index


def xai_section(**over) -> dict:
    """The smoke profile's ``xai`` section of the repo's params.yaml, with overrides."""
    params = yaml.safe_load(PARAMS.read_text())
    section = deep_merge(params["xai"], params["profiles"]["smoke"].get("xai", {}))
    return deep_merge(section, over)


def write_params(root: Path, xai: dict) -> None:
    params = {
        "profile": "smoke",
        "seed": 1,
        "paths": {"raw": "data/raw", "interim": "data/interim", "processed": "data/processed",
                  "reports": "reports"},
        "runner": {"kind": "thread", "workers": 2},
        "xai": xai,
        "profiles": {"smoke": {}},
    }  # fmt: skip
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def run_stage(root: Path) -> dict:
    from flows.xai import xai_flow

    return xai_flow(profile="smoke", root=str(root))


def heatmap_mtimes(root: Path) -> dict[str, int]:
    return {
        str(p.relative_to(root)): p.stat().st_mtime_ns
        for p in (root / "data/interim/xai/heatmaps").rglob("*.npz")
    }


def heatmap_sha256(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): file_sha256(p)
        for p in (root / "data/interim/xai/heatmaps").rglob("*.npz")
    }


# ------------------------------------------------------------------------ library parts


def test_select_checkpoints_filters_by_construction():
    index = pd.DataFrame(
        [
            {"run": f"{i}-{p}-{f}-{s}", "init": i, "protocol": p, "fraction": f, "seed": s,
             "epoch": e}
            for i in ("simclr", "byol")
            for p in ("finetune", "linear")
            for f in (0.1, 0.5, 1.0)
            for s in (3, 4)
            for e in (1, 2, 3)
        ]
    )  # fmt: skip
    sel = select_checkpoints(
        index,
        SelectConfig.from_dict(
            {"protocols": ["finetune"], "fractions": ["max", "min"], "seeds": ["min"]}
        ),
    )
    assert len(sel) == 2 * 2 * 3  # two inits x {0.1, 1.0} x seed 3, every epoch
    assert set(sel["fraction"]) == {0.1, 1.0} and set(sel["seed"]) == {3}
    last = select_checkpoints(index, SelectConfig.from_dict({"epochs": ["last"]}))
    assert len(last) == 24 and set(last["epoch"]) == {3}
    one = select_checkpoints(index, SelectConfig.from_dict({"where": {"init": ["byol"]}}))
    assert len(one) == 36 and set(one["init"]) == {"byol"}
    with pytest.raises(ValueError, match="unknown word"):
        SelectConfig.from_dict({"fractions": ["smallest"]})


def test_balanced_sample_takes_turns():
    labels = ["a"] * 6 + ["b"] * 2 + ["c"] * 4
    pick = balanced_sample(labels, 7, seed=0)
    counts = pd.Series(np.asarray(labels)[pick]).value_counts().to_dict()
    assert counts == {"a": 3, "c": 2, "b": 2}  # turns a,b,c,a,b,c,a
    assert list(balanced_sample(labels, 0, 0)) == list(range(12))


def test_xai_config_rejects_unknown_keys_and_methods():
    with pytest.raises(ValueError, match="unknown XaiConfig keys"):
        XaiConfig.from_dict({"families": {}, "methods": ["gradcam"], "metods": []})
    with pytest.raises(ValueError, match="unknown method"):
        XaiConfig.from_dict({"families": {}, "methods": ["gradcam", "lime"]})
    with pytest.raises(ValueError, match="unknown CamConfig keys"):
        XaiConfig.from_dict({"families": {}, "methods": ["gradcam"], "cam": {"batch": 2}})


def test_a_family_overrides_the_shared_cam_layers_only():
    fam = {"index": "i", "kind": "3d", "data": "d"}
    cfg = XaiConfig.from_dict({
        "methods": ["gradcam"], "cam": {"layers": ["layer3"], "batch_size": 7},
        "families": {"f2": fam | {"kind": "2d"},
                     "f3": fam | {"cam": {"layers": ["features.denseblock3"]}}},
    })  # fmt: skip
    f2, f3 = (cfg.families[k].cam_config(cfg.cam) for k in ("f2", "f3"))
    assert f2.layers == ("layer3",) and f3.layers == ("features.denseblock3",)
    assert f2.batch_size == f3.batch_size == 7
    with pytest.raises(ValueError, match="unknown CamConfig keys"):
        XaiConfig.from_dict({"methods": ["gradcam"], "families": {"f": fam | {"cam": {"x": 1}}}})


def test_masks_follow_the_image_geometry(tmp_path):
    """Image = mask * 200 on a non-square canvas: after the cache's square-pad + resize and
    the stage's resize, the bright pixels and the stage's mask coincide."""
    m = lesion(2, 1)
    Image.fromarray((m * 200).astype(np.uint8)).save(tmp_path / "im.png")
    Image.fromarray((m * 255).astype(np.uint8)).save(tmp_path / "m.png")
    cdir = tmp_path / "cache"
    cdir.mkdir()
    np.save(cdir / IMAGES, square(Image.fromarray((m * 200).astype(np.uint8)), CACHE)[None])
    table = pd.DataFrame({"row": [0], "path": ["im.png"], "mask_path": ["m.png"]})
    img = images_2d(cdir, table, SIZE)[0, 0].numpy() > 0.4
    mask, reasons = masks_2d(table, tmp_path, SIZE)
    assert reasons == [""] and mask.shape == (1, SIZE, SIZE)
    inter, union = (img & mask[0]).sum(), (img | mask[0]).sum()
    assert mask[0].sum() > 20 and inter / union > 0.85
    # the padded band (40 of 48 rows -> 4 empty rows top and bottom at 48) stays empty
    assert not mask[0][: SIZE * 4 // 48].any()


# ---------------------------------------------------------------------------- the stage


def test_stage_2d_end_to_end_cached_and_incremental(tmp_path):
    root = tmp_path / "study"
    root.mkdir()
    write_cache(root)
    index = write_checkpoints(root)
    fams = {"finetune": {"index": "models/finetune/index.parquet", "kind": "2d",
                         "data": "data/interim/finetune"},
            "classify3d": {"index": "models/classify3d/index.parquet", "kind": "3d",
                           "data": "data/processed/manifest_std.parquet"}}  # fmt: skip
    base = {"families": fams, "methods": ["gradcam", "eigencam"], "max_images": 0}
    write_params(root, xai_section(**base))
    out = run_stage(root)

    # the missing 3D index is reported, not a crash
    assert out["families"]["classify3d"]["status"] == "skipped"
    assert "classify3d/index.parquet" in out["families"]["classify3d"]["reason"]
    fam = out["families"]["finetune"]
    assert fam["status"] == "ok" and fam["explained_checkpoints"] == 3
    assert fam["eval_candidates"] == 12 and fam["eval"]["images"] == 12  # train rows not asked
    assert fam["masks"] == {"mask used": 11, "no mask": 1}

    # trajectory: one row per (run, epoch, method, class) + the global row
    table = pd.read_parquet(root / "reports/xai/trajectory.parquet")
    assert len(table) == 3 * 2 * (3 + 1)
    assert not table.duplicated(["model", "epoch", "method", "klass"]).any()
    assert set(table["init"]) == {"random", "simclr"} and set(table["family"]) == {"finetune"}
    glob = table[table["klass"] == GLOBAL]
    assert (glob["support"] == 12).all() and (glob["n_masks"] == 11).all()
    assert (table.loc[table["klass"] == 0, "support"] == 4).all()
    assert set(table.loc[table["klass"] == 2, "class_name"]) == {"c"}
    # accuracy = the checkpoint's own predictions on the same images, computed here
    test_rows = pd.read_parquet(root / "data/interim/xai/evalsets/finetune.parquet")
    x = images_2d(root / "data/interim/finetune", test_rows, SIZE)
    y = test_rows["label"].map({c: i for i, c in enumerate(CLASSES)}).to_numpy()
    for r in index.itertuples():
        model, _ = load_classifier(root / r.path)
        with torch.no_grad():
            acc = float((model(x).argmax(1).numpy() == y).mean())
        got = glob[(glob["model"] == r.run) & (glob["epoch"] == r.epoch)]["accuracy"]
        assert np.allclose(got, acc), (r.run, r.epoch)

    # heatmaps: float16, one file per (checkpoint, method), named with the checkpoint id
    rec = load_heatmaps(root / "data/interim/xai/heatmaps/full/full_epoch-0002__gradcam.npz")
    assert rec.maps.dtype == np.float16 and rec.maps.shape == (12, SIZE, SIZE)
    assert rec.checkpoint_id == "full/epoch-0002" and rec.epoch == 2
    assert list(rec.record_ids) == list(test_rows["record_id"])

    # reports
    metrics = json.loads((root / "reports/metrics/xai.json").read_text())
    assert set(metrics["dissociations"]) == {
        "gold_list_collapse", "early_warning", "masked_class_collapse"
    }  # fmt: skip
    final = metrics["headline"]["finetune"]["final"]
    assert final["full"]["epoch"] == 2 and set(final["full"]) == {"epoch", "gradcam", "eigencam"}
    assert metrics["quarantined_checkpoints"] == 0
    assert len(list((root / "reports/xai/plots").glob("*.png"))) == 2 * 2
    rand = pd.read_csv(root / "reports/xai/randomisation.csv")
    assert len(rand) == 2 * 2 and set(rand["epoch"]) == {1, 2}  # final checkpoints only
    defined = rand["n_undefined"] < rand["n"]  # constant maps have no rank correlation
    assert rand.loc[defined, "median_spearman"].between(-1, 1).all()
    assert rand.loc[~defined, "median_spearman"].isna().all() and not rand["flag"].any()
    sens = pd.read_csv(root / "reports/xai/sensitivity.csv")
    assert set(sens["sweep"]) == {"tau", "gamma"} and set(sens["model"]) == {"full", "head"}
    assert (root / "reports/xai/dissociations.md").read_text().startswith("# AUC")

    # unchanged re-run: nothing recomputed
    before = heatmap_mtimes(root)
    assert len(before) == 3 * 2
    again = run_stage(root)
    assert heatmap_mtimes(root) == before
    assert again["headline"] == out["headline"]

    # one more method: each checkpoint's task runs again (its CAMs share one pass) and
    # rewrites the old methods' files with the same bytes, so the randomisation of the old
    # methods (keyed on the files' sha256) stays cached
    sha_before = heatmap_sha256(root)
    write_params(root, xai_section(**{**base, "methods": ["gradcam", "eigencam", "layercam"]}))
    third = run_stage(root)
    after = heatmap_mtimes(root)
    assert {k: v for k, v in heatmap_sha256(root).items() if k in before} == sha_before
    assert third["randomisation"]["checked"] == 3 * 2
    new = sorted(set(after) - set(before))
    assert len(new) == 3 and all(k.endswith("__layercam.npz") for k in new)
    assert third["trajectory_rows"] == 3 * 3 * 4


# ------------------------------------------------------------------------------ 3D path


def tiny_densenet(n_classes: int, in_channels: int = 1) -> torch.nn.Module:
    """A MONAI 3D DenseNet with four one-layer dense blocks (the CAM registry's layers)."""
    from monai.networks.nets import DenseNet

    return DenseNet(
        spatial_dims=3, in_channels=in_channels, out_channels=n_classes, init_features=4,
        growth_rate=4, block_config=(1, 1, 1, 1), bn_size=2,
    )  # fmt: skip


def load_tiny_densenet(path: str):
    """Loader of the 3D test family: ``(model, meta)`` from a ``torch.save`` dict; a
    mask-using model (``needs_mask``) takes the mask as a second input channel."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    m = ckpt["meta"]
    model = tiny_densenet(len(m["class_names"]), 2 if m.get("needs_mask") else 1)
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), ckpt["meta"]


def test_stage_3d_heatmaps_have_the_input_shape_and_bad_checkpoint_is_quarantined(tmp_path):
    root = tmp_path / "study"
    (root / "data/processed").mkdir(parents=True)
    rng = np.random.default_rng(1)
    rows = []
    for i, label in enumerate(["glioma", "pcnsl"] * 2):
        vol = rng.normal(size=(20, 18, 16)).astype(np.float32)
        les = np.zeros_like(vol, dtype=np.uint8)
        les[4 + 4 * i : 10 + 4 * i, 6:12, 5:11] = 1
        vol += 3 * les
        for name, arr in ((f"v{i}.nii.gz", vol), (f"m{i}.nii.gz", les)):
            nib.save(nib.Nifti1Image(arr, np.eye(4)), root / "data/processed" / name)
        rows.append(
            {"record_id": f"r{i}", "subject": f"s{i}", "ndim": 3, "sequence": "T1C+",
             "split": "test", "label": label, "std_status": "ok",
             "std_path": f"data/processed/v{i}.nii.gz",
             "std_lesion_path": f"data/processed/m{i}.nii.gz"}
        )  # fmt: skip
    rows.append({**rows[0], "record_id": "bad", "std_status": "failed", "std_path": ""})
    pd.DataFrame(rows).to_parquet(root / "data/processed/manifest_std.parquet")
    torch.manual_seed(0)
    d = root / "models/classify3d"
    d.mkdir(parents=True)
    m = {"class_names": ["glioma", "pcnsl"], "input_size": [64, 64, 64]}
    torch.save({"state_dict": tiny_densenet(2).state_dict(), "meta": m}, d / "e1.pt")
    (d / "e2.pt").write_bytes(b"not a checkpoint")
    # mask-input models: the true lesion (available) and a pseudo-label mask (not here)
    for name, source in (("mask", "std_lesion_path"), ("pseudo", "union_path")):
        mm = m | {"needs_mask": True, "mask_source": source}
        torch.save({"state_dict": tiny_densenet(2, 2).state_dict(), "meta": mm}, d / f"{name}.pt")
    ckpts = [
        ("dn", 1, "e1.pt"),
        ("dn", 2, "e2.pt"),
        ("dn-mask", 1, "mask.pt"),
        ("dn-pseudo", 1, "pseudo.pt"),
    ]
    pd.DataFrame(
        [{"run": run, "init": run, "protocol": "cv", "fraction": 1.0, "seed": 0, "fold": 0,
          "epoch": e, "path": f"models/classify3d/{f}", "loader": LOADER_3D, "kind": "3d",
          "selected": True, "val_macro_f1": 0.5} for run, e, f in ckpts]
    ).to_parquet(d / "index.parquet")  # fmt: skip
    write_params(root, xai_section(methods=["gradcam", "ms-gradcam++"], max_images=0))
    out = run_stage(root)

    fam = out["families"]["classify3d"]
    assert fam["eval_candidates"] == 5 and fam["eval"] == {
        "images": 4, "not standardized: failed": 1
    }  # fmt: skip
    assert fam["masks"] == {"mask used": 4}
    for run in ("dn", "dn-mask"):
        for method in ("gradcam", "ms-gradcampp"):
            f = root / f"data/interim/xai/heatmaps/{run}/{run}_epoch-0001__{method}.npz"
            rec = load_heatmaps(f)
            assert rec.maps.shape == (4, 64, 64, 64) and rec.maps.dtype == np.float16
            assert float(rec.maps.max()) <= 1.0
    # quarantined with a reason, the rest goes on: the corrupt epoch-2 checkpoint and the
    # model whose input mask (pseudo-labels) does not exist
    q = pd.read_csv(root / "reports/xai/quarantine.csv").sort_values("run")
    assert list(zip(q["run"], q["epoch"], strict=True)) == [("dn", 2), ("dn-pseudo", 1)]
    assert q["reason"].iloc[0].startswith("checkpoint unreadable")
    assert "needs its input mask 'union_path'" in q["reason"].iloc[1]
    table = pd.read_parquet(root / "reports/xai/trajectory.parquet")
    assert len(table) == 2 * 2 * 3 and (table["epoch"] == 1).all()
    assert (table.loc[table["klass"] == GLOBAL, "n_masks"] == 4).all()
    rand = pd.read_csv(root / "reports/xai/randomisation.csv")
    assert set(rand["method"]) == {"gradcam", "ms-gradcam++"}
