"""Reference data: reading, validation, splits and per-element reference energies."""

from matloop.data.dataset import (
    Dataset,
    config_type_of,
    energy_of,
    forces_of,
    label_with,
    make_labelled,
    stress_of,
    validate_structure,
)
from matloop.data.io import read_dataset, read_structures
from matloop.data.reference import fit_reference_energies, reference_energy
from matloop.data.splits import group_split, random_split

__all__ = [
    "Dataset",
    "config_type_of",
    "energy_of",
    "fit_reference_energies",
    "forces_of",
    "group_split",
    "label_with",
    "make_labelled",
    "random_split",
    "read_dataset",
    "read_structures",
    "reference_energy",
    "stress_of",
    "validate_structure",
]
