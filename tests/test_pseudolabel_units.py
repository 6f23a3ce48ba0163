"""Pseudo-labelling units against values known by construction: box parsing (Qwen 0-1000
grid, pixels, several boxes, malformed), pixel <-> voxel geometry, 2D -> 3D stacking
(a known box stack is a known cuboid), smoothing/dilation, Dice/HD95/box IoU, the cache."""

from __future__ import annotations

import numpy as np
import pytest

from brainxai.pseudolabel import (
    Box,
    MalformedAnswer,
    PseudolabelConfig,
    ResponseCache,
    SliceGeometry,
    VoxelBox,
    cache_key,
    parse_boxes,
)
from brainxai.pseudolabel.metrics import box_iou_per_slice, dice, hd95, truth_box_stack
from brainxai.pseudolabel.proposers.base import SliceAnswer
from brainxai.pseudolabel.stack import ball, box_stack, smooth_dilate

# --- parsing -------------------------------------------------------------------------


def test_qwen_grid_json_in_fence_scales_to_pixels() -> None:
    text = 'Sure.\n```json\n[{"bbox_2d": [100, 250, 500, 750], "label": "tumor"}]\n```'
    (b,) = parse_boxes(text, width=400, height=200, coords="qwen1000")
    assert (b.x0, b.y0, b.x1, b.y1) == (40.0, 50.0, 200.0, 150.0)
    assert b.label == "tumor"


def test_pixel_boxes_several_and_reordered_corners() -> None:
    text = '{"boxes": [{"bbox": [30, 40, 10, 20]}, [50, 60, 70, 80]]}'
    boxes = parse_boxes(text, width=100, height=100, coords="pixel")
    assert [(b.x0, b.y0, b.x1, b.y1) for b in boxes] == [(10, 20, 30, 40), (50, 60, 70, 80)]


def test_unit_coordinates_clipped_and_xy_dict() -> None:
    (b,) = parse_boxes('[{"x1": 0.5, "y1": -0.1, "x2": 1.2, "y2": 0.5}]', 200, 100, "unit")
    assert (b.x0, b.y0, b.x1, b.y1) == (100.0, 0.0, 200.0, 50.0)


def test_qwen_grounding_tokens() -> None:
    text = (
        "tumour<|box_start|>(100,200),(300,400)<|box_end|> and "
        "<|box_start|>(0,0),(10,10)<|box_end|>"
    )
    boxes = parse_boxes(text, width=1000, height=500, coords="pixel")  # tokens are always 0-1000
    assert [(b.x0, b.y0, b.x1, b.y1) for b in boxes] == [(100, 100, 300, 200), (0, 0, 10, 5)]


@pytest.mark.parametrize(
    "text", ["[]", '{"boxes": []}', '{"tumor": false}', "None.", "```json\n[]\n```"]
)
def test_no_tumour_answers(text: str) -> None:
    assert parse_boxes(text, 100, 100, "qwen1000") == []


@pytest.mark.parametrize(
    "text",
    [
        "I think there is a tumour on the left.",
        '[{"bbox_2d": [1, 2, 3]}]',
        '{"label": "tumor"}',
        '[{"bbox_2d": [10, 10, 10, 50]}]',
        '[{"bbox_2d": [10, 20, 30',
    ],
)
def test_malformed_answers_raise(text: str) -> None:
    with pytest.raises(MalformedAnswer):
        parse_boxes(text, 100, 100, "pixel")


# --- geometry --------------------------------------------------------------------------


def test_geometry_radiological_maps_pixels_to_voxels() -> None:
    # 50 x 40 voxels rendered at scale 4 (200 x 160 px); radiological: column c <-> i = 49 - c
    g = SliceGeometry.fit(k=7, nx=50, ny=40, size=200, radiological=True)
    assert (g.width, g.height) == (200, 160)
    vb = g.to_voxels(Box(0.0, 0.0, 8.0, 4.0))  # top-left 2 x 1 voxels
    assert vb == VoxelBox(7, 48, 50, 39, 40)  # patient's right-most i, anterior-most j
    assert g.to_voxels(g.to_pixels(VoxelBox(7, 10, 20, 5, 9))) == VoxelBox(7, 10, 20, 5, 9)
    # neurological: column c <-> i = c; a box inside one voxel still covers it
    n = SliceGeometry.fit(k=0, nx=50, ny=40, size=200, radiological=False)
    assert n.to_voxels(Box(41.0, 157.0, 42.0, 158.0)) == VoxelBox(0, 10, 11, 0, 1)


# --- stacking, smoothing, dilation -------------------------------------------------------


def test_known_box_stack_gives_known_cuboid() -> None:
    shape = (20, 20, 12)
    answers = [SliceAnswer(k, "FLAIR", [VoxelBox(k, 4, 9, 6, 10)], "ok") for k in range(3, 8)]
    answers.append(SliceAnswer(9, "FLAIR", [], "no_box"))
    stack = box_stack(answers, shape)
    expected = np.zeros(shape, dtype=bool)
    expected[4:9, 6:10, 3:8] = True
    np.testing.assert_array_equal(stack > 0, expected)
    assert stack.sum() == 5 * 4 * 5
    # no smoothing, no dilation: the prior is the cuboid itself
    np.testing.assert_array_equal(smooth_dilate(stack, (2.0, 2.0, 2.0), 0.0, 0.0), stack)


