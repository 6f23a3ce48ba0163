"""Benchmark of the MRI standardization stage against the synthetic ground truth.

Accuracy (the generator knows the truth):
  * skull stripping: Dice to the true brain (intracranial) mask per backend, mean/min,
    seconds per subject; also Dice to the truth without its extra-axial CSF rim;
  * registration: CSF/GM/WM Dice of the true tissue labels warped to MNI vs the
    template's labels; Dice of the lesion carried through the same transforms vs the
    generator's lesion in template space;
  * N4: white-matter coefficient of variation before/after, and after dividing by the
    known bias field (the floor).
Speed: seconds per subject at 2 mm and 1 mm; throughput with 1 vs 2 worker processes
(ITK threads = cores // workers) and the scaling ratio, measured in the same run.

Usage::

  python benchmarks/bench_standardize.py --cohort-study /tmp/ref/study \\
      --std-study /tmp/me/study [--backends hdbet deepbet template] [--n 4]

``--std-study`` is a study root where ``brainxai data standardize`` has run (its
``data/processed/standardize_qc.parquet`` and per-subject outputs are read).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

SEQ_FILES = {"T1C+": "ce-gd_T1w", "T1": "T1w", "T2": "T2w", "FLAIR": "FLAIR"}


def _smoke_cfg(study: Path) -> dict[str, Any]:
    from brainxai.config import load_params

    return load_params(study / "params.yaml", profile="smoke")


def _subject_paths(cohort: Path, sub: str) -> dict[str, Path]:
    from brainxai.synth import subject_files

    return subject_files(cohort, sub)


def synth_cohort(params: Path, profile: str, n: int, out: Path) -> Path:
    """Write ``n`` subjects (spread over the plan) of ``profile``'s synth config to ``out``.

    The smoke cohort is generated at 2 mm, where the 1-3.5 mm extra-axial CSF rim cannot
    be resolved; the full profile's 1 mm cohort is the truth for 1 mm accuracy.
    """
    from brainxai.config import load_params
    from brainxai.synth import SynthConfig, plan_cohort3d, subject_files, write_subject3d

    p = load_params(params, profile=profile)
    scfg = SynthConfig.from_dict(p["synth"])
    specs = plan_cohort3d(scfg, int(p["seed"]))
    for spec in specs[:: max(1, len(specs) // n)][:n]:
        if not subject_files(out, spec.subject_id)["T1C+"].is_file():
            write_subject3d(spec, out, scfg)
    return out


def bench_backends(cohort: Path, subjects: list[str], backends: list[str], conf) -> dict:
    """Dice (to truth, to truth without CSF rim) and seconds per subject per backend."""
    import dataclasses

    from brainxai.standardize.accuracy import brain_mask_dice
    from brainxai.standardize.orient import canonical, load_volume, resample
    from brainxai.standardize.skullstrip import strip

    out: dict[str, Any] = {}
    for spec in backends:
        backend, _, variant = spec.partition(":")  # hdbet:accurate+tta, hdbet:fast ...
        sk = dataclasses.replace(conf.skullstrip, backend=backend)
        if variant:
            mode, _, tta = variant.partition("+")
            sk = dataclasses.replace(sk, mode=mode, tta=tta == "tta")
        rows = []
        for sub in subjects:
            f = _subject_paths(cohort, sub)
            rim = json.loads(f["xfm"].read_text())["head_shells_mm"]["csf_rim"]
            img = resample(canonical(load_volume(f["T1C+"])), conf.spacing_mm, "intensity")
            t0 = time.perf_counter()
            mask = strip(img, sk, conf.registration, conf.spacing_mm)
            sec = time.perf_counter() - t0
            rows.append(
                {
                    "subject": sub,
                    "dice": brain_mask_dice(mask, f["brain_mask"]),
                    "dice_no_rim": brain_mask_dice(mask, f["brain_mask"], exclude_rim_mm=rim),
                    "seconds": sec,
                }
            )
            print(f"  {spec} {sub}: dice {rows[-1]['dice']:.4f} "
                  f"(no rim {rows[-1]['dice_no_rim']:.4f}) {sec:.1f} s", flush=True)  # fmt: skip
        d = np.array([r["dice"] for r in rows])
        dn = np.array([r["dice_no_rim"] for r in rows])
        out[spec] = {
            "mode": sk.mode if backend == "hdbet" else None,
            "tta": sk.tta if backend == "hdbet" else None,
            "n": len(rows),
            "dice_mean": float(d.mean()),
            "dice_min": float(d.min()),
            "dice_no_rim_mean": float(dn.mean()),
            "dice_no_rim_min": float(dn.min()),
            "seconds_mean": float(np.mean([r["seconds"] for r in rows])),
            "rows": rows,
        }
    return out


def bench_stage_outputs(cohort_study: Path, std_study: Path, conf) -> dict:
    """Accuracy of the stage's own outputs: every subject with a ``qc.json`` under
    ``<std_study>/data/interim/standardized`` (works while the flow is still running)."""
    import ants

    from brainxai.standardize.accuracy import brain_mask_dice, template_lesion_mask, tissue_dice
    from brainxai.standardize.qc import dice
    from brainxai.standardize.template import load_template
    from brainxai.synth import SynthConfig, build_model, plan_cohort3d

    params = _smoke_cfg(cohort_study)
    scfg = SynthConfig.from_dict(params["synth"])
    specs = {s.subject_id: s for s in plan_cohort3d(scfg, int(params["seed"]))}
    tmpl = load_template(conf.spacing_mm, conf.skullstrip.envelope_closing_mm)
    cohort = cohort_study / "data/raw/synth/cohort3d"
    rows = []
    for qc_file in sorted((std_study / "data/interim/standardized").glob("*/qc.json")):
        res = json.loads(qc_file.read_text())
        sub = qc_file.parent.name.split("_")[-1]
        f = _subject_paths(cohort, sub)
        rim = json.loads(f["xfm"].read_text())["head_shells_mm"]["csf_rim"]
        native = ants.image_read(res["files"]["native_mask"])
        tis = tissue_dice(f["tissue_dseg"], res["xfm_fwd"], tmpl)
        lesion_true = template_lesion_mask(build_model(specs[sub], scfg), tmpl.t1)
        lesion = ants.image_read(res["files"]["lesion"]).numpy() > 0
        rows.append(
            {
                "subject": sub,
                "brain_dice": brain_mask_dice(native, f["brain_mask"]),
                "brain_dice_no_rim": brain_mask_dice(native, f["brain_mask"], rim),
                **{f"{k}_dice": v for k, v in tis.items()},
                "lesion_dice": dice(lesion, lesion_true),
                "lesion_ml_true": float(lesion_true.sum()) * conf.spacing_mm**3 / 1000,
                "qc_brain_dice": res["qc"]["brain_dice"],
                "qc_mutual_information": res["qc"]["mutual_information"],
                "seconds_in_flow": res["qc"]["seconds_total"],
            }
        )
        print(f"  {sub}: brain {rows[-1]['brain_dice']:.3f} wm {tis['wm']:.3f} "
              f"gm {tis['gm']:.3f} csf {tis['csf']:.3f} lesion {rows[-1]['lesion_dice']:.3f}",
              flush=True)  # fmt: skip
    keys = [k for k in rows[0] if k != "subject"] if rows else []
    summary = {
        k: {
            "mean": float(np.mean([r[k] for r in rows])),
            "min": float(np.min([r[k] for r in rows])),
        }
        for k in keys
    }
    return {"n": len(rows), "summary": summary, "rows": rows}


def bench_n4(cohort: Path, subjects: list[str], conf, settings: list[str] | None = None) -> dict:
    """WM CoV before/after N4 (inside the true brain mask) and with the true bias removed.

    ``settings`` are ``SHRINK:IT,IT,..`` overrides of the profile's N4 (one row each);
    the oracle - the raw image divided by the generator's bias field - bounds what any
    correction can reach, so each row also reports the share of that reduction reached.
    """
    import dataclasses

    from brainxai.standardize.accuracy import wm_cov
    from brainxai.standardize.bias import n4
    from brainxai.standardize.orient import canonical, load_volume, resample

    variants = {"params": conf.n4}
    for spec in settings or []:
        shrink, _, iters = spec.partition(":")
        variants[spec] = dataclasses.replace(
            conf.n4, shrink_factor=int(shrink), iterations=tuple(int(i) for i in iters.split(","))
        )
    rows = []
    for sub in subjects:
        f = _subject_paths(cohort, sub)
        img = resample(canonical(load_volume(f["T1C+"])), conf.spacing_mm, "intensity")
        mask = resample(canonical(load_volume(f["brain_mask"], "mask")), conf.spacing_mm, "mask")
        mask = mask.new_image_like((mask.numpy() > 0).astype(np.float32))
        for name, n4cfg in variants.items():
            t0 = time.perf_counter()
            corrected = n4(img, mask, n4cfg)
            sec = time.perf_counter() - t0
            cov = wm_cov(img, corrected, f["bias"], f["tissue_dseg"], f["lesion_dseg"])
            cov["reduction"] = 1.0 - cov["after"] / cov["before"]
            cov["oracle_reduction"] = 1.0 - cov["oracle"] / cov["before"]
            cov["bias_part_removed"] = (cov["before"] - cov["after"]) / (
                cov["before"] - cov["oracle"]
            )
            cov["seconds"] = sec
            rows.append({"subject": sub, "setting": name, **cov})
            print(f"  n4 {name} {sub}: CoV {cov['before']:.4f} -> {cov['after']:.4f} "
                  f"(oracle {cov['oracle']:.4f}) {sec:.1f} s", flush=True)  # fmt: skip
    keys = ("before", "after", "oracle", "reduction", "oracle_reduction", "bias_part_removed",
            "seconds")  # fmt: skip
    out: dict[str, Any] = {"n": len(subjects), "rows": rows}
    for name, n4cfg in variants.items():
        sel = [r for r in rows if r["setting"] == name]
        out[name] = {
            "shrink_factor": n4cfg.shrink_factor,
            "iterations": list(n4cfg.iterations),
            **{k: float(np.mean([r[k] for r in sel])) for k in keys},
            "reduction_min": float(np.min([r["reduction"] for r in sel])),
        }
    return out


def _one(args: tuple) -> float:
    """Worker: standardize one subject (threads capped first), return its seconds."""
    cfg_dict, images, out_dir, threads = args
    from brainxai.standardize import StandardizeConfig, set_threads, standardize_subject

    set_threads(threads)
    t0 = time.perf_counter()
    standardize_subject(images, out_dir, StandardizeConfig.from_dict(cfg_dict))
    return time.perf_counter() - t0


def bench_speed(
    cohort: Path,
    subjects: list[str],
    cfg: dict,
    out: Path,
    cores: int,
    spacings: tuple[float, ...] = (2.0, 1.0),
    scaling: bool = True,
) -> dict:
    """Seconds/subject at 2 and 1 mm; throughput with 1 and 2 worker processes."""

    def jobs(spacing: float, threads: int, tag: str) -> list[tuple]:
        c = {**cfg, "spacing_mm": spacing, "qc": {**cfg.get("qc", {}), "montage": False}}
        return [
            (c, {s: str(_subject_paths(cohort, sub)[s]) for s in SEQ_FILES}, str(out / tag / sub),
             threads)
            for sub in subjects
        ]  # fmt: skip

    res: dict[str, Any] = {}
    with ProcessPoolExecutor(1) as pool:  # warm-up import + template cache per process
        for spacing in spacings:
            secs = list(pool.map(_one, jobs(spacing, cores, f"s{spacing}")[:1]))
            res[f"seconds_per_subject_{spacing:g}mm"] = float(np.mean(secs))
            print(f"  {spacing:g} mm: {secs[0]:.1f} s/subject", flush=True)
    if not scaling:
        return res
    # (workers, ITK threads per worker): the stage's own choice for 1 and 2 workers
    # (threads = cores // workers), and one worker held to one thread, the per-worker
    # baseline that isolates what a second process adds from what threads already give
    half = max(1, cores // 2)
    for workers, threads in ((1, cores), (1, 1), (2, half)):
        tag = f"{workers}w{threads}t"
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_one, jobs(2.0, threads, f"warm{tag}")[:workers]))  # warm
            t0 = time.perf_counter()
            list(pool.map(_one, jobs(2.0, threads, tag)))
            wall = time.perf_counter() - t0
        res[f"throughput_{tag}_subjects_per_min"] = 60.0 * len(subjects) / wall
        res[f"wall_{tag}_s"] = wall
        print(f"  {workers} worker(s) x {threads} thread(s): {wall:.1f} s for "
              f"{len(subjects)} subjects", flush=True)  # fmt: skip
    two = res[f"throughput_2w{half}t_subjects_per_min"]
    res["scaling_2w_over_1w"] = two / res[f"throughput_1w{cores}t_subjects_per_min"]
    res["scaling_2w_over_1w1t"] = two / res["throughput_1w1t_subjects_per_min"]
    return res


def _without_rows(v: Any) -> Any:
    """``v`` with every nested ``rows`` list left out (the printed summary)."""
    if not isinstance(v, dict):
        return v
    return {k: _without_rows(x) for k, x in v.items() if k != "rows"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cohort-study", type=Path, default=Path("/tmp/ref/study"))
    ap.add_argument("--std-study", type=Path, default=None)
    ap.add_argument("--params", type=Path, default=Path(__file__).parents[1] / "params.yaml")
    ap.add_argument("--backends", nargs="*", default=["hdbet", "deepbet", "template"])
    ap.add_argument("--n", type=int, default=4, help="subjects for backend/N4 accuracy")
    ap.add_argument("--n-speed", type=int, default=4, help="subjects for throughput")
    ap.add_argument("--parts", nargs="*", default=["backends", "stage", "n4", "speed"])
    ap.add_argument("--speed-spacings", nargs="*", type=float, default=[2.0, 1.0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_standardize"))
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument(
        "--n4-settings",
        nargs="*",
        default=[],
        metavar="SHRINK:IT,IT",
        help="extra N4 settings to compare with the profile's, e.g. 2:50,50,50",
    )
    ap.add_argument("--speed-backend", default=None, help="skull-strip backend for speed")
    ap.add_argument("--skip-scaling", action="store_true", help="speed: seconds/subject only")
    ap.add_argument("--profile", default="smoke", help="params profile of the stage config")
    ap.add_argument("--spacing", type=float, default=None, help="override spacing_mm")
    ap.add_argument(
        "--synth",
        default=None,
        metavar="PROFILE:N",
        help="measure on N subjects of PROFILE's synth config (written under --out) "
        "instead of the study's cohort, e.g. full:4 for the 1 mm cohort",
    )
    args = ap.parse_args()

    from brainxai.config import load_params
    from brainxai.standardize import StandardizeConfig, set_threads

    cores = os.cpu_count() or 1
    set_threads(cores)
    cfg = load_params(args.params, profile=args.profile)["standardize"]["config"]
    if args.spacing:
        cfg = {**cfg, "spacing_mm": args.spacing}
    conf = StandardizeConfig.from_dict(cfg)
    cohort = args.cohort_study / "data/raw/synth/cohort3d"
    if args.synth:
        prof, _, n = args.synth.partition(":")
        cohort = synth_cohort(args.params, prof, int(n or 4), args.out / f"cohort_{prof}")
    subjects = sorted(p.name for p in cohort.glob("sub-*"))
    pick = subjects[:: max(1, len(subjects) // args.n)][: args.n]
    result: dict[str, Any] = {
        "cores": cores,
        "profile": args.profile,
        "cohort": str(cohort),
        "spacing_mm": conf.spacing_mm,
        "subjects": pick,
    }
    if "backends" in args.parts:
        print("skull stripping per backend", flush=True)
        result["backends"] = bench_backends(cohort, pick, args.backends, conf)
    if "stage" in args.parts and args.std_study:
        print("stage outputs (registration, lesion)", flush=True)
        result["stage"] = bench_stage_outputs(args.cohort_study, args.std_study, conf)
    if "n4" in args.parts:
        print("N4", flush=True)
        result["n4"] = bench_n4(cohort, pick, conf, args.n4_settings)
    if "speed" in args.parts:
        print("speed", flush=True)
        scfg = cfg
        if args.speed_backend:
            scfg = {**cfg, "skullstrip": {**cfg["skullstrip"], "backend": args.speed_backend}}
        result["speed"] = bench_speed(
            cohort,
            pick[: args.n_speed],
            scfg,
            args.out,
            cores,
            tuple(args.speed_spacings),
            scaling=not args.skip_scaling,
        )
    print(json.dumps(_without_rows(result), indent=1, default=float))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
