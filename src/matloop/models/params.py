"""Hyper-parameters of every model family (pydantic), importable without torch.

The training configuration chooses a family's parameters by a discriminated union on
``model.family`` (:mod:`matloop.training.config`); validating a config must not import torch or
the family's network code, so each family's ``Params`` lives here and its module re-exports it.
Lengths in Å, energies in eV.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from matloop.descriptors.params import SOAPParams, StrictParams, SymmetryFunctionParams

# ace: default max total degree by number of elements; single element: 808 coefficients; two
# elements: 3,006; three: 5,238; four: 5,620
DEFAULT_MAX_DEGREE = {1: 16.0, 2: 13.0, 3: 11.0, 4: 9.0}
# ace, five or more elements: the largest whole max degree ≤ 9 whose basis has at most this many
# coefficients, about the four-element default's size (at degree 9 five elements had 12,600 and
# six 24,906: fits of 10.7 and ~30 GB). On a five-element EMT alloy (96 training frames of 32
# atoms) degree 7 (4,175) beat degree 8 (7,025) on validation (E 1.08 vs 2.26 meV/atom, F 0.0096
# vs 0.0126 eV/Å) at a quarter of the CPU time and 2.9 vs 6.8 GB.
DEFAULT_MAX_COEFFICIENTS = 6000
# mace: an e3nn irreps string such as "16x0e+16x1o"
_IRREPS = re.compile(r"^\s*\d+x\d+[eo](\s*\+\s*\d+x\d+[eo])*\s*$")
# largest layer width / feature count accepted: far above any useful size, far below one that
# fails to allocate (a mistyped 10**9 is refused by the config check, not by the allocator)
MAX_WIDTH = 16384
#: widths of hidden layers (each 1..MAX_WIDTH)
LayerWidths = list[Annotated[int, Field(ge=1, le=MAX_WIDTH)]]


class AceFitParams(StrictParams):
    """How the linear coefficients are fitted (closed form; nothing here is a learning rate)."""

    regularisation: Literal["auto", "evidence", "validation"] = Field(
        "auto",
        description="evidence maximisation, the best ridge on the validation split, or auto: "
        "whichever of the two validates better",
    )
    ard: Literal["none", "order"] = Field(
        "none", description="one prior precision per correlation order (ARD), chosen by evidence"
    )
    weight_search: bool = Field(
        True, description="also try the force/energy precision ratio × 0.1, 1/3, 3 and 10"
    )
    stress_search: bool = Field(
        True,
        description="when training.loss.stress is 0 and the training and validation data carry "
        "stresses, also fit with stress rows (loss weight 1 and 0.1) and keep the fit with the "
        "lowest validation loss, the stress MSE counted with weight 0.01 (1 GPa of stress RMSE "
        "like 0.62 meV/atom of energy RMSE): stresses consistent with the energies pin the "
        "volume derivative that forces of near-equilibrium cells leave free; stresses that "
        "disagree with the energies (a Pulay offset) cost more than they bring and stay out. "
        "With fewer than 3 validation structures with a stress, the losses pool the training "
        "structures' leave-one-out errors (one structure alone misjudged an offset), or the "
        "search is skipped (report: stress_search.skipped)",
    )
    cutoff_search: bool = Field(
        False,
        description="with at least 10 validation structures and no basis_cutoffs, also fit the "
        "basis at cutoff + 0.5 Å (one more pass over the data) and keep the cutoff with the "
        "lower validation loss (recorded in basis_search). Not the default: on two 80/20 check "
        "splits of the mlearn training sets it lowered the energy MAE by 5.9 % on average "
        "(Li −31 %, Ge −9 %) but raised Cu's by 5.0 %, past the 5 % its adoption rule allowed; "
        "fit CPU 1.4–2.1×",
    )
    chunk_atoms: int = Field(512, ge=1, description="atoms per block of design rows")
    active_set_atoms: int = Field(
        5000, ge=1, description="training atoms per element sampled for the MaxVol active set"
    )
    calibrate: bool = Field(
        True,
        description="scale σ for 95 % coverage: forces on the validation split, energies on the "
        "validation energies pooled with the training energies' leave-one-out (PRESS) errors",
    )
    press_energies: int = Field(
        2000,
        ge=0,
        description="training energies (a uniform sample) whose leave-one-out errors join the "
        "energy calibration (0: validation energies only)",
    )
    basis_degrees: list[float] | None = Field(
        None,
        description="candidate max total degrees: the model's basis truncated at each (nested "
        "sub-bases, fitted from the same design rows); the lowest validation loss wins",
    )
    basis_cutoffs: list[float] | None = Field(
        None, description="candidate outer cutoffs rc (Å); one pass over the data each"
    )
    basis_radial_scales: list[float] | None = Field(
        None, description="candidate radial scales λ; one pass over the data each"
    )
    basis_tolerance: float = Field(
        0.0,
        ge=0,
        description="keep the candidate with the fewest coefficients (MD cost grows with them) "
        "whose validation loss is within this fraction of the best",
    )

    @model_validator(mode="after")
    def _check_search(self) -> AceFitParams:
        for name in ("basis_degrees", "basis_cutoffs", "basis_radial_scales"):
            values = getattr(self, name)
            if values is not None and (not values or min(values) <= 0):
                raise ValueError(f"{name} needs at least one positive value")
        return self


class AceParams(StrictParams):
    """Basis of the linear ACE (lengths in Å, energies in eV).

    Defaults were chosen on validation splits of the mlearn Si and Cu training sets (ridge fits
    on energies and forces): order 4 with max degree 16 beat order 3 / degree 12 (Si 2.9 vs
    4.2 meV/atom, 0.068 vs 0.087 eV/Å); λ = 1 beat 2 and 5 (Si 2.70 / 0.066, 2.94 / 0.068,
    4.07 / 0.079); larger bases validate better still (Si 2.57 / 0.062 at 1,350 coefficients)
    at about twice the MD and fitting cost.
    """

    cutoff: float = Field(5.0, gt=0, description="outer cutoff rc (Å)")
    correlation_order: int = Field(
        4, ge=1, le=4, description="max correlation order ν (body order ν+1)"
    )
    max_degree: float | None = Field(
        None,
        gt=0,
        description="total degree Σ_t (n_t + 1 + l_weight·l_t) of a basis function (the size "
        "knob); default by element count: 16, 13, 11, 9, then the largest whole degree ≤ 9 "
        "with at most 6,000 coefficients (the basis grows ~ n_el^ν)",
    )
    degree_drop_per_order: float = Field(
        1.0,
        ge=0,
        description="orders ν > 2 get max_degree − drop·(ν − 2) (fewer high-body-order functions)",
    )
    max_degree_per_order: list[float] | None = Field(
        None,
        description="max total degree for orders 1..ν (overrides max_degree; length ν)",
    )
    n_radial: int | None = Field(
        None, ge=1, le=30, description="radial functions g_k (default: ⌊max degree⌋)"
    )
    max_l: int = Field(5, ge=0, le=8, description="largest spherical-harmonic order l")
    l_weight: float = Field(1.5, gt=0, description="weight of l in the degree")
    radial_scale: float = Field(1.0, gt=0, description="λ of PACE's ChebExpCos radial base")
    inner_cutoff: float | None = Field(
        None,
        gt=0,
        description="inner cutoff r_in for every pair (Å); default inner_cutoff_fraction × the "
        "sum of covalent radii",
    )
    inner_cutoff_fraction: float = Field(0.6, gt=0, le=1.5)
    inner_width: float = Field(0.25, gt=0, description="width of the inner switch (Å)")
    core_strength: float = Field(
        20.0, ge=0, description="core repulsion prefactor prehc (eV·Å) below the inner cutoff"
    )
    core_decay: float = Field(1.0, gt=0, description="core repulsion λ_hc (1/Å²)")
    fit: AceFitParams = Field(default_factory=AceFitParams)

    @model_validator(mode="after")
    def _check(self) -> AceParams:
        if (
            self.max_degree_per_order is not None
            and len(self.max_degree_per_order) != self.correlation_order
        ):
            raise ValueError("max_degree_per_order needs one entry per correlation order")
        if self.inner_cutoff is not None and self.inner_cutoff >= self.cutoff:
            raise ValueError(
                f"inner_cutoff {self.inner_cutoff} Å must be below cutoff {self.cutoff} Å"
            )
        return self

    def degrees(self, n_elements: int = 1) -> list[float]:
        """Max total degree of each correlation order 1..ν."""
        if self.max_degree_per_order is not None:
            return list(self.max_degree_per_order)
        top = self.max_degree
        if top is None:
            top = DEFAULT_MAX_DEGREE.get(n_elements) or self._budget_degree(n_elements)
        return self._degrees_below(top)

    def _degrees_below(self, top: float) -> list[float]:
        drop = self.degree_drop_per_order
        return [top - drop * max(0, nu - 2) for nu in range(1, self.correlation_order + 1)]

    def _budget_degree(self, n_elements: int) -> float:
        """Largest whole max degree ≤ 9 within `DEFAULT_MAX_COEFFICIENTS` (at least 3)."""
        from matloop.models.ace.basis import count_coefficients

        for top in range(9, 3, -1):
            degrees = tuple(self._degrees_below(float(top)))
            n_radial = self.n_radial or top
            count = count_coefficients(n_elements, n_radial, self.max_l, degrees, self.l_weight)
            if count <= DEFAULT_MAX_COEFFICIENTS:
                return float(top)
        return 3.0

    def radial_count(self, n_elements: int = 1) -> int:
        if self.n_radial is not None:
            return self.n_radial
        return max(1, int(max(self.degrees(n_elements))))


class BPNNParams(StrictParams):
    """Architecture of a Behler–Parrinello network."""

    descriptor: SymmetryFunctionParams = Field(default_factory=SymmetryFunctionParams)
    hidden: LayerWidths = Field(default_factory=lambda: [64, 64], description="hidden layer widths")
    activation: Literal["tanh", "silu", "softplus"] = "silu"


class PaiNNParams(StrictParams):
    """Architecture of a PaiNN network."""

    features: int = Field(32, ge=1, le=MAX_WIDTH, description="scalar/vector feature channels F")
    layers: int = Field(3, ge=1, le=64, description="interaction (message + update) layers")
    n_radial: int = Field(16, ge=1, le=1024, description="radial basis functions sin(nπr/rc)/r")
    cutoff: float = Field(5.0, gt=0, description="interaction cutoff (Å)")
    activation: Literal["silu", "tanh", "softplus"] = "silu"


class KernelParams(StrictParams):
    """Hyper-parameters of the sparse-GP potential (energies in eV, lengths in Å)."""

    descriptor: SOAPParams = Field(default_factory=SOAPParams)
    zeta: int = Field(4, ge=1, le=8, description="kernel exponent ζ of (q̂·x)^ζ")
    n_sparse: int = Field(1000, ge=1, description="sparse points per element")
    sparse_method: Literal["fps", "cur", "random"] = Field(
        "fps",
        description="farthest-point sampling in kernel distance, CUR leverage scores, or random",
    )
    energy_sigma: float = Field(0.001, gt=0, description="energy noise σ_E (eV/atom)")
    force_sigma: float = Field(0.03, gt=0, description="force noise σ_F (eV/Å)")
    delta: float = Field(1.0, gt=0, description="prior std δ of atomic energies (eV)")
    jitter: float = Field(1e-8, gt=0, description="added to the diagonal of K_mm")
    max_force_structures: int | None = Field(
        None, ge=0, description="use forces of at most this many structures (default: all)"
    )
    force_time_fraction: float = Field(
        0.6,
        gt=0,
        le=1,
        description="stop adding force rows after this fraction of training.max_time",
    )
    select_sigmas: bool = Field(
        False,
        description="pick σ_E, σ_F from ×{1/3, 1, 3} of the configured values on the validation "
        "data (best Σ (rmse/σ)² of energy per atom and forces)",
    )


class MACEParams(StrictParams):
    """Architecture of a MACE network (mace-torch names; small CPU-friendly defaults)."""

    r_max: float = Field(5.0, gt=0, description="cutoff (Å)")
    num_bessel: int = Field(8, ge=1, description="Bessel radial basis functions")
    num_polynomial_cutoff: int = Field(5, ge=2, description="order p of the smooth envelope")
    max_ell: int = Field(2, ge=0, le=4, description="largest l of the edge spherical harmonics")
    correlation: int = Field(2, ge=1, le=4, description="body order − 1 of the product basis")
    num_interactions: int = Field(2, ge=1, description="message-passing layers")
    hidden_irreps: str = Field("16x0e+16x1o", description="node features, scalars first")
    mlp_irreps: str = Field("16x0e", description="hidden irreps of the last (non-linear) readout")
    radial_mlp: LayerWidths = Field([32, 32], description="hidden widths of the radial MLP")
    gate: Literal["silu", "tanh", "abs"] = "silu"
    interaction: Literal["RealAgnosticResidualInteractionBlock", "RealAgnosticInteractionBlock"] = (
        "RealAgnosticResidualInteractionBlock"
    )
    avg_num_neighbors: float | None = Field(
        None, gt=0, description="message normalisation; None = set from the training data"
    )

    @field_validator("hidden_irreps", "mlp_irreps")
    @classmethod
    def _check_irreps(cls, value: str) -> str:
        if not _IRREPS.match(value):
            raise ValueError(f"{value!r} is not an irreps string like '16x0e+16x1o'")
        if not value.strip().split("+")[0].strip().endswith("x0e"):
            raise ValueError(f"{value!r} must start with the scalars (e.g. '16x0e+...')")
        return value.replace(" ", "")


class CHGNetParams(StrictParams):
    """Which pretrained CHGNet to start from and what to fine-tune."""

    pretrained: Literal["0.3.0", "0.2.0"] = Field("0.3.0", description="CHGNet weights to start")
    freeze: list[str] = Field(
        default_factory=list,
        description="parameter-name prefixes kept fixed, e.g. ['atom_embedding', 'bond_embedding']",
    )
    refit_atom_ref: bool = Field(True, description="least-squares refit of per-element energies")
