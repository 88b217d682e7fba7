"""Potential families. Each family is a :class:`~matloop.models.base.Potential` subclass."""

from __future__ import annotations

from matloop.errors import ConfigError
from matloop.models.base import Potential
from matloop.models.bpnn import BPNN
from matloop.models.painn import PaiNN

FAMILIES: dict[str, type[Potential]] = {BPNN.family: BPNN, PaiNN.family: PaiNN}


def available_families() -> dict[str, str]:
    """Family name → one-line description."""
    return {name: cls.description for name, cls in FAMILIES.items()}


def get_family(name: str) -> type[Potential]:
    """The Potential class of family `name` (clear error listing the valid names)."""
    try:
        return FAMILIES[name]
    except KeyError:
        valid = ", ".join(sorted(FAMILIES))
        raise ConfigError(f"unknown model family {name!r}; available: {valid}") from None


__all__ = ["FAMILIES", "Potential", "available_families", "get_family"]
