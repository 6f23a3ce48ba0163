"""Prefect task around :mod:`brainxai.pseudolabel`: one cached task per standardized session.

Cache key: the session's standardized files + their sha256 + the stage config + the task
source + a hash of ``brainxai.pseudolabel`` (and the standardization transforms code).
Bad data (volumes off the brain mask's grid, a missing sequence) is not an exception for
Prefect: the task returns a ``failed`` record with the reason, cached like a success.
Transient trouble (:func:`tasks.transient.is_transient`: transient I/O, or a VLM endpoint
that did not answer) is retried; the VLM answers already received are in the response
cache, so a retry (or a re-run after a crash) asks only for the slices still missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task

from brainxai.pseudolabel import PseudolabelConfig, make_proposer, pseudolabel_subject
from brainxai.standardize import set_threads
from tasks.caching import code_policy, hashed_outputs
from tasks.gpu import GPU_TAG, on_gpu_slot
from tasks.transient import retry_on_transient_io


@task(
    name="pseudolabel-subject",
    cache_policy=code_policy(__name__),
    persist_result=True,
    task_run_name="pseudolabel-{subject}",
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=retry_on_transient_io,
    tags=[GPU_TAG],
)
@hashed_outputs
@on_gpu_slot
def pseudolabel_one(
    subject: str,
    images: dict[str, str],
    sha256: dict[str, str],
    brain_mask: str,
    cfg: dict[str, Any],
    out_dir: str,
    cache_dir: str,
    threads: int,
    lesion_mask: str | None = None,
    native_ref: str | None = None,
    xfm_inv: list[str] | None = None,
) -> dict[str, Any]:
    """Pseudo-label one session; return its record (``files``: every file written).

    ``sha256`` (of the standardized files) is only there for the cache key; ``threads``
    caps torch/ITK threads in this worker.
    """
    set_threads(threads)
    conf = PseudolabelConfig.from_dict(cfg)
    proposer = make_proposer(conf, cache_dir=cache_dir)
    try:
        rec = pseudolabel_subject(
            images, brain_mask, Path(out_dir), conf, proposer,
            lesion_mask=lesion_mask, native_ref=native_ref, xfm_inv=xfm_inv or [],
        )  # fmt: skip
    except (ValueError, KeyError) as exc:
        return {"subject": subject, "status": "failed", "reason": f"{type(exc).__name__}: "
                f"{exc}", "files": []}  # fmt: skip
    outputs = rec.pop("files")
    return {
        "subject": subject,
        "status": "ok",
        **rec,
        "queried": int(getattr(proposer, "queried", 0)),
        "outputs": outputs,
        "files": sorted(outputs.values()),
    }
