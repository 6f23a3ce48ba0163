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
models_app = typer.Typer(
    help="MLflow model registry: SSL backbones, 2D and 3D classifiers, `champion` aliases.",
    no_args_is_help=True,
)
app.add_typer(models_app, name="models")

from flows.orchestrate import app as orchestrate_app  # noqa: E402  (light: no prefect import)

app.add_typer(orchestrate_app, name="orchestrate")

Profile = Annotated[
    str | None, typer.Option("--profile", "-p", help="params.yaml profile (smoke | demo | full).")
]
Sets = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY.PATH=VALUE",
        help="Override one params.yaml value for this run, after the profile (repeatable; "
        "the value is YAML: 3, 0.5, [1, 2], null, text), e.g. "
        "--set standardize.config.skullstrip.backend=hdbet. Checked against the stage "
        "configs: an unknown key or a wrong type fails, naming the valid keys.",
    ),
]


@app.callback()
def main(
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Also print Prefect's per-task-run INFO logs (quiet by default: one "
            "progress line per stage instead). Same as BRAINXAI_VERBOSE=1.",
        ),
    ] = False,
) -> None:
    """brainxai: SSL + XAI study pipeline for brain-tumour MRI."""
    from tasks.progress import set_verbosity

    set_verbosity(verbose or None)


