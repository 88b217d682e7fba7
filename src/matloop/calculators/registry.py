"""Resolve a calculator from a name: a built-in, a ``module:function`` import path or a model file.

Built-ins are real reference potentials that install with matloop (ASE's EMT, matscipy's
Stillinger–Weber, Kumagai and Tersoff for Si). Other modules register more (DFT labellers) with
:func:`register_calculator`.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ase.calculators.calculator import BaseCalculator

from matloop.errors import ConfigError

Calculator = BaseCalculator
CalculatorFactory = Callable[..., BaseCalculator]

_BUILTINS: dict[str, tuple[CalculatorFactory, str]] = {}


def register_calculator(name: str, factory: CalculatorFactory, description: str) -> None:
    """Make `factory(**kwargs)` available as the built-in calculator `name`."""
    _BUILTINS[name.lower()] = (factory, description)


def builtin_calculators() -> dict[str, str]:
    """Names of the built-in calculators with a one-line description each."""
    _ensure_optional_registrations()
    return {name: desc for name, (_, desc) in sorted(_BUILTINS.items())}


def _emt(**kwargs: Any) -> Calculator:
    from ase.calculators.emt import EMT

    return EMT(**kwargs)


def _matscipy(form: str) -> CalculatorFactory:
    def factory(**kwargs: Any) -> Calculator:
        import warnings

        from matscipy.calculators.manybody import Manybody
        from matscipy.calculators.manybody import explicit_forms as ef

        if form == "sw":
            from matscipy.calculators.manybody.explicit_forms.stillinger_weber import (
                Stillinger_Weber_PRB_31_5262_Si as params,
            )

            terms = ef.StillingerWeber(params)
        elif form == "kumagai":
            from matscipy.calculators.manybody.explicit_forms.kumagai import (
                Kumagai_Comp_Mat_Sci_39_Si as params,
            )

            terms = ef.Kumagai(params)
        else:
            from matscipy.calculators.manybody.explicit_forms.tersoff_brenner import (
                Tersoff_PRB_39_5566_Si_C as params,
            )

            terms = ef.TersoffBrenner(params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Manybody(**terms, **kwargs)

    return factory


register_calculator(
    "emt", _emt, "ASE effective-medium theory (Al, Cu, Ag, Au, Ni, Pd, Pt, H, C, N, O)"
)
register_calculator("sw", _matscipy("sw"), "matscipy Stillinger–Weber for Si (PRB 31, 5262)")
register_calculator(
    "stillinger-weber", _matscipy("sw"), "alias of sw: matscipy Stillinger–Weber for Si"
)
register_calculator("kumagai", _matscipy("kumagai"), "matscipy Kumagai for Si (CMS 39, 457)")
register_calculator("tersoff", _matscipy("tersoff"), "matscipy Tersoff for Si (PRB 39, 5566)")

_OPTIONAL_MODULES = ("matloop.labelling.builtin", "matloop.calculators.foundation")
_optional_loaded = False


def _ensure_optional_registrations() -> None:
    """Import modules that register heavier calculators (DFT codes), once, if they exist."""
    global _optional_loaded
    if _optional_loaded:
        return
    _optional_loaded = True
    for module in _OPTIONAL_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            # only a missing optional module (or its package) is fine; other import errors are bugs
            if exc.name is None or not module.startswith(exc.name):
                raise


def _import_factory(spec: str) -> CalculatorFactory:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"calculator {spec!r}: cannot import module {module_name!r}") from exc
    try:
        factory = getattr(module, attr)
    except AttributeError as exc:
        raise ConfigError(f"calculator {spec!r}: module {module_name!r} has no {attr!r}") from exc
    if not _is_calculator_factory(factory):
        raise ConfigError(
            f"calculator {spec!r}: {attr!r} is neither an ASE Calculator class nor a function "
            "annotated to return one (-> Calculator); matloop calls nothing else named in a file"
        )
    return factory


def _is_calculator_factory(obj: object) -> bool:
    """Whether `obj` is a Calculator class or a Python function annotated to return one.

    Configs name calculators as ``module:function``; checking the target before it is called
    keeps such a name from running an arbitrary function (``subprocess:getoutput``,
    ``torch:load``), which is never written with a calculator as its return annotation.
    """
    if isinstance(obj, type):
        return issubclass(obj, BaseCalculator)
    if not inspect.isfunction(obj):
        return False
    try:
        returned = inspect.signature(obj, eval_str=True).return_annotation
    except Exception:  # noqa: BLE001 - an annotation that does not resolve is no promise
        return False
    return isinstance(returned, type) and issubclass(returned, BaseCalculator)


def resolve_calculator(spec: str | Calculator, **kwargs: Any) -> Calculator:
    """Return an ASE calculator for `spec`.

    `spec` is one of: an ASE calculator (returned as is); a built-in name (see
    :func:`builtin_calculators`); ``module:function`` where ``function(**kwargs)`` returns a
    calculator; or a path to a matloop model file / training directory.
    """
    if isinstance(spec, Calculator):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"calculator must be a name, 'module:function' or a model path: {spec!r}")
    spec = spec.strip()
    _ensure_optional_registrations()
    if spec.lower() in _BUILTINS:
        factory, _ = _BUILTINS[spec.lower()]
        return factory(**kwargs)
    path = Path(spec)
    if path.exists():
        from matloop.calculators import load_calculator

        return load_calculator(path, **kwargs)
    if ":" in spec and not spec.startswith(("/", ".")):
        calc = _import_factory(spec)(**kwargs)
        if not isinstance(calc, BaseCalculator):
            raise ConfigError(
                f"calculator {spec!r} returned {type(calc).__name__}, not a calculator"
            )
        return calc
    names = ", ".join(sorted(_BUILTINS))
    raise ConfigError(
        f"unknown calculator {spec!r}: not a built-in ({names}), not 'module:function', "
        "and no such model file"
    )
