"""The scale-out plan: Prefect tasks per stage from params, and estimated CPU/GPU hours.

Task counts follow the flows' fan-out exactly where it depends on params only; where a
stage's library plans its fan-out, the count calls that plan (the synth shards:
:func:`brainxai.synth.stage.shards`; the classify3d runs:
:func:`brainxai.classify3d.stage.plan_runs`; the fine-tuning cells and embeddings:
:func:`brainxai.finetune.stage.cells` and :func:`~brainxai.finetune.stage.embeddings`), so
it cannot drift from what runs:

=============  ==========================================================================
synth          ``ceil(n_3d / shard_size) + ceil(n_2d / shard_size)`` shards (+ 2 plan,
               2 finalize, 1 fault-planting task)
ingest         one task per source (+ 1 split/data-card task)
standardize    one task per 3D session
difficulty     one task
pretrain       one task per framework (+ 1 decode-cache task)
finetune       one embedding task per frozen backbone when probing (``random``: per seed)
               + inits x protocols x fractions x seeds cells (+ cache, aggregate)
pseudolabel    one task per 3D session
classify3d     (ablation rows on the ablation backbone + comparison backbones) x folds
xai            checkpoints x methods (+ runs x methods randomisation checks); checkpoints
               depend on the fine-tuning index (best epochs): counted as an upper bound,
               ``|checkpoint_epochs| + 1`` per tracked run
=============  ==========================================================================

Costs: the *measured* median seconds per task of each component in a finished smoke study
(its Prefect task runs), scaled by the component's work ratio full / smoke — forward FLOPs
(counted on the ``meta`` device with :class:`torch.utils.flop_counter.FlopCounterMode`) x
images x passes for the networks, voxels (x registration iterations) for the volume
stages. CPU-hours are that scaled measurement (this machine's class: 2 shared cores).
GPU-hours are **estimates, not measured** (no GPU was available): training/inference
FLOPs / an assumed sustained GPU throughput (``plan.gpu_effective_tflops``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from brainxai.labels import DIAGNOSES_3D, KAGGLE_GROUPS, SEQUENCES_2D

if TYPE_CHECKING:
    from brainxai.finetune.runs import RunSpec

#: forward + backward ~ 3 forward passes (backward ~ 2x forward), per trained image.
TRAIN_PASSES = 3.0
#: forward-equivalents per image of each CAM method (gradient methods: fwd + bwd = 3).
METHOD_PASSES: dict[str, Callable[[Mapping[str, Any]], float]] = {
    "gradcam": lambda c: 3.0,
    "gradcam++": lambda c: 3.0,
    "layercam": lambda c: 3.0,
    "eigencam": lambda c: 1.0,
    "scorecam": lambda c: 1.0 + float(c["scorecam_max_masks"]),
    "ms-gradcam++": lambda c: 3.0 * 3,  # three input scales
    "smoothgrad": lambda c: 3.0 * float(c["smoothgrad_samples"]),
    "ig": lambda c: 3.0 * float(c["ig_steps"]),
    "lrp": lambda c: 1.0 + 3.0,  # Captum: a forward pass to record inputs, then fwd + bwd
}
#: CAMs computed together from one forward + backward pass per batch (3 passes in all;
#: ``brainxai.xai.cams.SHARED_PASS_METHODS``, kept equal by tests/test_plan.py).
SHARED_PASS_METHODS = ("gradcam", "gradcam++", "layercam", "eigencam", "ms-gradcam++")
SHARED_PASSES = 3.0
#: Forward passes of a frozen-backbone training step (no backbone backward).
FROZEN_PASSES = 1.0
GPU_STAGES = ("pretrain", "finetune", "classify3d", "xai")


@dataclass(frozen=True)
class PlanConfig:
    """``params.plan``: where the per-task seconds are measured, the assumed GPU speed."""

    measured_study: str = "."  # a finished smoke study (its .prefect/prefect.db)
    gpu_effective_tflops: float = 60.0  # sustained bf16 FLOP/s of one GPU (assumed)
    out_dir: str = "reports/plan"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> PlanConfig:
        d = dict(d or {})
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown plan keys: {unknown}")
        cfg = cls(**d)
        if cfg.gpu_effective_tflops <= 0:
            raise ValueError("plan.gpu_effective_tflops must be > 0")
        return cfg


@dataclass
class Cohort:
    """Sizes the fan-out depends on (from the synth config: the embedded data set)."""

    n_3d: int
    n_2d_subjects: int
    n_2d_images: int  # upper bound: subjects x slices x sequences (faults/blank slices off)
    voxel_mm: float
    image_px: float  # mean 2D image side
    train: float  # patient split fractions
    test: float

    @classmethod
    def of(cls, params: Mapping[str, Any]) -> Cohort:
        s = params["synth"]
        n_3d = int(s["n_subjects_3d_per_class"]) * len(DIAGNOSES_3D)
        n_2d = int(s["n_subjects_2d_per_group"]) * len(KAGGLE_GROUPS)
        images = n_2d * int(s["slices_per_subject"]) * len(SEQUENCES_2D)
        return cls(
            n_3d,
            n_2d,
            images,
            float(s["resolution_mm"]),
            (float(s["image_size_min"]) + float(s["image_size_max"])) / 2,
            float(params["split"]["train"]),
            float(params["split"]["test"]),
        )


@dataclass
class Component:
    """One kind of Prefect task in a stage: how many, how much work, which measured runs."""

    stage: str
    name: str
    tasks: int
    unit: str
    work: float  # in ``unit`` (FLOPs or voxel-iterations...), whole component
    task_key: str  # Prefect task function name in the measured study's task runs
    aux: int = 0  # bookkeeping tasks among ``tasks`` (plan, finalize, cache...): not costed
    name_filter: str = ""  # substring of the task-run name (splits one task function)
    device: str = "cpu"  # where the full profile runs it
    flops: float = 0.0  # total FLOPs (GPU components), for the GPU-hour estimate
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _shards(n: int, size: int) -> int:
    """How many shard tasks the synth stage writes ``n`` subjects in."""
    from brainxai.synth.stage import shards

    return len(shards(n, size))


def resnet_flops(arch: str, size: int) -> float:
    """Forward FLOPs of one ``size`` x ``size`` image through a torchvision ResNet."""
    import torch
    import torchvision
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = getattr(torchvision.models, arch)(num_classes=17)
        x = torch.empty(1, 3, size, size)
    with FlopCounterMode(display=False) as fc:
        model(x)
    return float(fc.get_total_flops())


def volume_flops(spec: Mapping[str, Any], size: tuple[int, int, int]) -> float:
    """Forward FLOPs of one volume through a 3D backbone (meta device; Swin: scaled).

    Swin's window code reads tensor values (no meta): it is counted on a real 32^3 input
    and scaled by the voxel ratio (windowed attention and convolutions are linear in it).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from brainxai.classify3d.model import build_backbone

    def count(dev: str, shape: tuple[int, ...]) -> float:
        with torch.device(dev):
            model = build_backbone(dict(spec), 1, shape)
            x = torch.zeros(1, 1, *shape)
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            model(x)
        return float(fc.get_total_flops())

    if spec.get("kind") == "swin":
        small = (32, 32, 32)
        return count("cpu", small) * math.prod(size) / math.prod(small)
    return count("meta", tuple(size))


