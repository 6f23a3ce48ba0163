"""The proposer interface: a session's volumes in, per-slice answers (voxel boxes) out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from brainxai.pseudolabel.boxes import VoxelBox
from brainxai.pseudolabel.volumes import SubjectVolumes

Status = Literal["ok", "no_box", "malformed"]


@dataclass
class SliceAnswer:
    """One slice (and sequence) answered: its boxes, the raw text, how it was obtained."""

    k: int
    sequence: str
    boxes: list[VoxelBox] = field(default_factory=list)
    status: Status = "no_box"
    raw: str = ""
    attempts: int = 0
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "sequence": self.sequence,
            "boxes": [b.to_list() for b in self.boxes],
            "status": self.status,
            "raw": self.raw,
            "attempts": self.attempts,
            "cached": self.cached,
        }


class Proposer(Protocol):
    """Anything that boxes tumours on a session's axial slices."""

    name: str

    def propose(self, subject: SubjectVolumes) -> list[SliceAnswer]: ...
