"""The size of the default `ace` basis for many elements, and the fit's memory check."""

from __future__ import annotations

import numpy as np
import yaml
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from matloop.cli import main
from matloop.models.ace.family import AcePotential
from matloop.models.params import DEFAULT_MAX_COEFFICIENTS, AceParams

EMT_ELEMENTS = ["Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt"]


def test_default_basis_stays_within_budget_for_many_elements():
    """Five elements at degree 9 had 12,600 coefficients (a 10.7 GB fit), six 24,906."""
    sizes = {n: AcePotential(EMT_ELEMENTS[:n]).n_coefficients for n in (4, 5, 6, 7)}
    assert sizes[4] == 5620  # up to four elements the defaults are unchanged
    assert all(sizes[n] <= DEFAULT_MAX_COEFFICIENTS for n in (5, 6, 7)), sizes
    assert sizes[5] > 4000  # the largest degree within the budget, not a minimal basis
    assert AceParams().degrees(5)[0] == 7.0
    assert AceParams(max_degree=9).degrees(5)[0] == 9.0  # a degree the user sets stands


def _alloy_frames(n_frames: int) -> list:
    rng = np.random.default_rng(0)
    frames = []
    for i in range(n_frames):
        atoms = bulk("Cu", "fcc", a=3.8, cubic=True).repeat((2, 2, 1))
        atoms.symbols = list(rng.permutation(EMT_ELEMENTS * 3)[: len(atoms)])
        atoms.rattle(0.05, seed=i)
        atoms.calc = EMT()
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=forces)
        frames.append(atoms)
    return frames


def test_fit_that_cannot_fit_in_memory_is_refused_before_any_work(tmp_path, capsys):
    write(tmp_path / "alloy.xyz", _alloy_frames(6))
    config = {"model": {"family": "ace", "params": {"max_degree": 11, "max_l": 3}}}
    (tmp_path / "big.yaml").write_text(yaml.safe_dump(config))
    args = ["train", "--train", str(tmp_path / "alloy.xyz"), "--out", str(tmp_path / "run")]
    assert main([*args, "--config", str(tmp_path / "big.yaml"), "-q"]) == 1
    # six random alloy frames leave E0 undetermined: that warning may come first
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if not line.startswith("warning:")]
    assert len(errors) == 1, lines
    err = errors[0]
    assert "coefficients" in err and "GiB" in err, err
    assert "model.params.max_degree (now 11)" in err
    assert not (tmp_path / "run" / "model.pt").exists()
