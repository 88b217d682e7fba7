"""mlearn benchmark (Zuo et al., J. Phys. Chem. A 124, 731 (2020)): train on EL/train.xyz,
select on a validation split of it, report errors on EL/test.xyz (energies and forces).

    python benchmarks/mlearn.py --data-dir ../shared/data/mlearn --element Cu --json out.json

Stresses are not fitted (loss weight 0): see the data README (Pulay offsets, mixed orders).
Models with their own uncertainty (``kernel``, ``ace``) also get the 95 % interval coverage of
their σ on the test set; every run records the peak resident memory and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

# best published test MAE (min of GAP and MTP): energy meV/atom, force eV/Å
PUBLISHED = {
    "Ni": {"gap": (0.42, 0.02), "mtp": (0.48, 0.01)},
    "Cu": {"gap": (0.46, 0.01), "mtp": (0.41, 0.01)},
    "Li": {"gap": (0.49, 0.01), "mtp": (0.49, 0.01)},
    "Mo": {"gap": (2.24, 0.09), "mtp": (2.83, 0.09)},
    "Si": {"gap": (2.91, 0.07), "mtp": (2.21, 0.06)},
    "Ge": {"gap": (2.06, 0.05), "mtp": (1.79, 0.05)},
}
GOAL_FRACTION = 0.8
# linear ACE, ACEpotentials.jl rerun on mlearn (2024): energy meV/atom, force eV/Å (None: not
# quoted in issue 11)
PUBLISHED_ACE = {
    "Ni": (0.33, None),
    "Cu": (0.22, 0.005),
    "Li": (0.17, 0.005),
    "Mo": (None, None),
    "Si": (None, None),
    "Ge": (None, None),
}
# issue 11's target: at or below the best of GAP, MTP and ACE (meV/atom, eV/Å)
ISSUE11_TARGET = {
    "Ni": (0.33, 0.01),
    "Cu": (0.22, 0.005),
    "Li": (0.17, 0.005),
    "Mo": (2.24, 0.09),
    "Si": (2.21, 0.06),
    "Ge": (1.79, 0.05),
}
DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mlearn"


def run(
    element: str,
    data_dir: Path,
    model: str,
    max_time: float,
    config: Path | None,
    seed: int,
    out_dir: Path,
) -> dict:
    import matloop
    from matloop.data import read_dataset
    from matloop.evaluation import evaluate
    from matloop.training import ModelConfig, TrainConfig, load_train_config, train

    cfg = load_train_config(config) if config else TrainConfig()
    if cfg.model.family != model:
        cfg.model = ModelConfig(family=model)
    cfg.training.loss.stress = 0.0
    train_ds = read_dataset(data_dir / element / "train.xyz")
    load_start = list(os.getloadavg())
    start = time.perf_counter()
    cpu_start = time.process_time()
    result = train(
        train_ds, out_dir, cfg, seed=seed, max_time=max_time, progress=sys.stderr.isatty()
    )
    train_seconds = time.perf_counter() - start
    train_cpu_seconds = time.process_time() - cpu_start
    calc = matloop.load(result.model_path)
    # the test set is read only here, after training and model selection are finished
    test_ds = read_dataset(data_dir / element / "test.xyz")
    metrics = evaluate(calc, test_ds)
    calibration = coverage_on(calc, test_ds) if calc.has_variance else None
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    best_e = min(v[0] for v in PUBLISHED[element].values())
    best_f = min(v[1] for v in PUBLISHED[element].values())
    metrics.update(
        element=element,
        model=model,
        train_seconds=round(train_seconds, 1),
        train_cpu_seconds=round(train_cpu_seconds, 1),
        torch_threads=__import__("torch").get_num_threads(),
        epochs=result.epochs,
        stopped_because=result.stopped_because,
        best_valid={k: v for k, v in result.best_metrics.items() if k.startswith("valid_")},
        published_best_energy_mae_mev_per_atom=best_e,
        published_best_force_mae_ev_per_a=best_f,
        # issue 7's goal: at most GOAL_FRACTION × the best published figure
        goal_fraction=GOAL_FRACTION,
        meets_energy_target=metrics["energy_mae_mev_per_atom"] <= GOAL_FRACTION * best_e,
        meets_force_target=metrics["force_mae_ev_per_a"] <= GOAL_FRACTION * best_f,
        published_ace=PUBLISHED_ACE[element],
        issue11_target=ISSUE11_TARGET[element],
        meets_issue11_energy=metrics["energy_mae_mev_per_atom"] <= ISSUE11_TARGET[element][0],
        meets_issue11_force=metrics["force_mae_ev_per_a"] <= ISSUE11_TARGET[element][1],
        test_calibration=calibration,
        peak_rss_mb=round(peak_rss_mb, 1),
        fit=_fit_facts(calc.metadata.get("fit")),
        load_average_start=load_start,
        load_average_end=list(os.getloadavg()),
        model_path=str(result.model_path),
        config=str(config) if config else "default",
    )
    return metrics


def _fit_facts(fit: dict | None) -> dict | None:
    """The closed-form fit's headline facts (basis size, α, β, γ, times), if any."""
    if not fit:
        return None
    keys = (
        "n_coefficients", "n_sparse", "kept", "alpha", "beta", "effective_parameters",
        "noise_std", "valid_errors", "calibration", "basis_search", "rows_seconds",
        "solve_seconds", "fit_seconds",
    )  # fmt: skip
    return {k: fit[k] for k in keys if k in fit}


