"""CommitteeCalculator: mean, energy_std (eV/atom), forces_std (eV/Å per atom), calibration."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator

from matloop.calculators import resolve_calculator
from matloop.calculators.committee import CommitteeCalculator, calibrate


@pytest.fixture(scope="module")
def members():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [resolve_calculator(n) for n in ("sw", "kumagai", "tersoff")]


def _si(seed=0, amp=0.08):
    a = bulk("Si", cubic=True)
    a.rattle(amp, seed=seed)
    return a


def test_mean_and_spread_match_members(members):
    atoms = _si()
    es, fs, ss = [], [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for c in members:
            w = atoms.copy()
            w.calc = c
            es.append(w.get_potential_energy())
            fs.append(w.get_forces())
            ss.append(w.get_stress())
        comm = CommitteeCalculator(members)
        atoms.calc = comm
        e = atoms.get_potential_energy()
        f = atoms.get_forces()
        s = atoms.get_stress()
    es, fs = np.array(es), np.array(fs)
    n = len(atoms)
    assert e == pytest.approx(es.mean())
    np.testing.assert_allclose(f, fs.mean(0), atol=1e-10)
    np.testing.assert_allclose(s, np.mean(ss, axis=0), atol=1e-12)
    assert comm.results["energy_std"] == pytest.approx(es.std(ddof=1) / n)
    fstd = comm.results["forces_std"]
    assert fstd.shape == (n,)
    np.testing.assert_allclose(fstd, np.sqrt(fs.var(0, ddof=1).mean(1)))
    assert comm.results["energies_committee"].shape == (3,)
    assert comm.uncertainty(atoms)["forces_std_max"] == pytest.approx(fstd.max())


def test_identical_members_have_zero_spread():
    comm = CommitteeCalculator([resolve_calculator("emt") for _ in range(3)])
    atoms = bulk("Cu", cubic=True)
    atoms.rattle(0.05, seed=1)
    atoms.calc = comm
    atoms.get_forces()
    assert comm.results["energy_std"] == pytest.approx(0.0, abs=1e-12)
    assert np.allclose(comm.results["forces_std"], 0.0)


def test_calibration_and_fitted_scale(members):
    data = []
    ref = resolve_calculator("sw")
    for seed in range(6):
        a = _si(seed, 0.1)
        a.calc = ref
        data.append(a.copy())
        data[-1].calc = SinglePointCalculator(
            data[-1], energy=a.get_potential_energy(), forces=a.get_forces()
        )
    comm = CommitteeCalculator(members)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cal = calibrate(comm, data)
    assert cal.n_structures == 6
    assert 0.0 <= cal.forces_coverage_95 <= 1.0
    assert cal.forces_scale > 0 and cal.energy_scale > 0
    # the fitted scale maximises the Gaussian likelihood: NLL never gets worse
    assert cal.forces_nll_scaled <= cal.forces_nll + 1e-12
    assert cal.energy_nll_scaled <= cal.energy_nll + 1e-12
    scaled = CommitteeCalculator(members, forces_scale=cal.forces_scale)
    a = data[0].copy()
    a.calc = scaled
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a.get_forces()
        raw = comm.get_property("forces_std", data[0].copy())
    np.testing.assert_allclose(scaled.results["forces_std"], raw * cal.forces_scale)
    assert comm.energy_scale == 1.0  # calibrate leaves the calculator unchanged