def _overrides(sets: list[str] | None, profile: str | None) -> list[str] | None:
    """``--set`` values for the flow, checked now against the study's params.yaml and the
    stage configs, so an unknown key or a wrong type fails before any work starts."""
    if not sets:
        return None
    from brainxai.config import load_params
    from brainxai.overrides import OverrideError
    from tasks.env import study_root

    try:
        load_params(study_root() / "params.yaml", profile=profile, overrides=sets)
    except (OverrideError, FileNotFoundError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--set") from exc
    return list(sets)


def _echo(result: object) -> None:
    typer.echo(json.dumps(result, indent=2, sort_keys=True, default=str))


@data_app.command("synth")
def data_synth(profile: Profile = None, sets: Sets = None) -> None:
    """Generate the embedded synthetic cohort (3D BIDS + 2D Kaggle layout) with ground truth."""
    from flows.synth import synth_flow

    _echo(synth_flow(profile=profile, overrides=_overrides(sets, profile)))


@data_app.command("ingest")
def data_ingest(profile: Profile = None, sets: Sets = None) -> None:
    """Ingest the configured sources into the split manifest, quarantine list and data card."""
    from flows.ingest import ingest_flow

    _echo(ingest_flow(profile=profile, overrides=_overrides(sets, profile)))


@data_app.command("standardize")
def data_standardize(profile: Profile = None, sets: Sets = None) -> None:
    """Standardize every 3D session: reorient, resample, skull-strip, N4, SyN to MNI152, QC."""
    from flows.standardize import standardize_flow

    _echo(standardize_flow(profile=profile, overrides=_overrides(sets, profile)))


@data_app.command("difficulty")
def data_difficulty(profile: Profile = None, sets: Sets = None) -> None:
    """Quick supervised baselines on the split manifest: neither trivial nor hopeless?"""
    from flows.difficulty import difficulty_flow

    _echo(difficulty_flow(profile=profile, overrides=_overrides(sets, profile)))


@data_app.command("pseudolabel")
def data_pseudolabel(profile: Profile = None, sets: Sets = None) -> None:
    """Pseudo-label tumours in 3D: slice boxes (classical / local VLM / served VLM) -> MLP."""
    from flows.pseudolabel import pseudolabel_flow

    _echo(pseudolabel_flow(profile=profile, overrides=_overrides(sets, profile)))


@ssl_app.command("cache")
def ssl_cache(profile: Profile = None, sets: Sets = None) -> None:
    """Decode the training-patient images once into the uint8 cache; check leakage."""
    from flows.pretrain import pretrain_flow

    _echo(pretrain_flow(profile=profile, frameworks=[], overrides=_overrides(sets, profile)))


@ssl_app.command("pretrain")
def ssl_pretrain(
    profile: Profile = None,
    framework: Annotated[
        list[str] | None,
        typer.Option("--framework", "-f", help="Only these frameworks (repeatable)."),
    ] = None,
    sets: Sets = None,
) -> None:
    """Pretrain each framework of params.pretrain.frameworks (resumes from checkpoints)."""
    from flows.pretrain import pretrain_flow

    _echo(
        pretrain_flow(
            profile=profile, frameworks=framework or None, overrides=_overrides(sets, profile)
        )
    )


@finetune_app.command("run")
def finetune_run(
    profile: Profile = None,
    init: Annotated[
        str | None,
        typer.Option("--init", "-i", help="Only this init's cells (DVC finetune@<init>)."),
    ] = None,
    sets: Sets = None,
) -> None:
    """Every init x protocol x label fraction x seed (cached cells), then the statistics;
    with --init, only that init's cells (after `finetune cache`; `finetune eval` aggregates)."""
    from flows.finetune import finetune_flow

    step = "init" if init else "all"
    _echo(finetune_flow(profile=profile, step=step, init=init, overrides=_overrides(sets, profile)))


@finetune_app.command("cache")
def finetune_cache(profile: Profile = None, sets: Sets = None) -> None:
    """Decode the labelled 2D images once, draw the label-fraction subsets, check leakage."""
    from flows.finetune import finetune_flow

    _echo(finetune_flow(profile=profile, step="cache", overrides=_overrides(sets, profile)))


@finetune_app.command("eval")
def finetune_eval(profile: Profile = None, sets: Sets = None) -> None:
    """Aggregate every init's cells: bootstrap CIs, Holm-corrected comparisons, curve."""
    from flows.finetune import finetune_flow

    _echo(finetune_flow(profile=profile, step="eval", overrides=_overrides(sets, profile)))


@finetune_app.command("controls")
def finetune_controls(profile: Profile = None, sets: Sets = None) -> None:
    """The planted controls (positive, shortcut, random labels): pass / fail per check."""
    from flows.finetune import finetune_flow

    _echo(finetune_flow(profile=profile, step="controls", overrides=_overrides(sets, profile)))


@classify3d_app.command("run")
def classify3d_run(profile: Profile = None, sets: Sets = None) -> None:
    """Stratified patient CV of every ablation row and compared backbone (cached folds),
    paired tests against the base row, checkpoints + index for the xai stage."""
    from flows.classify3d import classify3d_flow

    _echo(classify3d_flow(profile=profile, overrides=_overrides(sets, profile)))


@xai_app.command("track")
def xai_track(profile: Profile = None, sets: Sets = None) -> None:
    """Heatmaps of every selected checkpoint x method (cached), C-Score and correctness
    trajectories, paper 004's dissociations, tau/gamma sweeps, randomisation check, plots."""
    from flows.xai import xai_flow

    _echo(xai_flow(profile=profile, overrides=_overrides(sets, profile)))


@study_app.command("run")
def study_run(
    profile: Profile = None,
    stage: Annotated[
        list[str] | None, typer.Option("--stage", "-s", help="Run only these stages (repeatable).")
    ] = None,
    sets: Sets = None,
) -> None:
    """Run the study's stages in order under one MLflow parent run (cached tasks skip)."""
    from flows.study import study_flow

    _echo(study_flow(profile=profile, stages=stage or None, overrides=_overrides(sets, profile)))


@study_app.command("track")
def study_track(
    command: Annotated[
        list[str], typer.Argument(help="The command to run, after `--` (e.g. -- dvc repro).")
    ],
    profile: Profile = None,
) -> None:
    """Run a command (`brainxai study track -- dvc repro`) under one MLflow study run: every
    stage process nests under it; FINISHED/FAILED from the command's exit code. The stages
    share one Prefect API server started here (`study_track.shared_prefect_api`). No --set:
    DVC reads params.yaml, so override with `dvc exp run -S '++overrides.key.path=value'`."""
    import tasks  # noqa: F401  (embedded defaults)
    from brainxai.config import load_params
    from tasks.env import study_root
    from tasks.mlflow_log import track_command
    from tasks.prefect_api import SharedApiConfig, shared_api

    root = study_root()
    cfg = SharedApiConfig.from_params(load_params(root / "params.yaml", profile=profile))
    with shared_api(cfg) as env:  # one Prefect API for every stage (params study_track)
        code, run_id = track_command(command, profile, root, env)
    typer.echo(f"study run {run_id}: exit code {code}", err=True)
    raise typer.Exit(code)


@models_app.command("register")
def models_register(profile: Profile = None, sets: Sets = None) -> None:
    """Register SSL backbones, fine-tuned 2D and 3D classifiers (aliases per framework /
    init-protocol / variant-backbone) and move `champion` on validation metrics."""
    from flows.register import register_flow

    _echo(register_flow(profile=profile, overrides=_overrides(sets, profile)))


@study_app.command("summary")
def study_summary() -> None:
    """Print the study's targets (measured, target, pass / fail / uninformative / not run;
    params.yaml targets), then the headline numbers of the last run (reports/metrics/*.json)."""
    from brainxai.config import load_params
    from brainxai.paths import StudyPaths
    from brainxai.summary import headline, targets_text
    from tasks.env import study_root

    root = study_root()
    params = load_params(root / "params.yaml")
    paths = StudyPaths.from_params(root, params)
    typer.echo("== targets (does the study show anything?)")
    typer.echo(targets_text(root, params))
    typer.echo("\n== headline numbers")
    typer.echo(headline(paths.metrics))


@study_app.command("plan")
def study_plan(
    profile: Profile = None,
    measured: Annotated[
        str | None,
        typer.Option(
            help="Finished smoke study whose Prefect task runs give the per-task "
            "seconds (default: params plan.measured_study)."
        ),
    ] = None,
    sets: Sets = None,
) -> None:
    """Scale-out plan: Prefect tasks per stage and estimated CPU/GPU-hours of a profile
    (default: full) from measured smoke costs; writes reports/plan/plan_<profile>.csv|md.
    GPU-hours are estimates (FLOPs / assumed GPU throughput), not measurements."""
    from pathlib import Path

    from flows.plan import write_plan
    from tasks.env import study_root

    prof = profile or "full"
    where = Path(measured) if measured else None
    csv, md, _ = write_plan(study_root(), prof, where, _overrides(sets, prof))
    typer.echo(md.read_text())
    typer.echo(f"wrote {csv} and {md}")


@orchestrate_app.command("limits")
def orchestrate_limits(
    gpus: Annotated[
        int | None, typer.Option(help="GPUs of the gpu pool (default: this host's count).")
    ] = None,
) -> None:
    """Create or update the Prefect tag concurrency limit `gpu` = number of GPUs (idempotent):
    GPU-tagged tasks then never outnumber the devices."""
    from tasks.gpu import ensure_gpu_limit

    _echo(ensure_gpu_limit(gpus))


@app.command("report")
def report(
    profile: Profile = None,
    out: Annotated[
        str | None,
        typer.Option("--out", "-o", help="Output folder (default: params report.out_dir)."),
    ] = None,
    sets: Sets = None,
) -> None:
    """Write the self-contained HTML study report (index.html + figures/*.png) from the
    study's outputs; a stage that did not run gets a section saying so."""
    from flows.report import report_flow

    _echo(report_flow(profile=profile, out=out, overrides=_overrides(sets, profile)))


@app.command("doctor")
def doctor(profile: Profile = None, sets: Sets = None) -> None:
    """Print versions, devices, where Prefect/MLflow/DVC state lives and optional backends."""
    import tasks  # noqa: F401  (embedded defaults)
    from brainxai.config import load_params
    from brainxai.doctor import report
    from tasks.env import study_root

    root = study_root()
    try:
        params = load_params(
            root / "params.yaml", profile=profile, overrides=_overrides(sets, profile)
        )
    except FileNotFoundError:
        params = {}
    typer.echo(report(root, params).render())


if __name__ == "__main__":
    app()
