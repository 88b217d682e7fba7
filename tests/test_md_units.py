"""`matloop md` refuses temperatures and pressures in the wrong unit (kT in eV, bar for GPa) in
one line before any work, with the same validator the active-learning config uses."""

from __future__ import annotations

import pytest
from ase.build import bulk
from ase.io import write

from matloop.active.config import ExploreConfig
from matloop.cli import main
from matloop.md.config import check_pressure_gpa, check_temperature_k


@pytest.fixture()
def cu_file(tmp_path):
    path = tmp_path / "cu.xyz"
    write(path, bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2))
    return path


def _refused(capsys, args: list[str]) -> str:
    rc = main(args)
    err = capsys.readouterr().err
    assert rc == 1, err
    assert err.startswith("error: ") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    return err


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        # bar typed as GPa: NPT at 10 TPa used to end in "MD became unstable"
        (["-e", "npt", "-P", "10000"], "in bar 1 GPa"),
        (["-e", "npt", "-P", "-2000"], "-2000 is beyond ±1000 GPa"),
        # kT in eV typed as K: used to run silently at 0.025 K
        (["-e", "nvt", "-T", "0.025"], "as kT, 0.025 eV would be 290 K"),
        (["-e", "nve", "-T", "0.5"], "0.5 eV would be 5802 K"),
        (["-e", "nvt", "-T", "2e6"], "below 1e+06 K"),
    ],
)
def test_md_cli_refuses_a_unit_mistake_before_running(cu_file, tmp_path, capsys, options, expected):
    traj = tmp_path / "md.traj"
    err = _refused(capsys, ["md", "emt", str(cu_file), *options, "-n", "5", "--traj", str(traj)])
    assert expected in err
    assert not traj.exists()  # validated before any MD


def test_md_cli_still_runs_plausible_values_and_nve_from_rest(cu_file, tmp_path, capsys):
    for options in (["-e", "npt", "-P", "1000", "-T", "1"], ["-e", "nve", "-T", "0"]):
        rc = main(["md", "emt", str(cu_file), *options, "-n", "3", "--no-progress"])
        assert rc == 0, capsys.readouterr().err


def test_active_learning_config_uses_the_same_validator():
    message = "pressures are in GPa: 10000 is beyond ±1000 GPa"
    with pytest.raises(ValueError, match=message):
        check_pressure_gpa(10000.0)
    with pytest.raises(ValueError, match=message):
        ExploreConfig(pressures_gpa=[0.0, 10000.0])
    with pytest.raises(ValueError, match=r"temperatures are in K: 0\.025 is below 1 K"):
        check_temperature_k(0.025)
    assert check_temperature_k(0.0, allow_zero=True) == 0.0
    with pytest.raises(ValueError, match="> 0 K"):
        check_temperature_k(0.0)
