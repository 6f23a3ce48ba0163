"""Who made the masks, and how a VLM's boxes are read (issue 17.3): the classical proposer is
never called a VLM, a VLM label needs a readable VLM answer, box coordinates follow the
model family (Qwen2.5-VL pixels, Qwen3-VL 0-1000 grid) unless set explicitly, and paper
003's prompt set shows T1-CE slices with the paper's cues."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from brainxai.pseudolabel import PseudolabelConfig, make_proposer, parse_boxes
from brainxai.pseudolabel.config import coords_for_model, local_model_name
from brainxai.pseudolabel.prompts import load_template, render_prompt
from brainxai.pseudolabel.provenance import is_vlm, proposer_label, vlm_answers


def _table(proposer: str, model: str, answers: list[int], malformed: list[int]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "subject": [f"s{i}" for i in range(len(answers))],
            "proposer": proposer,
            "proposer_model": model,
            "status": "ok",
            "n_answers": answers,
            "n_malformed": malformed,
        }
    )


def test_the_classical_proposer_is_never_a_vlm():
    label = proposer_label(_table("classical", "", [40, 40], [0, 0]))
    assert label == "classical proposer" and not is_vlm(label)
    assert proposer_label(None) == "no pseudo-labels"


def test_a_vlm_label_needs_a_readable_answer():
    answered = _table("openai", "Qwen/Qwen3-VL-8B-Instruct", [40, 40], [40, 37])
    assert vlm_answers(answered) == 3  # (40 - 40) + (40 - 37)
    assert proposer_label(answered) == "VLM (Qwen/Qwen3-VL-8B-Instruct)"
    assert is_vlm(proposer_label(answered))
    silent = _table("transformers", "qwen3_vl", [40, 40], [40, 40])
    assert vlm_answers(silent) == 0
    label = proposer_label(silent)
    assert label == "VLM (qwen3_vl) gave no readable answer" and not is_vlm(label)


@pytest.mark.parametrize(
    ("model", "coords"),
    [
        ("Qwen/Qwen2.5-VL-7B-Instruct", "pixel"),
        ("qwen2_5_vl", "pixel"),  # a local model's config.json model_type
        ("Qwen/Qwen3-VL-8B-Instruct", "qwen1000"),
        ("qwen3_vl_moe", "qwen1000"),
        ("Qwen/Qwen2-VL-7B-Instruct", "qwen1000"),
    ],
)
def test_auto_coords_follow_the_model_family(model: str, coords: str):
    assert coords_for_model("auto", model) == coords


def test_explicit_coords_override_and_unknown_families_must_say():
    assert coords_for_model("unit", "Qwen/Qwen2.5-VL-7B-Instruct") == "unit"
    with pytest.raises(ValueError, match="no known family"):
        coords_for_model("auto", "my-served-model")


def test_one_answer_read_as_each_family_reads_it():
    # Qwen2.5-VL means pixels of the 400 x 200 image; Qwen3-VL means the 0-1000 grid
    answer = '[{"bbox_2d": [100, 50, 200, 150], "label": "tumor"}]'
    (px,) = parse_boxes(answer, 400, 200, coords_for_model("auto", "Qwen2.5-VL-3B"))
    (grid,) = parse_boxes(answer, 400, 200, coords_for_model("auto", "Qwen3-VL-2B"))
    assert (px.x0, px.y0, px.x1, px.y1) == (100, 50, 200, 150)
    assert (grid.x0, grid.y0, grid.x1, grid.y1) == pytest.approx((40, 10, 80, 30))


def _cfg(proposer: str, **extra: object) -> PseudolabelConfig:
    return PseudolabelConfig.from_dict({"proposer": proposer, **extra})


def test_the_proposer_resolves_coords_from_its_model(tmp_path: Path):
    served = make_proposer(_cfg("openai", openai={"model": "Qwen/Qwen2.5-VL-7B-Instruct"}))
    assert served.coords == "pixel"  # type: ignore[attr-defined]
    local = tmp_path / "some-dir-name"
    local.mkdir()
    (local / "config.json").write_text(json.dumps({"model_type": "qwen3_vl"}))
    assert local_model_name(str(local)) == "qwen3_vl"
    cfg = _cfg("transformers", transformers={"model_path": str(local)})
    assert cfg.proposer_model == "qwen3_vl"
    assert make_proposer(cfg).coords == "qwen1000"  # type: ignore[attr-defined]
    fixed = _cfg("openai", openai={"model": "x"}, prompts={"coords": "pixel"})
    assert make_proposer(fixed).coords == "pixel"  # type: ignore[attr-defined]


def test_paper003_prompt_set_shows_t1ce_slices_with_the_papers_cues():
    cfg = _cfg("openai", prompts={"set": "paper003"})
    prop = make_proposer(cfg)
    assert cfg.asked_sequences == ("T1C+",) and prop.sequences == ("T1C+",)  # type: ignore[attr-defined]
    assert cfg.prompts.template == "paper003.txt"
    text = render_prompt(load_template(cfg.prompts.template), "T1C+", 448, 373, "qwen1000", True)
    for cue in ("abnormal signal intensities", "irregular boundaries",
                "edema-associated gradients", "midline asymmetry", "T1-CE"):  # fmt: skip
        assert cue in text
    assert "448 x 373 pixels" in text and "0-1000 grid" in text
    expert = make_proposer(_cfg("openai"))
    assert expert.sequences == ("FLAIR", "T1C+")  # type: ignore[attr-defined]
    assert expert.prompts.template == "expert.txt"  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="T1C\\+ slices only"):
        _cfg("openai", prompts={"set": "paper003"}, slices={"sequences": ["FLAIR", "T1C+"]})
