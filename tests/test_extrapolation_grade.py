"""The extrapolation grade of a linear (ace) model trained on little EMT data: with fewer atoms
than 20 × the rank of the features the MaxVol active set is not trusted (ordinary held-out
atoms graded 10²–10³), so the grade is the atom's force σ relative to the validation atoms'. It
must stay below 1 on held-out frames of the training distribution, pass 1 where the model's
real error against EMT is large, and `matloop md`'s guard must warn only then."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from test_ace_fit import ace_model, cuau_cells, fitted_cuau_ace

from matloop.calculators.potential import MatloopCalculator
from matloop.md.guard import UncertaintyGuard
from matloop.models.ace.fitting import _grade_reference
from matloop.models.ace.uncertainty import MIN_CANDIDATES_PER_ROW, FeatureSample, grade_map


@pytest.fixture(scope="module")
def fitted():
    """A small ACE fitted on 16 EMT Cu–Au cells (512 atoms), its training data and fit facts."""
    return fitted_cuau_ace(16, 4, seed=20)


def _grade_and_error(calc, atoms) -> tuple[float, float]:
    """Largest atomic grade and largest force-component error against EMT (eV/Å)."""
    ref = atoms.copy()
    ref.calc = EMT()
    work = atoms.copy()
    work.calc = calc
    err = float(np.abs(work.get_forces() - ref.get_forces()).max())
    return float(calc.get_property("max_extrapolation_grade", work)), err


def _far_frames():
    """A 12 % compressed cell and a strongly rattled one: outside the training data."""
    compressed = bulk("Cu", "fcc", 3.75 * 0.88, cubic=True) * (2, 2, 2)
    compressed.set_chemical_symbols(["Au" if i % 3 == 0 else "Cu" for i in range(32)])
    compressed.rattle(0.05, seed=1)
    rattled = cuau_cells(1, seed=31, rattle=0.35)[0].copy()
    return [compressed, rattled]


def test_small_training_sets_grade_by_the_force_sigma(fitted):
    model, train, info = fitted
    facts = info["active_set"]
    assert {v["rule"] for v in facts.values()} == {"sigma"}
    for v in facts.values():  # the reason: too few atoms for the rank of the features
        assert v["candidates"] < MIN_CANDIDATES_PER_ROW * v["rank"]
        assert v["reference_force_std"] > 0
    assert model.posterior.grade_rule() == "sigma"
    calc = MatloopCalculator(model)
    # by construction no training atom grades above 1 (its σ is at most the reference); the
    # validation atoms set the reference: fitted atoms' own σ is far lower
    grades = [calc.get_property("max_extrapolation_grade", _attached(a, calc)) for a in train]
    assert max(grades) <= 1.0 + 1e-9
    valid = cuau_cells(4, seed=21)  # the fixture's validation cells
    grades = [calc.get_property("max_extrapolation_grade", _attached(a, calc)) for a in valid]
    assert max(grades) == pytest.approx(1.0, rel=1e-6)


def test_without_validation_atoms_there_is_no_sigma_grade(fitted):
    model, train, _ = fitted
    info = {0: {"rule": "sigma"}, 1: {"rule": "sigma"}}
    reference = _grade_reference(model, train, None, info, 512, 5000)
    assert torch.all(reference == 0)
    assert info[0]["rule"] == "none" and "validation" in info[0]["why"]


def _attached(atoms, calc):
    work = atoms.copy()
    work.calc = calc
    return work


def test_grade_separates_held_out_frames_from_bad_predictions(fitted):
    model, _, _ = fitted
    calc = MatloopCalculator(model)
    near = [_grade_and_error(calc, a) for a in cuau_cells(6, seed=22)]
    far = [_grade_and_error(calc, a) for a in _far_frames()]
    assert max(g for g, _ in near) < 1.0, near  # held-out, same distribution: no warning
    worst_near = max(e for _, e in near)
    for grade, err in far:
        # the model is really bad there (against EMT) and the grade says so
        assert err > 3 * worst_near, (err, worst_near)
        assert grade > 1.0, (grade, err)


def test_md_guard_warns_only_outside_the_training_data(fitted):
    model, _, _ = fitted
    calc = MatloopCalculator(model)
    guard = UncertaintyGuard(calc)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails
        for step, atoms in enumerate(cuau_cells(4, seed=23)):
            guard(step, _attached(atoms, calc))
    assert guard.max_grade < 1.0
    with pytest.warns(UserWarning) as caught:
        guard(99, _attached(_far_frames()[0], calc))
    message = str(caught[0].message)
    assert (
        "step 99" in message
        and "force σ is" in message
        and "largest on the validation and training atoms" in message
    )
    assert "--max-uncertainty" in message and "\n" not in message
    assert guard.summary()["extrapolation_grade_rule"] == "sigma"


def test_grade_and_sigma_share_one_evaluation(fitted):
    """The guard asks for the grade, then forces_std: the second comes from the first call."""
    model, _, _ = fitted
    calc = MatloopCalculator(model)
    atoms = _attached(cuau_cells(1, seed=24)[0], calc)
    calc.get_property("extrapolation_grade", atoms)
    assert {"forces_std", "energy_std", "max_extrapolation_grade"} <= set(calc.results)


def test_grade_map_keeps_maxvol_only_with_enough_atoms_per_row():
    rng = np.random.default_rng(2)
    rank = 6
    for n, rule in ((3 * rank, "sigma"), (MIN_CANDIDATES_PER_ROW * rank, "maxvol")):
        sample = FeatureSample(1, capacity=10_000)
        sample.add(rng.normal(size=(n, rank)), np.zeros(n, dtype=int))
        g, info = grade_map(sample, rank)
        assert info[0]["rule"] == rule
        assert g.shape == (rank, rank if rule == "maxvol" else 0)


def test_models_saved_before_the_sigma_rule_still_load(fitted):
    model, _, _ = fitted
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("grade_reference")}
    old = ace_model()
    old.load_state_dict(state)  # strict: the missing buffer is not an error
    assert old.posterior.grade_reference.numel() == 0
    assert old.posterior.grade_rule() is None  # no MaxVol map either: no grade at all
    assert torch.equal(old.posterior.covariance_root, model.posterior.covariance_root)


def test_guard_distrusts_the_maxvol_grade_of_an_older_small_fit(fitted):
    """A model fitted before the sigma rule (MaxVol map, fit facts without a rule) from fewer
    than 20 atoms per active-set row: one warning that says to refit, no grade warnings."""
    model = copy.deepcopy(fitted[0])
    post = model.posterior
    n_coef = model.n_coefficients
    post.grade_map = torch.as_tensor(np.random.default_rng(0).normal(size=(n_coef, 8)))
    post.grade_reference = torch.zeros(0, dtype=torch.float64)
    facts = {"fit": {"active_set": {0: {"candidates": 639, "columns": 65, "active_set": 608}}}}
    calc = MatloopCalculator(model, metadata=facts)
    guard = UncertaintyGuard(calc)
    assert guard.grade_rule == "untrusted"
    with pytest.warns(UserWarning) as caught:
        for step, atoms in enumerate([*cuau_cells(2, seed=25), *_far_frames()]):
            guard(step, _attached(atoms, calc))
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "639 atoms for 608 rows" in message and "refit" in message
