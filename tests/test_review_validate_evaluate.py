"""`matloop validate` and `matloop evaluate` on test sets with only some labels: both give the
errors the labels allow and say what was not measured (energies-only DFT single points)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from matloop.calculators import resolve_calculator
from matloop.cli import main
from matloop.data import label_with

#: a quick report: the errors, without MD or the −∇E checks
QUICK = {"settings": {"nve_ps": 0, "n_physics_structures": 0, "progress": False}}


def _cells(n: int = 3) -> list:
    """Rattled, ±2 % strained 4-atom fcc Cu cells labelled with EMT."""
    rng = np.random.default_rng(5)
    calc = resolve_calculator("emt")
    out = []
    for k in range(n):
        a = bulk("Cu", "fcc", 3.61 * (1 + rng.uniform(-0.02, 0.02)), cubic=True)
        a.rattle(0.05, seed=k)
        out.append(label_with(a, calc, config_type="rattled" if k % 2 else "strained"))
    return out


def _keep(cells: list, *labels: str) -> list:
    """Copies of `cells` carrying only `labels` (of energy, forces, stress)."""
    out = []
    for ref in cells:
        atoms = ref.copy()
        atoms.info.update(ref.info)
        values = {"energy": ref.get_potential_energy(), "forces": ref.get_forces()}
        values["stress"] = ref.get_stress()
        atoms.calc = SinglePointCalculator(atoms, **{k: values[k] for k in labels})
        out.append(atoms)
    return out


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "quick.yaml"
    path.write_text(yaml.safe_dump(QUICK))
    return path


def _evaluate(model, data, tmp_path, capsys) -> tuple[dict, str]:
    capsys.readouterr()
    out = tmp_path / "metrics.json"
    assert main(["evaluate", str(model), str(data), "--json", str(out), "-q"]) == 0
    return json.loads(out.read_text()), capsys.readouterr().out


def _validate(model, data, tmp_path, config, capsys) -> tuple[dict, str]:
    capsys.readouterr()
    out = tmp_path / "report"
    args = ["validate", str(model), "--test", str(data), "--out", str(out), "--config", str(config)]
    assert main([*args, "-q"]) == 0
    return json.loads((out / "report.json").read_text()), capsys.readouterr().out


def _check(report: dict, name: str) -> dict:
    return next(c for c in report["checks"] if c["name"] == name)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_an_energies_only_test_set_gets_the_same_energy_errors_from_both(
    tmp_path, tiny_cu_model, config, capsys
):
    data = tmp_path / "energies.xyz"
    write(data, _keep(_cells(), "energy"))
    metrics, text = _evaluate(tiny_cu_model, data, tmp_path, capsys)
    assert "not measured: forces (no reference forces), stress (no reference stresses)" in text
    assert metrics["not_measured"] == {
        "forces": "no reference forces",
        "stress": "no reference stresses",
    }
    assert "force_mae_ev_per_a" not in metrics
    report, text = _validate(tiny_cu_model, data, tmp_path, config, capsys)
    m = report["test_metrics"]
    assert m["energy_mae_mev_per_atom"] == pytest.approx(metrics["energy_mae_mev_per_atom"])
    assert m["per_config_type"].keys() == metrics["per_config_type"].keys()
    for name, why in (("force", "forces"), ("stress", "stresses")):
        row = _check(report, f"test {name} MAE")
        assert row["passed"] is None and row["value"] is None
        assert row["summary"] == f"not measured: no reference {why} in the test set"
    assert "[----] test force MAE: not measured" in text
    # the largest-force check still sees the model's forces (no MD ran to supply them)
    largest = _check(report, "largest force")
    assert largest["passed"] is True and 0 < largest["value"] < 10
    assert "reference data without forces" in largest["detail"] and "nan" not in largest["detail"]
    assert "NVE MD not run" in largest["detail"]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_energies_and_stresses_without_forces_agree_between_the_commands(
    tmp_path, tiny_cu_model, config, capsys
):
    data = tmp_path / "energy_stress.xyz"
    write(data, _keep(_cells(), "energy", "stress"))
    metrics, text = _evaluate(tiny_cu_model, data, tmp_path, capsys)
    assert metrics["not_measured"] == {"forces": "no reference forces"}
    report, _ = _validate(tiny_cu_model, data, tmp_path, config, capsys)
    m = report["test_metrics"]
    for key in ("energy_mae_mev_per_atom", "stress_mae_gpa", "stress_rmse_gpa"):
        assert m[key] == pytest.approx(metrics[key]), key
    assert _check(report, "test stress MAE")["value"] == pytest.approx(metrics["stress_mae_gpa"])
    assert _check(report, "test force MAE")["summary"].startswith("not measured")


def test_a_fully_labelled_set_reports_nothing_missing(tmp_path, tiny_cu_model, capsys):
    data = tmp_path / "full.xyz"
    write(data, _cells(2))
    metrics, text = _evaluate(tiny_cu_model, data, tmp_path, capsys)
    assert "not_measured" not in metrics and "not measured" not in text
    assert {"force_mae_ev_per_a", "stress_mae_gpa"} <= metrics.keys()


def test_a_set_without_energies_is_one_error_line_in_both(tmp_path, tiny_cu_model, capsys):
    data = tmp_path / "bare.xyz"
    write(data, [bulk("Cu", cubic=True)])
    for args in (
        ["evaluate", str(tiny_cu_model), str(data), "-q"],
        ["validate", str(tiny_cu_model), "--test", str(data), "--out", str(tmp_path / "r"), "-q"],
    ):
        capsys.readouterr()
        assert main(args) != 0
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"error: {data}, frame 0: missing energy"], err