FlopFn = Callable[..., float]


def components(
    params: Mapping[str, Any],
    resnet: FlopFn = resnet_flops,
    volume: FlopFn = volume_flops,
) -> list[Component]:
    """Every task kind of the profile in ``params`` (a merged ``load_params`` mapping)."""
    c = Cohort.of(params)
    vox = (1.0 / c.voxel_mm) ** 3  # relative voxels per volume
    out: list[Component] = []
    shard = int(params["runner"]["shard_size"])
    s = params["synth"]
    out.append(
        Component(
            "synth",
            "3D subjects",
            2 + _shards(c.n_3d, shard) + 1,
            "voxels",
            c.n_3d * vox,
            "write_shard",
            3,
            name_filter="cohort3d",
            note=f"{c.n_3d} volumes at {c.voxel_mm:g} mm; +plan/finalize",
        )
    )
    faults = int(any(params.get("synth_faults", {}).values()))
    out.append(
        Component(
            "synth",
            "2D subjects",
            _shards(c.n_2d_subjects, shard) + 1 + faults,
            "pixels",
            c.n_2d_subjects * int(s["slices_per_subject"]) * c.image_px**2,
            "write_shard",
            1 + faults,
            name_filter="kaggle2d",
            note=f"{c.n_2d_subjects} subjects",
        )
    )
    n_sources = len(params["ingest"]["sources"])
    out.append(
        Component(
            "ingest",
            "sources",
            n_sources + 1,
            "files",
            c.n_3d * 4 + c.n_2d_images,
            "ingest_source",
            1,
            note="validate + dedup every file; +1 split/data card",
        )
    )
    reg = params["standardize"]["config"]["registration"]
    iters = sum(reg["rigid_iterations"]) + sum(reg["affine_iterations"])
    iters += sum(reg["syn_iterations"])
    sstrip = params["standardize"]["config"]["skullstrip"]
    out.append(
        Component(
            "standardize",
            "3D sessions",
            c.n_3d,
            "voxel-iterations",
            c.n_3d * vox * iters,
            "standardize_one",
            note=f"{c.voxel_mm:g} mm, {iters} registration iterations, "
            f"skull strip {sstrip['backend']}/{sstrip['mode']} "
            "(HD-BET on GPU: not in the scaling)",
        )
    )
    out.append(Component("difficulty", "baselines", 1, "images", c.n_2d_images, "difficulty_probe"))
    out += _pretrain(params, c, resnet)
    out += _finetune(params, c, resnet)
    out.append(
        Component(
            "pseudolabel",
            "3D sessions",
            c.n_3d,
            "voxels",
            c.n_3d * vox,
            "pseudolabel_one",
            note=f"proposer {params['pseudolabel']['config']['proposer']} "
            "(classical: CPU; a VLM proposer adds GPU time not counted)",
        )
    )
    out += _classify3d(params, c, volume)
    out += _xai(params, c, resnet, volume)
    return out


