"""Active learning vs random sampling of MD snapshots: labels needed for a force-MAE target.

For Cu (ASE EMT) and Si (matscipy Kumagai): an independent high-temperature test set is made by
reference MD; the active-learning loop (committee MD exploration, uncertainty + FPS selection)
is run from rattled starting structures, and, side by side, committees with the same model
family, architecture and training budget are trained on N snapshots drawn at random from
reference MD at the same temperatures. Reported: test force MAE against number of labels for
both, and the labels each needs to reach the target.

    nice -n 10 python benchmarks/al_efficiency.py --json benchmarks/results/al_efficiency.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

SYSTEMS = {
    "Cu": {
        "calculator": "emt",
        "build": ("Cu", "fcc", 3.61, (2, 2, 2)),
        "explore_temperatures": [300.0, 800.0, 1300.0],
        "test_temperature": 1200.0,
        "timestep_fs": 4.0,
        "target": 0.03,
    },
    "Si": {
        "calculator": "kumagai",
        "build": ("Si", "diamond", 5.43, (2, 2, 1)),
        "explore_temperatures": [400.0, 900.0, 1500.0],
        "test_temperature": 1400.0,
        "timestep_fs": 2.0,
        "target": 0.25,
    },
}

TRAIN = {
    "model": {"params": {"descriptor": {"cutoff": 4.5, "n_radial": 8, "n_angular_eta": 2,
                                        "zetas": [1.0, 4.0]},
                         "hidden": [24, 24]}},
    "training": {"max_epochs": 200, "early_stopping_patience": 40, "batch_size": 4,
                 "learning_rate": 0.005, "num_threads": 1},
}


def reference_md(system: dict, temperature: float, n: int, every: int, seed: int,
                 equil: int = 100):
    """Labelled snapshots from Langevin MD with the reference calculator."""
    from ase import units
    from ase.build import bulk
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    from matloop.calculators import resolve_calculator
    from matloop.data import label_with

    el, lattice, a, rep = system["build"]
    atoms = bulk(el, lattice, a=a, cubic=True) * rep
    calc = resolve_calculator(system["calculator"])
    atoms.calc = calc
    rng = np.random.default_rng(seed)
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=rng)
        dyn = Langevin(atoms, system["timestep_fs"] * units.fs, temperature_K=temperature,
                       friction=0.02 / units.fs, rng=rng)
        dyn.run(equil)
        for _ in range(n):
            dyn.run(every)
            out.append(label_with(atoms, calc, config_type=f"md_{temperature:.0f}K"))
    return out


def labels_to_reach(curve: list[tuple[int, float]], target: float) -> float | None:
    """First number of labels at which the MAE curve crosses `target` (log-interpolated)."""
    prev = None
    for n, mae in curve:
        if mae <= target:
            if prev is None or prev[1] <= target:
                return float(n)
            (n0, m0), (n1, m1) = prev, (n, mae)
            t = (np.log(m0) - np.log(target)) / (np.log(m0) - np.log(m1))
            return float(n0 + t * (n1 - n0))
        prev = (n, mae)
    return None


def run_system(name: str, args, work: Path) -> dict:
    import yaml
    from ase.io import write

    from matloop.active.config import ActiveLearningConfig
    from matloop.active.loop import ActiveLearner, run_active_learning, test_metrics
    from matloop.data import Dataset
    from matloop.training.committee import load_committee, train_committee

    sysd = SYSTEMS[name]
    target = args.target.get(name, sysd["target"])
    wdir = work / name
    wdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    test = reference_md(sysd, sysd["test_temperature"], args.n_test, 20, seed=1000)
    write(wdir / "test.xyz", test, format="extxyz")
    el, lattice, a, rep = sysd["build"]
    from ase.build import bulk

    write(wdir / "start.xyz", bulk(el, lattice, a=a, cubic=True) * rep, format="extxyz")
    cfg = {
        "seed": 0,
        "reference": {"calculator": sysd["calculator"]},
        "initial": {"structures": str(wdir / "start.xyz"), "n_label": args.n_initial,
                    "rattle": 0.08},
        "explore": {"temperatures": sysd["explore_temperatures"], "steps": args.md_steps,
                    "timestep_fs": sysd["timestep_fs"], "walkers": 3, "sample_interval": 5,
                    "uncertainty_limit": 1.0},
        "select": {"threshold": 0.0, "max_per_iteration": args.per_iteration},
        "model": {"committee": args.committee, "train": TRAIN, "warm_start": False,
                  "max_time_s": args.max_time},
        "budget": {"max_labels": args.max_labels},
        "stop": {"max_iterations": args.max_iterations, "test_force_mae_target": target},
        "test": {"data": str(wdir / "test.xyz")},
    }
    (wdir / "al.yaml").write_text(yaml.safe_dump(cfg))
    config = ActiveLearningConfig.model_validate(cfg)
    t_al = time.perf_counter()
    report = run_active_learning(config, wdir / "al", progress=not args.quiet)
    t_al = time.perf_counter() - t_al
    al_curve = [(r["n_labels"], r["test_force_mae_ev_per_a"]) for r in report["iterations"]
                if r.get("test_force_mae_ev_per_a") is not None]
    al_energy = [(r["n_labels"], r["test_energy_mae_mev_per_atom"]) for r in report["iterations"]
                 if r.get("test_energy_mae_mev_per_atom") is not None]
    # random sampling of reference-MD snapshots at the exploration temperatures
    per_t = int(np.ceil(max(args.random_sizes) / len(sysd["explore_temperatures"]))) + 2
    pool = []
    for k, temp in enumerate(sysd["explore_temperatures"]):
        pool += reference_md(sysd, temp, per_t, 10, seed=2000 + k)
    tcfg = ActiveLearner(config, wdir / "al", progress=False).train_config()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(pool))
    rnd_curve, rnd_energy = [], []
    capped: dict[int, bool] = {}
    t_rnd = time.perf_counter()
    for n in args.random_sizes:
        chosen = Dataset([pool[i] for i in order[:n]], source="random MD", validate=False)
        paths = train_committee(chosen, wdir / "random" / f"n{n:03d}", tcfg,
                                n_members=args.committee, seeds=list(range(args.committee)),
                                max_time=args.max_time)
        m = test_metrics(load_committee(paths), test)
        capped[n] = training_capped(paths, args.max_time)
        rnd_curve.append((n, m["test_force_mae_ev_per_a"]))
        rnd_energy.append((n, m["test_energy_mae_mev_per_atom"]))
        if not args.quiet:
            print(f"[random {name}] N={n}: force MAE {m['test_force_mae_ev_per_a']:.4f} eV/Å",
                  flush=True)
    t_rnd = time.perf_counter() - t_rnd
    n_al = labels_to_reach(al_curve, target)
    # points whose training was cut by the time cap do not have the same training budget
    n_rnd = labels_to_reach([c for c in rnd_curve if not capped[c[0]]], target)
    return {
        "system": name,
        "reference": sysd["calculator"],
        "n_atoms": len(test[0]),
        "test_temperature_k": sysd["test_temperature"],
        "n_test": len(test),
        "test_mean_abs_force_ev_per_a": float(np.mean([np.abs(t.get_forces()).mean()
                                                       for t in test])),
        "target_force_mae_ev_per_a": target,
        "al_curve": [{"n_labels": n, "force_mae_ev_per_a": f, "energy_mae_mev_per_atom": e}
                     for (n, f), (_, e) in zip(al_curve, al_energy, strict=True)],
        "random_curve": [{"n_labels": n, "force_mae_ev_per_a": f, "energy_mae_mev_per_atom": e,
                          "training_capped": capped[n]}
                         for (n, f), (_, e) in zip(rnd_curve, rnd_energy, strict=True)],
        "al_labels_to_target": n_al,
        "random_labels_to_target": n_rnd,
        "ratio_al_over_random": (n_al / n_rnd) if n_al and n_rnd else None,
        "al_n_quarantined": report["n_quarantined"],
        "al_stop_reason": report["stop_reason"],
        "al_seconds": t_al,
        "random_seconds": t_rnd,
        "total_seconds": time.perf_counter() - t0,
    }


def training_capped(paths, max_time: float | None) -> bool:
    """Whether any member stopped on the time cap (fewer epochs than the common budget)."""
    if not max_time:
        return False
    for p in paths:
        rec = json.loads((Path(p).parent / "member.json").read_text())
        if rec["seconds"] >= 0.97 * max_time:
            return True
    return False


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.8), squeeze=False)
    for ax, r in zip(axes[0], results, strict=True):
        ax.plot([c["n_labels"] for c in r["al_curve"]],
                [c["force_mae_ev_per_a"] for c in r["al_curve"]], "o-", label="active learning")
        ok = [c for c in r["random_curve"] if not c.get("training_capped")]
        cut = [c for c in r["random_curve"] if c.get("training_capped")]
        ax.plot([c["n_labels"] for c in ok], [c["force_mae_ev_per_a"] for c in ok], "s--",
                label="random MD snapshots")
        if cut:
            ax.plot([c["n_labels"] for c in cut], [c["force_mae_ev_per_a"] for c in cut], "s",
                    mfc="none", color="C1", label="random, training cut by time cap")
        ax.axhline(r["target_force_mae_ev_per_a"], color="k", lw=0.8, ls=":", label="target")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("number of labels")
        ax.set_ylabel("test force MAE (eV/Å)")
        temp = r["test_temperature_k"]
        ax.set_title(f"{r['system']} ({r['reference']}, test MD at {temp:.0f} K)")
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", type=Path, default=None, help="write results JSON here")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="unused: all data are generated by reference MD in this run")
    p.add_argument("--work-dir", type=Path, default=Path("benchmarks/runs/al_efficiency"))
    p.add_argument("--systems", nargs="+", default=["Cu", "Si"], choices=sorted(SYSTEMS))
    p.add_argument("--committee", type=int, default=3)
    p.add_argument("--n-initial", type=int, default=6)
    p.add_argument("--per-iteration", type=int, default=6)
    p.add_argument("--max-iterations", type=int, default=7)
    p.add_argument("--max-labels", type=int, default=48)
    p.add_argument("--md-steps", type=int, default=100)
    p.add_argument("--max-time", type=float, default=120.0,
                   help="safety cap on training seconds per member (epochs are the budget)")
    p.add_argument("--n-test", type=int, default=25)
    p.add_argument("--random-sizes", type=int, nargs="+", default=[6, 12, 24, 48, 96])
    p.add_argument("--target", type=json.loads, default={},
                   help='per-system force-MAE targets, e.g. \'{"Cu": 0.03}\'')
    p.add_argument("--plot", type=Path, default=Path("benchmarks/results/al_efficiency.png"))
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    from matloop.utils.threads import configure_torch_threads

    configure_torch_threads(1)
    results = [run_system(s, args, args.work_dir) for s in args.systems]
    out = {"benchmark": "al_efficiency", "settings": {k: (str(v) if isinstance(v, Path) else v)
                                                      for k, v in vars(args).items()},
           "train": TRAIN, "results": results}
    plot(results, args.plot)
    for r in results:
        print(f"{r['system']}: target {r['target_force_mae_ev_per_a']} eV/Å — AL "
              f"{r['al_labels_to_target']} labels, random {r['random_labels_to_target']} "
              f"(ratio {r['ratio_al_over_random']})")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
