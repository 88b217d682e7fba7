"""Hyper-parameter selection for the mlearn benchmark on *validation data only*.

Splits EL/train.xyz into train/validation (test.xyz is never opened), trains one configuration
and prints the validation errors (also per config_type), so that choices never see the test set.

    python benchmarks/tune_mlearn.py --element Cu --config my.yaml --max-time 300
    # move 3 of the training surfaces into the validation split, try a longer cutoff
    python benchmarks/tune_mlearn.py --element Mo --config benchmarks/configs/mlearn_ace.yaml \
        --hold-out Surface:3 --param cutoff=5.5
    # MD cost of the candidate bases (CPU ms per energy+forces call, 108 Cu atoms)
    python benchmarks/tune_mlearn.py --md-cost 12 14 16 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import yaml

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mlearn"


def split(data, valid_fraction: float, seed: int, hold_out: str | None):
    """The trainer's random split, plus `hold_out` ("TYPE:N") structures of one config_type
    moved from the training part into the validation part (seeded)."""
    import numpy as np

    from matloop.data import random_split

    train, valid = random_split(data, valid_fraction, seed=seed)
    if not hold_out:
        return train, valid
    kind, _, count = hold_out.partition(":")
    idx = [i for i, a in enumerate(train) if a.info.get("config_type") == kind]
    pick = set(np.random.default_rng(seed).permutation(idx)[: int(count or 1)].tolist())
    rest = [i for i in range(len(train)) if i not in pick]
    extra = train.subset(sorted(pick))
    return train.subset(rest), valid + extra


def per_type_errors(model_path: Path, valid) -> dict[str, dict[str, float]]:
    """Validation MAE (meV/atom, eV/Å) per config_type."""
    import matloop
    from matloop.evaluation import evaluate

    calc = matloop.load(model_path)
    out = {}
    for kind in sorted({a.info.get("config_type", "?") for a in valid}):
        idx = [i for i, a in enumerate(valid) if a.info.get("config_type", "?") == kind]
        m = evaluate(calc, valid.subset(idx))
        out[kind] = {
            "n": len(idx),
            "energy_mae_mev_per_atom": m["energy_mae_mev_per_atom"],
            "force_mae_ev_per_a": m["force_mae_ev_per_a"],
        }
    return out


def md_cost(degrees: list[float], seconds: float = 4.0) -> list[dict]:
    """CPU time of one energy+forces call of the matloop calculator, 108-atom fcc Cu, one
    thread, for linear ACE bases of total degree `degrees` (order 4, l ≤ 4): the MD cost side
    of the basis choice (coefficients are random: the cost does not depend on them)."""
    import torch
    from ase.build import bulk

    from matloop.calculators.potential import MatloopCalculator
    from matloop.models.ace.family import AcePotential
    from matloop.models.params import AceParams

    torch.set_num_threads(1)
    atoms = bulk("Cu", "fcc", 3.6, cubic=True) * (3, 3, 3)
    atoms.rattle(0.05, seed=0)
    rows = []
    for degree in degrees:
        params = AceParams(correlation_order=4, max_degree_per_order=[degree] * 4, max_l=4)
        model = AcePotential(["Cu"], params)
        model.set_coefficients(1e-3 * torch.randn(model.n_coefficients, dtype=torch.float64))
        a = atoms.copy()
        a.calc = MatloopCalculator(model)
        a.get_forces()
        start, steps = time.process_time(), 0
        while time.process_time() - start < seconds:
            a.positions += 1e-4
            a.get_forces()
            steps += 1
        cpu = (time.process_time() - start) / steps
        rows.append(
            {
                "max_degree": degree,
                "n_coefficients": model.n_coefficients,
                "cpu_ms_per_step_108_atoms": round(1000 * cpu, 2),
                "atom_steps_per_cpu_s": round(len(a) / cpu),
                "load_average": os.getloadavg()[0],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    from matloop.data import read_dataset
    from matloop.training import TrainConfig, load_train_config, train

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--element")
    parser.add_argument(
        "--md-cost", type=float, nargs="+", help="only time MD steps for these total degrees"
    )
    parser.add_argument("--config", type=Path)
    parser.add_argument("--max-time", type=float, default=300.0)
    parser.add_argument("--work-dir", type=Path, default=Path("benchmarks/runs/tune"))
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--hold-out", help="TYPE:N: also validate on N training structures of that config_type"
    )
    parser.add_argument(
        "--param", action="append", default=[], help="KEY=VALUE: override model.params.KEY"
    )
    from _output import add_force, atomic_write_text, check_outputs

    add_force(parser)
    args = parser.parse_args()
    check_outputs([("--json", args.json)], force=args.force)
    if args.md_cost:
        rows = md_cost(args.md_cost)
        if args.json:
            atomic_write_text(args.json, json.dumps({"md_cost": rows}, indent=2))
        return
    if not args.element:
        parser.error("--element is required")
    cfg = load_train_config(args.config) if args.config else TrainConfig()
    cfg.training.loss.stress = 0.0
    if args.param:
        params = cfg.model.family_params().model_dump()
        for item in args.param:
            key, _, value = item.partition("=")
            params[key] = yaml.safe_load(value)
        cfg = TrainConfig.model_validate(
            {**cfg.model_dump(), "model": {"family": cfg.model.family, "params": params}}
        )
    data = read_dataset(args.data_dir / args.element / "train.xyz")
    train_ds, valid_ds = split(data, cfg.training.valid_fraction, cfg.training.seed, args.hold_out)
    load_start = list(os.getloadavg())
    start, cpu = time.perf_counter(), time.process_time()
    result = train(
        train_ds, args.work_dir, cfg, valid_data=valid_ds, max_time=args.max_time, progress=False
    )
    row = {
        "element": args.element,
        "config": str(args.config),
        "params": args.param,
        "hold_out": args.hold_out,
        "seconds": round(time.perf_counter() - start, 1),
        "cpu_seconds": round(time.process_time() - cpu, 1),
        "load_average": [load_start, list(os.getloadavg())],
        "epochs": result.epochs,
        **{k: v for k, v in result.best_metrics.items() if k.startswith("valid_")},
        "valid_by_config_type": per_type_errors(result.model_path, valid_ds),
    }
    print(json.dumps(row))
    if args.json:
        atomic_write_text(args.json, json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