def _pretrain(params: Mapping[str, Any], c: Cohort, resnet: FlopFn) -> list[Component]:
    p = params["pretrain"]
    t, a = p["train"], p["augment"]
    n_img = c.train * (c.n_2d_images + int(p["data"]["slices_per_volume"]) * c.n_3d)
    steps = math.ceil(n_img / int(t["batch_size"]))
    if int(t["max_steps_per_epoch"]):
        steps = min(steps, int(t["max_steps_per_epoch"]))
    seen = int(t["epochs"]) * steps * int(t["batch_size"])
    f = resnet(t["arch"], int(t["image_size"]))
    flops = 0.0
    for fw in p["frameworks"]:
        views = 1.0 if fw == "supervised" else 2.0
        if fw == "dino":
            views += int(a["local_views"]) * (int(a["local_size"]) / int(t["image_size"])) ** 2
        flops += seen * views * TRAIN_PASSES * f
    return [
        Component(
            "pretrain",
            "frameworks",
            len(p["frameworks"]) + 1,
            "FLOPs",
            flops,
            "pretrain_framework",
            1,
            device="gpu",
            flops=flops,
            note=f"{t['arch']}@{t['image_size']}px, {t['epochs']} epochs x "
            f"{steps} steps x {t['batch_size']}; +1 decode cache",
        )
    ]


def _finetune_plan(params: Mapping[str, Any]) -> tuple[list[str], list[RunSpec], int]:
    """The fine-tuning inits, cells and frozen-backbone embeddings, as the finetune stage
    fans out over them (:mod:`brainxai.finetune.stage`)."""
    from brainxai.finetune import stage
    from brainxai.finetune.config import FinetuneConfig

    cfg = FinetuneConfig.from_dict(params["finetune"])
    inits = stage.all_inits(cfg)
    return inits, stage.cells(cfg, inits), len(stage.embeddings(cfg, inits))


