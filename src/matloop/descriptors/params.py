"""Hyper-parameters of the descriptors (pydantic), importable without torch.

The model families' parameters (:mod:`matloop.models.params`) nest these; lengths in Å.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class StrictParams(BaseModel):
    """Base of every hyper-parameter model: unknown keys, inf and NaN are refused."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class SymmetryFunctionParams(StrictParams):
    """Hyper-parameters of the descriptor (lengths in Å, η in Å⁻²).

    Leave ``radial``/``angular`` empty to use the default grids chosen from the cutoffs.
    """

    cutoff: float = Field(5.0, gt=0.5, description="radial cutoff rc (Å)")
    angular_cutoff: float | None = Field(
        None, gt=0.5, description="cutoff of the angular terms (Å); default: the radial cutoff"
    )
    n_radial: int = Field(16, ge=1, le=1024, description="number of shifted radial Gaussians")
    n_angular_eta: int = Field(3, ge=1, le=256, description="number of angular radial widths")
    # ζ < 1 makes (1 + λ cos θ)^ζ or its derivative infinite at θ = 0° / 180° (fcc, bcc, ...)
    zetas: list[Annotated[float, Field(ge=1, le=256)]] = Field(
        default_factory=lambda: [1.0, 2.0, 4.0, 8.0], description="angular exponents ζ (≥ 1)"
    )
    radial: list[tuple[float, float]] = Field(
        default_factory=list, description="explicit (eta, rs) pairs for G2 (Å⁻², Å)"
    )
    angular_radial: list[tuple[float, float]] = Field(
        default_factory=list,
        description="explicit (eta, rs) radial factors of G5 (Å⁻², Å); combined with every ζ, λ",
    )

    @field_validator("radial", "angular_radial")
    @classmethod
    def _check_pairs(cls, pairs: list[tuple[float, float]]) -> list[tuple[float, float]]:
        for eta, rs in pairs:
            if eta <= 0 or rs < 0:
                raise ValueError(f"(eta, rs) = ({eta}, {rs}) needs eta > 0 Å⁻² and rs ≥ 0 Å")
        return pairs

    @property
    def rc_angular(self) -> float:
        return min(self.angular_cutoff or self.cutoff, self.cutoff)

    def radial_grid(self) -> list[tuple[float, float]]:
        """(η, Rs) pairs: Gaussians shifted evenly from 0.5 Å to rc, width = spacing."""
        if self.radial:
            return [tuple(map(float, p)) for p in self.radial]
        if self.n_radial == 1:
            return [(1.0 / (2 * (0.5 * self.cutoff) ** 2), 0.0)]
        import numpy as np

        shifts = np.linspace(0.5, self.cutoff, self.n_radial)
        width = shifts[1] - shifts[0]
        eta = 1.0 / (2.0 * width**2)
        return [(float(eta), float(rs)) for rs in shifts]

    def angular_radial_grid(self) -> list[tuple[float, float]]:
        """(η, Rs) of the angular radial factor: centred Gaussians, widths up to the cutoff."""
        if self.angular_radial:
            return [tuple(map(float, p)) for p in self.angular_radial]
        import numpy as np

        rc = self.rc_angular
        if self.n_angular_eta == 1:
            widths = np.array([rc / 2.0])
        else:
            widths = np.linspace(rc / 4.0 + 0.5, rc, self.n_angular_eta)
        return [(float(1.0 / (2.0 * w**2)), 0.0) for w in widths]

    def angle_grid(self) -> list[tuple[float, float]]:
        """(ζ, λ) pairs of the angular factor 2^(1−ζ)(1 + λ cos θ)^ζ."""
        return [(float(z), lam) for z in self.zetas for lam in (1.0, -1.0)]


class SOAPParams(StrictParams):
    """Hyper-parameters of the SOAP-like descriptor (lengths in Å)."""

    cutoff: float = Field(5.0, gt=0.5, description="cutoff radius rc (Å)")
    cutoff_width: float = Field(1.0, gt=0.0, description="width of the smooth cutoff region (Å)")
    n_max: int = Field(12, ge=1, le=24, description="radial Gaussians per neighbour species")
    l_max: int = Field(4, ge=0, le=10, description="largest angular order l")
    r_min: float = Field(1.5, ge=0.0, description="centre of the first radial Gaussian (Å)")
    width_factor: float = Field(0.7, gt=0.0, description="Gaussian width / centre spacing")
    # w_c = 0 leaves an atom without neighbours with q = 0 (q̂ = 0/0: NaN energies) and makes
    # the energy jump when the last neighbour crosses the cutoff (q̂ keeps its direction until
    # the density vanishes)
    central_weight: float = Field(
        1.0, gt=0.0, description="weight w_c of the centre channel (> 0: keeps q̂ smooth)"
    )

    @model_validator(mode="after")
    def _check_r_min(self) -> SOAPParams:
        if self.r_min >= self.cutoff:
            raise ValueError(
                f"r_min {self.r_min} Å must be below cutoff {self.cutoff} Å (the radial "
                "Gaussians would all lie outside the cutoff)"
            )
        return self
