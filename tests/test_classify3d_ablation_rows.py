"""Paper 003 Table 2's ablation rows ①–⑤ as params.yaml configures them (issue 17.2): the
row set and each row's design equal the paper's, the mask never enters a paper row as an
input channel (conv0 has one input channel), mask-as-input rows are named extensions, the
rows without MCA see the image with the background removed, and the tables say which
paper row each run is and who made its masks."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from brainxai.classify3d.config import Classify3DConfig, ModelConfig, VariantConfig
from brainxai.classify3d.model import build_model
from brainxai.classify3d.results import label_table, markdown_ablation, row_labels
from brainxai.config import load_params
from tests.conftest import REPO

TINY_DENSE = {"kind": "densenet", "init_features": 8, "growth_rate": 4, "block_config": [1, 1]}
SIZE = (16, 16, 16)

#: Paper 003 Table 2, read off the paper: row -> (mask, roi, attention). VLM-C = the coarse
#: mask; Refine = the refined prior coarse ∪ MLP (Eq. 5) = union_path; MCA = attention.
#: Rows ② and ④ use the mask without MCA ("background removal"), ③ and ⑤ through MCA only.
PAPER_TABLE_2 = {
    1: (None, False, False),
    2: ("coarse_path", True, False),
    3: ("coarse_path", False, True),
    4: ("union_path", True, False),
    5: ("union_path", False, True),
}


def _cfg(profile: str) -> Classify3DConfig:
    return Classify3DConfig.from_dict(
        load_params(REPO / "params.yaml", profile=profile)["classify3d"]
    )


def _conv0_channels(v: VariantConfig) -> int:
    model = build_model(TINY_DENSE, v, ModelConfig(), 4, SIZE, seed=0)
    return int(model.backbone.net.features.conv0.in_channels)


def test_the_paper_rows_are_exactly_table_2():
    cfg = _cfg("full")
    assert sorted(cfg.paper_rows) == [1, 2, 3, 4, 5]
    for row, name in cfg.paper_rows.items():
        v = cfg.variants[name]
        assert (v.mask, v.roi, v.attention) == PAPER_TABLE_2[row], name
        assert not v.mask_input, f"paper row {row} ({name}) feeds the mask as an input channel"
    assert cfg.paper_rows[1] == cfg.base_variant
    assert cfg.variants[cfg.comparison_variant].paper_row == 5  # the backbones compare on ⑤


def test_input_channels_of_every_row():
    cfg = _cfg("full")
    channels = {name: _conv0_channels(v) for name, v in cfg.variants.items()}
    for row, name in cfg.paper_rows.items():
        assert channels[name] == 1, f"paper row {row}: one input channel (the image)"
    extensions = {n for n, v in cfg.variants.items() if v.paper_row is None}
    assert extensions == {"coarse_maskinput", "full_maskinput", "oracle"}
    assert channels["coarse_maskinput"] == channels["full_maskinput"] == 2
    assert channels["oracle"] == 1
    # each mask-as-input row is a paper row plus the mask channel, nothing else
    assert cfg.variants["coarse_maskinput"].design == cfg.variants["coarse"].design
    assert cfg.variants["full_maskinput"].design == cfg.variants["full"].design


def test_smoke_runs_three_cheap_paper_rows():
    cfg = _cfg("smoke")
    assert cfg.rows == ["base", "coarse", "full"]
    assert [cfg.variants[r].paper_row for r in cfg.rows] == [1, 2, 5]


def test_background_removal_feeds_the_backbone_image_times_mask():
    roi = VariantConfig(mask="coarse_path", roi=True, paper_row=2)
    m_roi = build_model(TINY_DENSE, roi, ModelConfig(dropout=0.0), 4, SIZE, seed=3).eval()
    m_base = build_model(TINY_DENSE, VariantConfig(), ModelConfig(dropout=0.0), 4, SIZE, seed=3)
    m_base.eval()  # same seed, same architecture (one channel, plain head): same weights
    x = torch.randn(2, 1, *SIZE)
    half = torch.zeros(2, 1, *SIZE)
    half[:, :, :8] = 1.0
    with torch.no_grad():
        assert torch.equal(m_roi(x, torch.ones_like(x)), m_base(x))
        assert torch.equal(m_roi(x, half), m_base(x * half))
        assert torch.equal(m_roi(x, torch.zeros_like(x)), m_base(torch.zeros_like(x)))
        # the checkpoint contract: the mask as the 2nd channel of a (B, 2, ...) input
        assert torch.equal(m_roi(torch.cat([x, half], dim=1)), m_base(x * half))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"mask": "coarse_path", "attention": True, "mask_input": True, "paper_row": 3},
         "input channel"),
        ({"mask": "coarse_path", "attention": True, "paper_row": 2}, "VLM-C, Refine, MCA"),
        ({"mask": "refined_path", "attention": True, "paper_row": 5}, "VLM-C, Refine, MCA"),
        ({"mask": "union_path", "attention": True, "roi": True, "paper_row": 5}, "never both"),
        ({"mask": "coarse_path"}, "unused"),
        ({"mask": None, "roi": True}, "without a mask"),
        ({"paper_row": 6}, "paper_row"),
    ],
)  # fmt: skip
def test_a_row_that_is_not_the_papers_design_is_rejected(fields, message):
    with pytest.raises(ValueError, match=message):
        VariantConfig.from_dict(fields)


def test_two_variants_cannot_claim_one_paper_row():
    with pytest.raises(ValueError, match="same paper_row"):
        Classify3DConfig.from_dict(
            {
                "backbones": {"densenet": TINY_DENSE},
                "ablation_backbone": "densenet",
                "variants": {
                    "base": {"paper_row": 1},
                    "a": {"mask": "union_path", "attention": True, "paper_row": 5},
                    "b": {"mask": "union_path", "attention": True, "paper_row": 5},
                },
            }
        )


def test_tables_name_the_paper_row_and_the_proposer():
    cfg = _cfg("full")
    labels = row_labels(cfg.variants, "classical proposer")
    assert labels["coarse"] == {
        "paper_row": "②",
        "design": "coarse mask from the classical proposer: background removal (image × mask)",
        "in_channels": 1,
    }
    assert labels["full"]["design"] == (
        "refined mask (coarse ∪ voxel MLP) from the classical proposer: MCA on the whole brain"
    )
    assert labels["full_maskinput"]["paper_row"] == "extension"
    assert labels["full_maskinput"]["in_channels"] == 2
    assert labels["oracle"]["design"] == "true lesion mask: MCA on the whole brain"
    table = pd.DataFrame({"run": ["base/densenet", "refine/densenet"], "macro_f1": [0.5, 0.75]})
    md = markdown_ablation(label_table(table, labels))
    assert md.splitlines()[0] == "| paper_row | variant | design | run | macro_f1 |"
    assert "| ④ | refine | refined mask (coarse ∪ voxel MLP) from the classical proposer: " in md
    assert "VLM" not in md
