"""Bad input: an error with a short machine-readable reason for the quarantine table."""

from __future__ import annotations

#: Reasons a subject is quarantined by the standardization stage.
REASONS: tuple[str, ...] = (
    "unreadable",
    "not_3d",
    "non_finite",
    "zero_spacing",
    "empty_image",
    "bad_affine",
    "empty_brain",
    "missing_reference",
    "registration_failed",
    "processing_error",  # an unexpected error on one subject: quarantined, the others go on
)


class BadInput(ValueError):
    """Data that cannot be standardized; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown reason {reason!r}")
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
