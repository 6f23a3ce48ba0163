"""Image and mask stay aligned through every augmentation; folds are patient-disjoint and
stratified; a tiny run learns a planted signal on CPU."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from brainxai.classify3d.config import (
    AugmentConfig,
    DataConfig,
    ModelConfig,
    TrainConfig,
    VariantConfig,
)
from brainxai.classify3d.folds import assign_folds, check_patient_disjoint, inner_split
from brainxai.classify3d.train import train_fold
from brainxai.classify3d.transforms import IMAGE, MASK, augment_transforms, load_transforms

ALWAYS = AugmentConfig(rot90_prob=1.0, flip_prob=1.0, noise_prob=0.0, gamma_prob=0.0)


def _write(path, arr):
    nib.save(nib.Nifti1Image(arr.astype(np.float32), np.diag([2.0, 2.0, 2.0, 1.0])), path)
    return str(path)


def test_image_and_mask_stay_aligned_through_every_augmentation(tmp_path):
    rng = np.random.default_rng(0)
    mask = np.zeros((20, 20, 12), np.float32)
    mask[2:7, 11:18, 3:5] = 1.0  # an asymmetric box: any misalignment shows
    img = np.where(mask > 0, 10.0, rng.uniform(0, 1, mask.shape)).astype(np.float32)
    d = {IMAGE: _write(tmp_path / "i.nii.gz", img), MASK: _write(tmp_path / "m.nii.gz", mask)}
    size = (20, 20, 12)  # the file's own grid: the resize is the identity
    base = load_transforms(size, with_mask=True)(d)
    assert torch.equal(base[MASK] > 0.5, base[IMAGE] > 5.0)
    full = AugmentConfig(rot90_prob=1.0, flip_prob=1.0, noise_prob=1.0, gamma_prob=1.0)
    seen = set()
    for cfg in (ALWAYS, full):
        aug = augment_transforms(cfg, with_mask=True, input_size=size)
        for seed in range(8):
            aug.set_random_state(seed=seed)
            out = aug(dict(base))
            assert out[MASK].shape == out[IMAGE].shape == (1, *size)
            assert torch.equal(out[MASK] > 0.5, out[IMAGE] > 5.0), (cfg, seed)
            seen.add(tuple(np.argwhere(out[MASK][0].numpy() > 0.5).min(0)))
    assert len(seen) > 1, "the spatial augmentations never moved the lesion"


def test_folds_are_patient_disjoint_and_stratified():
    counts = {"glioma": 10, "pcnsl": 7, "germinoma": 5, "other": 6}
    labels = [c for c, n in counts.items() for _ in range(n)]
    patients = pd.DataFrame(
        {"subject": [f"sub-{i:03d}" for i in range(len(labels))], "label": labels}
    ).sample(frac=1.0, random_state=1)
    fold = assign_folds(patients, n_folds=5, seed=7)
    patients = patients.assign(fold=fold)
    check_patient_disjoint(patients)
    assert sorted(fold.unique()) == [0, 1, 2, 3, 4]
    per = patients.groupby(["fold", "label"]).size().unstack(fill_value=0)
    for label, n in counts.items():  # each class spread n // 5 or n // 5 + 1 per fold
        assert set(per[label]) <= {n // 5, n // 5 + 1}, (label, per[label].tolist())
    assert fold.equals(assign_folds(patients.drop(columns="fold"), n_folds=5, seed=7))
    dup = pd.concat([patients, patients.iloc[:1].assign(fold=(patients.iloc[0]["fold"] + 1) % 5)])
    with pytest.raises(ValueError, match="several folds"):
        check_patient_disjoint(dup)
    tr, va = inner_split(np.array([0, 0, 0, 1, 1, 1, 2, 2, 2]), 0.2, seed=0)
    assert len(va) == 3 and sorted(np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])[va]) == [0, 1, 2]
    assert not set(tr) & set(va)


def _planted(tmp_path, n_per_class: int, size: int, seed: int) -> list[dict]:
    """Class 1 has a bright blob at a random place; class 0 does not. Noise elsewhere."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(2 * n_per_class):
        y = i % 2
        img = rng.normal(0, 1, (size,) * 3).astype(np.float32)
        mask = np.zeros_like(img)
        c = rng.integers(3, size - 6, 3)
        mask[c[0] : c[0] + 4, c[1] : c[1] + 4, c[2] : c[2] + 4] = 1.0
        if y:
            img += 3.0 * mask
        out.append(
            {
                IMAGE: _write(tmp_path / f"i{i}.nii.gz", img),
                MASK: _write(tmp_path / f"m{i}.nii.gz", mask),
                "label": y,
                "subject": f"s{i}",
                "record_id": f"r{i}",
            }
        )
    return out


