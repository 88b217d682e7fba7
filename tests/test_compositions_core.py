"""Compositions: parsing, mol % ↔ wt % conversion, validation, features."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from matloop.compositions import (
    CompositionFeaturizer,
    chemical_system,
    composition_key,
    element_fractions,
    mol_to_wt,
    molar_mass,
    parse_component,
    parse_formula_string,
    read_composition_table,
    validate_sums,
    wt_to_mol,
)
from matloop.errors import DataError, UnknownElementError


def test_parse_component_and_molar_mass():
    assert parse_component("Na2O") == {"Na": 2.0, "O": 1.0}
    # IUPAC: Si 28.085, O 15.999 → SiO2 60.08 g/mol
    assert molar_mass("SiO2") == pytest.approx(60.08, abs=0.01)
    assert molar_mass("B2O3") == pytest.approx(69.62, abs=0.01)
    with pytest.raises(UnknownElementError, match="Xx"):
        parse_component("Xx2O")
    with pytest.raises(UnknownElementError, match="not a chemical formula"):
        parse_component("nd")


@pytest.mark.parametrize(
    "text",
    [
        "70SiO2-20Na2O-10CaO",
        "70 SiO2 + 20 Na2O + 10 CaO",
        "SiO2:70, Na2O:20, CaO:10",
        "SiO2=70 Na2O=20 CaO=10",
    ],
)
def test_parse_formula_string_forms(text):
    assert parse_formula_string(text) == {"SiO2": 70.0, "Na2O": 20.0, "CaO": 10.0}


def test_parse_formula_string_errors():
    assert parse_formula_string("Na2Si2O5") == {"Na2Si2O5": 1.0}
    with pytest.raises(DataError, match="cannot parse"):
        parse_formula_string("70 SiO2 and some soda")
    with pytest.raises(UnknownElementError):
        parse_formula_string("70SiO2-30Qq2O")


def test_mol_wt_round_trip_and_known_value():
    comps = ["SiO2", "Na2O"]
    # Na2O·2SiO2 (33.3 mol % Na2O): wt % Na2O = 61.98 / (61.98 + 2·60.08) = 34.03
    wt = mol_to_wt([[200 / 3, 100 / 3]], comps)
    assert wt[0, 1] == pytest.approx(34.03, abs=0.01)
    assert wt.sum() == pytest.approx(100.0)
    rng = np.random.default_rng(0)
    x = rng.dirichlet(np.ones(4), size=20) * 100
    c4 = ["SiO2", "B2O3", "PbO", "K2O"]
    np.testing.assert_allclose(wt_to_mol(mol_to_wt(x, c4), c4), x, rtol=1e-12, atol=1e-10)


def test_validate_sums_message_names_row_and_sum():
    with pytest.raises(DataError, match=r"row 2 sums to 99\.2, expected 100 ± 0\.5"):
        validate_sums([[60, 40], [59.2, 40]], 100, 0.5, source="x.csv", row_labels=[1, 2])
    with pytest.raises(DataError, match="negative"):
        validate_sums([[110, -10]], 100, 0.5)


def test_read_composition_table_columns_wt_and_strings():
    frame = pd.DataFrame({"SiO2": [75.0, 60.0], "Na2O": [25.0, 40.0], "nd": [1.5, 1.52]})
    t = read_composition_table(frame)  # auto-detects formula columns, leaves 'nd' alone
    assert t.components == ["SiO2", "Na2O"]
    tw = read_composition_table(frame, basis="wt")
    np.testing.assert_allclose(tw.values, wt_to_mol(frame[["SiO2", "Na2O"]], t.components))
    np.testing.assert_allclose(tw.to_wt(), frame[["SiO2", "Na2O"]].to_numpy())
    bad = pd.DataFrame({"SiO2": [75.0], "Na2O": [20.0]})
    with pytest.raises(DataError, match="sums to 95"):
        read_composition_table(bad, source="bad.csv")
    assert read_composition_table(bad, normalise_rows=True).values.sum() == pytest.approx(100)
    s = pd.DataFrame({"glass": ["70SiO2-30Na2O", "Na2O:20, SiO2:70, CaO:10"]})
    ts = read_composition_table(s, formula_column="glass")
    assert ts.components == ["CaO", "Na2O", "SiO2"]
    np.testing.assert_allclose(ts.values, [[0, 30, 70], [10, 20, 70]])
    with pytest.raises(DataError, match="missing component column"):
        read_composition_table(frame, ["SiO2", "K2O"])


def test_keys_and_families():
    comps = ["SiO2", "Na2O", "CaO"]
    assert composition_key([70, 30, 0], comps) == composition_key([70.001, 29.999, 0], comps)
    assert composition_key([70, 30, 0], comps) != composition_key([71, 29, 0], comps)
    assert chemical_system([70, 30, 0], comps) == "Na2O-SiO2"


def test_element_fractions_and_features():
    els, af = element_fractions([[50, 50]], ["SiO2", "Na2O"])
    # 50 SiO2 (150 atoms) + 50 Na2O (150 atoms): O = (100 + 50) / 300
    assert els == ["O", "Na", "Si"]
    np.testing.assert_allclose(af[0], [0.5, 1 / 3, 1 / 6])
    f = CompositionFeaturizer(["SiO2", "Na2O", "PbO"])
    X = f.transform([[70, 20, 10], [100, 0, 0], [0.7, 0.2, 0.1]])
    names = f.get_feature_names_out()
    assert X.shape == (3, len(names)) and np.all(np.isfinite(X))
    np.testing.assert_allclose(X[0], X[2])  # scale invariant
    i = names.index("cat_Z_max")
    assert X[0, i] == 82 and X[1, i] == 14  # Pb present only in the first glass
    j = names.index("cat_Z_mean")
    assert X[1, j] == pytest.approx(14.0)


def test_read_composition_table_counts_rows_from_one():
    bad = pd.DataFrame({"SiO2": [75.0, 75.0], "Na2O": [25.0, 20.0]})
    with pytest.raises(DataError, match="row 2 sums to 95"):
        read_composition_table(bad, source="bad.csv")
