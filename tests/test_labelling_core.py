"""Labellers: status, error handlers, validation, built-in reference codes."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from ase.build import bulk, molecule
from ase.calculators.emt import EMT

from matloop.calculators import builtin_calculators
from matloop.errors import ConfigError
from matloop.labelling import (
    CalculatorLabeller,
    LabelStatus,
    ValidationLimits,
    make_labeller,
    validate_result,
)
from matloop.labelling.faults import FaultyCalculator


def _cu(seed: int = 0):
    atoms = bulk("Cu", cubic=True) * (2, 1, 1)
    atoms.rattle(0.05, seed=seed)
    return atoms


def test_emt_label_matches_direct_calculation():
    atoms = _cu()
    result = make_labeller("emt").label(atoms)
    assert result.status is LabelStatus.SUCCESS and result.ok
    ref = atoms.copy()
    ref.calc = EMT()
    assert result.atoms.get_potential_energy() == pytest.approx(ref.get_potential_energy())
    np.testing.assert_allclose(result.atoms.get_forces(), ref.get_forces(), atol=1e-12)
    np.testing.assert_allclose(result.atoms.get_stress(), ref.get_stress(), atol=1e-12)
    prov = result.provenance()
    assert prov["labeller"] == "emt" and prov["status"] == "success"
    assert len(prov["attempts"]) == 1 and prov["attempts"][0]["error_kind"] is None


def _structure_with(fault: str, recoverable: bool | None = None, **probs):
    calc = FaultyCalculator(**probs)
    for seed in range(200):
        atoms = _cu(seed)
        kind, v = calc.fault_for(atoms)
        if kind == fault and (recoverable is None or (v < 0.5) == recoverable):
            return atoms
    raise AssertionError("no structure found")


@pytest.mark.parametrize(
    ("prob", "status", "text"),
    [
        ("p_exception", LabelStatus.FAILED, "crash"),
        ("p_nan", LabelStatus.INCONSISTENT, "non-finite energy"),
        ("p_absurd", LabelStatus.INCONSISTENT, "absurd forces"),
        ("p_timeout", LabelStatus.FAILED, "timeout"),
    ],
)
def test_each_fault_gives_a_status_and_reason(prob, status, text):
    settings = {prob: 1.0, "hang_s": 5.0}
    lab = make_labeller("faulty", settings, timeout_s=0.3)
    result = lab.label(_cu())
    assert result.status is status
    assert text in result.reason
    assert not result.ok
    assert result.atoms.calc is None  # a failed label carries no results


def test_exception_is_retried_once_then_given_up():
    result = make_labeller("faulty", {"p_exception": 1.0}).label(_cu())
    assert [a.error_kind for a in result.attempts] == ["crash", "crash"]
    assert "gave up after 2 attempt" in result.reason


def test_scf_handler_recovers_with_more_iterations():
    atoms = _structure_with("scf", recoverable=True, p_scf=1.0)
    result = make_labeller("faulty", {"p_scf": 1.0}).label(atoms)
    assert result.ok
    assert result.settings["max_iterations"] == 200
    assert [a.error_kind for a in result.attempts] == ["scf", None]


def test_scf_handler_gives_up_when_ladder_exhausted():
    atoms = _structure_with("scf", recoverable=False, p_scf=1.0)
    result = make_labeller("faulty", {"p_scf": 1.0}).label(atoms)
    assert result.status is LabelStatus.FAILED
    assert result.reason.startswith("scf:")


def test_custom_handlers_and_bounded_retries():
    atoms = _structure_with("scf", recoverable=True, p_scf=1.0)
    lab = make_labeller(
        "faulty",
        {"p_scf": 1.0},
        handlers={"scf": [{"max_iterations": 120}, {"max_iterations": 160}]},
        max_retries=1,
    )
    result = lab.label(atoms)
    assert result.status is LabelStatus.FAILED  # 160 would work but only one retry allowed
    assert len(result.attempts) == 2


def test_validation_rules():
    atoms = _cu()
    lim = ValidationLimits(max_force=10.0)
    f = np.zeros((len(atoms), 3))
    assert validate_result(atoms, -1.0, f, None, lim) is None
    assert "no forces" in validate_result(atoms, -1.0, None, None, lim)
    assert "non-finite forces" in validate_result(atoms, -1.0, f + np.nan, None, lim)
    assert "absurd forces" in validate_result(atoms, -1.0, f + 11.0, None, lim)
    assert "shape" in validate_result(atoms, -1.0, f[:2], None, lim)
    assert "non-finite stress" in validate_result(atoms, -1.0, f, np.full(6, np.inf), lim)
    assert "non-finite energy" in validate_result(atoms, float("inf"), f, None, lim)


def test_module_function_spec_and_unknown_names():
    lab = CalculatorLabeller("matloop.labelling.faults:FaultyCalculator", {"p_nan": 1.0})
    assert lab.label(_cu()).status is LabelStatus.INCONSISTENT
    with pytest.raises(ConfigError, match="unknown calculator"):
        make_labeller("no-such-code").check()
    with pytest.raises(ConfigError, match="cannot import module"):
        make_labeller("no_such_module_xyz:calc").check()


def test_dft_codes_are_registered():
    names = builtin_calculators()
    for name in ("pyscf", "gpaw", "espresso", "vasp", "tblite", "emt", "kumagai"):
        assert name in names


def test_vasp_unconfigured_is_a_clear_failure(monkeypatch):
    monkeypatch.delenv("VASP_PP_PATH", raising=False)
    with pytest.raises(ConfigError, match="VASP_PP_PATH"):
        make_labeller("vasp").check()


def test_pyscf_water_with_scf_recovery():
    pytest.importorskip("pyscf")
    water = molecule("H2O")
    lab = make_labeller("pyscf", {"basis": "sto-3g", "max_cycle": 2})
    result = lab.label(water)
    assert result.ok, result.reason
    assert [a.error_kind for a in result.attempts] == ["scf", None]
    assert result.settings["max_cycle"] == 200
    e = result.atoms.get_potential_energy()
    assert -2080 < e < -2030  # PBE/STO-3G water ≈ -2060 eV
    f = result.atoms.get_forces()
    assert f.shape == (3, 3)
    assert np.abs(f.sum(0)).max() < 1e-3  # no net force on an isolated molecule


def test_tblite_water():
    pytest.importorskip("tblite")
    result = make_labeller("tblite").label(molecule("H2O"))
    assert result.ok, result.reason
    assert -140 < result.atoms.get_potential_energy() < -135  # GFN2 water ≈ -137.97 eV


@pytest.mark.skipif(shutil.which("pw.x") is None, reason="Quantum ESPRESSO pw.x not installed")
def test_espresso_silicon_with_scf_recovery():
    atoms = bulk("Si")
    atoms.rattle(0.05, seed=0)
    lab = make_labeller("espresso", {"ecutwfc": 15, "kpts": (2, 2, 2), "electron_maxstep": 2})
    result = lab.label(atoms)
    assert result.ok, result.reason
    assert [a.error_kind for a in result.attempts] == ["scf", None]
    assert result.atoms.get_stress().shape == (6,)
    assert abs(result.atoms.get_forces().sum(0)).max() < 1e-2


def test_missing_code_is_a_clear_config_error():
    try:
        import gpaw  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="needs the Python package 'gpaw'"):
            make_labeller("gpaw").check()
    else:  # pragma: no cover - gpaw installed
        pytest.skip("gpaw is installed")


def test_reference_code_exceptions_are_classified_by_type_first():
    import subprocess

    from ase.calculators.calculator import SCFError

    from matloop.labelling.base import ScfConvergenceError, classify_exception

    class KohnShamConvergenceError(RuntimeError):  # the name GPAW's SCF failure carries
        pass

    assert classify_exception(SCFError("ASE's SCF error")) == "scf"
    assert classify_exception(ScfConvergenceError("no")) == "scf"
    assert classify_exception(KohnShamConvergenceError("density did not settle")) == "scf"
    assert classify_exception(subprocess.TimeoutExpired("pw.x", 5)) == "timeout"
    assert classify_exception(TimeoutError("slow")) == "timeout"
    # a crash whose message merely mentions the SCF is a crash when its type says so
    assert classify_exception(MemoryError("out of memory in scf")) == "crash"
    assert classify_exception(RuntimeError("segmentation fault")) == "crash"


def test_a_configuration_error_fails_at_once_and_is_not_taken_for_an_scf_failure():
    # the pyscf labeller's "package missing" or "molecules only" errors name "pyscf", whose
    # letters contain "scf": they must not climb the SCF ladder (4 attempts of the same error)
    from matloop.labelling.base import Labeller, classify_exception

    exc = ConfigError("the reference code needs the Python package 'pyscf': pip install pyscf")
    assert classify_exception(exc) == "config"

    class Unusable(Labeller):
        name = "pyscf"
        default_handlers = {"scf": [{"max_cycle": 200}, {"damp": 0.5}], "crash": [{}]}

        def prepare(self, atoms, settings):
            raise ConfigError("the pyscf labeller handles molecules only (pbc must be False)")

    result = Unusable({}).label(molecule("H2O"))
    assert result.status is LabelStatus.FAILED
    assert len(result.attempts) == 1
    assert result.reason.startswith("config: ConfigError: the pyscf labeller handles molecules")


def test_a_timed_out_code_and_the_processes_it_started_are_stopped():
    """As ASE's file-IO calculators do: wait on a launcher (think mpirun) that started ranks."""
    import subprocess

    import psutil

    from matloop.labelling.base import LabelTimeout, time_limit

    launched = []
    with pytest.raises(LabelTimeout), time_limit(0.5):
        launched.append(subprocess.Popen(["sh", "-c", "sleep 60 & sleep 60; wait"]))
        launched[0].wait()
    assert launched[0].wait(timeout=10) is not None  # stopped, not left running
    ranks = [p for p in psutil.Process().children(recursive=True) if p.name() == "sleep"]
    assert not ranks, ranks
