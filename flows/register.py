"""Stage ``register``: the MLflow model registry after the training stages.

Run: ``brainxai models register`` (DVC stage ``register``; the last stage of
``brainxai study run``). Registers (:mod:`tasks.registry`, ``params.registry``):

* ``brainxai-ssl-backbone``: one version per framework (alias ``<framework>``), champion
  on the last epoch's kNN top-1 accuracy on the VALIDATION split (``supervised`` is
  registered but never champion: it is not self-supervised);
* ``brainxai-classifier-2d``: the fine-tuned run with the best validation macro-F1 of
  each init x protocol (alias ``<init>-<protocol>``), champion on validation macro-F1;
* ``brainxai-classifier-3d``: the best fold of each ablation row x backbone of the
  checkpoint index (alias ``<variant>-<backbone>``), champion on the inner validation
  macro-F1 (``oracle`` uses the true lesion mask: registered, never champion).

Test metrics never choose a model. Writes ``reports/metrics/registry.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from prefect import flow, get_run_logger

from brainxai.finetune.config import BackboneSpec
from brainxai.jsonio import write_json
from brainxai.paths import StudyPaths
from brainxai.registry.candidates import (
    backbone_model,
    checkpoint_model,
    selected_checkpoints,
    ssl_candidates,
)
from brainxai.registry.config import RegistryConfig
from tasks.env import study_params
from tasks.mlflow_log import git_commit, log_stage, stage_run
from tasks.registry import Loaded, common_tags, logged_fold_model, register_family


def _ssl_loader(spec: BackboneSpec):
    def load(row: pd.Series) -> Loaded:
        return Loaded(*backbone_model(str(row["arch"]), spec.input_mean, spec.input_std,
                                      Path(row["backbone"]), int(row["image_size"])))  # fmt: skip

    return load


def _checkpoint_loader(root: Path):
    def load(row: pd.Series) -> Loaded:
        path = root / str(row["path"])
        return Loaded(*checkpoint_model(str(row["loader"]), path, str(row["kind"])))

    return load


def _index(path: Path, notes: list[str]) -> pd.DataFrame:
    if not path.is_file():
        notes.append(f"no checkpoint index {path} (stage not run)")
        return pd.DataFrame()
    return selected_checkpoints(pd.read_parquet(path))


@flow(name="register", log_prints=True)
def register_flow(
    profile: str | None = None, root: str | None = None, overrides: list[str] | None = None
) -> dict[str, Any]:
    """Register every task's models and move the ``champion`` aliases.

    Args:
        profile: params.yaml profile (smoke | demo | full); empty: the file's ``profile`` key.
        root: study root holding params.yaml; empty: $BRAINXAI_ROOT or the working directory.
        overrides: params for this run only, as ``key.path=value`` (value parsed as YAML),
            applied after the profile and checked against the stage configs, e.g.
            ``standardize.config.skullstrip.backend=hdbet``; empty: none.
    """
    root_path, params = study_params(profile, root, overrides)
    paths = StudyPaths.from_params(root_path, params)
    cfg = RegistryConfig.from_dict(params["registry"])
    logger = get_run_logger()
    notes: list[str] = []
    out: dict[str, Any] = {}
    with stage_run("register", {"registry": cfg.to_dict(), "profile": params["profile"]}) as run:
        tags = common_tags(str(params["profile"]), git_commit(root_path))
        pcfg = params["pretrain"]
        if cfg.ssl.enabled:
            table, ssl_notes = ssl_candidates(root_path / pcfg["out_dir"], pcfg["frameworks"])
            notes += ssl_notes
            spec = BackboneSpec.from_pretrain(pcfg["train"])
            out["ssl"] = register_family(
                cfg.ssl, "ssl-backbone", table, "framework", lambda r: Path(r["backbone"]),
                _ssl_loader(spec), None, cfg.champion_alias, tags,
            )  # fmt: skip
        load = _checkpoint_loader(root_path)
        file_of = lambda r: root_path / str(r["path"])  # noqa: E731
        if cfg.classifier_2d.enabled:
            table = _index(root_path / params["finetune"]["out_dir"] / "index.parquet", notes)
            out["classifier_2d"] = register_family(
                cfg.classifier_2d, "classifier-2d", table, "run", file_of, load, None,
                cfg.champion_alias, tags,
            )  # fmt: skip
        if cfg.classifier_3d.enabled:
            table = _index(root_path / params["classify3d"]["out_dir"] / "index.parquet", notes)
            exp = run.info.experiment_id
            out["classifier_3d"] = register_family(
                cfg.classifier_3d, "classifier-3d", table, "run", file_of, load,
                lambda r: logged_fold_model(exp, r, file_of(r)), cfg.champion_alias, tags,
            )  # fmt: skip
        for note in notes:
            logger.warning(note)
        for fam, s in out.items():
            for name, failure in s.get("failed", {}).items():
                logger.error("%s %s not registered: %s", fam, name, failure)
            champ = s.get("champion") or {}
            log_stage(
                {f"register.{fam}.{k}": float(s[k])
                 for k in ("logged", "reused_logged", "already_registered")}
                | {f"register.{fam}.versions": float(len(s["versions"])),
                   f"register.{fam}.failed": float(len(s.get("failed", {})))},
                tags={f"register.{fam}.champion": f"{champ['key']} v{champ['version']}"}
                if "key" in champ else None,
            )  # fmt: skip
    summary = {"families": out, "notes": notes}
    paths.metrics.mkdir(parents=True, exist_ok=True)
    write_json(paths.metrics / "registry.json", summary)
    return summary


if __name__ == "__main__":
    import typer

    typer.run(register_flow)
