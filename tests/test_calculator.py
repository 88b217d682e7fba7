"""The trained model as an ASE calculator: results, MD, and clear refusals."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.md.verlet import VelocityVerlet

import matloop
from matloop.errors import ModelFileError, UnknownElementError
from matloop.models.io import FORMAT_VERSION, read_payload


def test_results_have_ase_shapes(tiny_cu_model):
    atoms = bulk("Cu", "fcc", 3.6, cubic=True) * (2, 2, 2)
    atoms.rattle(0.05, seed=0)
    atoms.calc = matloop.load(tiny_cu_model)
    assert isinstance(atoms.get_potential_energy(), float)
    assert atoms.get_forces().shape == (32, 3)
    assert atoms.get_stress().shape == (6,)
    assert atoms.get_potential_energy() == pytest.approx(
        atoms.get_potential_energy(force_consistent=True)
    )
    assert atoms.calc.get_descriptors(atoms).shape[0] == 32
    np.testing.assert_allclose(atoms.get_forces().sum(0), 0.0, atol=1e-4)


def test_ase_md_runs_with_the_model(tiny_cu_model):
    from ase import units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    atoms = bulk("Cu", "fcc", 3.6, cubic=True) * (2, 2, 2)
    atoms.calc = matloop.load(tiny_cu_model)
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(0))
    e_start = atoms.get_total_energy()
    VelocityVerlet(atoms, timestep=2 * units.fs).run(20)
    assert abs(atoms.get_total_energy() - e_start) / len(atoms) < 5e-3


def test_every_change_of_the_structure_is_seen(tiny_cu_model):
    """check_state's shortcut (moved positions) must not hide any other change."""
    calc = matloop.load(tiny_cu_model)
    atoms = bulk("Cu", "fcc", 3.6, cubic=True) * (2, 2, 2)
    atoms.rattle(0.05, seed=1)
    atoms.calc = calc
    energies = [atoms.get_potential_energy()]
    assert calc.check_state(atoms) == []  # unchanged: nothing recomputed
    atoms.positions[3] += [0.02, 0.0, 0.0]
    assert calc.check_state(atoms) == ["positions"]
    energies.append(atoms.get_potential_energy())
    atoms.set_cell(atoms.cell * 1.01, scale_atoms=False)  # cell only, positions kept
    assert "cell" in calc.check_state(atoms)
    energies.append(atoms.get_potential_energy())
    atoms.pbc = [True, True, False]
    assert "pbc" in calc.check_state(atoms)
    energies.append(atoms.get_potential_energy())
    assert len(set(energies)) == 4
    assert calc.check_state(atoms) == []
    atoms.set_initial_charges(np.linspace(-0.1, 0.1, len(atoms)))
    assert calc.check_state(atoms) == ["initial_charges"]
    atoms.numbers[0] = 29  # the same element written again: no change
    assert calc.check_state(atoms) == ["initial_charges"]
    fresh = matloop.load(tiny_cu_model)
    assert fresh.get_potential_energy(atoms) == energies[-1]


def test_unknown_element_is_refused(tiny_cu_model):
    atoms = bulk("Cu", cubic=True)
    atoms.symbols[0] = "Au"
    atoms.calc = matloop.load(tiny_cu_model)
    with pytest.raises(UnknownElementError, match="Au.*never trained"):
        atoms.get_potential_energy()


def test_molecule_without_cell_has_energy_but_no_stress(tiny_cu_model):
    from ase.calculators.calculator import PropertyNotImplementedError

    atoms = Atoms("Cu3", positions=[[0, 0, 0], [2.5, 0, 0], [0, 2.5, 0]])
    atoms.calc = matloop.load(tiny_cu_model)
    assert np.isfinite(atoms.get_potential_energy())
    with pytest.raises(PropertyNotImplementedError):
        atoms.get_stress()
    assert molecule("H2O")  # sanity: ASE builder available


def test_truncated_file_is_refused(tmp_path, tiny_cu_model):
    data = tiny_cu_model.read_bytes()
    broken = tmp_path / "broken.pt"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated or corrupted"):
        matloop.load(broken)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a model at all")
    with pytest.raises(ModelFileError):
        matloop.load(garbage)


def test_incompatible_version_is_refused(tmp_path, tiny_cu_model):
    payload = read_payload(tiny_cu_model)
    payload["format_version"] = FORMAT_VERSION + 1
    future = tmp_path / "future.pt"
    torch.save(payload, future)
    with pytest.raises(ModelFileError, match="format 2.*reads format 1"):
        matloop.load(future)


def test_missing_model_is_refused(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        matloop.load(tmp_path / "nothing.pt")
    with pytest.raises(ModelFileError, match="without model.pt"):
        matloop.load(tmp_path)


def test_loading_a_model_leaves_torch_threads_alone(tiny_cu_model):
    """matloop.load() and calculations never change the caller's torch thread count; inside a
    calculation they use matloop's (MATLOOP_NUM_THREADS or 1), or `num_threads`."""
    import torch
    from ase.build import bulk

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        calc = matloop.load(tiny_cu_model)
        assert calc.num_threads == 1  # inside calculate: matloop's default, as in the commands
        atoms = bulk("Cu", cubic=True)
        atoms.calc = calc
        atoms.get_potential_energy()
        assert torch.get_num_threads() == 2
        pinned = matloop.load(tiny_cu_model, num_threads=1)
        atoms.calc = pinned
        atoms.rattle(0.01, seed=1)
        atoms.get_forces()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_non_model_file_is_one_clear_error(tmp_path, tiny_cu_model):
    """A CSV/extxyz given as MODEL is refused as a ModelFileError, not an internal IndexError."""
    csv = tmp_path / "train_log.csv"
    csv.write_text("epoch,train_energy_mae\n0,1.0\n1,0.5\n")
    xyz = tmp_path / "data.xyz"
    xyz.write_text('1\nLattice="3 0 0 0 3 0 0 0 3" energy=-1.0 pbc="T T T"\nCu 0 0 0\n')
    for path in (csv, xyz):
        with pytest.raises(ModelFileError, match="not a torch archive"):
            matloop.load(path)


class _NotPlainData:
    pass


def test_model_file_with_code_is_refused_without_torch_advice(tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"format": "matloop-potential", "x": _NotPlainData()}, evil)
    with pytest.raises(ModelFileError, match="other than tensors and plain data") as err:
        matloop.load(evil)
    assert "weights_only" not in str(err.value)


def test_malloc_tuning_is_applied_once_and_can_be_turned_off():
    # repeated MD evaluations reuse freed heap instead of page-faulting fresh mmapped blocks
    # (2x per step for a 500-atom ace cell); MATLOOP_MALLOC_TUNING=0 leaves glibc alone
    import platform
    import subprocess
    import sys

    code = "from matloop.utils.allocator import keep_freed_memory as k; print(k(), k())"
    on = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    env = {**os.environ, "MATLOOP_MALLOC_TUNING": "0"}
    off = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert on.stdout.split() == [str(glibc)] * 2
    assert off.stdout.split() == ["False", "False"]
