"""Built-in reference calculators for labelling: pyscf, gpaw, espresso, vasp, tblite, faulty.

Registered into :mod:`matloop.calculators.registry` when that module first resolves a name.
Every factory takes flat keyword arguments (those the error handlers patch) and imports its
code only when called.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from matloop.calculators.registry import register_calculator
from matloop.errors import ConfigError
from matloop.labelling.base import ScfConvergenceError


def _require(module: str, extra: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"the reference code needs the Python package {module!r}: {extra}"
        ) from exc


# --------------------------------------------------------------------------------------- PySCF
class PySCFCalculator(Calculator):
    """Molecular Kohn–Sham DFT (or HF) with PySCF: energy (eV) and forces (eV/Å).

    Parameters: xc ('PBE'; 'HF' for Hartree–Fock), basis ('def2-SVP'), charge, spin (2S),
    max_cycle, conv_tol (Hartree), damp, level_shift (Hartree), newton (second-order SCF),
    density_fit. Raises :class:`ScfConvergenceError` when the SCF does not converge.
    """

    implemented_properties = ["energy", "free_energy", "forces"]
    default_parameters = {
        "xc": "PBE",
        "basis": "def2-SVP",
        "charge": 0,
        "spin": 0,
        "max_cycle": 50,
        "conv_tol": 1e-9,
        "damp": 0.0,
        "level_shift": 0.0,
        "newton": False,
        "density_fit": False,
        "grid_level": 3,
    }

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        from ase.units import Bohr, Hartree

        pyscf = _require("pyscf", "pip install pyscf (or matloop[dft])")
        from pyscf import dft, gto, scf

        if self.atoms.pbc.any():
            raise ConfigError("the pyscf labeller handles molecules only (pbc must be False)")
        p = self.parameters
        mol = gto.M(
            atom=[
                (s, tuple(x))
                for s, x in zip(
                    self.atoms.get_chemical_symbols(), self.atoms.get_positions(), strict=True
                )
            ],
            basis=p["basis"],
            charge=int(p["charge"]),
            spin=int(p["spin"]),
            unit="Angstrom",
            verbose=0,
        )
        if str(p["xc"]).upper() == "HF":
            mf = scf.RHF(mol) if p["spin"] == 0 else scf.UHF(mol)
        else:
            mf = dft.RKS(mol) if p["spin"] == 0 else dft.UKS(mol)
            mf.xc = p["xc"]
            mf.grids.level = int(p["grid_level"])
        if p["density_fit"]:
            mf = mf.density_fit()
        mf.max_cycle = int(p["max_cycle"])
        mf.conv_tol = float(p["conv_tol"])
        mf.damp = float(p["damp"])
        mf.level_shift = float(p["level_shift"])
        if p["newton"]:
            mf = mf.newton()
        energy = mf.kernel()
        if not mf.converged:
            raise ScfConvergenceError(f"PySCF SCF not converged in {p['max_cycle']} cycles")
        grad = mf.nuc_grad_method().kernel()
        del pyscf
        self.results["energy"] = float(energy) * Hartree
        self.results["free_energy"] = self.results["energy"]
        self.results["forces"] = -np.asarray(grad) * Hartree / Bohr


def _pyscf(**kwargs: Any) -> Calculator:
    return PySCFCalculator(**kwargs)


# ---------------------------------------------------------------------------------------- GPAW
def _gpaw(
    ecut: float = 350.0,
    kpts: Any = (1, 1, 1),
    xc: str = "PBE",
    maxiter: int = 333,
    mixing_beta: float | None = None,
    smearing_width: float = 0.1,
    txt: str | None = None,
    **kwargs: Any,
) -> Calculator:
    """Plane-wave PBE with GPAW (forces and stress); flat knobs for the handlers."""
    gpaw = _require("gpaw", "pip install gpaw gpaw-data")
    from gpaw import PW, FermiDirac, Mixer

    extra: dict[str, Any] = {}
    if mixing_beta is not None:
        extra["mixer"] = Mixer(beta=float(mixing_beta), nmaxold=5, weight=50.0)
    return gpaw.GPAW(
        mode=PW(float(ecut)),
        xc=xc,
        kpts=kpts,
        maxiter=int(maxiter),
        occupations=FermiDirac(float(smearing_width)),
        txt=txt,
        **extra,
        **kwargs,
    )


# ---------------------------------------------------------------------------- Quantum ESPRESSO
DEFAULT_PSEUDO_DIR = "/usr/share/espresso/pseudo"


def _find_pseudopotentials(symbols: list[str], pseudo_dir: str) -> dict[str, str]:
    """File per element in `pseudo_dir`, named element first (``Si.pbe-n-rrkjus_psl.1.0.0.UPF``,
    ``si_pbe_v1.uspp.F.UPF``, PseudoDojo's ``Fe-sp.upf``); a PBE one where there is one."""
    out = {}
    files = sorted(os.path.basename(f) for f in glob.glob(os.path.join(pseudo_dir, "*")))
    for sym in sorted(set(symbols)):
        mine = [f for f in files if re.split(r"[._-]", f)[0].lower() == sym.lower()]
        if not mine:
            raise ConfigError(f"no pseudopotential for {sym} in {pseudo_dir}; set pseudopotentials")
        pbe = [f for f in mine if "pbe" in f.lower()]
        out[sym] = (pbe or mine)[0]
    return out


class EspressoLabelCalculator(Calculator):
    """Quantum ESPRESSO pw.x through ASE, in a fresh scratch directory per calculation.

    Flat parameters: ecutwfc (Ry), ecutrho, kpts, electron_maxstep, mixing_beta, degauss (Ry,
    Marzari–Vanderbilt smearing when > 0), conv_thr, pseudo_dir, pseudopotentials, command,
    input_data (merged last). Raises :class:`ScfConvergenceError` on "convergence NOT achieved".
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]
    default_parameters = {
        "ecutwfc": 30.0,
        "ecutrho": None,
        "kpts": (1, 1, 1),
        "electron_maxstep": 100,
        "mixing_beta": 0.7,
        "degauss": 0.02,
        "conv_thr": 1e-8,
        "pseudo_dir": None,
        "pseudopotentials": None,
        "command": None,
        "input_data": None,
        "keep_dir": False,
    }

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        from ase.calculators.espresso import Espresso, EspressoProfile

        p = self.parameters
        command = p["command"] or os.environ.get("MATLOOP_PW_COMMAND") or "pw.x"
        if shutil.which(command.split()[0]) is None:
            raise ConfigError(f"Quantum ESPRESSO executable {command.split()[0]!r} not found")
        pseudo_dir = p["pseudo_dir"] or os.environ.get("ESPRESSO_PSEUDO") or DEFAULT_PSEUDO_DIR
        pseudos = p["pseudopotentials"] or _find_pseudopotentials(
            self.atoms.get_chemical_symbols(), pseudo_dir
        )
        system: dict[str, Any] = {"ecutwfc": float(p["ecutwfc"])}
        if p["ecutrho"]:
            system["ecutrho"] = float(p["ecutrho"])
        if p["degauss"] and float(p["degauss"]) > 0:
            system.update(occupations="smearing", smearing="mv", degauss=float(p["degauss"]))
        input_data = {
            "control": {"calculation": "scf", "tprnfor": True, "tstress": True},
            "system": system,
            "electrons": {
                "electron_maxstep": int(p["electron_maxstep"]),
                "mixing_beta": float(p["mixing_beta"]),
                "conv_thr": float(p["conv_thr"]),
            },
        }
        for section, values in (p["input_data"] or {}).items():
            input_data.setdefault(section, {}).update(values)
        directory = tempfile.mkdtemp(prefix="matloop-qe-")
        calc = Espresso(
            profile=EspressoProfile(command=command, pseudo_dir=pseudo_dir),
            pseudopotentials=pseudos,
            input_data=input_data,
            kpts=p["kpts"],
            directory=directory,
        )
        work = self.atoms.copy()
        work.calc = calc
        try:
            try:
                energy = work.get_potential_energy()
                forces = work.get_forces()
                stress = work.get_stress() if work.pbc.all() else None
            except Exception as exc:
                out = Path(directory) / "espresso.pwo"
                text = out.read_text(errors="replace") if out.exists() else ""
                if "convergence NOT achieved" in text:
                    raise ScfConvergenceError(
                        f"pw.x SCF not converged in {p['electron_maxstep']} steps"
                    ) from exc
                raise
        finally:
            if not p["keep_dir"]:
                shutil.rmtree(directory, ignore_errors=True)
        self.results = {"energy": energy, "free_energy": energy, "forces": forces}
        if stress is not None:
            self.results["stress"] = stress


def _espresso(**kwargs: Any) -> Calculator:
    return EspressoLabelCalculator(**kwargs)


# ---------------------------------------------------------------------------------------- VASP
class VaspLabelCalculator(Calculator):
    """VASP through ASE (needs VASP_PP_PATH and ASE_VASP_COMMAND or VASP_COMMAND set).

    Flat parameters: encut, kpts, xc, nelm, amix, bmix, ismear, sigma, ediff, plus any other
    INCAR keys (lower case). Raises :class:`ScfConvergenceError` when the electronic loop did
    not converge within NELM steps.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]
    accepts_any_setting = True  # any INCAR key (amix, bmix, ...) goes to VASP as it is
    default_parameters = {
        "encut": 400.0,
        "kpts": (1, 1, 1),
        "xc": "PBE",
        "nelm": 60,
        "ismear": 1,
        "sigma": 0.1,
        "ediff": 1e-6,
        "keep_dir": False,
    }

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        from ase.calculators.vasp import Vasp

        check_vasp_configured()
        p = dict(self.parameters)
        keep = p.pop("keep_dir", False)
        directory = tempfile.mkdtemp(prefix="matloop-vasp-")
        calc = Vasp(directory=directory, **p)
        work = self.atoms.copy()
        work.calc = calc
        try:
            energy = work.get_potential_energy()  # energy(sigma→0)
            if not calc.read_convergence():
                raise ScfConvergenceError(f"VASP electronic loop not converged in NELM={p['nelm']}")
            free = work.get_potential_energy(force_consistent=True)  # TOTEN, as the forces
            forces = work.get_forces()
            stress = work.get_stress() if work.pbc.all() else None
        finally:
            if not keep:
                shutil.rmtree(directory, ignore_errors=True)
        self.results = {"energy": energy, "free_energy": free, "forces": forces}
        if stress is not None:
            self.results["stress"] = stress


