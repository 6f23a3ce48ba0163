"""``brainxai orchestrate``: Prefect work pools and deployments of the study.

The deployments and the pools they route to are declared once, in ``prefect.yaml`` at
the study root (``definitions.pool_specs``; ``deployments[*].work_pool``). ``brainxai
orchestrate pools`` creates or updates those pools through the Prefect API (idempotent:
running it twice changes nothing; :mod:`tasks.pools`), with the process worker's default
job template, the same as ``prefect work-pool create <name> --type process``. ``brainxai
orchestrate limits`` sets the ``gpu`` tag concurrency limit (:mod:`tasks.gpu`); ``brainxai
orchestrate show`` lists which deployment goes to which pool.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tasks.pools import ensure_pools, pool_specs, read_prefect_yaml, routing

app = typer.Typer(
    help="Prefect work pools, GPU concurrency limit, deployment routing (prefect.yaml).",
    no_args_is_help=True,
)


PrefectYaml = Annotated[
    Path | None,
    typer.Option("--file", "-f", help="prefect.yaml to read (default: the study root's)."),
]


@app.command("pools")
def pools(file: PrefectYaml = None) -> None:
    """Create or update the work pools of prefect.yaml (cpu, gpu) on $PREFECT_API_URL."""
    import json

    typer.echo(json.dumps(ensure_pools(pool_specs(read_prefect_yaml(file))), indent=2))


@app.command("limits")
def limits(
    gpus: Annotated[
        int | None,
        typer.Option("--gpus", help="Concurrent GPU tasks (default: this host's GPU count)."),
    ] = None,
) -> None:
    """Create or update the tag concurrency limit `gpu` (tasks.gpu) on $PREFECT_API_URL."""
    import json

    from tasks.gpu import ensure_gpu_limit

    typer.echo(json.dumps(ensure_gpu_limit(gpus), indent=2))


@app.command("show")
def show(file: PrefectYaml = None) -> None:
    """Print which work pool each deployment of prefect.yaml routes to."""
    for name, pool in routing(read_prefect_yaml(file)).items():
        typer.echo(f"{name:14s} -> {pool}")
