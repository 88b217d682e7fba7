"""No loader runs code from a file: a payload whose unpickling would create a file is refused.

Every file matloop reads as a model or checkpoint is planted with such a payload (as a pickle, a
joblib dump, a torch file, an object array inside an .npz, an untrusted type inside skops data);
each load must fail with a one-line matloop error and the marker file must never appear.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.calculators.emt import EMT as EMTCalculator

from matloop.cli import main
from matloop.errors import ModelFileError


class Payload:
    """Unpickling this calls ``open(marker, "w")``: the marker file appears if code runs."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _plant(path: Path, marker: Path, how: str) -> Path:
    obj = {"format": "matloop-surrogate", "model": Payload(marker)}
    if how == "pickle":
        path.write_bytes(pickle.dumps(obj))
    elif how == "joblib":
        import joblib

        joblib.dump(obj, path)
    elif how == "torch":
        torch.save({"format": "matloop-checkpoint", "model": Payload(marker)}, path)
    elif how == "npz-object":
        arr = np.empty(1, dtype=object)
        arr[0] = Payload(marker)
        with open(path, "wb") as fh:
            np.savez(fh, __meta__=np.frombuffer(b"{}", dtype=np.uint8), __estimator__=arr)
    assert not marker.exists()  # planting itself runs nothing
    return path


HOWS = ["pickle", "joblib", "torch", "npz-object"]


@pytest.mark.parametrize("how", HOWS)
def test_surrogate_loader_refuses(tmp_path, how):
    from matloop.surrogate import load_surrogate

    marker = tmp_path / "PWNED"
    path = _plant(tmp_path / "model.bin", marker, how)
    with pytest.raises(ModelFileError):
        load_surrogate(path)
    assert not marker.exists()


@pytest.mark.parametrize("how", HOWS)
def test_design_loader_refuses(tmp_path, how):
    from matloop.design.models import PropertyModel

    marker = tmp_path / "PWNED"
    path = _plant(tmp_path / "model.bin", marker, how)
    with pytest.raises(ModelFileError):
        PropertyModel.load(path)
    assert not marker.exists()


@pytest.mark.parametrize("how", HOWS)
def test_checkpoint_and_model_loaders_refuse(tmp_path, how):
    import matloop
    from matloop.training.trainer import load_checkpoint

    marker = tmp_path / "PWNED"
    path = _plant(tmp_path / "checkpoint.pt", marker, how)
    with pytest.raises(ModelFileError):
        load_checkpoint(path)
    with pytest.raises(ModelFileError):
        matloop.load(path)
    assert not marker.exists()


def test_untrusted_type_inside_plain_data_is_refused(tmp_path):
    """A well-formed .npz whose skops data names a type outside the trusted list."""
    import skops.io as sio

    from matloop.design.models import _FORMAT, _FORMAT_VERSION, PropertyModel
    from matloop.surrogate.io import FORMAT, FORMAT_VERSION, load_surrogate
    from matloop.utils.safe_io import save_bundle

    marker = tmp_path / "PWNED"
    blob = np.frombuffer(sio.dumps(Evil(str(marker))), dtype=np.uint8)
    sur = tmp_path / "s.npz"
    save_bundle(sur, FORMAT, FORMAT_VERSION, {}, {"__estimator__": blob})
    with pytest.raises(ModelFileError, match="refusing to load types"):
        load_surrogate(sur)
    des = tmp_path / "d.npz"
    meta = {"params": {"components": ["SiO2"], "properties": ["a"]}, "fitted": {}}
    save_bundle(des, _FORMAT, _FORMAT_VERSION, meta, {"__estimator__": blob})
    with pytest.raises(ModelFileError, match="refusing to load types"):
        PropertyModel.load(des)
    assert not marker.exists()


class Evil:
    """Building this object from its state creates the marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __setstate__(self, state):
        Path(state["marker"]).touch()


@pytest.mark.parametrize(
    "argv",
    [
        ["surrogate", "predict", "{model}", "{csv}", "--out", "{tmp}/p.csv"],
        ["design", "predict", "--model", "{model}", "--data", "{csv}", "--out", "{tmp}/p.csv"],
        ["evaluate", "{model}", "{xyz}"],
        ["train", "--train", "{xyz}", "--out", "{tmp}", "--resume", "--no-progress"],
    ],
    ids=["surrogate-predict", "design-predict", "evaluate", "train-resume"],
)
@pytest.mark.parametrize("how", ["pickle", "torch"])
def test_cli_refuses_in_one_line(tmp_path, capsys, argv, how):
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.io import write

    marker = tmp_path / "PWNED"
    model = _plant(tmp_path / "checkpoint.pt", marker, how)
    csv = tmp_path / "x.csv"
    csv.write_text("Volume,SiO2\n40,1\n")
    atoms = bulk("Cu", cubic=True)
    atoms.calc = EMT()
    atoms.get_forces()
    xyz = tmp_path / "d.xyz"
    write(xyz, [atoms, atoms])
    before = model.read_bytes()
    fill = {"model": str(model), "csv": str(csv), "xyz": str(xyz), "tmp": str(tmp_path)}
    code = main([a.format(**fill) for a in argv])
    err = capsys.readouterr().err
    assert code == 1, err
    assert err.count("\n") == 1 and err.startswith("error:") and "Traceback" not in err
    assert not marker.exists()
    assert model.read_bytes() == before


def make_emt() -> EMTCalculator:
    """A calculator factory as users write them: annotated to return a calculator."""
    return EMTCalculator()


def make_anything(**kwargs):
    """Not annotated: matloop must not call it from a name in a file."""
    raise AssertionError("called")


@pytest.mark.parametrize(
    "spec",
    [
        "subprocess:getoutput",
        "os:system",
        "builtins:exec",
        "torch:load",
        f"{__name__}:make_anything",
    ],
)
def test_config_cannot_name_an_arbitrary_function(tmp_path, capsys, monkeypatch, spec):
    """`reference.calculator: module:function` is called only for a calculator factory."""
    from ase.build import bulk
    from ase.io import write

    monkeypatch.chdir(tmp_path)
    write(tmp_path / "start.xyz", bulk("Cu", cubic=True))
    marker = tmp_path / "PWNED"
    config = tmp_path / "al.yaml"
    config.write_text(
        f"reference:\n  calculator: '{spec}'\n  settings: {{cmd: 'touch {marker}'}}\n"
        "initial:\n  structures: start.xyz\n"
    )
    for argv in (["config", "validate", str(config)], ["al", "run", str(config), "--dir", "run"]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "neither an ASE Calculator class" in err, err
    assert not marker.exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize("spec", ["ase.calculators.emt:EMT", f"{__name__}:make_emt"])
def test_calculator_classes_and_annotated_factories_still_resolve(spec):
    from matloop.calculators import resolve_calculator

    assert isinstance(resolve_calculator(spec), EMTCalculator)
