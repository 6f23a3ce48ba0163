"""Benchmark the patient-level bootstrap (brainxai.evaluation.bootstrap): vectorised vs loop.

    PYTHONPATH=src python benchmarks/bench_bootstrap.py           # full-profile test set
    PYTHONPATH=src python benchmarks/bench_bootstrap.py --quick   # smoke-size test set

Test set shaped like the full profile's 2D test split (17 Kaggle classes, ``--patients``
patients with ``--images`` slices each), one run, ``--n-boot`` patient resamples. Baseline
(measured in the same run): the textbook loop — per replicate, gather the resampled image
list and call scikit-learn (``f1_score(average="macro", zero_division=0)``,
``roc_auc_score`` per class, the metric ``classification_metrics`` defines). Vectorised: one
matrix product of the ``(B, N)`` image multiplicities with the one-hot (truth, prediction)
pairs (weighted confusions) or weighted rank sums (AUROC). Prints times, the ratio and the
max |Δ| between the two interval endpoints (same resampled patients, so it must be ~0).

``--calibration REPS`` first simulates the statistics themselves: coverage of the 95 %
patient-bootstrap interval on clustered patients (vs resampling images), and the rejection
rates of the paired bootstrap and McNemar under a null and a planted difference.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from sklearn.metrics import f1_score, roc_auc_score

from brainxai.evaluation.bootstrap import patient_bootstrap, patient_codes, patient_draws


def sample(n_patients: int, per_patient: int, k: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    patients = np.repeat(np.arange(n_patients), per_patient)
    y = rng.integers(0, k, patients.size)
    probs = rng.dirichlet(np.ones(k), y.size)
    probs[np.arange(y.size), y] += rng.random(y.size) * 0.5
    return y, probs / probs.sum(axis=1, keepdims=True), patients


def sk_macro_f1(y: np.ndarray, probs: np.ndarray) -> float:
    return float(f1_score(y, probs.argmax(axis=1), average="macro", zero_division=0))


def sk_macro_auroc(y: np.ndarray, probs: np.ndarray) -> float:
    aucs = [roc_auc_score(y == c, probs[:, c]) for c in np.unique(y) if 0 < (y == c).sum() < y.size]
    return float(np.mean(aucs)) if len(aucs) >= 2 else float("nan")


def loop_ci(y, probs, patients, metric, n_boot, seed, alpha=0.05):
    codes = patient_codes(patients)
    draws = patient_draws(int(codes.max()) + 1, n_boot, seed)
    values = np.empty(n_boot)
    for b in range(n_boot):
        rows = np.repeat(np.arange(y.size), draws[b][codes])
        values[b] = metric(y[rows], probs[rows])
    finite = values[np.isfinite(values)]
    return np.quantile(finite, [alpha / 2, 1 - alpha / 2])


def best_of(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def outcome_probs(rng, y: np.ndarray, correct: np.ndarray, k: int) -> np.ndarray:
    pred = np.where(correct, y, (y + rng.integers(1, k, y.size)) % k)
    p = rng.dirichlet(np.ones(k), y.size) * 0.4
    p[np.arange(y.size), pred] += 0.6
    return p / p.sum(axis=1, keepdims=True)


def calibration(reps: int) -> None:
    """Coverage of the 95 % interval and rejection rates of the paired tests, by simulation."""
    from brainxai.evaluation.significance import mcnemar, paired_bootstrap

    rng = np.random.default_rng(2024)
    hits = {"patient": 0, "image": 0}
    for r in range(reps):  # 30 patients × 6 images, patient accuracy ~ Beta(1.4, 0.6), mean 0.7
        p = rng.beta(1.4, 0.6, 30)
        patients = np.repeat(np.arange(30), 6)
        y = rng.integers(0, 2, patients.size)
        probs = outcome_probs(rng, y, rng.random(y.size) < p[patients], 2)
        for unit, groups in (("patient", patients), ("image", np.arange(y.size))):
            ci = patient_bootstrap(y, probs, groups, "accuracy", n_boot=400, seed=r)
            hits[unit] += ci.low <= 0.7 <= ci.high
    print(
        f"95 % CI coverage of the true accuracy 0.7 (clustered patients, {reps} data sets): "
        f"patient resampling {hits['patient'] / reps:.3f}, image resampling "
        f"{hits['image'] / reps:.3f}"
    )
    for acc_a, label in ((0.6, "null (0.60 vs 0.60)"), (0.7, "power (0.70 vs 0.60)")):
        p_boot, p_mc = [], []
        for r in range(reps):  # 25 patients × 4 images, 3 classes
            patients = np.repeat(np.arange(25), 4)
            y = rng.integers(0, 3, patients.size)
            pa = outcome_probs(rng, y, rng.random(y.size) < acc_a, 3)
            pb = outcome_probs(rng, y, rng.random(y.size) < 0.6, 3)
            p_boot.append(paired_bootstrap(y, pa, pb, patients, "accuracy", 500, r)["p"])
            p_mc.append(mcnemar(y, pa.argmax(1), pb.argmax(1))["p"])
        print(
            f"{label}: rejection rate at 0.05 over {reps} data sets: paired bootstrap "
            f"{np.mean(np.array(p_boot) < 0.05):.3f}, McNemar {np.mean(np.array(p_mc) < 0.05):.3f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=90)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--classes", type=int, default=17)
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--quick", action="store_true", help="6 patients × 8 images, 1000 resamples")
    ap.add_argument(
        "--calibration",
        type=int,
        default=0,
        metavar="REPS",
        help="also simulate CI coverage and test rejection rates over REPS data sets",
    )
    args = ap.parse_args()
    if args.calibration:
        calibration(args.calibration)
    if args.quick:
        args.patients, args.n_boot = 6, 1000
    y, probs, patients = sample(args.patients, args.images, args.classes)
    print(
        f"test set: {y.size} images of {args.patients} patients, {args.classes} classes; "
        f"{args.n_boot} patient resamples"
    )
    print(f"{'metric':<12} {'loop s':>8} {'vectorised s':>13} {'speed-up':>9} {'max |Δ| CI':>11}")
    for name, sk in (("macro_f1", sk_macro_f1), ("macro_auroc", sk_macro_auroc)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t_loop, lo_hi = best_of(
                lambda sk=sk: loop_ci(y, probs, patients, sk, args.n_boot, 0), 1
            )
        t_vec, ci = best_of(
            lambda name=name: patient_bootstrap(y, probs, patients, name, args.n_boot, 0), 3
        )
        delta = max(abs(ci.low - lo_hi[0]), abs(ci.high - lo_hi[1]))
        print(f"{name:<12} {t_loop:>8.3f} {t_vec:>13.4f} {t_loop / t_vec:>8.1f}× {delta:>11.1e}")


if __name__ == "__main__":
    main()
