"""Which elements the built-in calculators describe, checked before any work.

matscipy's Manybody potentials (Stillinger–Weber, Kumagai, Tersoff) silently treat any species as
Si, and EMT knows only its parameter table, so the check has to happen on matloop's side.
"""

from __future__ import annotations

from typing import Any

from ase import Atoms

from matloop.errors import UnknownElementError

BUILTIN_ELEMENTS: dict[str, frozenset[str]] = {
    "sw": frozenset({"Si"}),
    "stillinger-weber": frozenset({"Si"}),
    "kumagai": frozenset({"Si"}),
    "tersoff": frozenset({"Si", "C"}),
}


def _emt_elements() -> frozenset[str]:
    from ase.calculators.emt import parameters

    return frozenset(parameters)


def supported_elements(calc: Any, name: str | None = None) -> frozenset[str] | None:
    """Elements `calc` (built-in `name`) is known to describe, or None when it cannot tell."""
    if name is not None:
        key = name.strip().lower()
        if key in ("emt", "faulty"):  # faulty: EMT with injected failures
            return _emt_elements()
        if key in BUILTIN_ELEMENTS:
            return BUILTIN_ELEMENTS[key]
    elements = getattr(calc, "elements", None)
    if elements:
        return frozenset(str(e) for e in elements)
    from ase.calculators.emt import EMT

    if isinstance(calc, EMT):
        return _emt_elements()
    return None


def check_elements(atoms: Atoms, calc: Any, name: str | None = None, where: str = "") -> None:
    """Raise UnknownElementError if `atoms` holds an element `calc` does not describe."""
    allowed = supported_elements(calc, name)
    if allowed is None:
        return
    present = sorted(set(atoms.get_chemical_symbols()))
    missing = [e for e in present if e not in allowed]
    if missing:
        label = name or type(calc).__name__
        src = f" in {where}" if where else ""
        raise UnknownElementError(
            f"element(s) {', '.join(missing)}{src} not described by calculator {label!r} "
            f"(it knows: {', '.join(sorted(allowed))})"
        )
