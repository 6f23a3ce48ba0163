"""The scale-out plan: task counts from params, by hand for smoke and full, and against the
task runs a real smoke study produced; cost arithmetic; FLOP counts vs torchvision's."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from brainxai.config import load_params
from brainxai.plan import Component, Measured, components, plan_table, resnet_flops
from tests.conftest import REPO

ONE = lambda *a: 1.0  # noqa: E731  (FLOP counts do not change task counts)

#: Completed task runs of the finished smoke study /tmp/fresh (`make study`, 2026-11-23),
#: per Prefect task function (its .prefect/prefect.db; cache hits excluded), and
#: reports/finetune/runs.csv = 60 rows.
SMOKE_STUDY_TASK_RUNS = {
    "write_shard": 8, "standardize_one": 24, "pretrain_framework": 5, "finetune_embed": 6,
    "finetune_cell": 60, "train_run": 8, "explain_task": 99, "randomisation_task": 39,
}  # fmt: skip


def _tasks(profile: str) -> dict[tuple[str, str], int]:
    comps = components(load_params(REPO / "params.yaml", profile=profile), ONE, ONE)
    return {(c.stage, c.name): c.tasks for c in comps}


def test_smoke_counts_by_hand():
    t = _tasks("smoke")
    # synth: 24 volumes / shard 8 = 3 shards (+2 plan +1 finalize); 36 2D subjects -> 5 (+1+1)
    assert t[("synth", "3D subjects")] == 3 + 3 and t[("synth", "2D subjects")] == 5 + 2
    assert t[("ingest", "sources")] == 2 + 1  # bids + kaggle17, + split/data card
    assert t[("standardize", "3D sessions")] == t[("pseudolabel", "3D sessions")] == 4 * 6
    assert t[("pretrain", "frameworks")] == 5 + 1  # 5 frameworks + decode cache
    assert t[("finetune", "embeddings")] == 4 + 2  # 4 SSL backbones + random x 2 seeds
    assert t[("finetune", "probe cells")] == 5 * 3 * 2 + 2  # + cache, aggregate
    assert t[("finetune", "fine-tune cells")] == 5 * 3 * 2
    assert t[("finetune", "two-phase cells")] == 5 * 2 * 1  # fractions 0.1/1, seed 0 only
    assert t[("classify3d", "fold runs")] == (3 + 1) * 2  # base/coarse/full + vit, 2 folds
    # xai upper bound: (10 fine-tune runs x (2 epochs + best) + 10 two-phase runs x (2 epochs
    # + selected) + 4 3D runs x 2 epochs) x 3 methods; faithfulness: the same (ckpt, method)s
    explained = (10 * 3 + 10 * 3 + 4 * 2) * 3
    assert t[("xai", "explain (checkpoint)")] == explained // 3  # one task, its 3 methods
    assert t[("xai", "faithfulness (checkpoint)")] == explained // 3
    assert t[("xai", "randomisation (run x method)")] == (10 + 10 + 4) * 3


def test_faithfulness_on_the_last_checkpoints_counts_one_per_run():
    params = load_params(REPO / "params.yaml", profile="smoke")
    params["xai"]["faithfulness"]["checkpoints"] = "last"
    t = {(c.stage, c.name): c.tasks for c in components(params, ONE, ONE)}
    runs = t[("xai", "randomisation (run x method)")]  # one per (run, method) as well
    assert t[("xai", "faithfulness (checkpoint)")] * 3 == runs == (10 + 10 + 4) * 3


def test_smoke_counts_match_the_task_runs_of_a_real_smoke_study():
    t = _tasks("smoke")
    runs = SMOKE_STUDY_TASK_RUNS
    assert t[("synth", "3D subjects")] - 3 + t[("synth", "2D subjects")] - 2 == runs["write_shard"]
    assert t[("standardize", "3D sessions")] == runs["standardize_one"]
    assert t[("pretrain", "frameworks")] - 1 == runs["pretrain_framework"]
    assert t[("finetune", "embeddings")] == runs["finetune_embed"]
    cells = t[("finetune", "probe cells")] - 2 + t[("finetune", "fine-tune cells")]
    assert cells == runs["finetune_cell"] == 60
    assert t[("classify3d", "fold runs")] == runs["train_run"]
    # that study ran one explain task per (checkpoint, method), 3 methods; now one per checkpoint
    assert t[("xai", "explain (checkpoint)")] * 3 >= runs["explain_task"]
    assert t[("xai", "randomisation (run x method)")] >= runs["randomisation_task"]


def test_full_counts_by_hand():
    t = _tasks("full")
    assert t[("synth", "3D subjects")] == 248 // 4 + 3  # 62 per diagnosis, shard 4
    assert t[("synth", "2D subjects")] == 240 // 4 + 2  # 40 per group x 6 groups
    assert t[("standardize", "3D sessions")] == 248
    assert t[("finetune", "fine-tune cells")] == 5 * 5 * 3  # inits x fractions x seeds
    assert t[("finetune", "two-phase cells")] == 5 * 5 * 3  # paper 004's protocol, every cell
    assert t[("finetune", "embeddings")] == 4 + 3
    # paper 003 rows ①-⑤ + coarse_maskinput, full_maskinput, oracle; + 3 backbones
    assert t[("classify3d", "fold runs")] == (8 + 3) * 5


def test_shared_pass_methods_are_the_explainers():
    from brainxai import plan
    from brainxai.xai import cams

    assert plan.SHARED_PASS_METHODS == cams.SHARED_PASS_METHODS
    # gradcam + layercam share 3 passes; smoothgrad (16 samples x fwd+bwd) runs alone
    params = load_params(REPO / "params.yaml", profile="smoke")
    params["xai"]["methods"] = ["gradcam", "layercam", "smoothgrad"]
    params["xai"]["cam"]["smoothgrad_samples"] = 16
    shared = {(c.stage, c.name): c.flops for c in components(params, ONE, ONE)}
    params["xai"]["methods"] = ["gradcam"]
    one = {(c.stage, c.name): c.flops for c in components(params, ONE, ONE)}
    key = ("xai", "explain (checkpoint)")
    assert shared[key] == pytest.approx(one[key] * (3 + 3 * 16) / 3)


def test_costs_scale_the_measured_seconds_by_the_work_ratio():
    full = [Component("s", "c", 12, "u", 600.0, "fn", aux=2, device="gpu", flops=3.6e15)]
    smoke = [Component("s", "c", 3, "u", 10.0, "fn", aux=1)]
    (row,) = plan_table(full, smoke, Measured({("fn", ""): 4.0}, {("fn", ""): 2}), 1.0)
    assert row["work_ratio_total"] == 60.0
    assert row["work_ratio_per_task"] == pytest.approx((600 / 10) / (10 / 2))
    assert row["est_cpu_hours_full"] == pytest.approx(4.0 * 2 * 60 / 3600)
    assert row["est_gpu_hours_full"] == pytest.approx(3.6e15 / 1e12 / 3600)  # 1 TFLOP/s


def test_resnet_flops_match_torchvision_published_gflops():
    # torchvision model card: ResNet-18 1.81 GFLOPS (multiply-adds) at 224 px
    assert resnet_flops("resnet18", 224) == pytest.approx(2 * 1.81e9, rel=0.01)
    # convolutions scale with pixels: 64 px is (64/224)^2 of it (+ the tiny fc layer)
    assert resnet_flops("resnet18", 64) == pytest.approx(2 * 1.81e9 * (64 / 224) ** 2, rel=0.02)


MEASURED = os.environ.get("BRAINXAI_MEASURED_STUDY", "")


@pytest.mark.slow  # needs a finished smoke study: BRAINXAI_MEASURED_STUDY=<its root>
@pytest.mark.skipif(
    not (Path(MEASURED) / ".prefect/prefect.db").exists() if MEASURED else True,
    reason="set BRAINXAI_MEASURED_STUDY to a finished smoke study's root",
)
def test_plan_reads_the_measured_study():
    from flows.plan import task_runs_of

    runs = task_runs_of(Path(MEASURED))
    by_task: dict[str, int] = {}
    for r in runs:
        by_task[r["task"]] = by_task.get(r["task"], 0) + 1
    for task, n in SMOKE_STUDY_TASK_RUNS.items():
        assert by_task[task] == n, task