def _finetune(params: Mapping[str, Any], c: Cohort, resnet: FlopFn) -> list[Component]:
    p, t = params["finetune"], params["pretrain"]["train"]
    inits, specs, embeds = _finetune_plan(params)
    seeds, fractions, protocols = p["seeds"], p["fractions"], p["protocols"]
    f = resnet(t["arch"], int(t["image_size"]))
    n_train, n_test = c.train * c.n_2d_images, c.test * c.n_2d_images
    n_all = c.n_2d_images
    out = []
    if "probe" in protocols:
        flops = embeds * n_all * f
        out.append(
            Component(
                "finetune",
                "embeddings",
                embeds,
                "FLOPs",
                flops,
                "finetune_embed",
                device="gpu",
                flops=flops,
                note="frozen backbone over every image",
            )
        )
    tune = p["tune"]
    for protocol in protocols:
        cells = sum(rs.protocol == protocol for rs in specs)
        if protocol == "twophase":
            out.append(_twophase(p, inits, specs, n_train, n_test, f))
            continue
        if protocol == "probe":
            epochs = int(p["probe"]["epochs"])
            work = cells * epochs * sum(fractions) / len(fractions) * n_train
            out.append(
                Component(
                    "finetune",
                    "probe cells",
                    cells + 2,
                    "head-epochs x images",
                    work,
                    "finetune_cell",
                    2,
                    name_filter="__probe__",
                    note="linear head on cached embeddings (CPU); +cache, aggregate",
                )
            )
            continue
        bs = int(tune["batch_size"])
        per_frac = []
        for fr in fractions:
            steps = math.ceil(fr * n_train / bs)
            if int(tune["max_steps_per_epoch"]):
                steps = min(steps, int(tune["max_steps_per_epoch"]))
            per_frac.append(steps * bs)
        seen = int(tune["epochs"]) * sum(per_frac) * len(inits) * len(seeds)
        flops = seen * TRAIN_PASSES * f + cells * int(tune["epochs"]) * n_test * f
        out.append(
            Component(
                "finetune",
                "fine-tune cells",
                cells,
                "FLOPs",
                flops,
                "finetune_cell",
                name_filter="__finetune__",
                device="gpu",
                flops=flops,
                note=f"{tune['epochs']} epochs (no early stop), eval every epoch",
            )
        )
    return out


def _fractions_seeds(specs: list[RunSpec], protocol: str) -> tuple[list[float], list[int]]:
    """The fractions and the seeds ``protocol`` runs at among the stage's cells ``specs``."""
    mine = [rs for rs in specs if rs.protocol == protocol]
    fractions = list(dict.fromkeys(rs.fraction for rs in mine))
    return fractions, list(dict.fromkeys(rs.seed for rs in mine))


def _twophase(
    p: Mapping[str, Any],
    inits: list[str],
    specs: list[RunSpec],
    n_train: float,
    n_test: float,
    f: float,
) -> Component:
    """Paper 004's runs (the two-phase cells of the stage's ``specs``): phase 1 forward-only
    through the frozen backbone, phase 2 trains."""
    tp = p["twophase"]
    fractions, seeds = _fractions_seeds(specs, "twophase")
    bs, cap = int(tp["batch_size"]), int(tp["max_steps_per_epoch"])
    per_frac = []
    for fr in fractions:
        steps = math.ceil(fr * n_train / bs)
        per_frac.append((min(steps, cap) if cap else steps) * bs)
    seen = sum(per_frac) * len(inits) * len(seeds)
    frozen, unfrozen = int(tp["frozen_epochs"]), int(tp["unfrozen_epochs"])
    cells = sum(rs.protocol == "twophase" for rs in specs)
    flops = seen * (frozen * FROZEN_PASSES + unfrozen * TRAIN_PASSES) * f
    flops += cells * (frozen + unfrozen) * n_test * f
    return Component(
        "finetune",
        "two-phase cells",
        cells,
        "FLOPs",
        flops,
        "finetune_cell",
        name_filter="__twophase__",
        device="gpu",
        flops=flops,
        note=f"paper 004: {frozen} epochs frozen backbone + {unfrozen} trained, eval every epoch",
    )