def check_vasp_configured() -> None:
    """Raise a clear ConfigError unless VASP can be run here."""
    if not os.environ.get("VASP_PP_PATH"):
        raise ConfigError("the vasp labeller needs VASP_PP_PATH (the POTCAR library) to be set")
    if not (
        os.environ.get("ASE_VASP_COMMAND")
        or os.environ.get("VASP_COMMAND")
        or os.environ.get("VASP_SCRIPT")
    ):
        raise ConfigError("the vasp labeller needs ASE_VASP_COMMAND (e.g. 'mpirun vasp_std')")


def _vasp(**kwargs: Any) -> Calculator:
    check_vasp_configured()
    return VaspLabelCalculator(**kwargs)


# -------------------------------------------------------------------------------------- tblite
def _tblite(
    method: str = "GFN2-xTB",
    max_iterations: int = 250,
    mixer_damping: float = 0.4,
    electronic_temperature: float = 300.0,
    accuracy: float = 1.0,
    **kwargs: Any,
) -> Calculator:
    """GFN-xTB through tblite (cheap semi-empirical labels; eV, eV/Å, eV/Å³).

    `method` and the numbers are checked here, so that a config error shows before any work
    (tblite itself only refuses them in the first calculation)."""
    _require("tblite", "pip install tblite (or matloop[dft])")
    from tblite.ase import TBLite

    _check_tblite(method, max_iterations, mixer_damping, electronic_temperature, accuracy)

    return TBLite(
        method=method,
        max_iterations=int(max_iterations),
        mixer_damping=float(mixer_damping),
        electronic_temperature=float(electronic_temperature),
        accuracy=float(accuracy),
        verbosity=0,
        **kwargs,
    )


