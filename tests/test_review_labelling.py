"""Review of labelling: raw forces under constraints, time limits off the main thread, absurd
stress, clear failures for cells a code cannot run, no retry of deterministic input errors,
settings and handler ladders checked before work. Real calculators (EMT, matscipy, tblite)."""

from __future__ import annotations

import subprocess
import threading
import time

import numpy as np
import psutil
import pytest
from ase import Atoms
from ase.build import bulk, fcc111, molecule
from ase.calculators.emt import EMT
from ase.constraints import FixAtoms

from matloop.errors import ConfigError
from matloop.labelling import (
    Labeller,
    LabelStatus,
    ValidationLimits,
    make_labeller,
    validate_result,
)
from matloop.labelling.base import classify_exception
from matloop.labelling.calculator import check_calculator_settings


def _in_thread(fn):
    """Run `fn()` in a worker thread (as a Dask worker runs its tasks); return (value, s)."""
    box = {}

    def target():
        t0 = time.perf_counter()
        box["value"] = fn()
        box["seconds"] = time.perf_counter() - t0

    worker = threading.Thread(target=target)
    worker.start()
    worker.join(30)
    assert not worker.is_alive()
    return box["value"], box["seconds"]


def test_fixed_atoms_are_labelled_with_their_raw_forces():
    slab = fcc111("Cu", (2, 2, 3), vacuum=5.0)
    slab.rattle(0.05, seed=1)
    slab.set_constraint(FixAtoms(indices=[0, 1, 2, 3]))
    result = make_labeller("emt").label(slab)
    assert result.ok, result.reason
    ref = slab.copy()
    ref.calc = EMT()
    raw = ref.get_forces(apply_constraint=False)
    assert np.abs(raw[:4]).max() > 0.1  # the fixed bottom layer does feel forces
    np.testing.assert_allclose(result.atoms.calc.results["forces"], raw, atol=1e-12)
    np.testing.assert_allclose(result.atoms.get_forces(apply_constraint=False), raw, atol=1e-12)
    assert len(result.atoms.constraints) == 1  # the structure keeps them (MD walkers start here)
    assert result.atoms.get_potential_energy() == pytest.approx(ref.get_potential_energy())


def test_time_limit_is_enforced_in_a_worker_thread():
    lab = make_labeller("faulty", {"p_timeout": 1.0, "hang_s": 4.0}, timeout_s=0.3)
    result, seconds = _in_thread(lambda: lab.label(bulk("Cu", cubic=True)))
    assert result.status is LabelStatus.FAILED
    assert result.reason.startswith("timeout:"), result.reason
    assert seconds < 2.0


def test_worker_thread_labels_and_failures_are_unchanged():
    ok, _ = _in_thread(lambda: make_labeller("emt", timeout_s=30).label(bulk("Cu", cubic=True)))
    assert ok.ok
    ref = bulk("Cu", cubic=True)
    ref.calc = EMT()
    assert ok.atoms.get_potential_energy() == pytest.approx(ref.get_potential_energy())
    lab = make_labeller("faulty", {"p_exception": 1.0}, timeout_s=30)
    crash, _ = _in_thread(lambda: lab.label(bulk("Cu", cubic=True)))
    assert [a.error_kind for a in crash.attempts] == ["crash", "crash"]


def test_collapsed_cell_with_zero_forces_is_flagged_by_its_stress():
    collapsed = bulk("Cu", a=1.6)  # 1.13 Å neighbours: forces vanish by symmetry
    result = make_labeller("emt").label(collapsed)
    assert result.status is LabelStatus.INCONSISTENT
    assert "absurd stress" in result.reason
    normal = make_labeller("emt").label(bulk("Cu", a=3.7))
    assert normal.ok


def test_stress_must_be_a_voigt_six_vector():
    atoms = bulk("Cu", cubic=True)
    f = np.zeros((len(atoms), 3))
    lim = ValidationLimits()
    assert "shape" in validate_result(atoms, -1.0, f, np.zeros((3, 3)), lim)
    assert validate_result(atoms, -1.0, f, np.zeros(6), lim) is None


def test_molecule_without_cell_given_to_a_periodic_code_says_so():
    si2 = Atoms("Si2", positions=[[0, 0, 0], [0, 0, 2.3]])
    result = make_labeller("sw").label(si2)
    assert result.status is LabelStatus.FAILED
    assert len(result.attempts) == 1
    assert "needs a 3-D cell" in result.reason
    boxed = Atoms("Si2", positions=[[5, 5, 5], [5, 5, 7.3]], cell=[10, 10, 10])
    assert make_labeller("sw").label(boxed).ok


def test_periodic_structure_without_cell_says_so():
    cu2 = Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 2.5]], pbc=True)
    result = make_labeller("emt").label(cu2)
    assert result.status is LabelStatus.FAILED and len(result.attempts) == 1
    assert "periodic along a, b, c" in result.reason


def test_stress_requested_for_a_molecule_says_so():
    result = make_labeller("emt", compute_stress=True).label(molecule("H2O"))
    assert result.status is LabelStatus.FAILED and len(result.attempts) == 1
    assert "compute_stress" in result.reason


def test_non_finite_positions_say_so():
    atoms = bulk("Cu", cubic=True)
    atoms.positions[1] = np.nan
    result = make_labeller("emt").label(atoms)
    assert result.status is LabelStatus.FAILED and len(result.attempts) == 1
    assert "atom 1 has a NaN or inf position" in result.reason


