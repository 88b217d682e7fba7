"""Potential families. Each family is a :class:`~matloop.models.base.Potential` subclass.

Families are imported lazily, so that optional back-ends (e.g. mace-torch) are only needed by
the users of that family; their hyper-parameters (:mod:`matloop.models.params`) are not, so that
a configuration is checked without importing torch.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from matloop.errors import ConfigError
from matloop.models import params as _params

if TYPE_CHECKING:
    from matloop.models.base import Potential


@dataclass(frozen=True)
class FamilySpec:
    """Where a family lives and what it needs."""

    name: str
    module: str
    class_name: str
    description: str
    params: type[BaseModel]  # the class's ``Params``, from the torch-free matloop.models.params
    requires: str | None = None  # importable name of an optional package
    install_hint: str | None = None  # what to pip install when `requires` is missing
    own_variance: bool = False  # a fitted model gives its own predictive σ (no committee needed)
    #: training.loss.forces when the configuration leaves it out ((eV/atom)² per (eV/Å)²)
    force_weight: float = 0.02
    #: one model's energy is linear in its per-atom features (D-/V-optimal selection applies)
    linear: bool = False

    @property
    def installed(self) -> bool:
        return self.requires is None or importlib.util.find_spec(self.requires) is not None


_SPECS = [
    FamilySpec(
        "bpnn",
        "matloop.models.bpnn",
        "BPNN",
        "Behler–Parrinello symmetry functions + per-element neural networks",
        _params.BPNNParams,
    ),
    FamilySpec(
        "painn",
        "matloop.models.painn",
        "PaiNN",
        "PaiNN-like equivariant message passing (scalar + vector features)",
        _params.PaiNNParams,
    ),
    FamilySpec(
        "kernel",
        "matloop.models.kernel",
        "KernelPotential",
        "SOAP-like power spectrum + sparse Gaussian process (energy variance)",
        _params.KernelParams,
        own_variance=True,
    ),
    FamilySpec(
        "ace",
        "matloop.models.ace.family",
        "AcePotential",
        "Linear atomic cluster expansion (closed-form Bayesian fit, posterior σ)",
        _params.AceParams,
        own_variance=True,
        linear=True,
        # mlearn validation splits (2 seeds × 6 elements): energy MAE −6 to −34 % against 0.02,
        # force MAE +0.1 to +3.6 % (benchmarks/README.md, "What a user gets")
        force_weight=0.005,
    ),
    FamilySpec(
        "mace",
        "matloop.models.mace",
        "MACEPotential",
        "MACE higher-order equivariant message passing (mace-torch modules)",
        _params.MACEParams,
        requires="mace",
        install_hint="'matloop[mace]'",
    ),
    FamilySpec(
        "chgnet",
        "matloop.models.chgnet_family",
        "CHGNetFinetune",
        "CHGNet pretrained universal potential, fine-tuned on your data (chgnet)",
        _params.CHGNetParams,
        requires="chgnet",
        install_hint="'matloop[chgnet]'",
    ),
]

FAMILIES: dict[str, FamilySpec] = {spec.name: spec for spec in _SPECS}


def available_families() -> dict[str, str]:
    """Family name → one-line description (optional families say what to install)."""
    out = {}
    for name, spec in FAMILIES.items():
        text = spec.description
        if not spec.installed:
            text += f" [not installed: pip install {spec.install_hint or spec.requires}]"
        out[name] = text
    return out


def family_loss(config: Any, family: str) -> Any:
    """``config.training.loss`` (a :class:`~matloop.training.config.LossWeights`) for a fit of
    `family`: a force weight the configuration left out is that family's default (a config made
    for another family and passed to a fit directly)."""
    loss = getattr(getattr(config, "training", None), "loss", None)
    if loss is None or "forces" in getattr(loss, "model_fields_set", {"forces"}):
        return loss
    return loss.model_copy(update={"forces": FAMILIES[family].force_weight})


def check_family(name: str) -> FamilySpec:
    """The registry entry of family `name`, checked to be usable (one clear line if not)."""
    try:
        spec = FAMILIES[name]
    except KeyError:
        valid = ", ".join(sorted(FAMILIES))
        raise ConfigError(f"unknown model family {name!r}; available: {valid}") from None
    if not spec.installed:
        raise ConfigError(
            f"model family {name!r} needs the optional package {spec.requires!r}: "
            f"pip install {spec.install_hint or spec.requires}"
        )
    return spec


def get_family(name: str) -> type[Potential]:
    """The Potential class of family `name` (clear error listing the valid names)."""
    spec = check_family(name)
    module = importlib.import_module(spec.module)
    return getattr(module, spec.class_name)


def __getattr__(name: str) -> Any:
    if name == "Potential":  # torch-heavy: imported when asked for
        from matloop.models.base import Potential

        return Potential
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FAMILIES",
    "FamilySpec",
    "Potential",
    "available_families",
    "check_family",
    "get_family",
]
