"""Delta learning on a base calculator (real potentials: Tersoff base, Stillinger–Weber reference)
and the foundation-model names that need optional packages."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from helpers.reference_data import sw_si_structures

import matloop
from matloop.calculators import resolve_calculator
from matloop.calculators.foundation import DeltaCalculator
from matloop.errors import ConfigError
from matloop.training import TrainConfig
from matloop.training.delta import base_predictions, residual_dataset, train_delta

TINY_PAINN = {"features": 8, "layers": 2, "n_radial": 6, "cutoff": 4.0}


@pytest.fixture(scope="module")
def si_sw():
    return sw_si_structures(12, seed=0), sw_si_structures(4, seed=7)


def _config(max_epochs: int) -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "model": {"family": "painn", "params": TINY_PAINN},
            "training": {"max_epochs": max_epochs, "batch_size": 4, "learning_rate": 1e-2},
        }
    )


def test_residual_labels_are_reference_minus_base(si_sw):
    train, _ = si_sw
    preds = base_predictions(train[:2], "tersoff")
    residuals = residual_dataset(train[:2], preds)
    tersoff = resolve_calculator("tersoff")
    for atoms, res in zip(train[:2], residuals, strict=True):
        work = atoms.copy()
        work.calc = tersoff
        assert res.get_potential_energy() == pytest.approx(
            atoms.get_potential_energy() - work.get_potential_energy(), abs=1e-10
        )
        np.testing.assert_allclose(res.get_forces(), atoms.get_forces() - work.get_forces())
        np.testing.assert_allclose(res.get_stress(), atoms.get_stress() - work.get_stress())


def test_train_delta_then_load_gives_base_plus_correction(tmp_path, si_sw):
    train, test = si_sw
    result = train_delta(train, "tersoff", tmp_path / "delta", _config(15), progress=False)
    calc = matloop.load(result.model_path)
    assert isinstance(calc, DeltaCalculator)
    assert calc.metadata["delta_base"] == "tersoff" and calc.family == "painn"
    assert calc.base_name == "tersoff" and "tersoff" in str(calc)

    tersoff = resolve_calculator("tersoff")
    delta_err, base_err = [], []
    for atoms in test:
        work = atoms.copy()
        work.calc = calc
        energy = work.get_potential_energy()
        forces = work.get_forces()
        stress = work.get_stress()
        # the total is exactly base + correction
        corr = atoms.copy()
        corr.calc = calc.correction
        base = atoms.copy()
        base.calc = tersoff
        assert energy == pytest.approx(
            base.get_potential_energy() + corr.get_potential_energy(), abs=1e-9
        )
        np.testing.assert_allclose(forces, base.get_forces() + corr.get_forces(), atol=1e-10)
        np.testing.assert_allclose(stress, base.get_stress() + corr.get_stress(), atol=1e-12)
        assert work.get_potential_energy(force_consistent=True) == pytest.approx(energy)
        n = len(atoms)
        delta_err.append(abs(energy - atoms.get_potential_energy()) / n)
        base_err.append(abs(base.get_potential_energy() - atoms.get_potential_energy()) / n)
    # Tersoff alone is ~0.3 eV/atom off Stillinger–Weber; the correction removes most of that
    assert np.mean(delta_err) < 0.1 * np.mean(base_err)


def test_train_delta_needs_a_base_name(tmp_path, si_sw):
    with pytest.raises(ConfigError, match="name"):
        train_delta(si_sw[0], resolve_calculator("sw"), tmp_path, _config(1), progress=False)


def test_delta_base_that_lacks_an_element_is_refused(tmp_path):
    """A base that does not describe the data's elements is refused before any work: EMT on
    Mo failed mid-way with an internal NotImplementedError, and a Si Stillinger-Weber under
    Cu was accepted as a (meaningless) base."""
    from ase.build import bulk
    from ase.calculators.emt import EMT

    from matloop.errors import UnknownElementError

    cu = bulk("Cu", "fcc", a=3.6, cubic=True)
    cu.calc = EMT()
    cu.get_forces()
    with pytest.raises(UnknownElementError, match=r"Cu in training structure 0 .*'sw'"):
        base_predictions([cu], "sw")
    mo = bulk("Mo", "bcc", a=3.16, cubic=True)
    with pytest.raises(UnknownElementError, match=r"Mo in training structure 0 .*'emt'"):
        base_predictions([mo], "emt")


def test_foundation_names_are_registered():
    from matloop.calculators import builtin_calculators

    names = builtin_calculators()
    assert "chgnet" in names and "mace_mp" in names
    assert "pip install chgnet" in names["chgnet"]


@pytest.mark.skipif(importlib.util.find_spec("mace") is not None, reason="mace-torch installed")
def test_mace_mp_without_mace_torch_is_a_clear_config_error():
    with pytest.raises(ConfigError, match="mace-torch"):
        resolve_calculator("mace_mp")


def test_chgnet_without_package_is_a_clear_config_error(monkeypatch):
    import sys

    from matloop.calculators import foundation

    # make `import chgnet...` fail as it does where the optional extra is not installed
    monkeypatch.setattr(foundation, "_CHGNET_CLASS", None)
    for name in ("chgnet", "chgnet.model", "chgnet.model.dynamics"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ConfigError, match="pip install chgnet"):
        resolve_calculator("chgnet")


def test_mace_mp_offline_is_clear_and_leaves_torch_load_safe():
    import os

    if importlib.util.find_spec("mace") is None:
        pytest.skip("mace-torch is not installed")
    try:
        resolve_calculator("mace_mp")
    except ConfigError as exc:  # offline: the weights cannot be downloaded
        assert "model=/path/to/file.model" in str(exc)
    # mace-torch sets this on import; matloop must not leave it set (it disables weights_only)
    assert "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" not in os.environ


def test_delta_with_a_base_without_stress_names_the_base():
    """A base that lists no stress (ASE's SpringCalculator) used to drop stress from the sum's
    properties silently: asking for it gave ASE's bare "stress property not implemented", which
    the CLI shows as an internal error. Energies and forces still work; NVT MD sees no stress."""
    from ase.build import bulk
    from ase.calculators.calculator import PropertyNotImplementedError
    from ase.calculators.harmonic import SpringCalculator
    from helpers.small_models import untrained_bpnn

    from matloop.cli._errors import describe
    from matloop.errors import MatloopError

    cu = bulk("Cu", "fcc", a=3.6, cubic=True)
    calc = DeltaCalculator(SpringCalculator(cu.positions.copy(), 1.0), untrained_bpnn(), "spring")
    assert "stress" not in calc.implemented_properties  # MD then logs no pressure, refuses NPT
    work = cu.copy()
    work.rattle(0.05, seed=1)
    work.calc = calc
    assert np.isfinite(work.get_potential_energy()) and np.isfinite(work.get_forces()).all()
    with pytest.raises(MatloopError, match=r"base 'spring' \(SpringCalculator\) gives none") as e:
        work.get_stress()
    assert isinstance(e.value, PropertyNotImplementedError)  # ASE's optional-stress paths
    assert "base calculator that computes stress" in describe(e.value)
