"""Labellers built from any ASE calculator (built-in name, ``module:function`` or instance)."""

from __future__ import annotations

from typing import Any

import numpy as np
from ase import Atoms

from matloop.labelling.base import (
    DEFAULT_TIMEOUT_S,
    Labeller,
    ValidationLimits,
    check_handlers,
)

# Custodian-like correction ladders per reference code: for an error kind, the settings patches
# tried in order (cumulatively) before giving up. The keys are the flat keyword arguments of the
# built-in factories in matloop.labelling.builtin.
DEFAULT_HANDLERS: dict[str, dict[str, list[dict[str, Any]]]] = {
    "pyscf": {
        "scf": [
            {"max_cycle": 200},
            {"max_cycle": 300, "damp": 0.5, "level_shift": 0.25},
            {"newton": True},
        ],
        "crash": [{}],
    },
    "gpaw": {
        "scf": [
            {"maxiter": 600},
            {"mixing_beta": 0.02},
            {"smearing_width": 0.2},
        ],
        "crash": [{}],
    },
    "espresso": {
        "scf": [
            {"electron_maxstep": 300},
            {"mixing_beta": 0.3},
            {"degauss": 0.04},
        ],
        "crash": [{}],
    },
    "vasp": {
        "scf": [{"nelm": 200}, {"amix": 0.1, "bmix": 0.01}, {"ismear": 0, "sigma": 0.2}],
        "crash": [{}],
    },
    "tblite": {
        "scf": [
            {"max_iterations": 500},
            {"mixer_damping": 0.2},
            {"electronic_temperature": 3000.0},
        ],
        "crash": [{}],
    },
    "faulty": {
        "scf": [{"max_iterations": 200}],
        "crash": [{}],
    },
}

GENERIC_HANDLERS: dict[str, list[dict[str, Any]]] = {"crash": [{}]}

#: built-in codes that need a 3-D cell (periodic, or a box of vacuum around a molecule)
NEEDS_CELL = {"sw", "stillinger-weber", "kumagai", "tersoff", "gpaw", "espresso", "vasp"}


def handlers_for(spec: str) -> dict[str, list[dict[str, Any]]]:
    """The default correction ladders for a calculator spec (generic: retry a crash once)."""
    key = spec.lower()
    if key in DEFAULT_HANDLERS:
        return DEFAULT_HANDLERS[key]
    if ":" in spec:
        func = spec.rsplit(":", 1)[1].lower()
        for name, ladders in DEFAULT_HANDLERS.items():
            if name in func:
                return ladders
    return GENERIC_HANDLERS


class CalculatorLabeller(Labeller):
    """Label with an ASE calculator resolved by :func:`matloop.calculators.resolve_calculator`.

    `spec` is a built-in name (emt, sw, kumagai, pyscf, gpaw, espresso, vasp, tblite, ...) or a
    ``module:function`` returning a calculator; `settings` are its keyword arguments. A fresh
    calculator is built for every structure, so the labeller is picklable and safe to run in
    worker processes.
    """

    def __init__(
        self,
        spec: str,
        settings: dict[str, Any] | None = None,
        *,
        handlers: dict[str, list[dict[str, Any]]] | None = None,
        max_retries: int = 3,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
        limits: ValidationLimits | None = None,
        compute_stress: bool | None = None,
    ) -> None:
        if not isinstance(spec, str):
            raise TypeError("spec must be a calculator name or 'module:function'")
        super().__init__(
            settings,
            handlers=handlers if handlers is not None else handlers_for(spec),
            max_retries=max_retries,
            timeout_s=timeout_s,
            limits=limits,
            compute_stress=compute_stress,
        )
        self.spec = spec
        self.name = spec

    def check(self) -> None:
        """Build the calculator once so a wrong name or import path fails early and clearly."""
        from matloop.calculators import resolve_calculator

        resolve_calculator(self.spec, **self.settings)

    def structure_problem(self, atoms: Atoms) -> str | None:
        """The base checks, and a cell of zero volume given to a code that needs a cell."""
        problem = super().structure_problem(atoms)
        if problem is None and self.spec.lower() in NEEDS_CELL and atoms.cell.rank < 3:
            return (
                f"{self.spec!r} needs a 3-D cell (for a molecule: a box with vacuum), but the "
                f"structure's cell has volume 0 (pbc={atoms.pbc.tolist()})"
            )
        return problem

    def prepare(self, atoms: Atoms, settings: dict[str, Any]) -> Any:
        from matloop.calculators import resolve_calculator

        return resolve_calculator(self.spec, **settings)

    def run(self, atoms: Atoms, prepared: Any) -> Any:
        calc = prepared
        atoms.calc = calc
        try:
            energy = atoms.get_potential_energy()
            forces = atoms.get_forces()
            stress = None
            want = self.compute_stress
            if want is None:
                want = bool(atoms.pbc.all()) and "stress" in getattr(
                    calc, "implemented_properties", ()
                )
            if want:
                stress = atoms.get_stress(voigt=True)
            free = (getattr(calc, "results", None) or {}).get("free_energy")
        finally:
            atoms.calc = None
        return energy, forces, stress, free

    def parse(self, atoms: Atoms, raw: Any):
        """(energy eV, forces eV/Å, stress eV/Å³ or None, free energy eV or None)."""
        energy, forces, stress, free = raw
        return (
            None if energy is None else float(energy),
            None if forces is None else np.array(forces, dtype=float),
            None if stress is None else np.array(stress, dtype=float),
            None if free is None else float(free),
        )

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["calculator"] = self.spec
        return out


