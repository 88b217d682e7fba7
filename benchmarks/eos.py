"""Benchmark matloop.eos and matloop.surrogate against ASE on the same data.

    python benchmarks/eos.py --json benchmarks/results/eos.json

Measures (side by side, in one run):
* V0, B0 (and E0, B0') of matloop's BM3 / Vinet / Murnaghan fits against ase.eos.EquationOfState
  on identical E(V) data: Stillinger–Weber and Kumagai Si (matscipy), EMT Cu and Al, real PBE Si
  (Quantum ESPRESSO, tests/data/eos/si_qe_pbe.csv), each clean and with 1 meV Gaussian noise;
  goal: within 0.1 %.
* Fit time for 11 points (median of repeated fits; goal < 50 ms), ASE's time alongside, and the
  time of a 200-sample bootstrap.
* 95 % interval coverage of GP / polynomial / ensemble surrogates on held-out points: 11 noisy
  training volumes, 30 held-out noisy volumes inside the range, repeated over random seeds.
Extra ``Volume,Energy`` CSV files in ``--data-dir`` (default ../shared/eos) are included if present.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ASE_NAMES = {"bm3": "birchmurnaghan", "vinet": "vinet", "murnaghan": "murnaghan"}


def datasets(data_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from ase.build import bulk

    from matloop.eos import compute_eos_data, read_eos_csv

    si = bulk("Si", "diamond", a=5.431)
    out = {
        "Si Stillinger-Weber": compute_eos_data(si, "sw", strain=0.06, points=11),
        "Si Kumagai": compute_eos_data(si, "kumagai", strain=0.06, points=11),
        "Cu EMT": compute_eos_data(bulk("Cu", "fcc", a=3.6), "emt", strain=0.08, points=11),
        "Al EMT": compute_eos_data(bulk("Al", "fcc", a=4.05), "emt", strain=0.08, points=11),
        "Si PBE (QE, 30 Ry, 6x6x6)": read_eos_csv(REPO / "tests/data/eos/si_qe_pbe.csv"),
    }
    if data_dir.is_dir():
        for path in sorted(data_dir.glob("*.csv")):
            try:
                out[path.name] = read_eos_csv(path)
            except Exception as exc:  # noqa: BLE001 - skip files in other formats
                print(f"skipping {path}: {exc}", file=sys.stderr)
    return out


def compare_with_ase(data) -> list[dict]:
    from ase.eos import EquationOfState

    from matloop.eos import fit_eos

    rows = []
    rng = np.random.default_rng(0)
    for name, (v, e) in data.items():
        for noise in (0.0, 1e-3):
            en = e + rng.normal(0.0, noise, e.size) if noise else e
            for eos, ase_name in ASE_NAMES.items():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ours = fit_eos(v, en, eos)
                    ref = EquationOfState(v, en, eos=ase_name)
                    v0, e0, b0 = ref.fit(warn=False)
                rows.append(
                    {
                        "dataset": name,
                        "noise_ev": noise,
                        "eos": eos,
                        "v0_a3": ours.v0,
                        "v0_ase_a3": float(v0),
                        "b0_gpa": ours.b0_gpa,
                        "b0_ase_gpa": float(b0) * 160.21766208,
                        "rel_diff_v0": abs(ours.v0 - v0) / v0,
                        "rel_diff_b0": abs(ours.b0 - b0) / b0,
                        "rel_diff_b0_prime": abs(ours.b0_prime - ref.eos_parameters[2])
                        / abs(ref.eos_parameters[2]),
                        "abs_diff_e0_ev": abs(ours.e0 - e0),
                    }
                )
    return rows


def timing(v, e, repeats: int = 50) -> dict:
    from ase.eos import EquationOfState

    from matloop.eos import fit_eos

    def median_time(fn, n):
        ts = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return float(np.median(ts)) * 1000

    out = {"n_points": int(v.size)}
    for eos in ("bm3", "bm4", "vinet", "murnaghan", "poly"):
        out[f"matloop_{eos}_ms"] = median_time(lambda eos=eos: fit_eos(v, e, eos), repeats)
    out["ase_birchmurnaghan_ms"] = median_time(
        lambda: EquationOfState(v, e, eos="birchmurnaghan").fit(), repeats
    )
    out["matloop_bm3_bootstrap200_ms"] = median_time(lambda: fit_eos(v, e, "bm3", bootstrap=200), 5)
    return out


def coverage(data, seeds: int, noise: float = 1e-3) -> list[dict]:
    from matloop.eos import fit_eos
    from matloop.surrogate import (
        BootstrapEnsemble,
        GPSurrogate,
        PolynomialSurrogate,
        regression_metrics,
    )

    models = {
        "gp_rbf": lambda s: GPSurrogate(kernel="rbf", n_restarts_optimizer=2, random_state=s),
        "gp_matern52": lambda s: GPSurrogate(
            kernel="matern52", n_restarts_optimizer=2, random_state=s
        ),
        "poly3": lambda s: PolynomialSurrogate(degree=3),
        "ensemble_poly3": lambda s: BootstrapEnsemble(
            PolynomialSurrogate(degree=3), n_estimators=30, random_state=s
        ),
    }
    rows = []
    for name, (v, e) in data.items():
        # a smooth ground truth through the data (BM3 fit), sampled densely for held-out points
        truth = fit_eos(v, e, "bm3")
        lo, hi = float(v.min()), float(v.max())
        for mname, make in models.items():
            cov, rmse, mstd, t_fit = [], [], [], []
            for s in range(seeds):
                rng = np.random.default_rng(1000 + s)
                xtr = np.linspace(lo, hi, 11)
                ytr = truth.energy(xtr) + rng.normal(0, noise, xtr.size)
                xte = rng.uniform(lo, hi, 30)
                yte = truth.energy(xte) + rng.normal(0, noise, xte.size)
                t0 = time.perf_counter()
                model = make(s).fit(xtr[:, None], ytr)
                t_fit.append(time.perf_counter() - t0)
                mean, std, _ = model.predict_with_flags(xte[:, None])
                m = regression_metrics(yte, mean, std)
                cov.append(m["coverage"])
                rmse.append(m["rmse"])
                mstd.append(m["mean_std"])
            rows.append(
                {
                    "dataset": name,
                    "model": mname,
                    "noise_ev": noise,
                    "n_train": 11,
                    "n_test_per_seed": 30,
                    "seeds": seeds,
                    "coverage_95": float(np.mean(cov)),
                    "coverage_95_min_over_seeds": float(np.min(cov)),
                    "rmse_mev": 1000 * float(np.mean(rmse)),
                    "mean_std_mev": 1000 * float(np.mean(mstd)),
                    "fit_ms": 1000 * float(np.median(t_fit)),
                }
            )
    return rows


def loo_qe(seeds: int = 1) -> list[dict]:
    """Leave-one-out on the real (noise-free) PBE data: coverage of interior held-out points."""
    from matloop.eos import read_eos_csv
    from matloop.surrogate import GPSurrogate, PolynomialSurrogate

    v, e = read_eos_csv(REPO / "tests/data/eos/si_qe_pbe.csv")
    rows = []
    for mname, make in {
        "gp_rbf": lambda: GPSurrogate(n_restarts_optimizer=2),
        "poly3": lambda: PolynomialSurrogate(degree=3),
    }.items():
        inside, errs, stds = [], [], []
        for i in range(1, v.size - 1):  # interior points only: interpolation
            keep = np.arange(v.size) != i
            model = make().fit(v[keep, None], e[keep])
            mean, std, _ = model.predict_with_flags(v[[i], None])
            errs.append(float(e[i] - mean[0]))
            stds.append(float(std[0]))
            inside.append(abs(e[i] - mean[0]) <= 1.96 * std[0])
        rows.append(
            {
                "model": mname,
                "n_held_out": len(errs),
                "coverage_95": float(np.mean(inside)),
                "rmse_mev": 1000 * float(np.sqrt(np.mean(np.square(errs)))),
                "mean_std_mev": 1000 * float(np.mean(stds)),
            }
        )
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "eos")
    p.add_argument("--json", type=Path, default=None, help="write results here")
    p.add_argument("--seeds", type=int, default=20, help="repeats for the coverage study")
    from _output import add_force, atomic_write_text, check_outputs

    add_force(p)
    args = p.parse_args(argv)
    check_outputs([("--json", args.json)], force=args.force)

    t0 = time.perf_counter()
    data = datasets(args.data_dir)
    agreement = compare_with_ase(data)
    v, e = data["Si PBE (QE, 30 Ry, 6x6x6)"]
    times = timing(v, e)
    cov = coverage(data, args.seeds)
    loo = loo_qe()
    worst_v0 = max(r["rel_diff_v0"] for r in agreement)
    worst_b0 = max(r["rel_diff_b0"] for r in agreement)
    summary = {
        "max_rel_diff_v0_vs_ase": worst_v0,
        "max_rel_diff_b0_vs_ase": worst_b0,
        "goal_within_0.1_percent": bool(worst_v0 < 1e-3 and worst_b0 < 1e-3),
        "fit_time_bm3_11_points_ms": times["matloop_bm3_ms"],
        "goal_fit_under_50_ms": bool(
            max(times[f"matloop_{k}_ms"] for k in ("bm3", "bm4", "vinet", "murnaghan", "poly")) < 50
        ),
        "gp_rbf_mean_coverage_95": float(
            np.mean([r["coverage_95"] for r in cov if r["model"] == "gp_rbf"])
        ),
    }
    result = {
        "benchmark": "eos",
        "summary": summary,
        "agreement_with_ase": agreement,
        "timing": times,
        "coverage_heldout": cov,
        "leave_one_out_qe_si": loo,
        "environment": {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "wall_s": round(time.perf_counter() - t0, 1),
        },
    }
    print(json.dumps(summary, indent=2))
    for r in cov:
        print(
            f"{r['dataset']:28s} {r['model']:15s} coverage {r['coverage_95']:.3f} "
            f"rmse {r['rmse_mev']:.3f} meV  mean std {r['mean_std_mev']:.3f} meV"
        )
    for r in loo:
        print(f"LOO QE Si {r['model']:8s} coverage {r['coverage_95']:.2f} rmse {r['rmse_mev']:.4f}")
    print(json.dumps(times, indent=1))
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
