"""Active learning vs random sampling of MD snapshots: labels needed for a force-MAE target.

For each system (Cu with ASE EMT, Si with matscipy Kumagai, an (H2O)8 cluster with GFN2-xTB
through tblite) an independent test set is made first by reference Langevin MD at the
conditions of use (seed fixed, before any run). The targets follow rules fixed before the runs
and applied to every arm alike: ``--target-factors`` × the test force MAE of a model trained on
``--target-labels`` random snapshots of another reference MD (default 1.1× and 1.25× a
32-label model). Then, per seed and with the same model family and training settings:

(a) the active-learning loop: first labels from short CHGNet MD at the conditions of use, then
    iterations of MD walkers with the current model (or ``--walker-driver``) at the same
    conditions (``--ramp-from`` heats them from a lower temperature instead), each stopping
    where the calibrated σ passes ``--stop-factor`` × the labelled structures' median, batch
    selection among the snapshots within that limit (``--selection``, default V-optimal: the
    largest drop of the posterior variance summed over the explored snapshots) and reference
    labels, until the test force MAE reaches the smallest target;
(b) N snapshots drawn at random from reference MD at the same conditions;
(c) N snapshots drawn at random from CHGNet MD at the same conditions, labelled by the reference.

Reported: test force MAE against labels, labels to reach each target (log-interpolated) per
seed, mean ± std, the ratios (a)/(b) and (a)/(c), and the loop's wall time per iteration split
into explore / select / label / fit. Every label is a whole structure (labelled atoms = labels ×
atoms per structure).

    nice -n 10 python benchmarks/al_efficiency.py --systems Cu --json results/al_efficiency_Cu.json
    python benchmarks/al_efficiency.py --table results/al_efficiency_*.json  # tables and figure
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

SYSTEMS = {
    "Cu": {
        "calculator": "emt",
        "build": ("Cu", "fcc", 3.61, (2, 2, 2)),
        "temperature": 1200.0,
        "timestep_fs": 4.0,
    },
    "Si": {
        "calculator": "kumagai",
        "build": ("Si", "diamond", 5.43, (2, 2, 1)),
        "temperature": 1400.0,
        "timestep_fs": 2.0,
    },
    # (H2O)8 cluster in vacuum with GFN2-xTB (tblite, non-periodic: ~10 ms a label); the 20 Å
    # cell only serves CHGNet, which needs one; 0.5 fs steps for the O-H vibration, so the
    # snapshots are taken 5 × further apart (in steps) than for the crystals
    "H2O": {
        "calculator": "tblite",
        "cluster": ("H2O", 8, 2.9),
        "temperature": 400.0,
        "timestep_fs": 0.5,
        "equil": 200,
        "stride": 5,
    },
}

TABLE_PLOT = Path("benchmarks/results/al_efficiency.png")  # the figure of the README's runs
TRAIN = {
    # a small basis (the ace defaults until 2026-11-30: order 3, degree 12, l ≤ 4; ~200
    # coefficients) keeps every fit and σ cheap; the results in benchmarks/README.md used it
    "ace": {
        "model": {
            "params": {
                "correlation_order": 3,
                "max_degree": 12.0,
                "max_l": 4,
                "degree_drop_per_order": 0.0,
            }
        }
    },
    "kernel": {"model": {"params": {"n_sparse": 200}}},
    "bpnn": {
        "model": {
            "params": {
                "descriptor": {"cutoff": 4.5, "n_radial": 8, "n_angular_eta": 2, "zetas": [1, 4]},
                "hidden": [24, 24],
            }
        },
        "training": {"max_epochs": 200, "early_stopping_patience": 40, "batch_size": 4},
    },
}


def start_structure(system: dict):
    """The crystal, or the cluster: molecules on a cubic grid, relaxed with the reference."""
    from ase.build import bulk

    if "cluster" in system:
        return water_cluster(system)
    el, lattice, a, rep = system["build"]
    return bulk(el, lattice, a=a, cubic=True) * rep


def water_cluster(system: dict):
    from ase import Atoms
    from ase.build import molecule
    from ase.optimize import BFGS

    from matloop.calculators import resolve_calculator

    name, n, spacing = system["cluster"]
    rng = np.random.default_rng(0)
    m = round(n ** (1 / 3))
    atoms = Atoms()
    for ijk in np.ndindex(m, m, m):
        w = molecule(name)
        w.rotate(rng.uniform(0, 360), rng.normal(size=3), center="COP")
        w.translate(np.array(ijk) * spacing)
        atoms += w
    atoms.center(vacuum=8.0)
    atoms.pbc = False
    atoms.calc = resolve_calculator(system["calculator"])
    BFGS(atoms, logfile=None).run(fmax=0.05, steps=300)
    atoms.calc = None
    return atoms


def md_snapshots(system: dict, calc, n: int, every: int, seed: int):
    """`n` labelled snapshots (reference labels) from Langevin MD with `calc` at the conditions,
    `every` × the system's stride steps apart after its equilibration (50 steps by default)."""
    from matloop.calculators import resolve_calculator
    from matloop.data import label_with

    every *= system.get("stride", 1)
    equil = system.get("equil", 50)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Only FixAtoms")  # CHGNet and ASE's FixCom
        res = _md(system, calc, equil + n * every, every, seed)
    ref = resolve_calculator(system["calculator"])
    frames = [f for f in res.frames if f.info["time_ps"] * 1000 / system["timestep_fs"] > equil]
    return [label_with(f, ref, config_type="md") for f in frames[:n]]


