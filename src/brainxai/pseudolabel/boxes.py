"""Boxes: parsing a model's answer, and the geometry between image pixels and voxels.

A VLM answers in one of several dialects; :func:`parse_boxes` accepts them all:

- Qwen-VL JSON, ``[{"bbox_2d": [x1, y1, x2, y2], "label": "tumor"}]``, possibly in a
  fenced ```json block. The numbers depend on the model family, so the caller says which
  (``coords``; ``prompts.coords: auto`` picks it from the model's name, see
  :func:`brainxai.pseudolabel.config.coords_for_model`): Qwen2.5-VL answers in absolute
  pixels of the image it was given (``pixel``; its processor resizes each side to a
  multiple of 28 px first, so a side that is not one is off by up to 14 px of scale),
  Qwen3-VL on a relative 0-1000 grid (``qwen1000``), as did Qwen2-VL;
- a dict ``{"boxes": [...]}`` / ``{"bbox": [...]}`` / ``{"tumor": false}``, a bare list of
  four numbers, or of lists of four numbers;
- Qwen2-VL's grounding tokens ``<|box_start|>(x1,y1),(x2,y2)<|box_end|>`` (always on the
  0-1000 grid).

``[]``, ``{"boxes": []}``, ``{"tumor": false}`` or ``"none"`` mean "no tumour"; anything
else unparseable raises :class:`MalformedAnswer` (the proposer retries, then records it).

:class:`SliceGeometry` maps a box on the rendered image (pixels, ``x`` right, ``y`` down,
pixel ``c`` covering ``[c, c+1)``) to a voxel box ``[i0, i1) x [j0, j1)`` of the axial
slice (RAS+ grid: ``i`` to the right, ``j`` anterior), and back.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from brainxai.pseudolabel.config import CoordSystem

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)
_TOKEN_BOX = re.compile(
    r"<\|box_start\|>\s*\(\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*\)\s*,\s*"
    r"\(\s*(-?[\d.]+)\s*,\s*(-?[\d.]+)\s*\)\s*<\|box_end\|>"
)
_BOX_KEYS = ("bbox_2d", "bbox", "box", "box_2d", "coordinates")
_NO_TUMOUR = {"none", "no", "no tumor", "no tumour", "[]", "null", "no box", "no boxes"}
QWEN_GRID = 1000.0


class MalformedAnswer(ValueError):
    """The model's text holds no readable box list (kept with the raw text)."""


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in continuous image pixels: ``x0 <= x1``, ``y0 <= y1``."""

    x0: float
    y0: float
    x1: float
    y1: float
    label: str = "tumor"

    @property
    def area(self) -> float:
        return max(0.0, self.x1 - self.x0) * max(0.0, self.y1 - self.y0)


@dataclass(frozen=True)
class VoxelBox:
    """A box on axial slice ``k``: voxels ``i0 <= i < i1``, ``j0 <= j < j1``."""

    k: int
    i0: int
    i1: int
    j0: int
    j1: int

    def to_list(self) -> list[int]:
        return [self.k, self.i0, self.i1, self.j0, self.j1]


def _extract_json(text: str) -> Any:
    """The first JSON value in ``text`` (fenced block first, then the first ``[``/``{``)."""
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    for cand in candidates:
        for start, ch in enumerate(cand):
            if ch in "[{":
                try:
                    value, _ = decoder.raw_decode(cand[start:])
                except json.JSONDecodeError:
                    continue
                return value
    raise MalformedAnswer("no JSON value in the answer")


def _is_quad(v: Any) -> bool:
    return (
        isinstance(v, list | tuple)
        and len(v) == 4
        and all(isinstance(x, int | float) and not isinstance(x, bool) for x in v)
    )


def _quads(value: Any) -> list[tuple[list[float], str]]:
    """Every ``(x1, y1, x2, y2)`` in a decoded JSON value, with its label."""
    if _is_quad(value):
        return [([float(x) for x in value], "tumor")]
    if isinstance(value, list):
        return [q for item in value for q in _quads(item)]
    if isinstance(value, dict):
        for key in ("boxes", "objects", "detections", "tumors", "tumours", "results"):
            if key in value:
                return _quads(value[key])
        for key in _BOX_KEYS:
            if key in value:
                v = value[key]
                if _is_quad(v):
                    return [([float(x) for x in v], str(value.get("label", "tumor")))]
                if isinstance(v, dict) and {"x1", "y1", "x2", "y2"} <= set(v):
                    return [([float(v[k]) for k in ("x1", "y1", "x2", "y2")], "tumor")]
                raise MalformedAnswer(f"{key!r} is not four numbers: {v!r}")
        if {"x1", "y1", "x2", "y2"} <= set(value):
            return [([float(value[k]) for k in ("x1", "y1", "x2", "y2")], "tumor")]
        for key in ("tumor", "tumour", "present", "lesion"):
            if value.get(key) is False:
                return []
        raise MalformedAnswer(f"no box in object with keys {sorted(value)}")
    raise MalformedAnswer(f"unexpected JSON value {value!r:.80}")


def parse_boxes(text: str, width: int, height: int, coords: CoordSystem) -> list[Box]:
    """Boxes in image pixels from a model's answer (see the module docstring).

    ``coords`` says how the numbers are written (``qwen1000``: 0-1000 grid — Qwen3-VL,
    Qwen2-VL; ``pixel``: absolute pixels — Qwen2.5-VL; ``unit``: 0-1); boxes are ordered
    (x0 <= x1) and clipped to the image. A box of zero area after clipping, a non-finite
    number or any non-box content raises.
    """
    stripped = text.strip()
    if stripped.lower().strip(".!` ") in _NO_TUMOUR:
        return []
    tokens = _TOKEN_BOX.findall(text)
    if tokens:
        quads = [([float(x) for x in t], "tumor") for t in tokens]
        coords = "qwen1000"
    else:
        quads = _quads(_extract_json(text))
    sx, sy = {
        "qwen1000": (width / QWEN_GRID, height / QWEN_GRID),
        "pixel": (1.0, 1.0),
        "unit": (float(width), float(height)),
    }[coords]
    out = []
    for (x1, y1, x2, y2), label in quads:
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
            raise MalformedAnswer("non-finite box coordinate")
        xa, xb = sorted((x1 * sx, x2 * sx))
        ya, yb = sorted((y1 * sy, y2 * sy))
        box = Box(
            min(max(xa, 0.0), width),
            min(max(ya, 0.0), height),
            min(max(xb, 0.0), width),
            min(max(yb, 0.0), height),
            label,
        )
        if box.area <= 0:
            raise MalformedAnswer(f"empty box {[x1, y1, x2, y2]} on a {width}x{height} image")
        out.append(box)
    return out


@dataclass(frozen=True)
class SliceGeometry:
    """Rendering of axial slice ``k`` (``nx`` x ``ny`` voxels) as a ``width`` x ``height`` image.

    Image row ``r`` shows ``j = ny - 1 - r`` (anterior at the top); column ``c`` shows
    ``i = nx - 1 - c`` when ``radiological`` (patient's right on the image's left), else
    ``i = c``; both axes are scaled by ``scale`` pixels per voxel.
    """

    k: int
    nx: int
    ny: int
    scale: float
    radiological: bool = True

    @classmethod
    def fit(cls, k: int, nx: int, ny: int, size: int, radiological: bool) -> SliceGeometry:
        return cls(k, nx, ny, size / max(nx, ny), radiological)

    @property
    def width(self) -> int:
        return max(1, round(self.nx * self.scale))

    @property
    def height(self) -> int:
        return max(1, round(self.ny * self.scale))

    def to_voxels(self, box: Box) -> VoxelBox:
        """Every voxel the pixel box touches (half-open voxel ranges)."""
        sx, sy = self.width / self.nx, self.height / self.ny
        c0, c1 = math.floor(box.x0 / sx + 1e-9), math.ceil(box.x1 / sx - 1e-9)
        r0, r1 = math.floor(box.y0 / sy + 1e-9), math.ceil(box.y1 / sy - 1e-9)
        c0, c1 = max(0, c0), min(self.nx, max(c1, c0 + 1))
        r0, r1 = max(0, r0), min(self.ny, max(r1, r0 + 1))
        i0, i1 = (self.nx - c1, self.nx - c0) if self.radiological else (c0, c1)
        return VoxelBox(self.k, i0, i1, self.ny - r1, self.ny - r0)

    def to_pixels(self, vbox: VoxelBox) -> Box:
        """The pixel box covering a voxel box exactly (inverse of :meth:`to_voxels`)."""
        sx, sy = self.width / self.nx, self.height / self.ny
        c0, c1 = (self.nx - vbox.i1, self.nx - vbox.i0) if self.radiological else (vbox.i0, vbox.i1)
        r0, r1 = self.ny - vbox.j1, self.ny - vbox.j0
        return Box(c0 * sx, r0 * sy, c1 * sx, r1 * sy)
