"""Delta learning: train a matloop family on (reference − base) for a base calculator.

The base is a calculator *name* (e.g. ``chgnet``, ``emt`` or ``module:function``) so that the
saved model can rebuild it: the model file stores ``delta_base`` in its metadata and
:func:`matloop.load` returns base + correction (a
:class:`~matloop.calculators.foundation.DeltaCalculator`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from ase import Atoms

from matloop.data import Dataset
from matloop.data.dataset import energy_of, forces_of, make_labelled, stress_of
from matloop.errors import ConfigError, DataError


@dataclass
class BasePrediction:
    """What the base calculator says about one structure (eV, eV/Å, eV/Å³)."""

    energy: float
    forces: np.ndarray
    stress: np.ndarray | None


def base_predictions(
    structures: Sequence[Atoms], base: str, *, progress: bool = False, **base_kwargs: Any
) -> list[BasePrediction]:
    """Evaluate the base calculator `base` (a name) on every structure."""
    from tqdm.auto import tqdm

    from matloop.calculators import resolve_calculator
    from matloop.calculators.elements import check_elements

    calc = resolve_calculator(base, **base_kwargs)
    # a base that does not describe an element would fail mid-way (EMT) or, worse, give a
    # meaningless base for it (a Si Stillinger-Weber under Cu): refuse before any work
    seen: set[str] = set()
    for i, atoms in enumerate(structures):
        symbols = set(atoms.get_chemical_symbols())
        if not symbols <= seen:
            check_elements(atoms, calc, base, where=f"training structure {i}")
            seen |= symbols
    out = []
    for atoms in tqdm(structures, desc=f"{base} labels", disable=not progress, leave=False):
        work = atoms.copy()
        work.calc = calc
        energy = float(work.get_potential_energy())
        forces = np.asarray(work.get_forces(), dtype=float)
        stress = np.asarray(work.get_stress(), dtype=float) if atoms.pbc.all() else None
        out.append(BasePrediction(energy, forces, stress))
    return out


def residual_dataset(
    dataset: Sequence[Atoms], predictions: Sequence[BasePrediction], source: str = "residuals"
) -> Dataset:
    """Structures labelled with reference − base (energy, forces; stress where both exist)."""
    if len(dataset) != len(predictions):
        raise DataError(f"{len(dataset)} structures but {len(predictions)} base predictions")
    residuals = []
    for index, (atoms, pred) in enumerate(zip(dataset, predictions, strict=True)):
        forces = forces_of(atoms)
        if forces is not None and forces.shape != pred.forces.shape:
            raise DataError(f"{source}, frame {index}: base forces have the wrong shape")
        stress = stress_of(atoms)
        residuals.append(
            make_labelled(
                atoms,
                energy_of(atoms) - pred.energy,
                None if forces is None else forces - pred.forces,
                None if stress is None or pred.stress is None else stress - pred.stress,
                atoms.info.get("config_type"),
            )
        )
    return Dataset(residuals, source=source, validate=False)


def train_delta(
    dataset: Sequence[Atoms],
    base: str = "chgnet",
    out_dir: str | os.PathLike = "delta_model",
    config: Any = None,
    *,
    valid_data: Sequence[Atoms] | None = None,
    predictions: Sequence[BasePrediction] | None = None,
    valid_predictions: Sequence[BasePrediction] | None = None,
    base_kwargs: dict[str, Any] | None = None,
    seed: int | None = None,
    max_time: float | None = None,
    progress: bool = True,
):
    """Train ``config.model.family`` on the residuals of `base`; return the TrainResult.

    `predictions` (from :func:`base_predictions`) skip re-evaluating the base, which is the slow
    part for foundation models. The saved model's metadata carries ``delta_base`` (and
    ``delta_base_kwargs``), so ``matloop.load(result.model_path)`` gives base + correction.
    """
    from matloop.models.io import load_model, save_model
    from matloop.training import train

    if not isinstance(base, str) or not base.strip():
        raise ConfigError("train_delta needs the base calculator as a name, e.g. 'chgnet'")
    from matloop.training.trainer import check_labels

    base_kwargs = dict(base_kwargs or {})
    # bad labels fail here, not after the (slow) base predictions
    check_labels(dataset, "training data")
    if valid_data is not None:
        check_labels(valid_data, "validation data")
    if predictions is None:
        predictions = base_predictions(dataset, base, progress=progress, **base_kwargs)
    train_set = residual_dataset(dataset, predictions, "training residuals")
    valid_set = None
    if valid_data is not None:
        if valid_predictions is None:
            valid_predictions = base_predictions(valid_data, base, **base_kwargs)
        valid_set = residual_dataset(valid_data, valid_predictions, "validation residuals")
    result = train(
        train_set,
        out_dir,
        config,
        valid_data=valid_set,
        seed=seed,
        max_time=max_time,
        progress=progress,
    )
    model, metadata = load_model(result.model_path)
    metadata["delta_base"] = base
    if base_kwargs:
        metadata["delta_base_kwargs"] = base_kwargs
    save_model(model, result.model_path, metadata)
    return result