def _md(system: dict, calc, steps: int, every: int, seed: int):
    from matloop.md import run_md

    return run_md(
        start_structure(system),
        calc,
        ensemble="nvt",
        temperature_k=system["temperature"],
        timestep_fs=system["timestep_fs"],
        steps=steps,
        progress=False,
        seed=seed,
        keep_frames=True,
        traj_interval=every,
        log_interval=steps,
    )


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


def loop_config(name: str, args, wdir: Path, seed: int) -> dict:
    sysd = SYSTEMS[name]
    temp = sysd["temperature"]
    stride = sysd.get("stride", 1)
    return {
        "seed": seed,
        "reference": {"calculator": sysd["calculator"]},
        "initial": {"structures": str(wdir / "start.xyz"), "n_label": args.n_initial},
        "explore": {
            "temperatures": [temp],
            "steps": args.md_steps * stride,
            "timestep_fs": sysd["timestep_fs"],
            "walkers": args.walkers,
            "sample_interval": args.sample_interval * stride,
        },
        "select": {"threshold": 0.0, "max_per_iteration": args.per_iteration},
        "model": {
            "family": args.family,
            "committee": args.committee,
            "train": TRAIN[args.family],
            "warm_start": False,
        },
        "budget": {"max_labels": args.max_labels},
        "stop": {"max_iterations": 50, "test_force_mae_target": args.targets[name]},
        "test": {"data": str(wdir / "test.xyz")},
        "strategy": {
            "starts": [
                {
                    "kind": "foundation_md",
                    "model": "chgnet",
                    "temperatures": [temp],
                    "steps": args.foundation_steps * stride,
                    "timestep_fs": sysd["timestep_fs"],
                    "sample_interval": 4 * stride,
                }
            ],
            "walker_stop_factor": args.stop_factor,
            "ramp_from_k": args.ramp_from,
            "selection": args.selection,
            "select_within_limit": not args.select_all,
            "walker_driver": args.walker_driver,
            "walker_driver_until": args.walker_driver_until,
        },
    }


def random_curve(pool, sizes, test, tcfg, args, out: Path, seed: int) -> list[dict]:
    """Test errors of models trained on the first n of a random permutation of `pool`."""
    from matloop.active.loop import load_model
    from matloop.data import Dataset
    from matloop.evaluation import evaluate
    from matloop.training.committee import train_committee

    order = np.random.default_rng(seed).permutation(len(pool))
    curve = []
    for n in sizes:
        chosen = Dataset([pool[i] for i in order[:n]], source="random", validate=False)
        paths = train_committee(
            chosen,
            out / f"n{n:03d}",
            tcfg,
            n_members=args.committee,
            seeds=[seed * 100 + k for k in range(args.committee)],
            bootstrap=args.committee > 1,
        )
        m = evaluate(load_model([str(p) for p in paths]), test)
        curve.append(
            {
                "n_labels": n,
                "force_mae_ev_per_a": m["force_mae_ev_per_a"],
                "energy_mae_mev_per_atom": m["energy_mae_mev_per_atom"],
            }
        )
    return curve