TBLITE_METHODS = ("GFN2-xTB", "GFN1-xTB", "IPEA1-xTB")


def _check_tblite(
    method: Any, max_iterations: Any, damping: Any, temperature: Any, accuracy: Any
) -> None:
    if isinstance(method, str) and method not in TBLITE_METHODS:
        raise ConfigError(
            f"tblite method {method!r} is not one of {', '.join(TBLITE_METHODS)} (case matters)"
        )
    checks = [
        ("max_iterations", max_iterations, lambda v: v >= 1 and float(v).is_integer(), ">= 1"),
        ("mixer_damping", damping, lambda v: 0 < v <= 1, "in (0, 1]"),
        ("electronic_temperature", temperature, lambda v: 0 <= v < 1e5, "in [0, 1e5) K"),
        ("accuracy", accuracy, lambda v: 0 < v < 1e4, "in (0, 1e4)"),
    ]
    for name, value, ok, rule in checks:
        try:
            good = ok(float(value))
        except (TypeError, ValueError):
            good = False
        if not good:
            raise ConfigError(f"tblite {name} must be a number {rule}, got {value!r}")


def _faulty(**kwargs: Any) -> Calculator:
    from matloop.labelling.faults import FaultyCalculator

    return FaultyCalculator(**kwargs)


register_calculator("pyscf", _pyscf, "PySCF molecular DFT (PBE/def2-SVP default; pip pyscf)")
register_calculator("gpaw", _gpaw, "GPAW plane-wave PBE, forces and stress (pip gpaw gpaw-data)")
register_calculator("espresso", _espresso, "Quantum ESPRESSO pw.x via ASE (quantum-espresso)")
register_calculator("vasp", _vasp, "VASP via ASE (needs VASP_PP_PATH and ASE_VASP_COMMAND)")
register_calculator("tblite", _tblite, "GFN2-xTB via tblite (cheap semi-empirical labels)")
register_calculator("faulty", _faulty, "EMT with injected failures, for testing recovery")
