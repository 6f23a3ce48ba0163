"""Prefect work pools as ``prefect.yaml`` declares them (``definitions.pool_specs``; each
deployment's ``work_pool``): read, check, and create or update them through the Prefect API
(``brainxai orchestrate pools``, the GPU acceptance deployment). Prefect is imported only
when a pool is written."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tasks.env import study_root

PREFECT_YAML = "prefect.yaml"


@dataclass(frozen=True)
class PoolSpec:
    """A work pool as ``prefect.yaml`` declares it (``definitions.pool_specs``)."""

    name: str
    type: str = "process"
    description: str = ""
    concurrency_limit: int | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PoolSpec:
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown work pool keys {sorted(unknown)} in {PREFECT_YAML}")
        return cls(**d)


def read_prefect_yaml(path: Path | None = None) -> dict[str, Any]:
    """The parsed ``prefect.yaml`` (default: the study root's)."""
    path = path or study_root() / PREFECT_YAML
    return yaml.safe_load(Path(path).read_text())


def pool_specs(config: dict[str, Any]) -> list[PoolSpec]:
    """The declared pools; every pool a deployment routes to must be declared."""
    specs = [PoolSpec.from_dict(d) for d in config["definitions"]["pool_specs"]]
    names = {s.name for s in specs}
    used = {d["work_pool"]["name"] for d in config["deployments"]}
    if used - names:
        raise ValueError(f"deployments route to undeclared pools {sorted(used - names)}")
    return specs


def routing(config: dict[str, Any]) -> dict[str, str]:
    """Deployment name -> work pool name."""
    return {d["name"]: d["work_pool"]["name"] for d in config["deployments"]}


def ensure_pools(specs: list[PoolSpec]) -> list[dict[str, Any]]:
    """Create each pool, or update its description/limit if it exists; return what was done."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.base import BaseWorker

    done = []
    with get_client(sync_client=True) as client:
        for spec in specs:
            try:
                existing = client.read_work_pool(spec.name)
            except ObjectNotFound:
                existing = None
            if existing is not None and existing.type != spec.type:
                raise ValueError(
                    f"work pool {spec.name!r} exists with type {existing.type!r}, "
                    f"not {spec.type!r}; delete it first (prefect work-pool delete {spec.name})"
                )
            if existing is None:
                worker = BaseWorker.get_worker_class_from_type(spec.type)
                if worker is None:
                    raise ValueError(f"no Prefect worker of type {spec.type!r} is installed")
                client.create_work_pool(
                    WorkPoolCreate(
                        name=spec.name,
                        type=spec.type,
                        description=spec.description,
                        concurrency_limit=spec.concurrency_limit,
                        base_job_template=worker.get_default_base_job_template(),
                    )
                )
                action = "created"
            elif (existing.description or "", existing.concurrency_limit) != (
                spec.description,
                spec.concurrency_limit,
            ):
                client.update_work_pool(
                    spec.name,
                    WorkPoolUpdate(
                        description=spec.description, concurrency_limit=spec.concurrency_limit
                    ),
                )
                action = "updated"
            else:
                action = "unchanged"
            done.append({"pool": spec.name, "type": spec.type, "action": action})
    return done
