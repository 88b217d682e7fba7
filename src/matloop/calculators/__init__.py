"""ASE calculators: matloop potentials, committees, and name → calculator resolution."""

from __future__ import annotations

from matloop.calculators.registry import (
    builtin_calculators,
    register_calculator,
    resolve_calculator,
)

__all__ = [
    "builtin_calculators",
    "load_calculator",
    "register_calculator",
    "resolve_calculator",
]


def load_calculator(path, **kwargs):
    """Load a matloop model file (or a training directory) as an ASE calculator."""
    from matloop.calculators.potential import load_calculator as _load

    return _load(path, **kwargs)
