"""One wording per geometry fact, the same from the neighbour list, the dataset and a labeller."""

from __future__ import annotations

import re

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.emt import EMT

from matloop.data.dataset import label_with, validate_structure
from matloop.errors import DataError
from matloop.labelling.base import LabelStatus
from matloop.labelling.calculator import make_labeller
from matloop.neighbors import check_structure, geometry_problem


def _cu2(cell=(5.0, 5.0, 5.0), pbc=True, second=(2.5, 0.0, 0.0)) -> Atoms:
    return Atoms("Cu2", positions=[(0.0, 0.0, 0.0), second], cell=cell, pbc=pbc)


def _nan_cell(axis: int, pbc) -> Atoms:
    cell = np.eye(3) * 5.0
    cell[axis, axis] = np.nan
    return _cu2(cell, pbc)


FACTS = {
    "nan position": (_cu2(second=(np.nan, 0, 0)), "atom 1 has a NaN or inf position"),
    "inf position, molecule": (
        _cu2(None, False, (0, np.inf, 0)),
        "atom 1 has a NaN or inf position",
    ),
    "nan cell": (_nan_cell(1, True), "cell vector b contains NaN or inf"),
    "nan cell, open axis": (_nan_cell(2, (True, True, False)), "cell vector c contains NaN or inf"),
    "zero cell": (
        _cu2(np.zeros((3, 3))),
        "periodic along a, b, c but cell vectors a, b, c are zero: set the cell, or pbc=False "
        "along a, b, c",
    ),
    "zero c vector": (
        _cu2((5.0, 5.0, 0.0)),
        "periodic along a, b, c but cell vector c is zero: set the cell, or pbc=False along c",
    ),
    "dependent a, b in a slab": (
        _cu2([[4, 0, 0], [8, 0, 0], [0, 0, 4]], (True, True, False)),
        "periodic along a, b but cell vectors a, b are linearly dependent",
    ),
    "coplanar a, b, c": (
        _cu2([[4, 0, 0], [0, 4, 0], [4, 4, 0]]),
        "periodic along a, b, c but cell vectors a, b, c are linearly dependent",
    ),
}


@pytest.fixture(params=list(FACTS), ids=list(FACTS))
def fact(request) -> tuple[Atoms, str]:
    return FACTS[request.param]


def test_neighbour_list_check_names_the_fact(fact):
    atoms, message = fact
    with pytest.raises(DataError, match="^" + re.escape(f"structure Cu2: {message}")):
        check_structure(atoms)


def test_dataset_check_names_the_fact_with_file_and_frame(fact):
    atoms, message = fact
    with pytest.raises(DataError, match="^" + re.escape(f"ref.xyz, frame 3: {message}")):
        validate_structure(atoms, source="ref.xyz", index=3, require_energy=False)


def test_labeller_refuses_the_fact_before_any_attempt(fact):
    atoms, message = fact
    labeller = make_labeller("emt")
    assert labeller.structure_problem(atoms).startswith(message)
    result = labeller.label(atoms)
    assert result.status is LabelStatus.FAILED
    assert [a.error_kind for a in result.attempts] == ["config"]
    assert message in result.reason


def test_no_atoms_is_refused_as_data_but_a_calculator_may_evaluate_it():
    empty = Atoms(cell=[5, 5, 5], pbc=True)
    assert geometry_problem(empty) == "the structure has no atoms"
    with pytest.raises(DataError, match="^x.xyz, frame 0: the structure has no atoms$"):
        validate_structure(empty, source="x.xyz")
    assert make_labeller("emt").structure_problem(empty) == "the structure has no atoms"
    check_structure(empty)  # an empty structure has energy 0 (test_review_calculators)


def test_a_remembered_good_cell_does_not_hide_a_bad_position():
    good = _cu2()
    check_structure(good)
    bad = good.copy()
    bad.positions[0, 2] = np.inf
    with pytest.raises(DataError, match="atom 0 has a NaN or inf position"):
        check_structure(bad)


@pytest.mark.parametrize(
    ("cell", "pbc"),
    [
        ((3.6, 3.6, 0.0), (True, True, False)),  # a 2-D slab without a c vector
        (None, False),  # a molecule without a box
        (np.zeros((3, 3)), False),
        ((0.0, 0.0, 3.6), (False, False, True)),  # a wire periodic along c only
    ],
    ids=["slab", "molecule", "molecule zero cell", "wire"],
)
def test_open_axes_without_cell_vectors_pass_all_three(cell, pbc):
    atoms = Atoms("Cu2", positions=[(0, 0, 5), (1.8, 1.8, 5)], cell=cell, pbc=pbc)
    assert geometry_problem(atoms) is None
    check_structure(atoms)
    validate_structure(label_with(atoms, EMT()), source="x.xyz")
    result = make_labeller("emt").label(atoms)
    assert result.ok, result.reason


def test_a_good_bulk_cell_passes_all_three():
    atoms = bulk("Cu", cubic=True)
    check_structure(atoms)
    validate_structure(label_with(atoms, EMT()))
    assert make_labeller("emt").structure_problem(atoms) is None
