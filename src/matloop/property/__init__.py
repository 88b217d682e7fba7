"""Structure → property models: crystal graphs and a boosted-tree baseline, with uncertainty.

Read a structure → property table (:func:`read_dataset`), split it honestly
(:func:`split`: random, by composition, by prototype, by an id/time column), find duplicates
(:func:`find_duplicates`), fit a :class:`CrystalGraphModel` or :class:`GBTBaseline`, and get
calibrated σ, an out-of-distribution score and nearest neighbours in embedding space.
"""

from matloop.property.config import PropertyConfig, load_config
from matloop.property.data import (
    PropertyDataset,
    duplicate_report,
    find_duplicates,
    from_structures,
    read_dataset,
    write_extxyz,
)
from matloop.property.estimators import (
    CrystalGraphModel,
    GBTBaseline,
    StructurePropertyModel,
    fit_auto,
    load_model,
    make_model,
)
from matloop.property.splits import group_labels, prototype_key, split

__all__ = [
    "CrystalGraphModel",
    "GBTBaseline",
    "PropertyConfig",
    "PropertyDataset",
    "StructurePropertyModel",
    "duplicate_report",
    "find_duplicates",
    "fit_auto",
    "from_structures",
    "group_labels",
    "load_config",
    "load_model",
    "make_model",
    "prototype_key",
    "read_dataset",
    "split",
    "write_extxyz",
]