def make_labeller(
    spec: str | Labeller,
    settings: dict[str, Any] | None = None,
    **options: Any,
) -> Labeller:
    """Return a labeller for a calculator spec (or `spec` itself when it already is one)."""
    if isinstance(spec, Labeller):
        return spec
    return CalculatorLabeller(spec, settings, **options)


def check_calculator_settings(
    spec: str,
    settings: dict[str, Any] | None = None,
    handlers: dict[str, list[dict[str, Any]]] | None = None,
) -> None:
    """Build calculator `spec` with `settings` once; refuse keyword arguments it does not accept,
    in `settings` or in the patches of the correction ladders `handlers` (a misspelt patch would
    only fail when an SCF failure needs it, as a crash).

    The accepted names are the named parameters of the function that builds it (a built-in's
    factory, a ``module:function``) and of the calculator's constructor and, for ASE calculators
    that take ``**kwargs``, its ``default_parameters``. When the calculator cannot say (arbitrary
    ``**kwargs`` without defaults, or ``accepts_any_setting`` such as VASP's INCAR keys) the names
    are not checked. Raises :class:`~matloop.errors.ConfigError` with one line.
    """
    from matloop.errors import ConfigError

    settings = dict(settings or {})
    ladders = check_handlers(handlers) if handlers is not None else {}
    accepted = _accepted_settings(_build(spec, settings))
    if accepted is None:
        return
    accepted |= _factory_parameters(spec)
    unknown = sorted(set(settings) - accepted)
    if unknown:
        raise ConfigError(
            f"reference calculator {spec!r} does not accept {', '.join(map(repr, unknown))} "
            f"(accepted: {', '.join(sorted(accepted))})"
        )
    for kind, ladder in ladders.items():
        bad = sorted({k for patch in ladder for k in patch} - accepted)
        if bad:
            raise ConfigError(
                f"handlers[{kind!r}] of reference calculator {spec!r} patch "
                f"{', '.join(map(repr, bad))}, which it does not accept "
                f"(accepted: {', '.join(sorted(accepted))})"
            )


def _build(spec: str, settings: dict[str, Any]) -> Any:
    """The calculator `spec` built with `settings`; any failure is a one-line ConfigError."""
    from matloop.calculators import resolve_calculator
    from matloop.errors import ConfigError, MatloopError

    try:
        return resolve_calculator(spec, **settings)
    except MatloopError:
        raise
    except TypeError as exc:
        raise ConfigError(f"reference calculator {spec!r}: bad settings ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - any failure to build it is a config problem
        raise ConfigError(
            f"reference calculator {spec!r} cannot be built with these settings: "
            f"{type(exc).__name__}: {exc}"
        ) from None


def _factory_parameters(spec: str) -> set[str]:
    """Named keyword arguments of the function that builds calculator `spec` (a built-in's
    factory such as gpaw's ``ecut``, or a ``module:function``): settings it takes itself."""
    import inspect

    from matloop.calculators import registry

    key = spec.strip()
    registry._ensure_optional_registrations()
    if key.lower() in registry._BUILTINS:
        factory = registry._BUILTINS[key.lower()][0]
    elif ":" in key and not key.startswith(("/", ".")):
        factory = registry._import_factory(key)
    else:
        return set()
    if not inspect.isfunction(factory):
        return set()  # a Calculator class: its constructor is read from the instance
    params = inspect.signature(factory).parameters.values()
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _accepted_settings(calc: Any) -> set[str] | None:
    """Keyword arguments calculator `calc` accepts, or None when that cannot be told (a
    calculator with ``accepts_any_setting``, e.g. VASP's INCAR keys)."""
    import inspect

    if getattr(calc, "accepts_any_setting", False):
        return None
    accepted: set[str] = set()
    open_ended = False
    for cls in type(calc).__mro__:
        init = cls.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        accepted |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break  # this constructor does not forward to its base class by keyword
    else:
        open_ended = True
    defaults = getattr(calc, "default_parameters", None) or {}
    accepted |= set(defaults)
    accepted.discard("self")
    if open_ended and not defaults:
        return None
    return accepted