def coverage_on(calc, dataset) -> dict:
    """95 % interval coverage of the model's own σ on `dataset` (energy per atom, forces)."""
    import numpy as np

    from matloop.models.ace.uncertainty import coverage_stats

    e_err, e_sig, f_err, f_sig = [], [], [], []
    for ref in dataset:
        atoms = ref.copy()
        atoms.calc = calc
        n = len(atoms)
        e_err.append((atoms.get_potential_energy() - ref.get_potential_energy()) / n)
        e_sig.append(calc.get_property("energy_std", atoms))
        if "forces_std" in calc.implemented_properties:
            f_err.append((atoms.get_forces() - ref.get_forces()).ravel())
            f_sig.append(np.repeat(calc.get_property("forces_std", atoms), 3))
    out = {"energy": coverage_stats(np.array(e_err), np.array(e_sig))}
    # the same σ_E with the scale of the earlier rule (validation energies only, plain quantile)
    energy_cal = ((calc.metadata.get("fit") or {}).get("calibration") or {}).get("energy") or {}
    if energy_cal.get("validation_quantile_scale"):
        factor = energy_cal["validation_quantile_scale"] / energy_cal["scale"]
        out["energy_validation_quantile"] = coverage_stats(
            np.array(e_err), factor * np.array(e_sig)
        )
    if f_err:
        out["forces"] = coverage_stats(np.concatenate(f_err), np.concatenate(f_sig))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument(
        "--element",
        action="append",
        required=True,
        choices=sorted(PUBLISHED),
        help="repeat for several elements",
    )
    parser.add_argument("--model", default="bpnn")
    parser.add_argument("--max-time", type=float, default=1200.0, help="training budget (s)")
    parser.add_argument("--config", type=Path, default=None, help="training YAML")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", type=Path, default=Path("benchmarks/runs"))
    parser.add_argument("--json", type=Path, required=True)
    from _output import add_force, atomic_write_text, check_outputs

    add_force(parser)
    args = parser.parse_args()
    check_outputs([("--json", args.json)], force=args.force)
    results = []
    for element in args.element:
        out_dir = args.work_dir / f"{args.model}_{element}"
        res = run(
            element, args.data_dir, args.model, args.max_time, args.config, args.seed, out_dir
        )
        print(
            json.dumps(
                {
                    k: res[k]
                    for k in (
                        "element",
                        "energy_mae_mev_per_atom",
                        "force_mae_ev_per_a",
                        "train_seconds",
                    )
                }
            )
        )
        results.append(res)
    payload = results[0] if len(results) == 1 else {"results": results}
    atomic_write_text(args.json, json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
