"""Review of the validation report: checks that must fail do, and exact models pass."""

from __future__ import annotations

import json

import numpy as np
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT

from matloop.data import Dataset, label_with
from matloop.validation import build_report, physics

FAST = {
    "nve_ps": 0.04,
    "nve_equilibration_ps": 0.0,
    "nve_timestep_fs": 2.0,
    "rdf_ps": 0.0,
    "n_physics_structures": 1,
    "fd_atoms": 2,
    "eos_points": 5,
    "progress": False,
}


def _cu_set(n: int, seed: int, a0: float = 3.61, config_type: str | None = None) -> Dataset:
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n):
        a = bulk("Cu", "fcc", a=a0 * (1 + rng.uniform(-0.02, 0.02)), cubic=True).repeat((2, 2, 1))
        a.positions += rng.normal(0, 0.06, a.positions.shape)
        frames.append(label_with(a, EMT(), config_type=config_type or ("bulk", "strained")[k % 2]))
    return Dataset(frames, source=f"emt-cu-{seed}")


class _ScaledEMTNaNWhenExpanded(Calculator):
    """1.01 × EMT (so F = −∇E holds and training errors are nonzero), but NaN forces on
    expanded cells (volume per atom above 12.5 Å³), as a model that blows up on some inputs."""

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        work = self.atoms.copy()
        work.calc = EMT()
        e = 1.01 * work.get_potential_energy()
        f = 1.01 * work.get_forces()
        if self.atoms.get_volume() / len(self.atoms) > 12.5:
            f = np.full_like(f, np.nan)
        s = 1.01 * work.get_stress()
        self.results = {"energy": e, "free_energy": e, "forces": f, "stress": s}


def test_force_gradient_check_passes_an_exact_model_at_equilibrium():
    """Forces ~0 on a perfect lattice: the old relative error divided FD noise by ~1e-12
    (17.8 for EMT, a FAIL of an exact model)."""
    perfect = bulk("Cu", "fcc", a=3.61, cubic=True)
    assert physics.force_gradient_error(EMT(), perfect, atom_indices=[0, 1]) < 1e-6
    # ...and it still catches forces that are not −∇E
    rattled = _cu_set(1, 0)[0]
    scaled = _ScaledEMTNaNWhenExpanded()
    assert physics.force_gradient_error(scaled, rattled) < 1e-6

    class _Off(_ScaledEMTNaNWhenExpanded):
        def calculate(self, *args, **kwargs):
            super().calculate(*args, **kwargs)
            self.results["forces"] = self.results["forces"] * 1.1

    assert physics.force_gradient_error(_Off(), rattled) > 0.05


def test_force_gradient_error_with_atom_indices_in_any_order():
    rattled = _cu_set(1, 0)[0][:4]
    rattled.calc = None
    err = physics.force_gradient_error(EMT(), rattled, atom_indices=[3, 2, 1, 0])
    assert err < 1e-6


def test_report_with_a_perfect_lattice_passes_the_gradient_check(tmp_path):
    perfect = label_with(bulk("Cu", "fcc", a=3.61, cubic=True), EMT(), config_type="ideal")
    test = Dataset([perfect, *_cu_set(2, 1)], source="with-ideal")
    report = build_report(EMT(), test, out_dir=tmp_path, settings=FAST)
    (check,) = [c for c in report["checks"] if c["name"].startswith("F = −∇E")]
    assert report["physics"]["structures"][0]["config_type"] == "ideal"
    assert check["passed"] is True, check


def test_nan_predictions_fail_the_report(tmp_path):
    expanded = _cu_set(1, 3, a0=3.8, config_type="expanded")
    test = Dataset([*_cu_set(3, 1), *expanded], source="with-expanded")
    report = build_report(
        _ScaledEMTNaNWhenExpanded(),
        test,
        train_ds=_cu_set(3, 2),
        out_dir=tmp_path,
        settings=FAST,
        thresholds={"max_test_train_ratio": 100.0},
    )
    by_name = {c["name"]: c for c in report["checks"]}
    finite = by_name["finite predictions (test set)"]
    assert finite["passed"] is False and finite["value"] == 1.0
    assert "expanded" in finite["detail"]
    assert by_name["finite predictions (training set)"]["passed"] is True
    # the force ratio is NaN: the worst ratio, not skipped by max()
    assert by_name["test/train error ratio"]["passed"] is False
    assert report["passed"] is False

    def _reject(token):
        raise ValueError(f"bare {token} in report.json")

    json.loads((tmp_path / "report.json").read_text(), parse_constant=_reject)


def _cutoff_checks(report) -> dict:
    return {c["name"]: c for c in report["checks"] if c["name"].startswith("smooth cutoff")}


def test_a_hard_cutoff_fails_the_smooth_cutoff_check(tmp_path):
    """Lennard-Jones truncated at 3 Å (energy shifted, force not): the force check fails; the
    same potential with ASE's smooth cutoff passes; EMT states no cutoff and is skipped."""
    from ase.calculators.lj import LennardJones

    test = _cu_set(2, 1)
    hard = LennardJones(sigma=2.3, epsilon=0.4, rc=3.0, smooth=False)
    settings = {**FAST, "nve_ps": 0.0, "cutoff_a": 3.0}
    checks = _cutoff_checks(build_report(hard, test, out_dir=tmp_path / "hard", settings=settings))
    force = checks["smooth cutoff: force at the cutoff"]
    assert force["passed"] is False and force["value"] > 0.1, force
    smooth = LennardJones(sigma=2.3, epsilon=0.4, rc=3.0, ro=2.6, smooth=True)
    checks = _cutoff_checks(
        build_report(smooth, test, out_dir=tmp_path / "smooth", settings=settings)
    )
    assert all(c["passed"] is True for c in checks.values()), checks
    fast = {**FAST, "nve_ps": 0.0}
    checks = _cutoff_checks(build_report(EMT(), test, out_dir=tmp_path / "emt", settings=fast))
    assert all(c["passed"] is None and "skipped" in c["summary"] for c in checks.values())


def test_a_matloop_model_is_checked_at_its_own_cutoff(tmp_path):
    from matloop.calculators.potential import MatloopCalculator
    from matloop.models.ace.family import AceParams, AcePotential

    model = AcePotential(["Cu"], AceParams(cutoff=4.0, max_degree=6, max_l=2))
    model.set_coefficients(0.02 * np.random.default_rng(0).standard_normal(model.n_coefficients))
    model.set_reference_energies({"Cu": 0.0})
    fast = {**FAST, "nve_ps": 0.0}
    report = build_report(MatloopCalculator(model), _cu_set(2, 1), out_dir=tmp_path, settings=fast)
    checks = _cutoff_checks(report)
    assert report["physics"]["cutoff"]["cutoff_a"] == 4.0
    assert all(c["passed"] is True for c in checks.values()), checks
