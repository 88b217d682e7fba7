"""Reference data as users have it: virial/stress conventions, label keys, globs, splits, units."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write
from ase.stress import voigt_6_to_full_3x3_stress

from matloop.data import Dataset, group_split, label_with, random_split, read_dataset, stress_of
from matloop.data.io import iter_structures
from matloop.errors import DataError


def _emt_frames(n: int = 4) -> list:
    """Strained, rattled fcc Cu cells labelled by EMT (eV, eV/Å, eV/Å³)."""
    frames = []
    for i in range(n):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
        atoms.rattle(0.05, seed=i)
        atoms.set_cell(atoms.cell * (1.0 + 0.01 * i), scale_atoms=True)
        frames.append(label_with(atoms, EMT()))
    return frames


def _as_info(frames: list, stress_key: str, virial: bool) -> list:
    """Copies whose labels sit in info/arrays under REF_* keys, the stress as 9 numbers or
    (virial=True) the virial W = -σ·V (eV) as 9 numbers."""
    out = []
    for atoms in frames:
        copy = atoms.copy()
        full = voigt_6_to_full_3x3_stress(atoms.get_stress())
        value = -full * atoms.get_volume() if virial else full
        copy.info["REF_energy"] = atoms.get_potential_energy()
        copy.info[stress_key] = value.ravel()
        copy.arrays["REF_forces"] = atoms.get_forces()
        out.append(copy)
    return out


def test_extxyz_virial_becomes_the_stress(tmp_path):
    frames = _emt_frames()
    plain = []
    for atoms in frames:
        copy = atoms.copy()
        full = voigt_6_to_full_3x3_stress(atoms.get_stress())
        copy.info["virial"] = -full * atoms.get_volume()  # libAtoms/GAP convention, eV
        copy.calc = SinglePointCalculator(
            copy, energy=atoms.get_potential_energy(), forces=atoms.get_forces()
        )
        plain.append(copy)
    write(tmp_path / "gap.xyz", plain)
    ds = read_dataset(tmp_path / "gap.xyz")
    assert ds.has_stress  # the virial was silently ignored
    for got, ref in zip(ds, frames, strict=True):
        np.testing.assert_allclose(stress_of(got), ref.get_stress(), atol=1e-12)


@pytest.mark.parametrize("key, virial", [("REF_stress", False), ("REF_virial", True)])
def test_custom_stress_key_with_nine_numbers_or_a_virial(tmp_path, key, virial):
    frames = _emt_frames()
    write(tmp_path / "ref.xyz", _as_info(frames, key, virial))
    ds = read_dataset(
        tmp_path / "ref.xyz", energy_key="REF_energy", forces_key="REF_forces", stress_key=key
    )
    for got, ref in zip(ds, frames, strict=True):
        np.testing.assert_allclose(stress_of(got), ref.get_stress(), atol=1e-12)


def test_virial_without_a_cell_volume_is_one_line(tmp_path):
    atoms = _as_info(_emt_frames(1), "REF_virial", True)[0]
    atoms.pbc = False
    atoms.cell = None
    write(tmp_path / "mol.xyz", atoms)
    with pytest.raises(DataError, match=r"mol.xyz, frame 0: .*'REF_virial' .*no volume"):
        read_dataset(
            tmp_path / "mol.xyz",
            energy_key="REF_energy",
            forces_key="REF_forces",
            stress_key="REF_virial",
        )


def test_a_virial_on_a_cell_without_volume_is_left_alone(tmp_path):
    atoms = _emt_frames(1)[0]
    labels = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
    atoms.info["virial"] = np.zeros((3, 3))
    atoms.pbc = False
    atoms.cell = None
    atoms.calc = SinglePointCalculator(atoms, **labels)
    write(tmp_path / "mol.xyz", atoms)
    assert not read_dataset(tmp_path / "mol.xyz").has_stress


def test_energy_key_may_name_the_free_energy_ase_parsed(tmp_path):
    frames = _emt_frames(2)
    for atoms in frames:
        results = dict(atoms.calc.results, free_energy=atoms.get_potential_energy() - 0.25)
        atoms.calc = SinglePointCalculator(atoms, **results)
    write(tmp_path / "both.xyz", frames)
    energy = read_dataset(tmp_path / "both.xyz").energies()
    free = read_dataset(tmp_path / "both.xyz", energy_key="free_energy").energies()
    np.testing.assert_allclose(energy - free, 0.25)


def test_lazy_reading_refuses_a_misspelled_energy_key(tmp_path):
    frames = _as_info(_emt_frames(2), "REF_stress", False)
    for atoms in frames:  # a model's prediction stored as the standard energy
        atoms.calc = SinglePointCalculator(atoms, energy=999.0, forces=np.zeros((len(atoms), 3)))
    write(tmp_path / "both.xyz", frames)
    with pytest.raises(DataError, match=r"frame 0: no info key 'REF_enrgy'"):
        list(iter_structures(tmp_path / "both.xyz", energy_key="REF_enrgy"))
    with pytest.raises(DataError, match=r"both.xyz: no frame has the info key 'REF_strss'"):
        list(iter_structures(tmp_path / "both.xyz", stress_key="REF_strss"))


def test_lazy_reading_names_the_frame_in_the_file_not_in_the_chunk(tmp_path):
    frames = _emt_frames(5)
    bad = frames[3]
    bad.calc = SinglePointCalculator(bad, energy=1.0, forces=np.full((len(bad), 3), np.nan))
    write(tmp_path / "d.xyz", frames)
    with pytest.raises(DataError, match=r"d.xyz, frame 3: forces contain NaN"):
        list(iter_structures(tmp_path / "d.xyz", chunk_size=2))


def test_stress_in_kbar_is_refused(tmp_path):
    frames = _emt_frames(2)
    for atoms in frames:
        results = dict(atoms.calc.results, stress=atoms.get_stress() * 1602.1766)
        atoms.calc = SinglePointCalculator(atoms, **results)
    write(tmp_path / "kbar.xyz", frames)
    with pytest.raises(DataError, match=r"kbar.xyz, frame 0: stress component .* eV/Å³"):
        read_dataset(tmp_path / "kbar.xyz")


def test_a_glob_pattern_reads_every_match_and_an_empty_one_is_one_line(tmp_path):
    frames = _emt_frames(3)
    for i, atoms in enumerate(frames):
        (tmp_path / f"run{i}").mkdir()
        write(tmp_path / f"run{i}" / "out.xyz", atoms)
    ds = read_dataset(str(tmp_path / "run*" / "out.xyz"))
    np.testing.assert_allclose(ds.energies(), [a.get_potential_energy() for a in frames])
    with pytest.raises(DataError, match="no file matches"):
        read_dataset(str(tmp_path / "run*" / "OUTCAR"))


def test_group_split_does_not_swallow_a_large_group():
    frames = _emt_frames(1)[0]
    structures = []
    for i in range(60):  # groups of 50, 5, 5 structures: 10 % is one small group
        atoms = frames.copy()
        atoms.calc = frames.calc
        atoms.info["config_type"] = "md" if i < 50 else ("surface" if i < 55 else "vacancy")
        structures.append(atoms)
    ds = Dataset(structures)
    for seed in range(8):
        rest, split = group_split(ds, 0.1, seed=seed)
        assert len(split) == 5, (seed, split.config_types)
        assert not set(rest.config_types) & set(split.config_types)


def test_random_split_keeps_copies_of_a_structure_on_one_side():
    frames = _emt_frames(10)
    copies = []
    for atoms in frames:  # e.g. one file listed twice
        copy = atoms.copy()
        copy.calc = SinglePointCalculator(copy, **atoms.calc.results)
        copies.append(copy)
    ds = Dataset(frames + copies)
    for seed in range(5):
        rest, split = random_split(ds, 0.2, seed=seed)
        assert len(split) == 4
        assert not {a.positions.tobytes() for a in rest} & {a.positions.tobytes() for a in split}


def test_a_six_number_stress_in_extxyz_says_what_to_do(tmp_path):
    path = tmp_path / "voigt.xyz"
    path.write_text(
        '1\nLattice="3 0 0 0 3 0 0 0 3" Properties=species:S:1:pos:R:3 energy=-1.0 '
        'stress="0.1 0.1 0.1 0 0 0" pbc="T T T"\nCu 0 0 0\n'
    )
    with pytest.raises(DataError, match="must hold 9 numbers.*--stress-key"):
        read_dataset(path, require_forces=False)


@pytest.mark.parametrize("value, shown", [("abc", "'abc'"), (None, "True")])
def test_an_energy_key_that_holds_no_number_is_one_line(tmp_path, value, shown):
    path = tmp_path / "e.xyz"
    header = "REF_energy" if value is None else f"REF_energy={value}"  # bare key reads True
    path.write_text(
        '1\nLattice="3 0 0 0 3 0 0 0 3" Properties=species:S:1:pos:R:3 '
        f'{header} pbc="T T T"\nCu 0 0 0\n'
    )
    with pytest.raises(
        DataError, match=rf"frame 0: info key 'REF_energy' is {shown}, not an energy"
    ):
        read_dataset(path, energy_key="REF_energy", require_forces=False)


def test_missing_labels_name_the_keys_that_may_hold_them(tmp_path):
    write(tmp_path / "ref.xyz", _as_info(_emt_frames(1), "REF_stress", False))
    with pytest.raises(
        DataError, match=r"missing energy \(REF_energy may hold it: .*--energy-key\)"
    ):
        read_dataset(tmp_path / "ref.xyz")
    with pytest.raises(DataError, match=r"missing forces \(REF_forces may hold it: .*--forces-key"):
        read_dataset(tmp_path / "ref.xyz", energy_key="REF_energy")


def test_file_at_slice_selects_frames_like_ase(tmp_path):
    frames = _emt_frames(5)
    write(tmp_path / "md.xyz", frames)
    energies = [a.get_potential_energy() for a in frames]
    np.testing.assert_allclose(read_dataset(f"{tmp_path}/md.xyz@::2").energies(), energies[::2])
    np.testing.assert_allclose(read_dataset(f"{tmp_path}/md.xyz@-1").energies(), energies[-1:])
    with pytest.raises(DataError, match="cannot read .*md.xyz"):
        read_dataset(f"{tmp_path}/md.xyz@x")
    import ase.db

    with ase.db.connect(tmp_path / "md.db") as db:
        for atoms in frames:
            db.write(atoms)
    with pytest.raises(DataError, match=r"md.db is a database: select rows with .*#QUERY"):
        read_dataset(f"{tmp_path}/md.db@-1")  # all rows were read silently


def test_lazy_reading_of_a_json_database_keeps_config_type(tmp_path):
    import ase.db

    with ase.db.connect(tmp_path / "labels.json") as db:
        for i, atoms in enumerate(_emt_frames(3)):
            db.write(atoms, config_type=f"group{i}")
    lazy = [a.info["config_type"] for a in iter_structures(tmp_path / "labels.json")]
    assert (
        lazy
        == read_dataset(tmp_path / "labels.json").config_types
        == ["group0", "group1", "group2"]
    )


def test_label_with_a_calculator_without_stress_labels_a_periodic_cell():
    from ase.calculators.calculator import Calculator

    from matloop.data import label_with

    class NoStress(Calculator):
        implemented_properties = ["energy", "forces"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=()):
            super().calculate(atoms, properties, system_changes)
            work = self.atoms.copy()
            work.calc = EMT()
            self.results = {"energy": work.get_potential_energy(), "forces": work.get_forces()}

    labelled = label_with(bulk("Cu", cubic=True), NoStress())
    assert stress_of(labelled) is None
    assert labelled.get_forces().shape == (4, 3)


def test_reference_energies_for_too_few_elements_is_one_line():
    from matloop.data import fit_reference_energies

    with pytest.raises(DataError, match="hold Cu, which `elements` lacks"):
        fit_reference_energies(Dataset(_emt_frames(2)), ["Ni"])


# ---------------------------------------------------------------------------------- labelling
class _SmearedEMT(EMT):
    """EMT reporting a Mermin free energy 0.1 eV below the energy, as smeared DFT codes do."""

    def calculate(self, *args, **kwargs):
        super().calculate(*args, **kwargs)
        self.results["free_energy"] = self.results["energy"] - 0.1


def _smeared_emt(**kwargs):
    return _SmearedEMT(**kwargs)


def test_label_keeps_the_codes_free_energy():
    from matloop.calculators.registry import register_calculator
    from matloop.labelling import CalculatorLabeller

    register_calculator("review-smeared-emt", _smeared_emt, "EMT with a free energy (tests)")
    result = CalculatorLabeller("review-smeared-emt").label(bulk("Cu", cubic=True))
    assert result.ok
    energy = result.atoms.get_potential_energy()
    free = result.atoms.get_potential_energy(force_consistent=True)
    assert free == pytest.approx(energy - 0.1)  # it was stored as the energy itself


def test_a_missing_package_is_a_config_error_not_an_scf_failure():
    from matloop.labelling.base import classify_exception

    assert classify_exception(ModuleNotFoundError("No module named 'pyscf'")) == "config"


@pytest.mark.parametrize("options", [{"max_retries": -1}, {"timeout_s": -1.0}])
def test_labeller_refuses_negative_retries_or_time_limit(options):
    from matloop.errors import ConfigError
    from matloop.labelling import CalculatorLabeller

    with pytest.raises(ConfigError, match=">= 0"):
        CalculatorLabeller("emt", **options)


def test_data_push_takes_globs_and_file_at_slice(tmp_path, capsys):
    from matloop.cli import main

    frames = _emt_frames(4)
    write(tmp_path / "a.xyz", frames[:2])
    write(tmp_path / "b.xyz", frames[2:])
    db = f"sqlite:///{tmp_path / 'labels.db'}"
    assert main(["data", "push", str(tmp_path / "*.xyz"), "--db", db, "--code", "emt"]) == 0
    assert "pushed 4 new label(s)" in capsys.readouterr().out
    args = ["data", "push", f"{tmp_path / 'a.xyz'}@-1", "--db", db, "--code", "emt", "-q"]
    assert main(args) == 0
    assert "0 new label(s), 1 already stored" in capsys.readouterr().out
    missing = ["data", "push", str(tmp_path / "none*.xyz"), "--db", db, "--code", "emt"]
    assert main(missing) == 1
    assert "no file matches" in capsys.readouterr().err


def test_train_refuses_the_training_file_as_validation_data(tmp_path, capsys):
    from matloop.cli import main

    write(tmp_path / "train.xyz", _emt_frames(4))
    data = str(tmp_path / "train.xyz")
    assert main(["train", "--train", data, "--valid", data, "--out", str(tmp_path / "run")]) == 1
    assert "is the training file" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
