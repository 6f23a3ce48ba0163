"""Prompts for the box proposer (paper 003, §4.3): sequence, orientation, what to box, JSON.

Two sets (``prompts.set``): ``expert`` (``prompt_templates/expert.txt``, this project's:
box the tumour core of each FLAIR / T1C+ slice, leave the oedema out) and ``paper003``
(``paper003.txt``: paper 003's cues — "abnormal signal intensities, irregular boundaries,
edema-associated gradients, and midline asymmetry" — on T1-CE slices only; the paper
publishes the cues, not the prompt text, so the wording around them is ours). Both ask for
the same JSON answer, and ``strict.txt`` re-asks after a malformed one. Templates are text
files (or any path given in params) with ``str.format`` fields: ``sequence``,
``sequence_hint``, ``orientation``, ``width``, ``height``, ``coords_hint``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

PROMPT_DIR = Path(__file__).parent / "prompt_templates"

SEQUENCE_HINTS: dict[str, str] = {
    "T1": "T1-weighted, no contrast: tumours are often hypointense",
    "T1C+": "T1-weighted after gadolinium: enhancing tumour is bright",
    "T2": "T2-weighted: oedema and cysts are bright, as is CSF",
    "FLAIR": "FLAIR: oedema and tumour are bright, CSF is dark",
}

COORD_HINTS: dict[str, str] = {
    "qwen1000": "x1, y1 (top-left) and x2, y2 (bottom-right) on a relative 0-1000 grid "
    "(0 = left/top edge, 1000 = right/bottom edge)",
    "pixel": "x1, y1 (top-left) and x2, y2 (bottom-right) in pixels of this image",
    "unit": "x1, y1 (top-left) and x2, y2 (bottom-right) as fractions 0-1 of the image size",
}


@cache
def load_template(name: str) -> str:
    """A template by file name in the package's ``prompt_templates/`` or by path."""
    path = Path(name)
    if not path.is_absolute() and not path.exists():
        path = PROMPT_DIR / name
    return path.read_text(encoding="utf-8")


def render_prompt(
    template: str, sequence: str, width: int, height: int, coords: str, radiological: bool
) -> str:
    orientation = (
        "radiological convention, patient's right on the image left, anterior at the top"
        if radiological
        else "neurological convention, patient's right on the image right, anterior at the top"
    )
    return template.format(
        sequence=sequence,
        sequence_hint=SEQUENCE_HINTS.get(sequence, sequence),
        orientation=orientation,
        width=width,
        height=height,
        coords_hint=COORD_HINTS[coords],
    ).strip()
