"""Delta learning on CHGNet vs the same family from scratch: test error against labels used.

    nice -n 10 python benchmarks/delta_foundation.py --data-dir ../shared/data/mlearn \\
        --element Si --sizes 10 25 50 100 200 --seeds 0 1 --steps 400 --epochs 30 \\
        --max-steps 1200 --json benchmarks/results/delta_foundation_si.json

For each seed and training-set size n (a random subset of EL/train.xyz drawn with that seed, the
same subset for both arms) it trains `--family` on (DFT − CHGNet) residuals and on the DFT labels
directly, with the same architecture, loss and number of optimiser steps, and reports energy/force
MAE on EL/test.xyz; `summary` gives mean, standard deviation, min and max over the seeds. The step
budget grows with n: ``clip(epochs × n_fit / batch, steps, max_steps)`` optimiser steps (n_fit =
the 90 % of the n labels not held out for validation), i.e. at least `--steps`, `--epochs` passes
over the data where that is more, never more than `--max-steps`. CHGNet alone (raw, and with a
per-element energy shift fitted on the n labels) is the zero-training reference.

With ``--speed`` it instead measures the cost of the family against BPNN on mlearn Cu (CPU
seconds, 1 thread): featurisation and one training epoch over the first `--speed-structures`
structures of Cu/train.xyz (per structure), and one MD step (velocity Verlet, 108-atom fcc Cu).

CHGNet is evaluated once per structure and cached (``--work-dir/chgnet_cache.npz``). The delta
model's test error is computed as the correction's error on the test residuals, which equals the
error of base + correction (checked in tests/test_foundation_delta.py) without re-running CHGNet.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mlearn"


def _chgnet_predictions(structures, cache: Path):
    from matloop.training.delta import BasePrediction, base_predictions

    if cache.exists():
        data = np.load(cache, allow_pickle=False)
        if int(data["n"]) == len(structures):
            out = []
            for k in range(len(structures)):
                stress = data[f"s{k}"] if f"s{k}" in data else None
                out.append(BasePrediction(float(data["e"][k]), data[f"f{k}"], stress))
            return out, float(data["seconds"])
    start = time.process_time()
    preds = base_predictions(structures, "chgnet")
    seconds = time.process_time() - start
    arrays = {"n": len(preds), "e": np.array([p.energy for p in preds]), "seconds": seconds}
    for k, p in enumerate(preds):
        arrays[f"f{k}"] = p.forces
        if p.stress is not None:
            arrays[f"s{k}"] = p.stress
    from matloop.utils.files import atomic_path

    with atomic_path(cache) as tmp, open(tmp, "wb") as fh:  # a cut run leaves no broken cache
        np.savez(fh, **arrays)
    return preds, seconds


BATCH = 4


def step_budget(n_labels: int, min_steps: int, epochs: int, max_steps: int) -> int:
    """Optimiser steps for a training on `n_labels` structures: `epochs` passes over the
    n_fit = n − max(1, round(0.1 n)) fitted structures, but at least `min_steps` and at most
    `max_steps` (a step budget, unlike a wall-clock one, does not depend on the machine's load)."""
    n_fit = max(1, n_labels - max(1, round(0.1 * n_labels)))
    wanted = math.ceil(epochs * n_fit / BATCH)
    return int(min(max_steps, max(min_steps, wanted)))


def spread(values: list[float]) -> dict:
    """Mean, sample standard deviation (0 for one value), min and max."""
    arr = np.asarray(values, dtype=float)
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return {
        "mean": round(float(arr.mean()), 4),
        "std": round(std, 4),
        "min": round(float(arr.min()), 4),
        "max": round(float(arr.max()), 4),
        "n": int(arr.size),
    }


def markdown(report: dict) -> str:
    """Markdown table (mean ± standard deviation over seeds) of a delta_foundation JSON."""

    def pm(d: dict, digits: int) -> str:
        return f"{d['mean']:.{digits}f} ± {d['std']:.{digits}f}"

    chg = report["chgnet_alone"]
    lines = [
        "| labels | optimiser steps | delta (CHGNet + correction) E | delta F "
        "| from scratch E | from scratch F | CHGNet + fitted shift E | CPU s per training "
        "(delta / scratch) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["summary"]:
        d, sc = row["delta"], row["scratch"]
        lines.append(
            f"| {row['n_labels']} | {row['steps']} | {pm(d['energy_mae_mev_per_atom'], 1)} | "
            f"{pm(d['force_mae_ev_per_a'], 3)} | {pm(sc['energy_mae_mev_per_atom'], 1)} | "
            f"{pm(sc['force_mae_ev_per_a'], 3)} | "
            f"{row['chgnet_shifted_energy_mae_mev_per_atom']['mean']:.1f} | "
            f"{d['train_cpu_s']['mean']:.0f} / {sc['train_cpu_s']['mean']:.0f} |"
        )
    lines.append(
        f"| CHGNet alone | 0 | {chg['energy_mae_mev_per_atom']:.1f} | "
        f"{chg['force_mae_ev_per_a']:.3f} | | | | |"
    )
    return "\n".join(lines)


def _config(family: str, n_labels: int, steps: int, max_time: float | None, params: dict):
    """Same architecture, loss and number of optimiser steps for every arm (`steps` ≈ epochs ×
    batches)."""
    from matloop.training import TrainConfig

    batch = BATCH
    n_fit = max(1, n_labels - max(1, round(0.1 * n_labels)))
    epochs = max(1, math.ceil(steps * batch / n_fit))
    return TrainConfig.model_validate(
        {
            "model": {"family": family, "params": params},
            "training": {
                "learning_rate": 3e-3,
                "min_learning_rate": 3e-5,
                "lr_patience": max(5, epochs // 8),
                "early_stopping_patience": 100000,
                "max_epochs": epochs,
                "batch_size": batch,
                "max_time": max_time,
                "num_threads": 1,
                "loss": {"energy": 1.0, "forces": 0.02, "stress": 0.0},
            },
        }
    )


def _summary(metrics: dict) -> dict:
    keys = ("energy_mae_mev_per_atom", "force_mae_ev_per_a", "energy_rmse_mev_per_atom")
    return {k: round(float(metrics[k]), 4) for k in keys if k in metrics}


def _speed(args) -> dict:
    """CPU cost (process_time, 1 thread) of training and MD for `args.family` vs bpnn.

    The training steps are those of :func:`matloop.training.train` (predict with
    ``create_graph=True``, energy + force loss, backward, Adam), timed without validation.
    """
    import torch
    from ase import units
    from ase.build import bulk
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet

    from matloop.calculators.potential import MatloopCalculator
    from matloop.data import fit_reference_energies, read_dataset
    from matloop.models import get_family
    from matloop.models.graph import collate

    full = read_dataset(args.data_dir / "Cu" / "train.xyz")
    data = full.subset(range(min(args.speed_structures, len(full))))
    e0 = fit_reference_energies(data, ["Cu"])["Cu"]
    energy = torch.tensor([a.get_potential_energy() - e0 * len(a) for a in data])
    forces = [torch.from_numpy(a.get_forces()).float() for a in data]
    out = {"element": "Cu", "n_structures_timed": len(data), "families": {}}
    for family in ("bpnn", args.family):
        cls = get_family(family)
        params = json.loads(args.params) if family == args.family else {}
        torch.manual_seed(0)
        model = cls(["Cu"], cls.Params.model_validate(params)).float()
        model.set_reference_energies({"Cu": e0})
        start = time.process_time()
        graphs = [model.prepare(a) for a in data]
        setup = time.process_time() - start
        n_atoms = torch.tensor([g.n_total_atoms for g in graphs], dtype=torch.float32)
        model.fit_normalization(graphs, energy.float() / n_atoms)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        epochs = 2
        start = time.process_time()
        for _ in range(epochs):
            for b in range(0, len(graphs), 4):
                idx = list(range(b, min(b + 4, len(graphs))))
                graph = collate([graphs[i] for i in idx])
                pred = model.predict(graph, stress=False, create_graph=True)
                e_err = (pred["energy"] - energy[idx].float()) / n_atoms[idx]
                f_err = pred["forces"] - torch.cat([forces[i] for i in idx])
                loss = (e_err**2).mean() + 0.02 * (f_err**2).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        per_epoch = (time.process_time() - start) / epochs
        atoms = bulk("Cu", "fcc", 3.62, cubic=True) * (3, 3, 3)
        MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
        atoms.calc = MatloopCalculator(model.eval(), num_threads=1)
        dyn = VelocityVerlet(atoms, 1.0 * units.fs)
        dyn.run(2)  # warm-up
        steps = 30
        start = time.process_time()
        dyn.run(steps)
        md_step = (time.process_time() - start) / steps
        out["families"][family] = {
            "featurise_cpu_s_per_structure": round(setup / len(data), 4),
            "train_cpu_s_per_epoch": round(per_epoch, 2),
            "train_cpu_s_per_structure_per_epoch": round(per_epoch / len(data), 4),
            "md_cpu_ms_per_step_108_atoms": round(1000 * md_step, 2),
            "n_atoms_md": len(atoms),
        }
        print(family, out["families"][family], flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--element", default="Si")
    parser.add_argument("--family", default="painn")
    parser.add_argument("--params", default="{}", help="family hyper-parameters as JSON")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 25, 50, 100, 200])
    parser.add_argument("--steps", type=int, default=400, help="minimum optimiser steps")
    parser.add_argument("--epochs", type=int, default=30, help="epochs wanted (sets the steps)")
    parser.add_argument("--max-steps", type=int, default=1200, help="cap on optimiser steps")
    parser.add_argument("--max-time", type=float, default=None, help="wall-clock cap (s)")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1], help="subset + initialisation seeds"
    )
    parser.add_argument("--work-dir", type=Path, default=Path("benchmarks/runs/delta_foundation"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--table", type=Path, help="print a markdown table of this JSON, exit")
    parser.add_argument("--speed", action="store_true", help="cost vs bpnn instead (mlearn Cu)")
    parser.add_argument("--speed-structures", type=int, default=40, help="Cu structures timed")
    from _output import add_force, atomic_write_text, check_outputs

    add_force(parser)
    args = parser.parse_args(argv)
    if args.table:
        print(markdown(json.loads(args.table.read_text())))
        return 0
    check_outputs([("--json", args.json)], force=args.force)
    if args.speed:
        from matloop.utils.threads import configure_torch_threads

        configure_torch_threads(1)
        report = _speed(args)
        print(json.dumps(report, indent=2))
        if args.json:
            atomic_write_text(args.json, json.dumps(report, indent=2))
        return 0

    import matloop
    from matloop.data import read_dataset
    from matloop.evaluation import evaluate
    from matloop.training import train
    from matloop.training.delta import residual_dataset, train_delta
    from matloop.utils.threads import configure_torch_threads

    configure_torch_threads(1)
    train_all = read_dataset(args.data_dir / args.element / "train.xyz")
    test = read_dataset(args.data_dir / args.element / "test.xyz")
    work = args.work_dir / args.element
    sizes = [n for n in args.sizes if n <= len(train_all)]
    test_preds, test_sec = _chgnet_predictions(list(test), work / "chgnet_test_cache.npz")
    test_residuals = residual_dataset(test, test_preds, "test residuals")
    n_test_atoms = np.array([len(a) for a in test])
    e_ref = test.energies()
    e_chg = np.array([p.energy for p in test_preds])
    f_ref = np.concatenate([a.get_forces() for a in test])
    f_chg = np.concatenate([p.forces for p in test_preds])
    raw_chgnet = {
        "energy_mae_mev_per_atom": float(1000 * np.abs((e_chg - e_ref) / n_test_atoms).mean()),
        "force_mae_ev_per_a": float(np.abs(f_chg - f_ref).mean()),
    }
    params = json.loads(args.params)
    rows = []
    chgnet_seconds, chgnet_structures = test_sec, len(test)
    total_cpu0 = time.process_time()
    for seed in args.seeds:
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(train_all))
        pool = train_all.subset(order[: max(sizes)].tolist())
        pool_preds, pool_sec = _chgnet_predictions(
            list(pool), work / f"chgnet_train_seed{seed}_{len(pool)}.npz"
        )
        chgnet_seconds += pool_sec
        chgnet_structures += len(pool)
        for n in sizes:
            subset = list(range(n))
            data = pool.subset(subset)
            preds = [pool_preds[k] for k in subset]
            # CHGNet + per-atom constant fitted on the n labels (single-element datasets)
            shift = np.mean(
                [
                    (a.get_potential_energy() - p.energy) / len(a)
                    for a, p in zip(data, preds, strict=True)
                ]
            )
            shifted_e = 1000 * np.abs((e_chg + shift * n_test_atoms - e_ref) / n_test_atoms).mean()
            steps = step_budget(n, args.steps, args.epochs, args.max_steps)
            row = {
                "seed": seed,
                "n_labels": n,
                "steps": steps,
                "chgnet_shifted_energy_mae_mev_per_atom": round(float(shifted_e), 4),
            }
            for arm in ("delta", "scratch"):
                config = _config(args.family, n, steps, args.max_time, params)
                out = work / f"seed{seed}" / f"{arm}_{n}"
                cpu0, wall0 = time.process_time(), time.perf_counter()
                if arm == "delta":
                    result = train_delta(
                        data, "chgnet", out, config, predictions=preds, seed=seed, progress=False
                    )
                    calc = matloop.load(result.model_path).correction
                    metrics = evaluate(calc, test_residuals)
                else:
                    result = train(data, out, config, seed=seed, progress=False)
                    metrics = evaluate(matloop.load(result.model_path), test)
                row[arm] = {
                    **_summary(metrics),
                    "epochs": result.epochs,
                    "train_wall_s": round(time.perf_counter() - wall0, 1),
                    "train_cpu_s": round(time.process_time() - cpu0, 1),
                }
                print(seed, n, steps, arm, row[arm], flush=True)
            rows.append(row)

    summary = []
    for n in sizes:
        these = [r for r in rows if r["n_labels"] == n]
        entry: dict = {"n_labels": n, "steps": these[0]["steps"], "seeds": len(these)}
        entry["chgnet_shifted_energy_mae_mev_per_atom"] = spread(
            [r["chgnet_shifted_energy_mae_mev_per_atom"] for r in these]
        )
        for arm in ("delta", "scratch"):
            entry[arm] = {
                key: spread([r[arm][key] for r in these])
                for key in ("energy_mae_mev_per_atom", "force_mae_ev_per_a", "train_cpu_s")
            }
        summary.append(entry)

    report = {
        "benchmark": "delta_foundation",
        "element": args.element,
        "family": args.family,
        "params": params,
        "budget": {
            "min_steps": args.steps,
            "epochs": args.epochs,
            "max_steps": args.max_steps,
            "batch_size": BATCH,
            "rule": "steps = clip(ceil(epochs * n_fit / batch), min_steps, max_steps)",
        },
        "max_time_s": args.max_time,
        "seeds": args.seeds,
        "n_test": len(test),
        "chgnet_cpu_s_per_structure": round(chgnet_seconds / max(1, chgnet_structures), 3),
        "total_cpu_s": round(time.process_time() - total_cpu0, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "chgnet_alone": {k: round(v, 4) for k, v in raw_chgnet.items()},
        "summary": summary,
        "rows": rows,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        atomic_write_text(args.json, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