def _classify3d_runs(section: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The (variant, backbone) runs of the classify3d stage (every row runnable)."""
    from brainxai.classify3d.config import Classify3DConfig
    from brainxai.classify3d.stage import plan_runs

    return plan_runs(Classify3DConfig.from_dict(dict(section)))[0]


def _classify3d(params: Mapping[str, Any], c: Cohort, volume: FlopFn) -> list[Component]:
    p = params["classify3d"]
    runs = _classify3d_runs(p)
    folds = int(p["cv"]["n_folds"])
    size = tuple(int(x) for x in p["data"]["input_size"])
    n_pool = (1 - c.test) * c.n_3d
    n_train = n_pool * (folds - 1) / folds * (1 - float(p["cv"]["inner_val_fraction"]))
    epochs = int(p["train"]["epochs"])
    per_bb = {b: volume(p["backbones"][b], size) for b in {b for _, b in runs}}
    flops = sum(
        folds * (epochs * (n_train * TRAIN_PASSES + n_pool / folds) + c.test * c.n_3d) * per_bb[b]
        for _, b in runs
    )
    names = ", ".join(f"{r}/{b}" for r, b in runs)
    return [
        Component(
            "classify3d",
            "fold runs",
            len(runs) * folds,
            "FLOPs",
            flops,
            "train_run",
            device="gpu",
            flops=flops,
            note=f"{len(runs)} runs ({names}) x {folds} folds, {epochs} epochs "
            f"at {'x'.join(map(str, size))} (no early stop)",
            extra={"backbone_gflops": {b: v / 1e9 for b, v in per_bb.items()}},
        )
    ]


def _select_count(values: list[Any], chosen: list[Any]) -> int:
    """How many of ``values`` an xai selection list keeps ([] = all; min/max = one each)."""
    if not chosen:
        return len(values)
    return sum(1 for v in chosen if v in ("min", "max") or v in values)


def _xai(params: Mapping[str, Any], c: Cohort, resnet: FlopFn, volume: FlopFn) -> list[Component]:
    x, ft, c3 = params["xai"], params["finetune"], params["classify3d"]
    sel, cam = x["select"], x["cam"]
    methods = list(x["methods"])
    inits, specs, _ = _finetune_plan(params)
    # checkpoints per run of each protocol (+ the selected epoch: an upper bound)
    per_run = {
        "probe": len(ft["probe"]["checkpoint_epochs"]),
        "finetune": len(ft["tune"]["checkpoint_epochs"]) + 1,
        "twophase": len(ft["twophase"]["checkpoint_epochs"]) + 1 if "twophase" in ft else 0,
    }
    runs_of: dict[str, int] = {}
    for protocol in ft["protocols"]:
        if sel["protocols"] and protocol not in sel["protocols"]:
            continue
        fractions, seeds = _fractions_seeds(specs, protocol)
        runs_of[protocol] = (
            _select_count(inits, sel["inits"])
            * min(_select_count(ft["fractions"], sel["fractions"]), len(fractions))
            * min(_select_count(ft["seeds"], sel["seeds"]), len(seeds))
        )
    runs_2d = sum(runs_of.values())
    ck_all_2d = sum(n * per_run[p] for p, n in runs_of.items())
    ck_2d = max((per_run[p] for p in runs_of), default=0)
    runs_3d = len(_classify3d_runs(c3))  # fold 0 only (xai.families.classify3d.select)
    ck_3d = len(c3["train"]["checkpoint_epochs"])
    fam3 = x["families"].get("classify3d", {})
    imgs_2d = min(int(x["max_images"]), int(c.test * c.n_2d_images))
    imgs_3d = min(int(fam3.get("max_images", x["max_images"])), int(c.test * c.n_3d))
    t = params["pretrain"]["train"]
    f2 = resnet(t["arch"], int(t["image_size"]))
    size = tuple(int(v) for v in c3["data"]["input_size"])
    f3 = volume(c3["backbones"][c3["ablation_backbone"]], size)
    alone = [m for m in methods if m not in SHARED_PASS_METHODS]
    shared = SHARED_PASSES if len(alone) < len(methods) else 0.0
    passes = shared + sum(METHOD_PASSES[m](cam) for m in alone)
    ckpts = ck_all_2d + runs_3d * ck_3d
    work_2d, work_3d = ck_all_2d * imgs_2d * f2, runs_3d * ck_3d * imgs_3d * f3
    flops = passes * (work_2d + work_3d)
    if x.get("faithfulness", {}).get("checkpoints", "all") == "last":  # each run's final one
        faith = _faithfulness(x, runs_2d + runs_3d, len(methods), runs_2d * imgs_2d * f2,
                              runs_3d * imgs_3d * f3, imgs_2d, imgs_3d)  # fmt: skip
    else:
        faith = _faithfulness(x, ckpts, len(methods), work_2d, work_3d, imgs_2d, imgs_3d)
    rnd = x.get("randomisation", {})
    n_rnd_m = len(rnd.get("methods") or methods) if rnd.get("enabled", True) else 0
    r_img = int(rnd.get("max_images", imgs_2d))
    r_flops = (
        n_rnd_m
        * passes
        / max(len(methods), 1)
        * (runs_2d * min(r_img, imgs_2d) * f2 + runs_3d * min(r_img, imgs_3d) * f3)
    )
    return [
        Component(
            "xai",
            "explain (checkpoint)",
            ckpts,
            "FLOPs",
            flops,
            "explain_task",
            device="gpu",
            flops=flops,
            note=f"<= {ckpts} checkpoints ({runs_2d} 2D runs x <= {ck_2d}, {runs_3d} 3D "
            f"runs x {ck_3d}), {len(methods)} methods each, {imgs_2d}/{imgs_3d} images",
        ),
        Component(
            "xai",
            "randomisation (run x method)",
            (runs_2d + runs_3d) * n_rnd_m,
            "FLOPs",
            r_flops,
            "randomisation_task",
            device="gpu",
            flops=r_flops,
            note="final checkpoint of each run, randomised weights",
        ),
        *faith,
    ]


def _faithfulness(
    x: Mapping[str, Any],
    ckpts: int,
    n_methods: int,
    work_2d: float,
    work_3d: float,
    imgs_2d: int,
    imgs_3d: int,
) -> list[Component]:
    """Deletion + insertion curves of every explained (checkpoint, method), and the random
    control's once per checkpoint: ``steps + 1`` forward passes per image and curve."""
    fa = x.get("faithfulness", {})
    if not fa.get("enabled", False):
        return []
    cap = int(fa.get("max_images", 0))
    share_2d = min(cap, imgs_2d) / imgs_2d if cap and imgs_2d else 1.0
    share_3d = min(cap, imgs_3d) / imgs_3d if cap and imgs_3d else 1.0
    points = int(fa.get("steps", 0)) + 1
    # each method's maps, and one random control per checkpoint shared by its methods
    sets = n_methods + (1 if fa.get("random_control", False) else 0)
    flops = sets * 2 * points * (work_2d * share_2d + work_3d * share_3d)
    return [
        Component(
            "xai",
            "faithfulness (checkpoint)",
            ckpts,
            "FLOPs",
            flops,
            "faithfulness_task",
            device="gpu",
            flops=flops,
            note=f"{sets} map sets x 2 curves x {points} points per image, stored maps",
        )
    ]


@dataclass
class Measured:
    """Median seconds per task run and the count, per (task function, name filter)."""

    seconds: dict[tuple[str, str], float]
    count: dict[tuple[str, str], int]


def measured_costs(task_runs: list[dict[str, Any]], comps: list[Component]) -> Measured:
    """Median duration of the *completed* (not cached) task runs of each component.

    ``task_runs``: ``{"task": <function name>, "name": <run name>, "seconds": s}``.
    """
    import statistics

    secs, count = {}, {}
    for comp in comps:
        key = (comp.task_key, comp.name_filter)
        durations = [
            r["seconds"]
            for r in task_runs
            if r["task"] == comp.task_key and comp.name_filter in r["name"]
        ]
        if durations:
            secs[key] = float(statistics.median(durations))
            count[key] = len(durations)
    return Measured(secs, count)


def plan_table(
    full: list[Component],
    smoke: list[Component],
    measured: Measured,
    gpu_effective_tflops: float,
) -> list[dict[str, Any]]:
    """One row per component: tasks, measured s/task (smoke), work ratio, CPU/GPU hours."""
    by_key = {(s.stage, s.name): s for s in smoke}
    rows = []
    for comp in full:
        sm = by_key[(comp.stage, comp.name)]
        key = (comp.task_key, comp.name_filter)
        sec = measured.seconds.get(key)
        ratio = comp.work / sm.work if sm.work else float("nan")
        per_task = comp.work / (comp.tasks - comp.aux) if comp.tasks > comp.aux else 0.0
        per_task_smoke = sm.work / (sm.tasks - sm.aux) if sm.tasks > sm.aux else 0.0
        task_ratio = per_task / per_task_smoke if per_task_smoke else float("nan")
        cpu_h = sec * (sm.tasks - sm.aux) * ratio / 3600 if sec is not None else float("nan")
        gpu_h = comp.flops / (gpu_effective_tflops * 1e12) / 3600 if comp.device == "gpu" else 0.0
        rows.append(
            {
                "stage": comp.stage,
                "component": comp.name,
                "device": comp.device,
                "tasks_smoke": sm.tasks,
                "tasks_full": comp.tasks,
                "unit": comp.unit,
                "smoke_s_per_task": sec,
                "smoke_task_runs_measured": measured.count.get(key, 0),
                "work_ratio_per_task": task_ratio,
                "work_ratio_total": ratio,
                "est_cpu_hours_full": cpu_h,
                "est_gpu_hours_full": gpu_h,
                "tflop_full": comp.flops / 1e12,
                "assumptions": comp.note,
            }
        )
    return rows