def _kwargs(root, epochs: int) -> dict:
    return dict(
        backbone_spec={"kind": "densenet", "init_features": 8, "growth_rate": 4,
                       "block_config": [1, 1]},
        variant=VariantConfig(mask="union_path", mask_input=False, attention=True),
        model_cfg=ModelConfig(dropout=0.0, reduction=2),
        train_cfg=TrainConfig(epochs=epochs, batch_size=4, accumulate=1, lr=1e-2, t0=epochs,
                              patience=0, checkpoint_epochs=(1, 3), seed=5),
        data_cfg=DataConfig(input_size=(16, 16, 16)),
        augment_cfg=AugmentConfig(rot90_prob=0.5, flip_prob=0.5),
        class_names=["no", "yes"],
        root=root,
        meta={"backbone_spec": {}, "variant": {}, "model_cfg": {}, "class_names": ["no", "yes"],
              "input_size": [16, 16, 16]},
    )  # fmt: skip


def test_tiny_run_learns_a_planted_signal(tmp_path):
    data = _planted(tmp_path, n_per_class=14, size=16, seed=0)
    train, val, test = data[:16], data[16:20], data[20:]
    torch.set_num_threads(2)
    res = train_fold(train, val, {"cv": test}, out_dir=tmp_path / "a", **_kwargs(tmp_path, 8))
    correct = [int(np.argmax(p["probs"]) == p["y"]) for p in res.predictions["cv"]]
    assert sum(correct) >= 7, res.history  # 8 unseen volumes: chance is 4
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    (best,) = [c for c in res.checkpoints if c["selected"]]
    assert best["epoch"] == res.best_epoch
    epochs = sorted(c["epoch"] for c in res.checkpoints)
    assert epochs == sorted({1, 3, res.best_epoch})  # the listed epochs + the selected one


def test_same_params_and_data_give_the_same_numbers_on_cpu(tmp_path):
    data = _planted(tmp_path, n_per_class=5, size=16, seed=1)
    kw = _kwargs(tmp_path, 2)
    a = train_fold(data[:6], data[6:8], {"cv": data[8:]}, out_dir=tmp_path / "a", **kw)
    b = train_fold(data[:6], data[6:8], {"cv": data[8:]}, out_dir=tmp_path / "b", **kw)

    def numbers(r):  # everything but the wall-clock throughput
        return [{k: v for k, v in h.items() if k != "volumes_per_s"} for h in r.history]

    assert numbers(a) == numbers(b)
    assert a.predictions == b.predictions


def test_disk_cache_gives_the_same_volumes_as_the_memory_cache(tmp_path):
    from monai.data import CacheDataset, PersistentDataset

    from brainxai.classify3d.data import make_dataset

    data = _planted(tmp_path, n_per_class=1, size=12, seed=2)
    tf = load_transforms((8, 8, 8), with_mask=True)
    mem = make_dataset(data, tf, DataConfig(cache="memory"), tmp_path)
    disk = make_dataset(data, tf, DataConfig(cache="disk", cache_dir="c"), tmp_path)
    assert isinstance(mem, CacheDataset) and isinstance(disk, PersistentDataset)
    for a, b in zip(mem, disk, strict=True):
        assert a[IMAGE].shape == (1, 8, 8, 8)
        assert torch.equal(torch.as_tensor(a[IMAGE]), torch.as_tensor(b[IMAGE]))
        assert torch.equal(torch.as_tensor(a[MASK]), torch.as_tensor(b[MASK]))
    assert any((tmp_path / "c").iterdir())  # decoded once, on disk