def run_seed(name: str, args, wdir: Path, test, seed: int) -> dict:
    from matloop.active.config import ActiveLearningConfig
    from matloop.active.loop import ActiveLearner
    from matloop.calculators import resolve_calculator

    sysd = SYSTEMS[name]
    config = ActiveLearningConfig.model_validate(loop_config(name, args, wdir, seed))
    t0, c0 = time.perf_counter(), time.process_time()
    learner = ActiveLearner(config, wdir / f"loop_s{seed}", progress=not args.quiet)
    report = learner.run()
    its = report["iterations"]
    loop = [
        {
            "n_labels": r["n_labels"],
            "force_mae_ev_per_a": r["test_force_mae_ev_per_a"],
            "energy_mae_mev_per_atom": r["test_energy_mae_mev_per_atom"],
            "test_coverage_95": r.get("test_coverage_95"),
            "test_sigma_spearman": r.get("test_sigma_spearman"),
            "sigma_scale": r.get("sigma_scale"),
        }
        for r in its
    ]
    timing = {
        k: [r[k] for r in its[1:] if r.get(k) is not None]
        for k in ("explore_seconds", "select_seconds", "label_seconds", "fit_seconds")
    }
    loop_s, loop_cpu = time.perf_counter() - t0, time.process_time() - c0
    tcfg = learner.train_config()
    t1 = time.perf_counter()
    rnd_ref, rnd_fm = [], []
    if not args.loop_only:
        pool = md_snapshots(sysd, sysd["calculator"], max(args.random_sizes), 4, 2000 + seed)
        rnd_ref = random_curve(
            pool, args.random_sizes, test, tcfg, args, wdir / f"random_ref_s{seed}", seed
        )
        pool = md_snapshots(
            sysd, resolve_calculator("chgnet"), max(args.random_sizes), 4, 3000 + seed
        )
        rnd_fm = random_curve(
            pool, args.random_sizes, test, tcfg, args, wdir / f"random_chgnet_s{seed}", seed
        )
    out = {
        "seed": seed,
        "loop_curve": loop,
        "random_reference_md_curve": rnd_ref,
        "random_chgnet_md_curve": rnd_fm,
        "loop_stop_reason": report["stop_reason"],
        "loop_seconds": loop_s,
        "loop_cpu_seconds": loop_cpu,
        "random_seconds": time.perf_counter() - t1,
        "iteration_seconds": {k: float(np.median(v)) if v else None for k, v in timing.items()},
    }
    out["labels_to_targets"] = {}
    for rule, target in args.target_rules[name].items():
        reach = {}
        for key, curve in (
            ("loop", loop),
            ("random_reference_md", rnd_ref),
            ("random_chgnet_md", rnd_fm),
        ):
            pts = [(c["n_labels"], c["force_mae_ev_per_a"]) for c in curve]
            reach[key] = labels_to_reach(pts, target)
        out["labels_to_targets"][rule] = reach
        if not args.quiet:
            print(f"[{name} seed {seed}] labels to {rule} = {target:.4g} eV/Å: {reach}", flush=True)
    return out


def _reached(seed: dict, arm: str, rule: str | None) -> float | None:
    if rule is None:  # results written before the target rules
        return seed[f"{arm}_labels_to_target"]
    return seed["labels_to_targets"][rule][arm]


def summarise(seeds: list[dict], rule: str | None = None) -> dict:
    """Mean ± std of labels to the `rule`'s target per arm; ratios of the means (None if an arm
    missed it on every seed)."""
    out: dict = {}
    for arm in ("loop", "random_reference_md", "random_chgnet_md"):
        vals = [_reached(s, arm, rule) for s in seeds]
        ok = [v for v in vals if v is not None]
        out[arm] = {
            "mean": float(np.mean(ok)) if ok else None,
            "std": float(np.std(ok, ddof=1)) if len(ok) > 1 else None,
            "n_reached": len(ok),
            "n_seeds": len(vals),
        }
    for arm in ("random_reference_md", "random_chgnet_md"):
        a, b = out["loop"]["mean"], out[arm]["mean"]
        out[f"ratio_loop_over_{arm}"] = a / b if a and b else None
    steps = ("explore_seconds", "select_seconds", "label_seconds", "fit_seconds")
    out["iteration_seconds_median"] = {
        k: float(
            np.median(
                [s["iteration_seconds"][k] for s in seeds if s["iteration_seconds"][k] is not None]
                or [np.nan]
            )
        )
        for k in steps
    }
    return out


