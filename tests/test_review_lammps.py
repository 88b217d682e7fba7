"""Review of the LAMMPS route (`fix external`): failures inside the model during a run."""

from __future__ import annotations

import importlib.util

import pytest
from ase.calculators.emt import EMT
from test_lammps_export import MASSES_AFTER_BOX

from matloop.errors import ConfigError
from matloop.export import lammps as lmp_mod

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("lammps") is None, reason="the LAMMPS Python module is not installed"
)

# Ni's mass on type 1 and Cu's on type 2, then an NPT run (LAMMPS stops on NaN pressure)
NPT_MASSES_AFTER_BOX = MASSES_AFTER_BOX.replace(
    "run 0\n", "velocity all create 300 1\nfix npt all npt temp 300 300 0.1 iso 0 0 1\nrun 20\n"
)


class _FailingEMT(EMT):
    """EMT that raises at its `fail_at`-th evaluation (a model failing mid-run)."""

    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.fail_at, self.evaluations = fail_at, 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=()):
        self.evaluations += 1
        if self.evaluations >= self.fail_at:
            raise RuntimeError("boom inside the model")
        super().calculate(atoms, properties, system_changes)


def test_type_order_error_is_not_hidden_behind_lammps_unstable_pressure(tmp_path):
    """Masses set after the box in the wrong type order, under NPT: the NaN forces the failed
    check leaves make LAMMPS stop with 'Non-numeric pressure'; the cause must be reported."""
    (tmp_path / "in.npt").write_text(NPT_MASSES_AFTER_BOX)
    lmp = lmp_mod.open_lammps()
    try:
        with pytest.raises(ConfigError, match="type 1 has the mass of Ni"):
            lmp_mod.run_input(lmp, tmp_path / "in.npt", EMT(), elements=["Cu", "Ni"])
    finally:
        lmp.close()


def test_model_exception_mid_npt_run_is_reported(tmp_path):
    text = NPT_MASSES_AFTER_BOX.replace(
        "mass 1 58.6934\nmass 2 63.546", "mass 1 63.546\nmass 2 58.6934"
    )
    (tmp_path / "in.npt").write_text(text)
    lmp = lmp_mod.open_lammps()
    try:
        with pytest.raises(lmp_mod.LammpsRunError, match="RuntimeError: boom inside the model"):
            lmp_mod.run_input(lmp, tmp_path / "in.npt", _FailingEMT(5), elements=["Cu", "Ni"])
    finally:
        lmp.close()


def test_cli_reports_the_model_error_not_lammps_consequence(tmp_path, monkeypatch, capsys):
    from matloop.cli import main

    (tmp_path / "in.npt").write_text(NPT_MASSES_AFTER_BOX)
    monkeypatch.chdir(tmp_path)
    assert main(["lammps", "run", "emt", "in.npt", "--elements", "Cu,Ni"]) == 1
    err = capsys.readouterr().err
    assert "type 1 has the mass of Ni" in err and "Non-numeric" not in err
