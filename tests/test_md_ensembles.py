"""MD ensembles are one typed union (matloop.md.config); run_md takes names or typed settings."""

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from pydantic import TypeAdapter, ValidationError

from matloop.errors import ConfigError
from matloop.md import NPT, NVE, NVT, EnsembleSettings, ensemble_settings, run_md


def test_names_become_typed_settings_with_only_their_own_fields():
    nvt = ensemble_settings("NVT", 500.0, thermostat="nose-hoover", barostat="berendsen")
    assert isinstance(nvt, NVT) and nvt.thermostat == "nose-hoover"
    assert not hasattr(nvt, "barostat")
    npt = ensemble_settings("npt", 300.0, pressure_gpa=2.0, barostat="berendsen")
    assert isinstance(npt, NPT) and npt.pressure_gpa == 2.0
    assert isinstance(ensemble_settings("nve", 0.0), NVE)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ensemble": "nvx"}, "unknown ensemble 'nvx'"),
        ({"ensemble": "nvt", "temperature_k": 0.0}, "NVT needs a temperature > 0 K"),
        ({"ensemble": "nve", "temperature_k": -5.0}, "temperature must be ≥ 0 K"),
        ({"ensemble": "nvt", "thermostat": "andersen"}, "unknown thermostat 'andersen'"),
        ({"ensemble": "npt", "pressure_gpa": float("inf")}, "pressure must be finite"),
        ({"ensemble": "nvt", "friction_per_fs": 0.0}, "friction_per_fs"),
    ],
)
def test_bad_settings_are_one_config_error(kwargs, message):
    ensemble = kwargs.pop("ensemble")
    with pytest.raises(ConfigError, match=message):
        ensemble_settings(ensemble, **kwargs)


def test_the_union_is_discriminated_and_strict():
    adapter = TypeAdapter(EnsembleSettings)
    assert isinstance(adapter.validate_python({"ensemble": "npt", "pressure_gpa": 1}), NPT)
    with pytest.raises(ValidationError, match="barostat"):
        adapter.validate_python({"ensemble": "nvt", "barostat": "mtk"})


def test_run_md_with_typed_settings_equals_the_flat_arguments():
    atoms = bulk("Cu", cubic=True).repeat((2, 2, 2))
    common = dict(timestep_fs=2.0, steps=20, progress=False, seed=3)
    typed = run_md(atoms, EMT(), ensemble=NVT(temperature_k=600.0, friction_per_fs=0.02), **common)
    flat = run_md(atoms, EMT(), ensemble="nvt", temperature_k=600.0, friction_per_fs=0.02, **common)
    assert typed.ensemble == "nvt"
    np.testing.assert_allclose(typed.temperature_k, flat.temperature_k)
