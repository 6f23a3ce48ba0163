"""Prefect tasks around :mod:`brainxai.standardize`: one cached task per subject session.

The cache key is the subject's file paths + their sha256 (from the manifest) + the
stage config + the task source + a hash of ``brainxai.standardize`` (see
:mod:`tasks.caching`), so re-running the stage after adding one subject processes only
that subject. Bad data (:class:`BadInput`) is not an exception for Prefect: the task
returns a quarantine record, which is cached like a success, so a retry never re-runs
on the same bad data. Only transient I/O errors are retried (:mod:`tasks.transient`).

ANTsPy holds the GIL, so subjects run in parallel in processes (Prefect's
``ProcessPoolTaskRunner``); each worker caps ITK's and torch's threads at
``cores // workers`` so the cores are not oversubscribed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task

from brainxai.standardize import BadInput, StandardizeConfig, set_threads, standardize_subject
from tasks.caching import code_policy, hashed_outputs
from tasks.transient import retry_on_transient_io


def _quarantined(subject: str, reason: str, detail: str) -> dict[str, Any]:
    return {
        "subject": subject,
        "status": "quarantined",
        "reason": reason,
        "detail": detail,
        "files": [],
    }


@task(
    name="standardize-subject",
    cache_policy=code_policy(__name__),
    persist_result=True,
    task_run_name="standardize-{subject}",
    retries=1,
    retry_condition_fn=retry_on_transient_io,
)
@hashed_outputs
def standardize_one(
    subject: str,
    images: dict[str, str],
    sha256: dict[str, str],
    cfg: dict[str, Any],
    out_dir: str,
    threads: int,
    lesion_mask: str | None = None,
) -> dict[str, Any]:
    """Standardize one session; return its outputs and QC, or a quarantine record.

    ``files`` lists every file written (for :func:`tasks.caching.run_cached`),
    ``outputs`` names them (see :func:`brainxai.standardize.output_files`).

    ``sha256`` (content hashes of ``images`` from the manifest) is only there for the
    cache key; ``threads`` is the ITK/torch thread cap of this worker.
    """
    set_threads(threads)
    conf = StandardizeConfig.from_dict(cfg)
    try:
        res = standardize_subject(images, Path(out_dir), conf, lesion_mask=lesion_mask)
    except BadInput as exc:
        return _quarantined(subject, exc.reason, exc.detail)
    except OSError:
        raise  # retried when transient (``retry_on_transient_io``)
    except Exception as exc:  # one subject's unexpected error must not abort the others
        return _quarantined(subject, "processing_error", f"{type(exc).__name__}: {exc}")
    files = [*res["files"].values(), *res["xfm_fwd"], *res["xfm_inv"]]
    outputs = res.pop("files")
    return {
        "subject": subject,
        "status": "ok",
        **res,
        "outputs": outputs,
        "files": sorted(set(files)),
    }