def reference_mae(name: str, args, wdir: Path, test) -> dict:
    """Test force MAE (eV/Å) of the model trained on `args.target_labels` random snapshots of
    an independent reference MD (seed 4000): the yardstick of the target rules."""
    from matloop.active.config import ActiveLearningConfig
    from matloop.active.loop import ActiveLearner

    config = ActiveLearningConfig.model_validate(loop_config(name, args, wdir, 0))
    tcfg = ActiveLearner(config, wdir / "target_reference", progress=False).train_config()
    sysd = SYSTEMS[name]
    pool = md_snapshots(sysd, sysd["calculator"], args.target_labels, 4, seed=4000)
    n = args.target_labels
    curve = random_curve(pool, [n], test, tcfg, args, wdir / "target_reference", 4000)
    return {"n_labels": n, "force_mae_ev_per_a": curve[0]["force_mae_ev_per_a"]}


def run_system(name: str, args) -> dict:
    from ase.io import write

    sysd = SYSTEMS[name]
    wdir = args.work_dir / name
    wdir.mkdir(parents=True, exist_ok=True)
    # the test set: independent reference MD at the conditions of use, made before any run
    from matloop.data import Dataset

    test = Dataset(
        md_snapshots(sysd, sysd["calculator"], args.n_test, 20, seed=args.test_seed),
        source="test MD",
        validate=False,
    )
    write(wdir / "test.xyz", list(test), format="extxyz")
    write(wdir / "start.xyz", start_structure(sysd), format="extxyz")
    args.reference_mae[name] = None
    if name in args.target:
        args.target_rules[name] = {"fixed": float(args.target[name])}
    else:  # the rule, fixed before the runs: within x % of a model on many random labels
        args.targets[name] = None
        ref = reference_mae(name, args, wdir, test)
        args.reference_mae[name] = ref
        args.target_rules[name] = {
            f"{f:g} × MAE({ref['n_labels']} random)": f * ref["force_mae_ev_per_a"]
            for f in args.target_factors
        }
    args.targets[name] = min(args.target_rules[name].values())  # where the loop stops
    seeds = []
    for s in args.seeds:
        seeds.append(run_seed(name, args, wdir, test, s))
        if args.json:  # partial results survive a later failure or a kill
            partial = [*args.finished, system_result(name, args, test, seeds)]
            write_json(args, partial, args.t0, args.c0)
    return system_result(name, args, test, seeds)


