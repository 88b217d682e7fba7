"""Small Quantum ESPRESSO (pw.x) calculators for E(V) scans, usable as ``module:function`` specs.

``matloop eos compute si.cif --calculator matloop.eos.dft:espresso_pbe --out si_eos.csv`` runs
plane-wave PBE with the pseudopotentials of Debian's ``quantum-espresso-data``
(``/usr/share/espresso/pseudo``; override with ``ESPRESSO_PSEUDO``). These are deliberately
small settings for tutorials on a laptop; converge ``ecutwfc`` and ``kpts`` for production.
Environment overrides: ``MATLOOP_QE_ECUTWFC`` (Ry), ``MATLOOP_QE_KPTS`` (e.g. ``6,6,6``),
``MATLOOP_QE_COMMAND`` (e.g. ``mpirun -np 2 pw.x``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ase.calculators.calculator import Calculator

from matloop.errors import ConfigError

DEFAULT_PSEUDO_DIR = "/usr/share/espresso/pseudo"

#: preferred PBE pseudopotential per element among those Debian ships (norm-conserving first)
PBE_PSEUDOPOTENTIALS = {
    "Si": "Si.pbe-rrkj.UPF",
    "C": "C.pbe-rrkjus.UPF",
    "Cu": "Cu.pbe-kjpaw.UPF",
    "Ge": "Ge.pbe-kjpaw.UPF",
    "H": "H.pbe-kjpaw.UPF",
    "N": "N.pbe-kjpaw.UPF",
    "O": "O.pbe-kjpaw.UPF",
    "Fe": "Fe.pbe-nd-rrkjus.UPF",
    "Ni": "Ni.pbe-nd-rrkjus.UPF",
}


def _kpts_from_env(default: tuple[int, int, int]) -> tuple[int, int, int]:
    raw = os.environ.get("MATLOOP_QE_KPTS")
    if not raw:
        return default
    try:
        k = tuple(int(x) for x in raw.replace("x", ",").split(","))
    except ValueError:
        raise ConfigError(f"MATLOOP_QE_KPTS={raw!r}: expected three integers like 6,6,6") from None
    if len(k) != 3:
        raise ConfigError(f"MATLOOP_QE_KPTS={raw!r}: expected three integers like 6,6,6")
    return k  # type: ignore[return-value]


def espresso_pbe(
    ecutwfc: float | None = None,
    kpts: tuple[int, int, int] | None = None,
    pseudo_dir: str | None = None,
    directory: str | None = None,
    command: str | None = None,
    **input_data: Any,
) -> Calculator:
    """ASE ``Espresso`` calculator: PBE, ``ecutwfc`` Ry (default 30), Monkhorst–Pack ``kpts``
    (default 6×6×6), Marzari–Vanderbilt-free fixed occupations (insulators/semiconductors)."""
    from ase.calculators.espresso import Espresso, EspressoProfile

    ecut = float(ecutwfc or os.environ.get("MATLOOP_QE_ECUTWFC", 30.0))
    kpts = tuple(kpts) if kpts is not None else _kpts_from_env((6, 6, 6))
    pseudo_dir = pseudo_dir or os.environ.get("ESPRESSO_PSEUDO", DEFAULT_PSEUDO_DIR)
    command = command or os.environ.get("MATLOOP_QE_COMMAND", "pw.x")
    if shutil.which(command.split()[-1]) is None:
        raise ConfigError(
            f"Quantum ESPRESSO executable {command.split()[-1]!r} not found; install it "
            "(Debian: apt-get install quantum-espresso quantum-espresso-data)"
        )
    if not Path(pseudo_dir).is_dir():
        raise ConfigError(f"pseudopotential directory {pseudo_dir!r} does not exist")
    pseudos = {
        el: name for el, name in PBE_PSEUDOPOTENTIALS.items() if (Path(pseudo_dir) / name).exists()
    }
    directory = directory or tempfile.mkdtemp(prefix="matloop-qe-")
    data = {
        "control": {"calculation": "scf", "tprnfor": True, "tstress": True},
        "system": {"ecutwfc": ecut, "occupations": "fixed"},
        "electrons": {"conv_thr": 1e-8},
    }
    for key, value in input_data.items():  # flat overrides, e.g. ecutrho=120
        data["system"][key] = value
    return Espresso(
        profile=EspressoProfile(command=command, pseudo_dir=pseudo_dir),
        pseudopotentials=pseudos,
        input_data=data,
        kpts=kpts,
        directory=directory,
    )


def espresso_pbe_cheap(**kwargs: Any) -> Calculator:
    """A cheaper setting for delta learning's base: 20 Ry, 3×3×3 k-points (override by kwargs)."""
    kwargs.setdefault("ecutwfc", 20.0)
    kwargs.setdefault("kpts", (3, 3, 3))
    return espresso_pbe(**kwargs)
