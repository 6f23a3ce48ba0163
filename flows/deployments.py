"""Deployable entry points for the stages whose flow is chosen at call time.

``standardize``, ``finetune``, ``pseudolabel`` and ``xai`` read their task runner from
``params.yaml`` (``<stage>.runner``) before they start their flow, so the public function
is a plain function, not a :class:`prefect.Flow` a deployment can point at. Each flow
here is that entry point for ``prefect.yaml``: it calls the stage (which runs as its
subflow with the configured runner) and has typed, described parameters, so the Prefect UI
shows a form. The other stages are deployed straight from ``flows/<stage>.py``.
Imported at module level so a deployment runs the code of the checkout it is pulled to.
"""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow

from flows.finetune import finetune_flow
from flows.pseudolabel import pseudolabel_flow
from flows.standardize import standardize_flow
from flows.xai import xai_flow


@flow(name="standardize-stage", log_prints=True)
def standardize_stage(
    profile: str | None = None, root: str | None = None, overrides: list[str] | None = None
) -> dict[str, Any]:
    """Standardize every 3D session (reorient, resample, skull-strip, N4, SyN to MNI152, QC).

    Args:
        profile: params.yaml profile (smoke | demo | full); empty: the file's ``profile`` key.
        root: study root holding params.yaml; empty: $BRAINXAI_ROOT or the working directory.
        overrides: params for this run only, as ``key.path=value`` (value parsed as YAML),
            applied after the profile and checked against the stage configs, e.g.
            ``standardize.config.skullstrip.backend=hdbet``; empty: none.
    """
    return standardize_flow(profile=profile, root=root, overrides=overrides)


@flow(name="finetune-stage", log_prints=True)
def finetune_stage(
    profile: str | None = None,
    root: str | None = None,
    step: Literal["all", "cache", "init", "eval"] = "all",
    init: str | None = None,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Label-fraction fine-tuning: every init x protocol x fraction x seed, then statistics.

    Args:
        profile: params.yaml profile (smoke | demo | full); empty: the file's ``profile`` key.
        root: study root holding params.yaml; empty: $BRAINXAI_ROOT or the working directory.
        step: all (every init, then the statistics) | cache | init (one init's cells) |
            eval (aggregate every init's cells).
        init: the init of step ``init`` (one of params finetune.inits).
        overrides: params for this run only, as ``key.path=value`` (value parsed as YAML),
            applied after the profile and checked against the stage configs, e.g.
            ``finetune.tune.epochs=5``; empty: none.
    """
    return finetune_flow(profile=profile, root=root, step=step, init=init, overrides=overrides)


@flow(name="pseudolabel-stage", log_prints=True)
def pseudolabel_stage(
    profile: str | None = None, root: str | None = None, overrides: list[str] | None = None
) -> dict[str, Any]:
    """3D tumour pseudo-labels: slice boxes (classical / local VLM / served VLM) -> voxel MLP.

    Args:
        profile: params.yaml profile (smoke | demo | full); empty: the file's ``profile`` key.
        root: study root holding params.yaml; empty: $BRAINXAI_ROOT or the working directory.
        overrides: params for this run only, as ``key.path=value`` (value parsed as YAML),
            applied after the profile and checked against the stage configs, e.g.
            ``standardize.config.skullstrip.backend=hdbet``; empty: none.
    """
    return pseudolabel_flow(profile=profile, root=root, overrides=overrides)


@flow(name="xai-stage", log_prints=True)
def xai_stage(
    profile: str | None = None, root: str | None = None, overrides: list[str] | None = None
) -> dict[str, Any]:
    """Explanation tracking per checkpoint: heatmaps, C-Score, correctness, dissociations.

    Args:
        profile: params.yaml profile (smoke | demo | full); empty: the file's ``profile`` key.
        root: study root holding params.yaml; empty: $BRAINXAI_ROOT or the working directory.
        overrides: params for this run only, as ``key.path=value`` (value parsed as YAML),
            applied after the profile and checked against the stage configs, e.g.
            ``standardize.config.skullstrip.backend=hdbet``; empty: none.
    """
    return xai_flow(profile=profile, root=root, overrides=overrides)
