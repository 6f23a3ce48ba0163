"""``brainxai`` command line: data generation/ingestion, the study, the doctor.

Flows are imported inside each command so ``--help`` stays instant.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

app = typer.Typer(
    help="brainxai: SSL + XAI study pipeline for brain-tumour MRI.", no_args_is_help=True
)
data_app = typer.Typer(help="Make and ingest data sets.", no_args_is_help=True)
study_app = typer.Typer(
    help="Run the whole study (all stages) as one Prefect flow.", no_args_is_help=True
)
app.add_typer(data_app, name="data")
app.add_typer(study_app, name="study")
ssl_app = typer.Typer(
    help="Self-supervised pretraining (SimCLR, BYOL, DINO, MoCo v3).", no_args_is_help=True
)
app.add_typer(ssl_app, name="ssl")
finetune_app = typer.Typer(
    help="Label-fraction fine-tuning and evaluation (linear probe, full fine-tuning).",
    no_args_is_help=True,
)
app.add_typer(finetune_app, name="finetune")
xai_app = typer.Typer(
    help="Explanation tracking per checkpoint (C-Score, correctness, dissociations).",
    no_args_is_help=True,
)
app.add_typer(xai_app, name="xai")
classify3d_app = typer.Typer(
    help="3D classifier (paper 003): DenseNet121-3D + mask-guided attention, patient CV.",
    no_args_is_help=True,
)
app.add_typer(classify3d_app, name="classify3d")

Profile = Annotated[
    str | None, typer.Option("--profile", "-p", help="params.yaml profile (smoke | full).")
]


def _echo(result: object) -> None:
    typer.echo(json.dumps(result, indent=2, sort_keys=True, default=str))


@data_app.command("synth")
def data_synth(profile: Profile = None) -> None:
    """Generate the embedded synthetic cohort (3D BIDS + 2D Kaggle layout) with ground truth."""
    from flows.synth import synth_flow

    _echo(synth_flow(profile=profile))


@data_app.command("ingest")
def data_ingest(profile: Profile = None) -> None:
    """Ingest the configured sources into the split manifest, quarantine list and data card."""
    from flows.ingest import ingest_flow

    _echo(ingest_flow(profile=profile))


@data_app.command("standardize")
def data_standardize(profile: Profile = None) -> None:
    """Standardize every 3D session: reorient, resample, skull-strip, N4, SyN to MNI152, QC."""
    from flows.standardize import standardize_flow

    _echo(standardize_flow(profile=profile))


@data_app.command("difficulty")
def data_difficulty(profile: Profile = None) -> None:
    """Quick supervised baselines on the split manifest: neither trivial nor hopeless?"""
    from flows.difficulty import difficulty_flow

    _echo(difficulty_flow(profile=profile))


@data_app.command("pseudolabel")
def data_pseudolabel(profile: Profile = None) -> None:
    """Pseudo-label tumours in 3D: slice boxes (classical / local VLM / served VLM) -> MLP."""
    from flows.pseudolabel import pseudolabel_flow

    _echo(pseudolabel_flow(profile=profile))


@ssl_app.command("cache")
def ssl_cache(profile: Profile = None) -> None:
    """Decode the training-patient images once into the uint8 cache; check leakage."""
    from flows.pretrain import pretrain_flow

    _echo(pretrain_flow(profile=profile, frameworks=[]))


@ssl_app.command("pretrain")
def ssl_pretrain(
    profile: Profile = None,
    framework: Annotated[
        list[str] | None,
        typer.Option("--framework", "-f", help="Only these frameworks (repeatable)."),
    ] = None,
) -> None:
    """Pretrain each framework of params.pretrain.frameworks (resumes from checkpoints)."""
    from flows.pretrain import pretrain_flow

    _echo(pretrain_flow(profile=profile, frameworks=framework or None))


@finetune_app.command("run")
def finetune_run(profile: Profile = None) -> None:
    """Every init x protocol x label fraction x seed (cached cells), then the statistics."""
    from flows.finetune import finetune_flow

    _echo(finetune_flow(profile=profile))


@classify3d_app.command("run")
def classify3d_run(profile: Profile = None) -> None:
    """Stratified patient CV of every ablation row and compared backbone (cached folds),
    paired tests against the base row, checkpoints + index for the xai stage."""
    from flows.classify3d import classify3d_flow

    _echo(classify3d_flow(profile=profile))


@xai_app.command("track")
def xai_track(profile: Profile = None) -> None:
    """Heatmaps of every selected checkpoint x method (cached), C-Score and correctness
    trajectories, paper 004's dissociations, tau/gamma sweeps, randomisation check, plots."""
    from flows.xai import xai_flow

    _echo(xai_flow(profile=profile))


@study_app.command("run")
def study_run(
    profile: Profile = None,
    stage: Annotated[
        list[str] | None, typer.Option("--stage", "-s", help="Run only these stages (repeatable).")
    ] = None,
) -> None:
    """Run the study's stages in order under one MLflow parent run (cached tasks skip)."""
    from flows.study import study_flow

    _echo(study_flow(profile=profile, stages=stage or None))


@study_app.command("summary")
def study_summary() -> None:
    """Print the headline numbers of the last run (reports/metrics/*.json) compactly."""
    from brainxai.config import load_params
    from brainxai.paths import StudyPaths
    from brainxai.summary import headline
    from tasks.env import study_root

    root = study_root()
    paths = StudyPaths.from_params(root, load_params(root / "params.yaml"))
    typer.echo(headline(paths.metrics))


@app.command("doctor")
def doctor(profile: Profile = None) -> None:
    """Print versions, devices, where Prefect/MLflow/DVC state lives and optional backends."""
    import tasks  # noqa: F401  (embedded defaults)
    from brainxai.config import load_params
    from brainxai.doctor import report
    from tasks.env import study_root

    root = study_root()
    try:
        params = load_params(root / "params.yaml", profile=profile)
    except FileNotFoundError:
        params = {}
    typer.echo(report(root, params).render())


if __name__ == "__main__":
    app()
