"""Bad hyper-parameters and damaged model files of the bpnn / painn / kernel families.

Each case was accepted (or failed with a traceback / "internal error") before: a cutoff shorter
than the nearest-neighbour distance trained a constant model, ζ < 1 gave NaN energies on fcc,
infinite cutoffs and huge sizes reached the allocator, and a model file's dtype / E0 / metadata
were trusted.
"""

from __future__ import annotations

import math

import pytest
import torch
from ase.build import bulk
from pydantic import ValidationError

from matloop.errors import ConfigError, ModelFileError
from matloop.models.params import BPNNParams, KernelParams, PaiNNParams
from matloop.training import TrainConfig, train


def _config(family: str, params: dict) -> TrainConfig:
    return TrainConfig.model_validate(
        {
            "model": {"family": family, "params": params},
            "training": {"max_epochs": 2, "batch_size": 4},
        }
    )


@pytest.mark.parametrize("zetas", [[-1.0], [0.5], [0.0]])
def test_bpnn_zeta_below_one_refused(zetas):
    with pytest.raises(ValidationError, match="zetas"):
        BPNNParams.model_validate({"descriptor": {"zetas": zetas}})


def test_bpnn_zeta_one_finite_on_perfect_fcc():
    """Collinear neighbours (θ = 180°) of a perfect crystal: ζ ≥ 1 stays finite."""
    from matloop.models.bpnn import BPNN

    model = BPNN(["Cu"], BPNNParams.model_validate({"descriptor": {"zetas": [1.0, 1.5]}}))
    out = model.predict(model.graph(bulk("Cu", "fcc", a=3.61) * (2, 2, 2)))
    assert all(torch.isfinite(v).all() for v in out.values())


@pytest.mark.parametrize(
    ("cls", "params"),
    [
        (BPNNParams, {"descriptor": {"cutoff": math.inf}}),
        (PaiNNParams, {"cutoff": math.inf}),
        (KernelParams, {"delta": math.inf}),
        (BPNNParams, {"hidden": [10**9]}),
        (PaiNNParams, {"features": 10**8}),
        (PaiNNParams, {"layers": 10**6}),
        (BPNNParams, {"descriptor": {"n_radial": 10**7}}),
        (BPNNParams, {"descriptor": {"radial": [[-1.0, 2.0]]}}),
        (KernelParams, {"descriptor": {"cutoff": 5.0, "r_min": 6.0}}),
    ],
)
def test_unusable_hyperparameters_refused(cls, params):
    with pytest.raises(ValidationError):
        cls.model_validate(params)


@pytest.mark.parametrize(
    ("family", "params"),
    [
        ("bpnn", {"hidden": [4], "descriptor": {"cutoff": 1.5, "n_radial": 4}}),
        ("painn", {"features": 4, "layers": 1, "cutoff": 1.0}),
        ("kernel", {"n_sparse": 10, "descriptor": {"cutoff": 2.0, "n_max": 4, "l_max": 2}}),
    ],
)
def test_cutoff_below_nearest_neighbour_refused(tmp_path, emt_cu_dataset, family, params):
    """fcc Cu (d_nn ≈ 2.55 Å) with a shorter cutoff: one clear error, no model written."""
    with pytest.raises(ConfigError, match="shorter than every interatomic distance"):
        train(emt_cu_dataset, tmp_path / family, _config(family, params), progress=False)
    assert not (tmp_path / family / "model.pt").exists()


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("dtype", "float16", "unknown dtype"),
        ("dtype", "device", "unknown dtype"),
        ("e0", {"Cu": math.nan}, "not finite"),
        ("metadata", "oops", "metadata"),
    ],
)
def test_damaged_model_fields_refused(tmp_path, key, value, message):
    from matloop.models.bpnn import BPNN
    from matloop.models.io import load_model, save_model
    from matloop.utils.safe_io import torch_load_plain

    path = save_model(BPNN(["Cu"], BPNNParams(hidden=[4])), tmp_path / "model.pt")
    payload = torch_load_plain(path)
    payload[key] = value
    torch.save(payload, path)
    with pytest.raises(ModelFileError, match=message):
        load_model(path)
