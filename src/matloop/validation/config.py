"""Thresholds and settings of the validation report (pydantic; a YAML file can set both)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class Thresholds(BaseModel):
    """Pass/fail limits of the report's checks. ``None`` shows a number without judging it.

    Defaults follow the usual checklist for a trained potential: test error within 2× the
    training error, energy conserved in NVE, invariance under translation/rotation/permutation,
    forces equal to −∇E, no absurd forces (> 10 eV/Å).
    """

    model_config = ConfigDict(extra="forbid")

    max_test_train_ratio: float | None = Field(2.0, gt=0, description="test MAE / train MAE")
    max_nve_drift_mev_per_atom_per_ps: float | None = Field(
        1.0, gt=0, description="|slope| of total energy per atom in NVE"
    )
    max_force_ev_per_a: float | None = Field(
        10.0,
        gt=0,
        description="largest predicted |F| on test structures and in MD (unless set, raised to "
        "1.5 × the test set's largest reference |F| where that is larger)",
    )
    max_force_gradient_error: float | None = Field(
        1e-3,
        gt=0,
        description="max |F + ∇E_fd| / max(max |F|, 0.1 eV/Å) (finite differences)",
    )
    max_invariance_energy_mev_per_atom: float | None = Field(
        0.1, gt=0, description="energy change under translation/rotation/permutation"
    )
    max_invariance_force_ev_per_a: float | None = Field(
        1e-3, gt=0, description="force change (rotated back) under the same operations"
    )
    max_stress_strain_error_gpa: float | None = Field(
        0.05, gt=0, description="|σ − (1/V)∂E/∂ε| by finite strain"
    )
    max_cutoff_energy_jump_mev: float | None = Field(
        0.01, gt=0, description="energy step of a dimer across the cutoff (1e-4 Å apart)"
    )
    max_cutoff_force_ev_per_a: float | None = Field(
        0.01,
        gt=0,
        description="largest |F| of a dimer within 3e-4 Å inside the cutoff (a hard cutoff "
        "leaves the pair force there; a smooth taper leaves ~1e-3 eV/Å)",
    )
    max_energy_mae_mev_per_atom: float | None = Field(None, gt=0)
    max_force_mae_ev_per_a: float | None = Field(None, gt=0)
    max_stress_mae_gpa: float | None = Field(None, gt=0)
    max_eos_v0_rel_diff: float | None = Field(
        None, gt=0, description="|V0 model − V0 reference| / V0 reference"
    )
    max_eos_b0_rel_diff: float | None = Field(
        None, gt=0, description="|B0 model − B0 reference| / B0 reference"
    )


class ReportSettings(BaseModel):
    """What the report runs (durations in ps, temperatures in K, time steps in fs)."""

    model_config = ConfigDict(extra="forbid")

    nve_ps: float = Field(
        2.0, ge=0, description="NVE length (quick default; 10–20 ps for a drift study); 0 skips"
    )
    nve_temperature_k: float = Field(300.0, gt=0)
    nve_timestep_fs: float = Field(1.0, gt=0)
    nve_equilibration_ps: float = Field(
        0.5, ge=0, description="Langevin NVT before the NVE run, at the same temperature"
    )
    nve_min_atoms: int = Field(32, ge=1, description="small cells are repeated to at least this")
    nve_max_atoms: int = Field(
        64, ge=1, description="prefer test structures up to this size for MD (cost)"
    )
    nve_structure: Path | None = Field(
        None, description="structure for MD/EOS/RDF; default: picked from the test set"
    )
    n_physics_structures: int = Field(3, ge=0, description="test structures for the −∇E checks")
    fd_atoms: int = Field(4, ge=1, description="atoms whose forces are checked by finite diff.")
    cutoff_a: float | None = Field(
        None,
        gt=0,
        description="cutoff (Å) for the smooth-cutoff check; default: the matloop model's own "
        "(other calculators: skipped unless given)",
    )
    eos_volume_range: float = Field(0.08, gt=0, lt=0.5)
    eos_points: int = Field(11, ge=5)
    rdf_ps: float = Field(1.0, ge=0, description="NVT run per calculator for the RDF; 0 skips")
    rdf_rmax_a: float = Field(6.0, gt=0)
    seed: int = Field(0, ge=0, description="seed of the MD velocities and checks")
    progress: bool = True
    # the label keys of test/train files (as `matloop evaluate --energy-key` etc.)
    energy_key: str = Field("energy", min_length=1, description="info key of the energy (eV)")
    forces_key: str = Field("forces", min_length=1, description="array key of forces (eV/Å)")
    stress_key: str = Field(
        "stress",
        min_length=1,
        description="info key of the stress (eV/Å³; a key with 'virial' holds W, eV)",
    )


class ReportConfig(BaseModel):
    """The YAML file of ``matloop validate --config``: ``thresholds:`` and ``settings:``."""

    model_config = ConfigDict(extra="forbid")

    thresholds: Thresholds = Field(default_factory=Thresholds)
    settings: ReportSettings = Field(default_factory=ReportSettings)


def load_report_config(path: str | Path) -> tuple[Thresholds, ReportSettings]:
    """Read thresholds and settings from a YAML file (unknown keys are rejected)."""
    from matloop.utils.config import load_yaml, parse_config

    data = load_yaml(path, what="report config")
    expected = "a mapping with 'thresholds:' and/or 'settings:'"
    cfg = parse_config(data, ReportConfig, str(path), expected=expected)
    return cfg.thresholds, cfg.settings
