"""Review of training and evaluation: bad input fails with one clear error before any work,
resume reproduces an uninterrupted run, committees never reuse members of other data."""

from __future__ import annotations

import json

import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from conftest import tiny_train_config
from helpers.reference_data import emt_cu_structures

from matloop.data import Dataset, label_with
from matloop.errors import ConfigError, DataError, FitError
from matloop.evaluation import evaluate
from matloop.training import train


@pytest.fixture(scope="module")
def cu12():
    return emt_cu_structures(12, seed=0)


def _with_nan_energy(structures, index: int) -> list:
    frames = []
    for i, atoms in enumerate(structures):
        results = dict(atoms.calc.results)
        if i == index:
            results["energy"] = float("nan")
        work = atoms.copy()
        work.calc = SinglePointCalculator(work, **results)
        frames.append(work)
    return frames


def test_empty_validation_set_is_one_clear_error(tmp_path, cu12):
    # before: KeyError 'e_abs' after featurising and one epoch
    with pytest.raises(DataError, match="validation set is empty"):
        train(cu12, tmp_path, tiny_train_config(max_epochs=2), valid_data=Dataset([]))


@pytest.mark.parametrize("max_time", [0, -5.0, float("nan")])
def test_max_time_must_be_positive_from_python_too(tmp_path, cu12, max_time):
    # before: max_time=0 or -5 trained one epoch and reported stopped_because="max_time";
    # NaN ignored the budget
    with pytest.raises(ConfigError, match="max_time"):
        train(cu12, tmp_path, tiny_train_config(max_epochs=3), max_time=max_time, progress=False)
    assert not (tmp_path / "model.pt").exists()


def test_resumed_run_reproduces_the_uninterrupted_one(tmp_path, cu12):
    """Before: the resumed epochs shuffled with another generator (seed + epoch) and started
    from the best epoch's weights with the last epoch's optimiser state, so epoch 4 on gave
    other numbers (valid energy RMSE 12.5 vs 13.1 meV/atom)."""

    def config(epochs: int):
        return tiny_train_config(max_epochs=epochs, checkpoint_every=4, learning_rate=0.05)

    full = train(cu12, tmp_path / "full", config(8), seed=5, progress=False)
    part = train(cu12, tmp_path / "part", config(4), seed=5, progress=False)
    assert part.best_metrics["epoch"] != 3  # the best epoch is not the last one
    resumed = train(cu12, tmp_path / "part", config(8), seed=5, resume=True, progress=False)
    assert [r["epoch"] for r in resumed.history] == list(range(8))
    for a, b in zip(full.history, resumed.history, strict=True):
        assert b["valid_energy_rmse_mev_per_atom"] == pytest.approx(
            a["valid_energy_rmse_mev_per_atom"], rel=1e-6
        ), a["epoch"]
        assert b["train_force_mae_ev_per_a"] == pytest.approx(
            a["train_force_mae_ev_per_a"], rel=1e-6
        )


def test_committee_retrains_members_of_other_data_or_config(tmp_path):
    """Before: a member of the same seed and number of structures was reused for a different
    dataset and configuration (max_epochs 2 → 5 still returned the 2-epoch model)."""
    from matloop.training.committee import train_committee

    first, second = emt_cu_structures(6, seed=0), emt_cu_structures(6, seed=99)
    out = tmp_path / "c"
    [path] = train_committee(first, out, tiny_train_config(max_epochs=2), n_members=1, seeds=[1])
    mtime = path.stat().st_mtime_ns
    [again] = train_committee(first, out, tiny_train_config(max_epochs=2), n_members=1, seeds=[1])
    assert again.stat().st_mtime_ns == mtime  # same data and config: reused
    [other] = train_committee(second, out, tiny_train_config(max_epochs=2), n_members=1, seeds=[1])
    assert other.stat().st_mtime_ns != mtime  # other data: retrained
    mtime = other.stat().st_mtime_ns
    [longer] = train_committee(second, out, tiny_train_config(max_epochs=3), n_members=1, seeds=[1])
    assert longer.stat().st_mtime_ns != mtime  # other config: retrained
    record = json.loads((longer.parent / "member.json").read_text())
    assert record["fingerprint"] and record["best_metrics"]["epoch"] == 2


def test_element_only_in_validation_set_is_refused(tmp_path, cu12):
    """Before: the model listed Ni with E0 = 0.0 eV and untrained weights."""
    ni = []
    for i in range(2):
        atoms = bulk("Ni", "fcc", a=3.52, cubic=True) * (2, 1, 1)
        atoms.rattle(0.05, seed=i)
        ni.append(label_with(atoms, EMT()))
    with pytest.raises(DataError, match="Ni occur only in the validation set"):
        train(cu12, tmp_path, tiny_train_config(max_epochs=2), valid_data=Dataset(ni))
    assert not (tmp_path / "model.pt").exists()


def test_nan_label_in_unchecked_dataset_is_refused(tmp_path, cu12):
    """Before: a NaN energy in a ``validate=False`` dataset (as committees and the active loop
    build them) made every validation score NaN; the untrained weights were saved."""
    data = Dataset(_with_nan_energy(cu12, 2), source="labels", validate=False)
    with pytest.raises(DataError, match="labels, frame 2: energy is NaN"):
        train(data, tmp_path, tiny_train_config(max_epochs=3), progress=False)
    assert not (tmp_path / "model.pt").exists()


def test_train_delta_refuses_nan_labels_before_the_base(tmp_path, cu12, monkeypatch):
    from matloop.training import delta

    def no_base(*args, **kwargs):
        raise AssertionError("the base was evaluated before the labels were checked")

    monkeypatch.setattr(delta, "base_predictions", no_base)
    with pytest.raises(DataError, match="frame 2: energy is NaN"):
        delta.train_delta(
            _with_nan_energy(cu12, 2),
            base="emt",
            out_dir=tmp_path,
            config=tiny_train_config(max_epochs=3),
            progress=False,
        )


def test_diverged_training_is_an_error_not_an_untrained_model(tmp_path, cu12):
    """Before: with every validation loss NaN the run ended 'max_epochs', best epoch None, and
    model.pt held the initial weights."""
    with pytest.raises(FitError, match="diverged.*learning_rate"):
        train(cu12, tmp_path, tiny_train_config(max_epochs=3, learning_rate=1e6), progress=False)
    assert not (tmp_path / "model.pt").exists()


def test_evaluate_on_no_structures_is_an_error():
    # before: a dict of NaN metrics (and RuntimeWarnings)
    with pytest.raises(DataError, match="no structures to evaluate"):
        evaluate(EMT(), Dataset([], source="test.xyz"))