def test_element_without_parameters_is_not_retried():
    result = make_labeller("emt").label(bulk("Si"))
    assert result.status is LabelStatus.FAILED
    assert [a.error_kind for a in result.attempts] == ["config"]
    assert "No EMT-potential for Si" in result.reason


def test_tblite_input_errors_are_not_retried():
    pytest.importorskip("tblite")
    water = molecule("H2O")
    water.positions[1] = water.positions[0]  # two atoms on one spot
    result = make_labeller("tblite").label(water)
    assert result.status is LabelStatus.FAILED
    assert [a.error_kind for a in result.attempts] == ["config"]


def test_tblite_settings_are_checked_before_work():
    pytest.importorskip("tblite")
    with pytest.raises(ConfigError, match="tblite method 'gfn2-xtb'"):
        check_calculator_settings("tblite", {"method": "gfn2-xtb"})
    with pytest.raises(ConfigError, match="max_iterations"):
        check_calculator_settings("tblite", {"max_iterations": 0})
    check_calculator_settings("tblite", {"method": "GFN1-xTB"})


def test_tblite_scf_failure_climbs_the_scf_ladder():
    pytest.importorskip("tblite")
    result = make_labeller("tblite", {"max_iterations": 1}).label(molecule("H2O"))
    assert result.ok, result.reason
    assert [a.error_kind for a in result.attempts] == ["scf", None]


def test_misspelt_handler_kind_is_refused():
    with pytest.raises(ConfigError, match="unknown error kind 'SCF'"):
        make_labeller("faulty", handlers={"SCF": [{"max_iterations": 200}]})
    with pytest.raises(ConfigError, match="list of settings patches"):
        make_labeller("faulty", handlers={"scf": {"max_iterations": 200}})


def test_empty_handlers_mean_no_retry():
    result = make_labeller("faulty", {"p_exception": 1.0}, handlers={}).label(bulk("Cu"))
    assert result.status is LabelStatus.FAILED
    assert len(result.attempts) == 1


def test_handler_patches_are_checked_against_the_calculator():
    check_calculator_settings("faulty", {}, handlers={"scf": [{"max_iterations": 200}]})
    with pytest.raises(ConfigError, match="max_iteration'"):
        check_calculator_settings("faulty", {}, handlers={"scf": [{"max_iteration": 200}]})


def test_a_crash_whose_text_names_pyscf_is_no_scf_failure():
    assert classify_exception(RuntimeError("pyscf: basis 'def2-xyz' not found for Xx")) == "crash"
    assert classify_exception(RuntimeError("SCF not converged in 50 cycles")) == "scf"
    assert classify_exception(RuntimeError("density did not converge")) == "scf"


def test_a_factory_functions_own_arguments_are_accepted(tmp_path, monkeypatch):
    (tmp_path / "review_lj_factory.py").write_text(
        "from ase.calculators.calculator import Calculator\n"
        "from ase.calculators.lj import LennardJones\n\n\n"
        "def lj(cutoff: float = 3.0, **kwargs) -> Calculator:\n"
        "    return LennardJones(rc=cutoff, **kwargs)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    check_calculator_settings("review_lj_factory:lj", {"cutoff": 4.0, "sigma": 2.0})
    with pytest.raises(ConfigError, match="does not accept 'cutof'"):
        check_calculator_settings("review_lj_factory:lj", {"cutof": 4.0})


def test_vasp_takes_any_incar_key_including_its_own_ladders(monkeypatch):
    monkeypatch.setenv("VASP_PP_PATH", "/nonexistent/potpaw")
    monkeypatch.setenv("ASE_VASP_COMMAND", "vasp_std")
    from matloop.labelling import DEFAULT_HANDLERS

    check_calculator_settings("vasp", {"encut": 300, "amix": 0.1, "lreal": "Auto"})
    check_calculator_settings("vasp", {}, handlers=DEFAULT_HANDLERS["vasp"])


class _Launcher(Labeller):
    """Waits on a launcher that started ranks, as ASE's file-IO calculators wait on mpirun."""

    name = "launcher"

    def prepare(self, atoms, settings):
        return None

    def run(self, atoms, prepared):
        subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60; wait"]).wait()

    def parse(self, atoms, raw):
        return 0.0, np.zeros((len(atoms), 3)), None


def test_a_timed_out_code_in_a_worker_thread_leaves_no_process_behind():
    lab = _Launcher(timeout_s=0.5)
    result, seconds = _in_thread(lambda: lab.label(bulk("Cu")))
    assert result.reason.startswith("timeout:"), result.reason
    assert seconds < 8.0
    sleeping = [p for p in psutil.Process().children(recursive=True) if p.name() == "sleep"]
    assert not sleeping, sleeping


def test_pseudopotential_files_named_with_a_dash_are_found(tmp_path):
    from matloop.labelling.builtin import _find_pseudopotentials

    for name in ("Fe-sp.upf", "Si.pbe-n-rrkjus_psl.1.0.0.UPF", "s_pbe_v1.4.uspp.F.UPF"):
        (tmp_path / name).write_text("")
    found = _find_pseudopotentials(["Fe", "Si", "S", "Fe"], str(tmp_path))
    assert found == {"Fe": "Fe-sp.upf", "S": "s_pbe_v1.4.uspp.F.UPF", "Si": found["Si"]}
    assert found["Si"].startswith("Si.pbe")
    with pytest.raises(ConfigError, match="no pseudopotential for Cu"):
        _find_pseudopotentials(["Cu"], str(tmp_path))
