"""Data-wide checks `matloop train` runs before any work (training.check_training_data).

- one composition ratio (every frame Cu3Au): the per-element reference energies are not
  determined, so the energies of other compositions are not predicted — one warning line;
- a cutoff shorter than every interatomic distance (0.5 typed for 0.5 nm): refused in one line;
- stresses in GPa (×160 of eV/Å³) below the per-structure 10 eV/Å³ gate: one warning line.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import yaml
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import write

from matloop.cli import main
from matloop.data import Dataset, label_with, make_labelled
from matloop.data.dataset import stress_of
from matloop.data.reference import undetermined_reference_warning
from matloop.training import train


def _cu3au(n: int, seed: int = 0) -> list:
    """`n` rattled, ±2 % strained L1_2 Cu3Au cells (4 atoms) labelled with EMT."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        a = bulk("Cu", "fcc", 3.74 * (1 + rng.uniform(-0.02, 0.02)), cubic=True)
        a.symbols[0] = "Au"
        a.rattle(0.05, seed=k)
        out.append(label_with(a, EMT()))
    return out


def _pure(symbol: str, a0: float) -> list:
    return [label_with(bulk(symbol, "fcc", a0 * s, cubic=True), EMT()) for s in (0.99, 1.01)]


def _train_warnings(data: Dataset, tmp_path, tiny_config) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(data, tmp_path / "m", tiny_config, progress=False)
    return [str(w.message) for w in caught]


def test_single_composition_warns_at_train_time(tmp_path):
    from conftest import tiny_train_config

    cfg = tiny_train_config(max_epochs=2)
    texts = _train_warnings(Dataset(_cu3au(8), source="cu3au.xyz"), tmp_path, cfg)
    hits = [t for t in texts if "reference energies" in t]
    assert len(hits) == 1, texts
    assert "AuCu3" in hits[0] and "only 1 of the 2" in hits[0]
    assert "pure elements" in hits[0] and hits[0].startswith("the training")


def test_other_compositions_or_pure_elements_silence_it():
    mixed = Dataset(_cu3au(3) + _pure("Cu", 3.61) + _pure("Au", 4.08))
    assert undetermined_reference_warning(mixed) is None
    assert undetermined_reference_warning(Dataset(_pure("Cu", 3.61))) is None  # one element: rank 1
    # Cu3Au at two sizes is still one ratio: rank 1 of 2
    bigger = label_with(bulk("Cu", "fcc", 3.74, cubic=True) * (2, 1, 1), EMT())
    bigger.symbols[[0, 4]] = "Au"
    assert "only 1 of the 2" in undetermined_reference_warning(Dataset([*_cu3au(2), bigger]))


def test_cutoff_shorter_than_every_distance_is_refused(tmp_path, capsys):
    frames = _cu3au(6) + _pure("Cu", 3.61) + _pure("Au", 4.08)
    write(tmp_path / "train.xyz", frames)
    config = {"model": {"family": "ace", "params": {"cutoff": 0.5, "max_l": 2}}}
    (tmp_path / "nm.yaml").write_text(yaml.safe_dump(config))
    args = ["train", "--train", str(tmp_path / "train.xyz"), "--out", str(tmp_path / "r")]
    code = main([*args, "--config", str(tmp_path / "nm.yaml"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert len(err) == 1 and err[0].startswith("error: ")
    assert "cutoff 0.5 Å" in err[0] and "not nm" in err[0] and "5 Å for 0.5 nm" in err[0]
    nearest = float(re.search(r"nearest neighbours ([0-9.]+) Å", err[0]).group(1))
    assert 2.2 < nearest < 2.6  # the data's shortest distance (rattled Cu–Cu, 2.56 Å unrattled)
    assert not (tmp_path / "r").exists()


def _in_gpa(frames: list) -> list:
    """The same EMT labels with their stress written in GPa (what a user may feed)."""
    out = []
    for a in frames:
        r = a.calc.results
        out.append(make_labelled(a, r["energy"], r["forces"], stress_of(a) / units.GPa))
    return out


def test_stress_in_gpa_warns_and_ev_per_a3_does_not(tmp_path):
    from conftest import tiny_train_config

    rng = np.random.default_rng(3)
    frames = []
    for k in range(8):  # strained ±3 %: EMT stresses of ~1–10 GPa
        a = bulk("Cu", "fcc", 3.61, cubic=True)
        a.set_cell(a.cell.array @ (np.eye(3) + rng.uniform(-0.03, 0.03, (3, 3))), scale_atoms=True)
        a.rattle(0.03, seed=k)
        frames.append(label_with(a, EMT()))
    good = Dataset(frames, source="ev.xyz")
    assert good.stress_units_warning() is None
    gpa = Dataset(_in_gpa(frames), source="gpa.xyz")  # every component below the 10 eV/Å³ gate
    assert max(np.abs(stress_of(a)).max() for a in gpa) < 10.0
    cfg = tiny_train_config(max_epochs=2)
    hits = [t for t in _train_warnings(gpa, tmp_path, cfg) if "GPa or kbar" in t]
    # the warning counts the training part of the split (7 or 8 of the 8 frames)
    assert len(hits) == 1 and "stress-labelled" in hits[0] and "eV/Å³" in hits[0]
    assert not [t for t in _train_warnings(good, tmp_path / "b", cfg) if "GPa or kbar" in t]


@pytest.mark.parametrize("fraction", [0.0, 0.4])
def test_stress_median_ignores_unlabelled_structures(fraction):
    frames = _cu3au(5)
    n_without = int(fraction * len(frames))
    for a in frames[:n_without]:
        a.calc.results.pop("stress")
    assert Dataset(_in_gpa(frames[n_without:]) + frames[:n_without]).stress_units_warning()


def _md_frames(n: int = 12) -> list:
    """Frames of one EMT Cu NVE run, 5 steps of 2 fs apart (neighbouring steps of a trajectory)."""
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet

    atoms = bulk("Cu", "fcc", 3.61, cubic=True) * (2, 2, 2)
    atoms.calc = EMT()
    MaxwellBoltzmannDistribution(atoms, temperature_K=800, rng=np.random.default_rng(0))
    dynamics = VelocityVerlet(atoms, 2 * units.fs)
    frames = []
    for _ in range(n):
        dynamics.run(5)
        frames.append(label_with(atoms.copy(), EMT()))
    return frames


def _forces_times(frames: list, factor: float) -> Dataset:
    from ase.calculators.singlepoint import SinglePointCalculator

    out = []
    for frame in frames:
        copy = frame.copy()
        energy, forces = frame.get_potential_energy(), frame.get_forces()
        copy.calc = SinglePointCalculator(copy, energy=energy, forces=factor * forces)
        out.append(copy)
    return Dataset(out, source="md.xyz")


def test_forces_of_the_wrong_sign_or_unit_are_caught_along_md_frames(tmp_path):
    """Sign-flipped forces trained silently (audit: energy MAE 55 against 0.66 meV/atom)."""
    from conftest import tiny_train_config

    frames = _md_frames()
    assert Dataset(frames, source="md.xyz").force_sign_warning() is None
    assert "+∇E" in _forces_times(frames, -1.0).force_sign_warning()
    assert "Hartree" in _forces_times(frames, 1 / 51.422).force_sign_warning()
    # rattled frames that are no trajectory cannot be checked, and are not flagged
    assert _forces_times(list(_cu3au(8)), -1.0).force_sign_warning() is None
    texts = _train_warnings(_forces_times(frames, -1.0), tmp_path, tiny_train_config(max_epochs=2))
    assert len([t for t in texts if "+∇E" in t]) == 1, texts
