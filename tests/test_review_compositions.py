"""Review of compositions, glass descriptors and the run lock: each test reproduces a defect."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Composition

from matloop.compositions.core import (
    mol_to_wt,
    normalise,
    parse_component,
    read_composition_table,
    wt_to_mol,
)
from matloop.compositions.features import GLASS_FEATURES, CompositionFeaturizer
from matloop.errors import DataError, MatloopError, UnknownElementError
from matloop.utils.lock import RunLock

SODA_LIME = ["SiO2", "Na2O", "CaO"]


def test_soda_lime_wt_mol_conversion_matches_hand_calculation():
    m = np.array([Composition(c).weight for c in SODA_LIME])  # g/mol
    w = np.array([74.0, 16.0, 10.0])
    n = w / m
    np.testing.assert_allclose(wt_to_mol(w, SODA_LIME)[0], 100 * n / n.sum())
    np.testing.assert_allclose(wt_to_mol(w, SODA_LIME)[0], [73.8336, 15.4760, 10.6904], atol=1e-4)
    np.testing.assert_allclose(mol_to_wt(w, SODA_LIME)[0], [74.1203, 16.5314, 9.3483], atol=1e-4)


def test_duplicate_component_columns_are_refused():
    # old: components ['SiO2', 'Na2O', 'Na2O'] with a (1, 5) value array, or 2 names, 3 columns
    frame = pd.DataFrame([[70.0, 20.0, 10.0]], columns=["SiO2", "Na2O", "Na2O"])
    with pytest.raises(DataError, match="more than once"):
        read_composition_table(frame, normalise_rows=True)
    with pytest.raises(DataError, match="more than once"):
        read_composition_table(frame, ["SiO2", "Na2O"], normalise_rows=True)


@pytest.mark.parametrize("other", ["SiO2 ", "O2Si"])
def test_same_oxide_written_twice_is_refused(other):
    # old: 'SiO2' and 'SiO2 ' (or 'O2Si') became two separate components of the table
    frame = pd.DataFrame({"SiO2": [70.0], other: [10.0], "Na2O": [20.0]})
    with pytest.raises(DataError, match="same formula"):
        read_composition_table(frame)


@pytest.mark.parametrize("column", ["sio2", "NA2O", "TIO2"])
def test_mis_cased_oxide_column_is_not_dropped_silently(column):
    # old: the column was not a formula, so it was left out and --normalise rescaled the rest
    # ('NA2O': SiO2 came out as 100 mol %); 'TIO2' was read as H·I·O2 (T = tritium)
    frame = pd.DataFrame({"SiO2": [70.0], column: [30.0], "nd": [1.5], "Tg": [800.0]})
    with pytest.raises(DataError, match="wrong case"):
        read_composition_table(frame, normalise_rows=True)


@pytest.mark.parametrize("column", ["SIO2", "PBO", "NB2O5"])
def test_all_capitals_oxide_read_as_other_elements_is_refused(column):
    # old: 'SIO2' was sulfur·iodine·O2, 'PBO' phosphorus·boron·O: wrong molar masses
    frame = pd.DataFrame({"B2O3": [70.0], column: [30.0]})
    with pytest.raises(DataError, match="wrong case"):
        read_composition_table(frame, basis="wt")
    with pytest.raises(DataError, match="wrong case"):
        read_composition_table(frame, ["B2O3", column])


def test_capital_formulas_that_are_right_are_kept():
    frame = pd.DataFrame({"CO2": [10.0], "SO3": [10.0], "P2O5": [40.0], "B2O3": [40.0]})
    table = read_composition_table(frame)
    assert table.components == ["CO2", "SO3", "P2O5", "B2O3"]


def test_tritium_and_deuterium_symbols_are_refused():
    # old: parse_component('TIO2') == {'H': 1, 'I': 1, 'O': 2}, molar mass 161.9 g/mol
    with pytest.raises(UnknownElementError, match="TiO2"):
        parse_component("TIO2")


def test_normalise_and_conversions_refuse_negative_amounts():
    # old: wt_to_mol([[-10, 110]]) gave [-10.35, 110.35] mol %, normalise([[-50, 150]]) as is
    with pytest.raises(DataError, match="negative"):
        wt_to_mol([[-10.0, 110.0]], ["SiO2", "Na2O"])
    with pytest.raises(DataError, match="negative"):
        normalise([[-50.0, 150.0]])
    with pytest.raises(DataError, match="missing"):
        mol_to_wt([[np.nan, 100.0]], ["SiO2", "Na2O"])


@pytest.mark.parametrize(
    ("row", "match"),
    [([0.0, 0.0], "no positive"), ([np.nan, 100.0], "missing"), ([-10.0, 110.0], "negative")],
)
def test_featurizer_refuses_empty_missing_and_negative_rows(row, match):
    # old: an all-zero or NaN row gave all-zero features, a negative row negative fractions
    f = CompositionFeaturizer(["SiO2", "Na2O"], glass=True)
    with pytest.raises(DataError, match=match):
        f.transform(np.array([row]))


def _glass(components, amounts):
    f = CompositionFeaturizer(components, stats=False, glass=True)
    values = f.transform(np.array([amounts], float))[0, len(components) :]
    return dict(zip(GLASS_FEATURES, values, strict=True))


def test_sulfate_is_a_cation_not_sulfide():
    # old: SO3 had no cation and 4 oxygen equivalents (S counted as S²⁻); Na in Na2SO4 was
    # Na⁵⁺ (all of the S²⁻ + 4 O²⁻ charge on two Na), so NBO/T of a sulfate glass was inflated
    so3 = _glass(["SO3"], [1.0])
    assert so3["gl_O_per_cation"] == pytest.approx(3.0)
    assert so3["gl_valence_mean"] == pytest.approx(6.0)
    sulfate = _glass(["SiO2", "Na2SO4"], [90.0, 10.0])
    assert sulfate["gl_valence_mean"] == pytest.approx((90 * 4 + 10 * (2 + 6)) / 120)
    assert sulfate["gl_nbo_t"] == pytest.approx(20 / 90)  # one charge per Na⁺
    # soda-lime glass with a little SO3: the SO3 adds cations and exactly 3 O per S
    base = _glass(SODA_LIME + ["SO3"], [74.0, 16.0, 10.0, 0.0])
    fined = _glass(SODA_LIME + ["SO3"], [73.0, 16.0, 10.0, 1.0])
    assert base["gl_nbo_t"] == pytest.approx(2 * 26 / 74)
    assert fined["gl_O_per_cation"] == pytest.approx((146 + 26 + 3) / (73 + 32 + 10 + 1))


def test_run_lock_does_not_write_through_a_symlink(tmp_path):
    # old: a .matloop.lock symlink had its target truncated (contents lost)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious data\n")
    run = tmp_path / "run"
    run.mkdir()
    os.symlink(victim, run / ".matloop.lock")
    with pytest.raises(MatloopError, match="symbolic link"), RunLock(run):
        pass
    assert victim.read_text() == "precious data\n"


def test_row_number_column_no_is_not_nobelium():
    # old: a 'No' (row number) column was taken as the component nobelium; with normalise it
    # became part of every composition, without it the error named only a row sum
    frame = pd.DataFrame(
        {"No": [1, 2, 3], "SiO2": [70.0, 75.0, 80.0], "Na2O": [30.0, 25.0, 20.0], "Tg": [7, 8, 9]}
    )
    assert read_composition_table(frame).components == ["SiO2", "Na2O"]
    normalised = read_composition_table(frame, normalise_rows=True)
    assert normalised.components == ["SiO2", "Na2O"]
    # an explicit choice is still honoured, and alloy columns of single elements still count
    alloy = pd.DataFrame({"Fe": [50.0, 60.0], "Ni": [50.0, 40.0]})
    assert read_composition_table(alloy).components == ["Fe", "Ni"]


def test_sum_error_names_the_columns_taken_as_components():
    # a volume column 'V' reads as vanadium: the error now says which columns were taken
    frame = pd.DataFrame({"V": [1.0, 2.0], "SiO2": [70.0, 75.0], "Na2O": [30.0, 25.0]})
    with pytest.raises(DataError, match=r"column names: V, SiO2, Na2O; choose them"):
        read_composition_table(frame)
