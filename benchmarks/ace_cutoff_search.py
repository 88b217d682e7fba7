"""ace's fit.cutoff_search on mlearn training data only: check-split errors and MD cost.

For each element, ``train.xyz`` is split by a seeded permutation into an 80 % fit part and a
20 % check part (the test set is never read). ``matloop train`` fits the fit part twice, with
``fit.cutoff_search: false`` (the cutoff as given, 5 Å) and with the search (5 and 5.5 Å, the
validation split inside the fit part choosing), and ``matloop evaluate`` scores both on the
check part. ``--md-cost`` also times one energy + forces call of the default basis at 5 and
5.5 Å on bulk cells (float32, one thread, calls alternated).

A run resumes in ``--work-dir``: an element whose outputs are there is read, not refitted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ELEMENTS = ("Ge", "Mo", "Si", "Ni", "Cu", "Li")
ARMS = {
    "default": {"model": {"family": "ace", "params": {"fit": {"cutoff_search": False}}}},
    "rc": {"model": {"family": "ace", "params": {"fit": {"basis_cutoffs": [5.0, 5.5]}}}},
}


def split(train: Path, folder: Path, seed: int) -> None:
    """fit.xyz (80 %) and check.xyz (20 %) of `train`, by a seeded permutation."""
    import numpy as np
    from ase.io import read, write

    if (folder / "check.xyz").exists():
        return
    frames = read(train, ":")
    order = np.random.default_rng(seed).permutation(len(frames))
    n_check = int(round(0.2 * len(frames)))
    write(folder / "check.xyz", [frames[i] for i in order[:n_check]])
    write(folder / "fit.xyz", [frames[i] for i in order[n_check:]])


def run_arm(folder: Path, arm: str) -> dict:
    """Fit and score one arm (or read its earlier outputs)."""
    import yaml

    out, scores, times = folder / arm, folder / f"{arm}.check.json", folder / f"{arm}.time"
    if not scores.exists():
        config = folder / f"{arm}.yaml"
        config.write_text(yaml.safe_dump(ARMS[arm]))
        before = os.times()
        start = time.perf_counter()
        cmd = ["matloop", "train", "--train", str(folder / "fit.xyz"), "--out", str(out)]
        subprocess.run([*cmd, "--config", str(config), "-q"], check=True, capture_output=True)
        after = os.times()
        cpu = (after.children_user - before.children_user) + (
            after.children_system - before.children_system
        )
        times.write_text(f"{time.perf_counter() - start:.2f} {cpu:.2f} 0\n")
        cmd = ["matloop", "evaluate", str(out), str(folder / "check.xyz"), "--json", str(scores)]
        subprocess.run([*cmd, "-q"], check=True, capture_output=True)
    wall, user, system = (float(v) for v in times.read_text().split())
    overall = json.loads(scores.read_text())
    overall = overall.get("overall", overall)
    return {
        "check_energy_mae_mev_per_atom": overall["energy_mae_mev_per_atom"],
        "check_force_mae_ev_per_a": overall["force_mae_ev_per_a"],
        "fit_wall_s": wall,
        "fit_cpu_s": user + system,
    }


def md_cost(repeats: int = 6, calls: int = 10) -> dict:
    """CPU ms per energy + forces call of the default basis at 5 and 5.5 Å (random coefficients:
    the cost depends on the basis and the neighbours, not on the values)."""
    import numpy as np
    import torch
    from ase.build import bulk

    from matloop.calculators.potential import MatloopCalculator
    from matloop.models.ace.family import AcePotential
    from matloop.models.params import AceParams

    torch.set_num_threads(1)
    cells = {
        "Ge": bulk("Ge", "diamond", a=5.66, cubic=True).repeat(2),
        "Mo": bulk("Mo", "bcc", a=3.16, cubic=True).repeat(3),
        "Cu": bulk("Cu", "fcc", a=3.61, cubic=True).repeat(3),
    }
    out = {}
    for element, atoms in cells.items():
        atoms.rattle(0.05, seed=1)
        calcs = {}
        for cutoff in (5.0, 5.5):
            model = AcePotential([element], AceParams(cutoff=cutoff))
            torch.manual_seed(0)
            model.set_coefficients(torch.randn(model.n_coefficients) * 1e-3)
            calcs[cutoff] = MatloopCalculator(model.float(), dtype="float32")
        ms = {cutoff: [] for cutoff in calcs}
        for _ in range(repeats):  # alternated, so machine load falls on both alike
            for cutoff, calc in calcs.items():
                a = atoms.copy()
                a.calc = calc
                a.get_forces()
                start = time.process_time()
                for _ in range(calls):
                    a.positions[0, 0] += 1e-4
                    a.get_forces()
                ms[cutoff].append((time.process_time() - start) / calls * 1e3)
        med = {cutoff: float(np.median(v)) for cutoff, v in ms.items()}
        out[element] = {
            "atoms": len(atoms),
            "cpu_ms_per_call_5.0": med[5.0],
            "cpu_ms_per_call_5.5": med[5.5],
            "ratio": med[5.5] / med[5.0],
        }
    return out


def main(argv=None) -> None:
    from _output import add_force, check_outputs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="the mlearn folder")
    parser.add_argument("--elements", default=",".join(ELEMENTS))
    parser.add_argument("--seed", type=int, default=1, help="seed of the 80/20 check split")
    parser.add_argument("--work-dir", type=Path, required=True, help="kept; a rerun resumes")
    parser.add_argument("--md-cost", action="store_true", help="also time the MD calls")
    parser.add_argument("--json", type=Path, required=True)
    add_force(parser)
    args = parser.parse_args(argv)
    check_outputs([("--json", args.json)], force=args.force)
    elements = args.elements.split(",")
    missing = [e for e in elements if not (args.data_dir / e / "train.xyz").is_file()]
    if missing:
        sys.exit(f"error: no train.xyz for {missing} under {args.data_dir}")
    results = {}
    for element in elements:
        folder = args.work_dir / f"s{args.seed}" / element
        folder.mkdir(parents=True, exist_ok=True)
        split(args.data_dir / element / "train.xyz", folder, args.seed)
        results[element] = {arm: run_arm(folder, arm) for arm in ARMS}
        row = results[element]
        for key in ("check_energy_mae_mev_per_atom", "check_force_mae_ev_per_a", "fit_cpu_s"):
            row[f"{key}_ratio"] = row["rc"][key] / row["default"][key]
        print(element, json.dumps(row), flush=True)
    payload = {
        "benchmark": "ace_cutoff_search",
        "split_seed": args.seed,
        "elements": results,
        "mean_energy_change": sum(
            r["check_energy_mae_mev_per_atom_ratio"] - 1 for r in results.values()
        )
        / len(results),
        "load_end": os.getloadavg(),
    }
    if args.md_cost:
        payload["md_cost"] = md_cost()
    from _output import atomic_write_text

    atomic_write_text(args.json, json.dumps(payload, indent=1))
    print(json.dumps({k: v for k, v in payload.items() if k != "elements"}, indent=1))


if __name__ == "__main__":
    main()
