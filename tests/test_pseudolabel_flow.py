"""The pseudolabel stage through its Prefect flow on a tiny study of phantoms (slow).

Two sessions standardized "by hand" (phantoms on one grid, no native transforms) and one
quarantined by standardization: the contract table has one row per 3D session, the
counts add up, the quarantined session is a row with a reason and no masks, and a
re-run is served from the task cache (same table).
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import yaml

import tasks  # noqa: F401  (embedded defaults before prefect)
from tests.conftest import REPO
from tests.test_pseudolabel_refine import phantom, save_phantom


def _manifest(root: Path) -> pd.DataFrame:
    rows = []
    for n, (subject, ok) in enumerate((("sub-01", True), ("sub-02", True), ("sub-03", False))):
        files = save_phantom(*phantom(seed=n), root / "data/interim/standardized" / subject)
        for seq in ("T1", "T1C+", "T2", "FLAIR"):
            rel = {k: Path(v).relative_to(root).as_posix() for k, v in files.items()}
            rows.append(
                {
                    "record_id": f"{subject}-{seq}", "subject": f"synth3d/{subject}",
                    "session": "", "sequence": seq, "ndim": 3, "label": "glioma",
                    "group": "glioma", "split": ["train", "val", "test"][n], "fold": -1,
                    "dup_group": "", "std_status": "ok" if ok else "quarantined",
                    "std_reason": "" if ok else "registration_failed",
                    "std_path": rel[seq] if ok else "", "std_mask_path": rel["brain"] if ok else "",
                    "std_lesion_path": rel["lesion"] if ok else "", "native_mask_path": "",
                    "xfm_inv": "",
                }
            )  # fmt: skip
    return pd.DataFrame(rows)


@pytest.mark.slow
def test_flow_contract_counts_and_cache(tmp_path: Path, monkeypatch) -> None:
    from brainxai.pseudolabel.stage import COLUMNS
    from flows.pseudolabel import pseudolabel_flow

    root = tmp_path / "study"
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["pseudolabel"]["runner"] = {"kind": "thread", "workers": 2}
    params["pseudolabel"]["config"]["refine"].update(n_positive=1500, n_negative=4500, epochs=10)
    root.mkdir()
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    (root / "data/processed").mkdir(parents=True)
    _manifest(root).to_parquet(root / "data/processed/manifest_std.parquet")
    monkeypatch.setenv("BRAINXAI_ROOT", str(root))
    summary = pseudolabel_flow(profile="smoke", root=str(root))
    table = pd.read_parquet(root / "data/processed/pseudolabels.parquet")
    assert list(table.columns) == list(COLUMNS) and len(table) == 3
    assert summary["labelled"] == 2 and summary["not_standardized"] == 1
    bad = table.set_index("subject").loc["synth3d/sub-03"]
    assert bad["status"] == "not_standardized" and "registration_failed" in bad["flag"]
    assert bad["union_path"] == "" and bool(bad["empty"])
    ok = table[table["status"] == "ok"]
    assert (ok["dice_refined"] > ok["dice_coarse"]).all()
    for p in ok["union_path"]:
        assert (root / p).is_file() and p.startswith("data/interim/pseudolabel/")
    assert (root / "reports/metrics/pseudolabel.json").is_file()
    mtime = os.path.getmtime(root / ok["union_path"].iloc[0])
    pseudolabel_flow(profile="smoke", root=str(root))  # cached: nothing recomputed
    assert os.path.getmtime(root / ok["union_path"].iloc[0]) == mtime
    again = pd.read_parquet(root / "data/processed/pseudolabels.parquet")
    pd.testing.assert_frame_equal(table, again)