def system_result(name: str, args, test, seeds: list[dict]) -> dict:
    sysd = SYSTEMS[name]
    return {
        "system": name,
        "reference": sysd["calculator"],
        "n_atoms": len(test[0]),
        "temperature_k": sysd["temperature"],
        "n_test": len(test),
        "test_mean_abs_force_ev_per_a": float(
            np.mean([np.abs(t.get_forces()).mean() for t in test])
        ),
        "target_force_mae_ev_per_a": args.targets[name],
        "target_rules": args.target_rules[name],
        "reference_model": args.reference_mae[name],
        "seeds": seeds,
        "summary": {rule: summarise(seeds, rule) for rule in args.target_rules[name]},
    }


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.8), squeeze=False)
    arms = [
        ("loop_curve", "active learning", "o-"),
        ("random_reference_md_curve", "random reference-MD snapshots", "s--"),
        ("random_chgnet_md_curve", "random CHGNet-MD snapshots", "^:"),
    ]
    for ax, r in zip(axes[0], results, strict=True):
        for k, (key, label, style) in enumerate(arms):
            for j, s in enumerate(r["seeds"]):
                c = s[key]
                ax.plot(
                    [p["n_labels"] for p in c],
                    [p["force_mae_ev_per_a"] for p in c],
                    style,
                    color=f"C{k}",
                    alpha=0.7,
                    label=label if j == 0 else None,
                )
        rules = r.get("target_rules") or {"target": r["target_force_mae_ev_per_a"]}
        for (rule, target), ls in zip(rules.items(), (":", "-."), strict=False):
            ax.axhline(target, color="k", lw=0.8, ls=ls, label=f"target {rule}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("number of labels")
        ax.set_ylabel("test force MAE (eV/Å)")
        ax.set_title(f"{r['system']} ({r['reference']}, test MD at {r['temperature_k']:.0f} K)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _fmt(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def load_results(paths: list[Path]) -> list[dict]:
    """Results of several files; runs of one system (e.g. one seed per process) with the same
    test set and targets become one result with all their seeds."""
    merged: dict[tuple, dict] = {}
    for path in paths:
        data = json.loads(Path(path).read_text())
        driver = data.get("settings", {}).get("walker_driver")
        for r in data["results"]:
            if driver:  # another loop: its own rows
                r["system"] = f"{r['system']} (walkers moved by {driver})"
            key = (r["system"], json.dumps(r.get("target_rules"), sort_keys=True))
            if key in merged:
                merged[key]["seeds"] = merged[key]["seeds"] + r["seeds"]
            else:
                merged[key] = dict(r)
    return list(merged.values())


def _rows(results: list[dict]):
    """(result, target rule, target) for every system and rule (old files: one fixed target)."""
    for r in results:
        rules = r.get("target_rules") or {None: r["target_force_mae_ev_per_a"]}
        for rule, target in rules.items():
            yield r, rule, target


def table(paths: list[Path]) -> str:
    """Markdown tables (labels to target per arm and seed; curves) from result JSON files."""
    results = load_results(paths)
    lines = [
        "| system | target (eV/Å) | seeds | loop | random reference MD | random CHGNet MD "
        "| loop ÷ reference MD | loop ÷ CHGNet MD |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r, rule, target in _rows(results):
        sm = summarise(r["seeds"], rule)
        cells = []
        for arm in ("loop", "random_reference_md", "random_chgnet_md"):
            a = sm[arm]
            spread = f" ± {a['std']:.1f}" if a["std"] is not None else ""
            missed = a["n_seeds"] - a["n_reached"]
            miss = f" ({missed} seed(s) never reached it)" if missed else ""
            cells.append(f"{_fmt(a['mean'])}{spread}{miss}")
        ratios = [
            _fmt(sm[f"ratio_loop_over_{k}"], 2) for k in ("random_reference_md", "random_chgnet_md")
        ]
        what = f"{target:.4g}" if rule in (None, "fixed") else f"{target:.4g} ({rule})"
        lines.append(
            f"| {r['system']} ({r['reference']}) | {what} | "
            f"{len(r['seeds'])} | " + " | ".join(cells + ratios) + " |"
        )
    lines += [
        "",
        "| system | iterations | test coverage of ±1.96σ (calibrated), median | Spearman "
        "ρ(σ, error), median | σ scale, range | explore / select / label / fit (s, median) |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        pts = [c for s in r["seeds"] for c in s["loop_curve"][1:]]
        cov = [c["test_coverage_95"] for c in pts if c.get("test_coverage_95") is not None]
        rho = [c["test_sigma_spearman"] for c in pts if c.get("test_sigma_spearman") is not None]
        sc = [c["sigma_scale"] for c in pts if c.get("sigma_scale") is not None]
        t = summarise(r["seeds"], next(iter(r.get("target_rules", {None: 0}))))[
            "iteration_seconds_median"
        ]
        times = " / ".join(
            _fmt(t[k])
            for k in ("explore_seconds", "select_seconds", "label_seconds", "fit_seconds")
        )
        lines.append(
            f"| {r['system']} | {len(pts)} | {_fmt(float(np.median(cov)) if cov else None, 2)} | "
            f"{_fmt(float(np.median(rho)) if rho else None, 2)} | "
            f"{_fmt(min(sc) if sc else None, 2)}–{_fmt(max(sc) if sc else None, 2)} | {times} |"
        )
    lines += ["", "| system | seed | arm | test force MAE (eV/Å) at labels |", "|---|---|---|---|"]
    for r in results:
        for s in r["seeds"]:
            for key, name in (
                ("loop_curve", "loop"),
                ("random_reference_md_curve", "reference MD"),
                ("random_chgnet_md_curve", "CHGNet MD"),
            ):
                pts = ", ".join(f"{c['n_labels']}: {c['force_mae_ev_per_a']:.4f}" for c in s[key])
                lines.append(f"| {r['system']} | {s['seed']} | {name} | {pts} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", type=Path, default=None, help="write results JSON here")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="unused: all data are generated by reference MD in this run",
    )
    p.add_argument("--work-dir", type=Path, default=Path("benchmarks/runs/al_efficiency"))
    p.add_argument("--systems", nargs="+", default=["Cu", "Si", "H2O"], choices=sorted(SYSTEMS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--family", default="ace", choices=sorted(TRAIN))
    p.add_argument("--committee", type=int, default=1, help="1: the model's own σ")
    p.add_argument(
        "--selection", default="auto", choices=["auto", "dopt", "vopt", "sigma_fps", "fps"]
    )
    p.add_argument("--n-initial", type=int, default=2)
    p.add_argument("--per-iteration", type=int, default=2)
    p.add_argument("--walkers", type=int, default=3)
    p.add_argument("--max-labels", type=int, default=24)
    p.add_argument("--md-steps", type=int, default=100)
    p.add_argument("--sample-interval", type=int, default=5)
    p.add_argument("--foundation-steps", type=int, default=40)
    p.add_argument(
        "--stop-factor",
        type=float,
        default=5.0,
        help="walkers stop at this × the labelled structures' median σ",
    )
    p.add_argument(
        "--ramp-from",
        type=float,
        default=None,
        help="K: walkers heat from here to the conditions (default: start there)",
    )
    p.add_argument("--n-test", type=int, default=15)
    p.add_argument(
        "--test-seed",
        type=int,
        default=1000,
        help="seed of the test-set MD (another seed gives a validation set for choosing settings)",
    )
    p.add_argument("--loop-only", action="store_true", help="skip the random arms")
    p.add_argument(
        "--walker-driver",
        default=None,
        help="calculator that moves the loop's walkers (e.g. chgnet; default: the model)",
    )
    p.add_argument(
        "--walker-driver-until",
        type=int,
        default=None,
        help="labels from which the model drives its own walkers",
    )
    p.add_argument(
        "--select-all",
        action="store_true",
        help="select among all explored snapshots, also those past the walkers' σ limit",
    )
    p.add_argument("--random-sizes", type=int, nargs="+", default=[2, 4, 6, 8, 12, 16, 24, 32])
    p.add_argument(
        "--target",
        type=json.loads,
        default={},
        help="per-system fixed force-MAE targets (eV/Å), e.g. '{\"Cu\": 0.004}' (default: the "
        "target rules)",
    )
    p.add_argument(
        "--target-labels",
        type=int,
        default=32,
        help="the target rules' yardstick: a model on this many random reference-MD labels",
    )
    p.add_argument(
        "--target-factors",
        type=float,
        nargs="+",
        default=[1.1, 1.25],
        help="targets: these × the yardstick's test force MAE (the loop stops at the smallest)",
    )
    p.add_argument(
        "--plot",
        type=Path,
        default=None,
        help="figure of the curves (default: beside --json as .png; with --table: "
        "benchmarks/results/al_efficiency.png)",
    )
    p.add_argument("--quiet", action="store_true")
    p.add_argument(
        "--table",
        type=Path,
        nargs="+",
        default=None,
        help="print markdown tables of these result files, draw --plot from them and exit",
    )
    from _output import add_force, atomic_path, check_outputs

    add_force(p)
    args = p.parse_args(argv)
    if args.plot is None:  # one run's figure beside its JSON, not over the combined one
        args.plot = TABLE_PLOT if args.table else args.json and args.json.with_suffix(".png")
    check_outputs([("--json", args.json), ("--plot", args.plot)], force=args.force)
    if args.table:
        print(table(args.table))
        with atomic_path(args.plot) as tmp:
            plot(load_results(args.table), tmp)
        return 0
    args.targets, args.target_rules, args.reference_mae = {}, {}, {}
    from matloop.utils.threads import configure_torch_threads

    configure_torch_threads(1)
    t0, c0 = time.perf_counter(), time.process_time()
    args.t0, args.c0 = t0, c0
    results: list[dict] = []
    args.finished = results
    for s in args.systems:
        results.append(run_system(s, args))
        if args.json:  # partial results survive a later failure
            write_json(args, results, t0, c0)
    if args.plot is not None:
        with atomic_path(args.plot) as tmp:
            plot(results, tmp)
    for r in results:
        for rule, sm in r["summary"].items():
            print(
                f"{r['system']}: target {rule} = {r['target_rules'][rule]:.4g} eV/Å — loop "
                f"{sm['loop']}, random reference MD {sm['random_reference_md']}, random CHGNet "
                f"MD {sm['random_chgnet_md']}; loop/reference-MD "
                f"{sm['ratio_loop_over_random_reference_md']}"
            )
    if args.json:
        write_json(args, results, t0, c0)
    return 0


def write_json(args, results: list[dict], t0: float, c0: float) -> None:
    skip = ("finished", "t0", "c0")
    settings = {
        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in skip
    }
    out = {
        "benchmark": "al_efficiency",
        "settings": settings,
        "train": TRAIN[args.family],
        "loadavg_end": list(os.getloadavg()),
        "wall_seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - c0,
        "results": results,
    }
    from _output import atomic_write_text

    atomic_write_text(args.json, json.dumps(out, indent=2))


if __name__ == "__main__":
    sys.exit(main())
