"""MD ensembles as one typed union: ``nve``, ``nvt`` or ``npt``, each with only its own settings.

Every MD run in matloop (``matloop md``, the active-learning walkers, the validation report's
NVE and RDF runs) goes through :func:`matloop.md.run_md`, which turns its arguments into one of
these models with :func:`ensemble_settings` before any work. Units: K, GPa, fs.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from matloop.errors import ConfigError

ENSEMBLES = ("nve", "nvt", "npt")
THERMOSTATS = ("langevin", "nose-hoover")
BAROSTATS = ("mtk", "berendsen")

#: K: a temperature below this is taken for a value in another unit (kT in eV: 0.05 eV ≈ 580 K)
MIN_TEMPERATURE_K = 1.0
#: K: the highest temperature accepted (above it no interatomic potential means anything)
MAX_TEMPERATURE_K = 1e6
#: GPa: the largest |pressure| accepted; static experiments reach a few hundred GPa (diamond
#: anvils), 1 TPa is beyond them: a larger number is a pressure in bar, kbar or Pa
MAX_PRESSURE_GPA = 1000.0


def check_temperature_k(
    value: float, key: str = "temperature", *, allow_zero: bool = False
) -> float:
    """`value` if it is a temperature in K (≥ 1 K, < 10⁶ K; also 0 with `allow_zero`), else a
    one-line ValueError; shared by ``matloop md`` and the active-learning config."""
    from ase.units import kB

    t = float(value)
    if allow_zero and t == 0:
        return t
    if not (math.isfinite(t) and 0 < t < MAX_TEMPERATURE_K):
        low = "≥ 0 K" if allow_zero else "> 0 K"
        raise ValueError(f"{key} must be {low} and below {MAX_TEMPERATURE_K:g} K, got {value!r}")
    if t < MIN_TEMPERATURE_K:
        raise ValueError(
            f"temperatures are in K: {t:g} is below {MIN_TEMPERATURE_K:g} K (as kT, {t:g} eV "
            f"would be {t / kB:.0f} K)"
        )
    return t


def check_pressure_gpa(value: float, key: str = "pressure") -> float:
    """`value` if it is a pressure in GPa (|p| ≤ 1000 GPa), else a one-line ValueError; shared by
    ``matloop md`` and the active-learning config."""
    p = float(value)
    if not math.isfinite(p):
        raise ValueError(f"{key} must be finite (GPa), got {value!r}")
    if abs(p) > MAX_PRESSURE_GPA:
        raise ValueError(
            f"pressures are in GPa: {p:g} is beyond ±{MAX_PRESSURE_GPA:g} GPa (in kbar it would "
            f"be {p / 10:g} GPa, in bar {p / 1e4:g} GPa)"
        )
    return p


class _Ensemble(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature_k: float = Field(300.0, description="initial (NVE) or target temperature (K)")

    @field_validator("temperature_k")
    @classmethod
    def _temperature(cls, v: float) -> float:
        return check_temperature_k(v, allow_zero=True)


class NVE(_Ensemble):
    """Velocity Verlet; `temperature_k` only sets the initial velocities."""

    ensemble: Literal["nve"] = "nve"


class _Thermostatted(_Ensemble):
    @field_validator("temperature_k")
    @classmethod
    def _positive(cls, v: float) -> float:
        if v == 0:
            raise ValueError("needs a temperature > 0 K")
        return v


class NVT(_Thermostatted):
    """Langevin (FixCom, ASE's recommendation) or a Nosé–Hoover chain."""

    ensemble: Literal["nvt"] = "nvt"
    thermostat: Literal["langevin", "nose-hoover"] = "langevin"
    friction_per_fs: float = Field(0.01, gt=0, description="Langevin friction (1/fs)")
    tdamp_fs: float | None = Field(None, gt=0, description="Nosé–Hoover time (default 100 Δt)")


class NPT(_Thermostatted):
    """Isotropic MTK (the correct ensemble) or Berendsen (quick equilibration)."""

    ensemble: Literal["npt"] = "npt"
    pressure_gpa: float = Field(0.0, description="target pressure (GPa)")
    barostat: Literal["mtk", "berendsen"] = "mtk"
    tdamp_fs: float | None = Field(None, gt=0, description="thermostat time (default 100 Δt)")
    pdamp_fs: float | None = Field(None, gt=0, description="barostat time (default 1000 Δt)")

    @field_validator("pressure_gpa")
    @classmethod
    def _pressure(cls, v: float) -> float:
        return check_pressure_gpa(v)


EnsembleSettings = Annotated[NVE | NVT | NPT, Field(discriminator="ensemble")]
_ADAPTER: TypeAdapter = TypeAdapter(EnsembleSettings)


def ensemble_settings(
    ensemble: str,
    temperature_k: float = 300.0,
    *,
    pressure_gpa: float = 0.0,
    thermostat: str = "langevin",
    barostat: str = "mtk",
    friction_per_fs: float = 0.01,
    tdamp_fs: float | None = None,
    pdamp_fs: float | None = None,
) -> NVE | NVT | NPT:
    """The typed settings of `ensemble` from flat arguments (one ConfigError line if bad).

    Arguments that do not belong to the chosen ensemble (a barostat for NVT, say) are not kept
    in the settings; names are still checked, so a misspelled thermostat is an error.
    """
    ens = str(ensemble).lower()
    if ens not in ENSEMBLES:
        raise ConfigError(f"unknown ensemble {ensemble!r}; choose one of {', '.join(ENSEMBLES)}")
    if thermostat not in THERMOSTATS:
        raise ConfigError(f"unknown thermostat {thermostat!r}; choose {', '.join(THERMOSTATS)}")
    if barostat not in BAROSTATS:
        raise ConfigError(f"unknown barostat {barostat!r}; choose {', '.join(BAROSTATS)}")
    data: dict = {"ensemble": ens, "temperature_k": temperature_k}
    if ens == "nvt":
        data.update(thermostat=thermostat, friction_per_fs=friction_per_fs, tdamp_fs=tdamp_fs)
    elif ens == "npt":
        data.update(
            pressure_gpa=pressure_gpa, barostat=barostat, tdamp_fs=tdamp_fs, pdamp_fs=pdamp_fs
        )
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        message = str(err.get("msg", "")).removeprefix("Value error, ")
        if err.get("loc", ())[-1:] in (("temperature_k",), ("pressure_gpa",)):
            prefix = f"{ens.upper()} " if message.startswith("needs") else ""
            raise ConfigError(prefix + message) from None
        where = ".".join(str(p) for p in err.get("loc", ())[1:])
        raise ConfigError(f"{ens.upper()} {where}: {message}") from None