def test_sequences_combine_by_max_or_votes() -> None:
    a = SliceAnswer(0, "FLAIR", [VoxelBox(0, 0, 2, 0, 2)], "ok")
    b = SliceAnswer(0, "T1C+", [VoxelBox(0, 1, 3, 0, 2)], "ok")
    union = box_stack([a, b], (4, 4, 1), "max")
    votes = box_stack([a, b], (4, 4, 1), "mean")
    assert union[:, :, 0].sum() == 6 and votes[1, 0, 0] == 1.0 and votes[0, 0, 0] == 0.5


def test_dilation_grows_by_the_radius_and_smoothing_keeps_the_core() -> None:
    stack = np.zeros((21, 21, 21), dtype=np.float32)
    stack[10, 10, 10] = 1.0
    dil = smooth_dilate(stack, (1.0, 1.0, 1.0), sigma_mm=0.0, dilate_mm=3.0)
    assert dil.sum() == ball((3.0, 3.0, 3.0)).sum() == 123  # voxels within 3 of the centre
    assert dil[13, 10, 10] == 1.0 and dil[14, 10, 10] == 0.0 and dil[12, 12, 10] == 1.0
    assert dil[13, 11, 10] == 0.0  # sqrt(10) > 3
    cube = np.zeros((30, 30, 30), dtype=np.float32)
    cube[5:25, 5:25, 5:25] = 1.0
    sm = smooth_dilate(cube, (1.0, 1.0, 1.0), sigma_mm=1.5, dilate_mm=0.0)
    assert sm[15, 15, 15] == pytest.approx(1.0, abs=1e-4)  # deep inside: unchanged
    assert sm[5, 15, 15] == pytest.approx(0.6306, abs=0.01)  # half a voxel in: Phi(0.5 / 1.5)
    # anisotropic spacing: 3 mm on a 1.5 mm x 3 mm grid is 2 voxels in x, 1 in z
    aniso = smooth_dilate(stack, (1.5, 1.5, 3.0), sigma_mm=0.0, dilate_mm=3.0)
    assert aniso[12, 10, 10] == 1.0 and aniso[13, 10, 10] == 0 and aniso[10, 10, 11] == 1.0
    assert aniso[10, 10, 12] == 0.0


# --- metrics ---------------------------------------------------------------------------


def test_dice_and_hd95_by_hand() -> None:
    a = np.zeros((10, 10, 10), bool)
    b = np.zeros((10, 10, 10), bool)
    a[2:6, 2:6, 2:6] = True  # 64 voxels
    b[2:6, 2:6, 4:8] = True  # overlaps in 32
    assert dice(a, b) == pytest.approx(2 * 32 / 128)
    assert dice(a, np.zeros_like(a)) == 0.0 and dice(a & False, b & False) == 1.0
    # a cube shifted by 2 voxels of 1.5 mm: surfaces lie at most 3 mm apart
    assert hd95(a, b, (1.0, 1.0, 1.5), 99.0) == pytest.approx(3.0)
    assert hd95(a, a, (1.0, 1.0, 1.0), 99.0) == 0.0
    assert hd95(a, np.zeros_like(a), (1.0, 1.0, 1.0), 99.0) == 99.0


def test_box_iou_per_slice() -> None:
    truth = np.zeros((10, 10, 3), bool)
    truth[2:6, 2:6, 1] = True  # a 4 x 4 box on slice 1
    truth[3, 3, 2] = True  # one voxel on slice 2
    stack = np.zeros((10, 10, 3), np.float32)
    stack[2:6, 4:8, 1] = 1.0  # half overlap: IoU 8 / 24
    stack[0, 0, 0] = 1.0  # spurious slice
    assert truth_box_stack(truth).sum() == 17
    assert box_iou_per_slice(stack, truth) == {0: 0.0, 1: pytest.approx(8 / 24), 2: 0.0}


# --- config and cache ------------------------------------------------------------------


def test_config_rejects_unknown_keys_and_bad_values() -> None:
    cfg = PseudolabelConfig.from_dict({"proposer": "openai", "prior": {"tau": 0.7}})
    assert cfg.prior.tau == 0.7 and cfg.openai.max_concurrency == 4
    with pytest.raises(ValueError, match="unknown"):
        PseudolabelConfig.from_dict({"prior": {"sigma": 1.0}})
    with pytest.raises(ValueError, match="proposer"):
        PseudolabelConfig.from_dict({"proposer": "gpt"})


def test_response_cache_roundtrip_and_key(tmp_path) -> None:
    cache = ResponseCache(tmp_path / "c")
    k1 = cache_key("img", "prompt", "model", {"t": 0})
    assert k1 != cache_key("img", "prompt2", "model", {"t": 0})
    assert k1 != cache_key("img", "prompt", "model", {"t": 1})
    assert cache.get(k1) is None and cache.misses == 1
    cache.put(k1, '[{"bbox_2d": [1, 2, 3, 4]}]')
    assert ResponseCache(tmp_path / "c").get(k1) == '[{"bbox_2d": [1, 2, 3, 4]}]'
    assert len(cache) == 1 and not list((tmp_path / "c").rglob("*.tmp"))
