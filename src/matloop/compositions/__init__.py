"""Compositions: parse formula strings and component columns, convert mol % ↔ wt %, validate
sums, and turn compositions into features (fractions + element-property statistics)."""

from __future__ import annotations

from matloop.compositions.core import (
    CompositionTable,
    chemical_system,
    composition_key,
    element_fractions,
    mol_to_wt,
    molar_mass,
    normalise,
    parse_component,
    parse_formula_string,
    read_composition_table,
    validate_sums,
    wt_to_mol,
)
from matloop.compositions.features import ELEMENT_PROPERTIES, CompositionFeaturizer

__all__ = [
    "ELEMENT_PROPERTIES",
    "CompositionFeaturizer",
    "CompositionTable",
    "chemical_system",
    "composition_key",
    "element_fractions",
    "mol_to_wt",
    "molar_mass",
    "normalise",
    "parse_component",
    "parse_formula_string",
    "read_composition_table",
    "validate_sums",
    "wt_to_mol",
]
