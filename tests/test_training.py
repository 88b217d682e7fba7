"""Training: learning on EMT data, early stopping, time budget, checkpoints/resume, seeds."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import tiny_train_config

import matloop
from matloop.data import read_dataset
from matloop.evaluation import evaluate
from matloop.training import train


def test_tiny_model_learns_far_better_than_a_constant(
    tiny_cu_model, emt_cu_dataset, emt_cu_test_dataset
):
    metrics = evaluate(matloop.load(tiny_cu_model), emt_cu_test_dataset)
    per_atom = emt_cu_test_dataset.energies() / [len(a) for a in emt_cu_test_dataset]
    train_mean = np.mean(emt_cu_dataset.energies() / [len(a) for a in emt_cu_dataset])
    baseline_e = 1000 * np.abs(per_atom - train_mean).mean()
    baseline_f = np.mean(np.abs(np.concatenate([a.get_forces() for a in emt_cu_test_dataset])))
    assert metrics["energy_mae_mev_per_atom"] < 0.3 * baseline_e, (metrics, baseline_e)
    assert metrics["force_mae_ev_per_a"] < 0.3 * baseline_f, (metrics, baseline_f)
    assert set(metrics["per_config_type"]) == {"rattled", "strained"}


def test_log_and_model_file_written(tiny_cu_model):
    out = tiny_cu_model.parent
    rows = json.loads((out / "train_log.json").read_text())
    assert rows and {"epoch", "train_force_mae_ev_per_a", "valid_force_mae_ev_per_a"} <= set(
        rows[0]
    )
    header = (out / "train_log.csv").read_text().splitlines()[0]
    assert "valid_energy_mae_mev_per_atom" in header
    calc = matloop.load(out)
    assert calc.elements == ["Cu"] and calc.family == "bpnn"
    assert calc.metadata["best_epoch"] is not None


def test_time_budget_stops_training(tmp_path, emt_cu_dataset):
    result = train(
        emt_cu_dataset, tmp_path, tiny_train_config(max_epochs=10_000), max_time=2.0, progress=False
    )
    assert result.stopped_because == "max_time"
    assert result.seconds < 30


def test_same_seed_same_model_and_resume_continues(tmp_path, emt_cu_dataset):
    cfg = tiny_train_config(max_epochs=6, checkpoint_every=3)
    a = train(emt_cu_dataset, tmp_path / "a", cfg, seed=7, progress=False)
    b = train(emt_cu_dataset, tmp_path / "b", cfg, seed=7, progress=False)
    assert a.history[-1]["train_force_mae_ev_per_a"] == pytest.approx(
        b.history[-1]["train_force_mae_ev_per_a"], rel=1e-5
    )
    c = train(emt_cu_dataset, tmp_path / "c", cfg, seed=8, progress=False)
    assert c.history[-1]["train_force_mae_ev_per_a"] != pytest.approx(
        a.history[-1]["train_force_mae_ev_per_a"], rel=1e-5
    )
    longer = tiny_train_config(max_epochs=10, checkpoint_every=3)
    resumed = train(emt_cu_dataset, tmp_path / "a", longer, seed=7, resume=True, progress=False)
    epochs = [row["epoch"] for row in resumed.history]
    assert epochs == list(range(10)), epochs


def test_explicit_validation_file_and_stress_weight(tmp_path, emt_cu_dataset, emt_cu_test_dataset):
    cfg = tiny_train_config(max_epochs=3)
    cfg.training.loss.stress = 100.0
    result = train(emt_cu_dataset, tmp_path, cfg, valid_data=emt_cu_test_dataset, progress=False)
    assert "valid_stress_mae_gpa" in result.best_metrics
    assert json.loads((tmp_path / "train_log.json").read_text())


def test_warm_start_from_saved_model(tmp_path, tiny_cu_model, emt_cu_dataset):
    cfg = tiny_train_config(max_epochs=2)
    result = train(emt_cu_dataset, tmp_path, cfg, init_model=tiny_cu_model, progress=False)
    first = result.history[0]["valid_force_mae_ev_per_a"]
    scratch = train(emt_cu_dataset, tmp_path / "s", cfg, progress=False)
    assert first < scratch.history[0]["valid_force_mae_ev_per_a"]


def test_written_dataset_trains_from_file(tmp_path, emt_cu_dataset):
    path = emt_cu_dataset.write(tmp_path / "d.xyz")
    result = train(
        read_dataset(path), tmp_path / "m", tiny_train_config(max_epochs=2), progress=False
    )
    assert result.model_path.exists()


def test_float64_mode_gives_a_double_precision_model(tmp_path, emt_cu_dataset):
    cfg = tiny_train_config(max_epochs=2, dtype="float64")
    result = train(emt_cu_dataset, tmp_path, cfg, progress=False)
    calc = matloop.load(result.model_path)
    assert calc.model.dtype == __import__("torch").float64
    atoms = emt_cu_dataset[0].copy()
    atoms.calc = calc
    assert np.isfinite(atoms.get_potential_energy())


def test_model_selection_score_weighs_stress_like_the_loss():
    from matloop.training.config import LossWeights
    from matloop.training.trainer import _weighted_score
    from matloop.units import EV_PER_A3_TO_GPA

    metrics = {"energy_rmse_mev_per_atom": 2.0, "force_rmse_ev_per_a": 0.1}
    with_stress = {**metrics, "stress_rmse_gpa": 0.5}
    weights = LossWeights(energy=1.0, forces=0.1, stress=100.0)
    base = 1.0 * 0.002**2 + 0.1 * 0.1**2
    assert _weighted_score(metrics, weights) == pytest.approx(base)
    expected = base + 100.0 * (0.5 / EV_PER_A3_TO_GPA) ** 2
    assert _weighted_score(with_stress, weights) == pytest.approx(expected)
    # a model with a worse stress must score worse when stress is in the loss
    worse = {**metrics, "stress_rmse_gpa": 1.0}
    assert _weighted_score(worse, weights) > _weighted_score(with_stress, weights)


def test_evaluate_force_errors_cover_the_structures_that_have_forces(emt_cu_test_dataset):
    """A test set where some structures have no reference forces still reports the force
    errors of the others (before: every force metric silently disappeared)."""
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    from matloop.data import Dataset

    frames = []
    for i, atoms in enumerate(list(emt_cu_test_dataset)[:4]):
        results = dict(atoms.calc.results)
        if i % 2:
            results.pop("forces")
        else:
            results["forces"] = results["forces"] + 0.1  # EMT will be off by exactly 0.1
        work = atoms.copy()
        work.calc = SinglePointCalculator(work, **results)
        frames.append(work)
    metrics = evaluate(EMT(), Dataset(frames, require_forces=False))
    assert metrics["force_mae_ev_per_a"] == pytest.approx(0.1, abs=1e-9)
    assert metrics["energy_mae_mev_per_atom"] == pytest.approx(0.0, abs=1e-6)


def test_time_budget_ends_an_epoch_longer_than_itself(tmp_path):
    """The budget is checked after every batch: a first epoch that alone would outlast it (a
    large model on a big set) stops there instead of running to its end."""
    from helpers.reference_data import emt_cu_structures

    data = emt_cu_structures(20, seed=3)
    cfg = tiny_train_config(max_epochs=1, batch_size=1)
    full = train(data, tmp_path / "full", cfg, progress=False)
    cut = train(data, tmp_path / "cut", cfg, max_time=1e-3, progress=False)
    assert cut.stopped_because == "max_time"
    assert full.history[0]["train_structures"] == 18  # the rest validates
    assert cut.history[0]["train_structures"] == 1, cut.history
