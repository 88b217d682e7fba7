"""Reading, validation, splits and reference energies of reference data."""

from __future__ import annotations

import ase.db
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.io import write

from matloop.data import (
    Dataset,
    fit_reference_energies,
    group_split,
    make_labelled,
    random_split,
    read_dataset,
)
from matloop.errors import DataError


def test_extxyz_roundtrip_keeps_labels_and_config_type(tmp_path, emt_cu_dataset):
    path = emt_cu_dataset.write(tmp_path / "cu.xyz")
    back = read_dataset(path)
    assert len(back) == len(emt_cu_dataset)
    assert back.config_types == emt_cu_dataset.config_types
    np.testing.assert_allclose(back.energies(), emt_cu_dataset.energies(), atol=1e-8)
    np.testing.assert_allclose(back[3].get_forces(), emt_cu_dataset[3].get_forces(), atol=1e-8)
    np.testing.assert_allclose(back[3].get_stress(), emt_cu_dataset[3].get_stress(), atol=1e-10)


def test_ase_database_is_read_with_config_type(tmp_path, emt_cu_dataset):
    path = tmp_path / "cu.db"
    with ase.db.connect(path) as db:
        for atoms in emt_cu_dataset:
            db.write(atoms, config_type=atoms.info["config_type"])
    back = read_dataset(path)
    assert len(back) == len(emt_cu_dataset)
    assert back.config_types == emt_cu_dataset.config_types
    np.testing.assert_allclose(back.energies(), emt_cu_dataset.energies())


def test_custom_energy_key(tmp_path):
    atoms = bulk("Cu", cubic=True)
    atoms.info["REF_energy"] = -14.0
    atoms.arrays["REF_forces"] = np.zeros((4, 3))
    write(tmp_path / "ref.xyz", atoms)
    ds = read_dataset(tmp_path / "ref.xyz", energy_key="REF_energy", forces_key="REF_forces")
    assert ds.energies()[0] == pytest.approx(-14.0)


def _write_one(tmp_path, atoms, name="bad.xyz"):
    path = tmp_path / name
    write(path, atoms, format="extxyz")
    return path


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda a: make_labelled(a, float("nan"), np.zeros((len(a), 3))), "NaN"),
        (lambda a: make_labelled(a, -1.0, np.full((len(a), 3), np.inf)), "NaN or inf"),
        (lambda a: make_labelled(a, -1.0, None), "missing forces"),
    ],
)
def test_bad_frames_are_named(tmp_path, mutate, message):
    good = make_labelled(bulk("Cu", cubic=True), -14.0, np.zeros((4, 3)))
    bad = mutate(bulk("Cu", cubic=True))
    path = tmp_path / "bad.xyz"
    write(path, [good, good, bad])
    with pytest.raises(DataError, match=rf"bad.xyz, frame 2: .*{message}"):
        read_dataset(path)


def test_missing_energy(tmp_path):
    atoms = bulk("Cu", cubic=True)
    path = _write_one(tmp_path, atoms)
    with pytest.raises(DataError, match="frame 0: missing energy"):
        read_dataset(path)


def test_wrong_force_shape_overlap_and_zero_cell():
    atoms = bulk("Cu", cubic=True)
    bad_forces = make_labelled(atoms, -1.0)
    bad_forces.calc.results["forces"] = np.zeros((3, 3))
    with pytest.raises(DataError, match=r"shape \(3, 3\), expected \(4, 3\)"):
        Dataset([bad_forces], source="x")
    close = make_labelled(Atoms("Cu2", positions=[[0, 0, 0], [0.3, 0, 0]]), -1.0, np.zeros((2, 3)))
    with pytest.raises(DataError, match="closer than 0.5"):
        Dataset([close], source="x")
    flat = Atoms("Cu", cell=[[3, 0, 0], [0, 3, 0], [0, 0, 0]], pbc=True)
    with pytest.raises(DataError, match="periodic along a, b, c but cell vector c is zero"):
        Dataset([make_labelled(flat, -1.0, np.zeros((1, 3)))], source="x")


def test_periodic_overlap_across_boundary_is_caught():
    atoms = Atoms("Cu2", positions=[[0.1, 0, 0], [4.9, 0, 0]], cell=[5, 5, 5], pbc=True)
    with pytest.raises(DataError, match="closer than 0.5"):
        Dataset([make_labelled(atoms, -1.0, np.zeros((2, 3)))])


def test_malformed_and_missing_files(tmp_path):
    bad = tmp_path / "broken.xyz"
    bad.write_text("3\nnot a header\nCu 0 0\n")
    with pytest.raises(DataError, match="cannot read .*broken.xyz"):
        read_dataset(bad)
    with pytest.raises(DataError, match="file not found"):
        read_dataset(tmp_path / "nope.xyz")


def test_random_split_is_seeded_and_disjoint(emt_cu_dataset):
    rest_a, split_a = random_split(emt_cu_dataset, 0.25, seed=1)
    rest_b, split_b = random_split(emt_cu_dataset, 0.25, seed=1)
    assert [id(a) for a in split_a] == [id(a) for a in split_b]
    assert len(split_a) == 6 and len(rest_a) == 18
    assert not {id(a) for a in split_a} & {id(a) for a in rest_a}


def test_group_split_keeps_groups_together(emt_cu_dataset):
    rest, split = group_split(emt_cu_dataset, 0.4, key="config_type", seed=0)
    assert set(rest.config_types).isdisjoint(split.config_types)
    assert len(rest) + len(split) == len(emt_cu_dataset)


def test_reference_energies_by_least_squares():
    true_e0 = {"Cu": -3.0, "Ni": -5.0}
    structures = []
    for n_cu, n_ni in [(4, 0), (2, 2), (1, 3), (3, 1)]:
        atoms = bulk("Cu", cubic=True)
        atoms.symbols[:n_ni] = "Ni"
        energy = n_cu * true_e0["Cu"] + n_ni * true_e0["Ni"]
        structures.append(make_labelled(atoms, energy, np.zeros((4, 3))))
    e0 = fit_reference_energies(Dataset(structures))
    assert e0["Cu"] == pytest.approx(-3.0)
    assert e0["Ni"] == pytest.approx(-5.0)


def test_written_files_are_readable_by_others(tmp_path, emt_cu_dataset):
    import os
    import stat

    path = emt_cu_dataset.write(tmp_path / "shared.xyz")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_unknown_extension_says_what_to_do(tmp_path, emt_cu_dataset):
    """ASE's UnknownFileTypeError carries only the extension ('txt'): the message explains it."""
    path = tmp_path / "train.txt"
    emt_cu_dataset.write(tmp_path / "train.xyz")
    path.write_text((tmp_path / "train.xyz").read_text())
    with pytest.raises(DataError, match=r"train.txt: ASE does not know the file type 'txt'") as err:
        read_dataset(path)
    assert ".xyz" in str(err.value)
