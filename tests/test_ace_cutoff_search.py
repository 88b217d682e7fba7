"""The ace fit's cutoff search (``fit.cutoff_search``, off by default): the cutoff and 0.5 Å
more are fitted when there are enough validation structures, and the one that validates better
is kept."""

from __future__ import annotations

import pytest
from helpers.reference_data import emt_cu_structures

from matloop.data import Dataset
from matloop.models.ace.fitting import MIN_CUTOFF_SEARCH_STRUCTURES
from matloop.training import TrainConfig, train

#: a small basis: the search, not the basis, is under test (seconds per fit)
SMALL = {"correlation_order": 2, "max_degree": 6, "max_l": 2, "cutoff": 4.0}


def _config(**fit) -> TrainConfig:
    fit = {"cutoff_search": True, **fit}
    return TrainConfig.model_validate(
        {
            "model": {"family": "ace", "params": {**SMALL, "fit": fit}},
            "training": {"valid_fraction": 0.25, "seed": 0},
        }
    )


@pytest.fixture(scope="module")
def cu_cells() -> Dataset:
    """48 EMT Cu cells of 4 atoms: 12 validation structures at valid_fraction 0.25."""
    return emt_cu_structures(n=48, seed=3, repeat=(1, 1, 1), rattle=0.1)


def test_the_cutoff_and_half_an_angstrom_more_are_tried_and_the_better_kept(tmp_path, cu_cells):
    result = train(cu_cells, tmp_path / "run", _config(), progress=False)
    search = result.fit["basis_search"]
    tried = {c["cutoff"]: c["valid_score"] for c in search["candidates"]}
    assert sorted(tried) == [4.0, 4.5]
    best = min(tried, key=tried.get)
    assert search["chosen"]["cutoff"] == best
    from matloop import load

    assert load(tmp_path / "run").model.params.cutoff == best  # the saved model has it


def test_no_search_by_default_switched_off_or_with_few_validation_structures(tmp_path, cu_cells):
    off = train(cu_cells, tmp_path / "off", _config(cutoff_search=False), progress=False)
    assert "basis_search" not in off.fit
    default = TrainConfig.model_validate(
        {"model": {"family": "ace", "params": SMALL}, "training": {"valid_fraction": 0.25}}
    )
    assert "basis_search" not in train(cu_cells, tmp_path / "d", default, progress=False).fit
    few = Dataset(list(cu_cells)[: 4 * (MIN_CUTOFF_SEARCH_STRUCTURES - 1)], source="few")
    small = train(few, tmp_path / "few", _config(), progress=False)  # 9 validation structures
    assert "basis_search" not in small.fit


def test_given_basis_cutoffs_replace_the_default_pair(tmp_path, cu_cells):
    result = train(cu_cells, tmp_path / "given", _config(basis_cutoffs=[3.8]), progress=False)
    assert [c["cutoff"] for c in result.fit["basis_search"]["candidates"]] == [3.8]
