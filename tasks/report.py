"""Prefect task around :mod:`brainxai.report` (the study report).

Cached on the content of every file the report reads (``fingerprint``: sha256 over
relative path + bytes of :meth:`StudyLayout.input_files`), the report's slice of the
params and the code of ``brainxai.report`` and the libraries it draws with. A report is
pure computation over local files: no retries (bad input is reported in the page).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from prefect import task

from brainxai.hashing import update_with_file
from brainxai.report import StudyLayout, build_report
from tasks.caching import code_policy, hashed_outputs


def inputs_fingerprint(root: str | Path, params: dict[str, Any]) -> str:
    """sha256 over (relative path, content) of every file the report would read."""
    layout = StudyLayout.from_params(root, params)
    h = hashlib.sha256()
    for f in layout.input_files():
        h.update(f.relative_to(layout.root).as_posix().encode())
        update_with_file(h, f)
    return h.hexdigest()[:16]


@task(name="report", cache_policy=code_policy(__name__), persist_result=True)
@hashed_outputs
def write_report(
    root: str, params: dict[str, Any], fingerprint: str, out: str | None = None
) -> dict[str, Any]:
    """Write the HTML report + figures; ``fingerprint`` is only there for the cache key."""
    result = build_report(root, params, out)
    summary = result.to_dict()
    summary["files"] = [summary["html"], *summary["figures"]]
    return summary
