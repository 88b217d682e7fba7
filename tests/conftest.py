"""Shared fixtures: small EMT Cu data and a tiny trained BPNN (trained once per session)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("MATLOOP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).parent))

TINY_BPNN_PARAMS = {
    "hidden": [16, 16],
    "descriptor": {
        "cutoff": 4.0,
        "angular_cutoff": 3.5,
        "n_radial": 8,
        "n_angular_eta": 2,
        "zetas": [1.0, 4.0],
    },
}

#: a tiny MACE (mace-torch) for tests: seconds per fit on 2 cores
TINY_MACE_PARAMS = {
    "r_max": 4.0,
    "num_bessel": 6,
    "max_ell": 1,
    "correlation": 2,
    "hidden_irreps": "8x0e+8x1o",
    "mlp_irreps": "8x0e",
    "radial_mlp": [16],
}


def tiny_train_config(max_epochs: int = 60, **training):
    """A fast BPNN training config for tests (seconds on 2 cores)."""
    from matloop.training import TrainConfig

    return TrainConfig.model_validate(
        {
            "model": {"family": "bpnn", "params": TINY_BPNN_PARAMS},
            "training": {
                "max_epochs": max_epochs,
                "batch_size": 4,
                "learning_rate": 5e-3,
                "early_stopping_patience": 40,
                **training,
            },
        }
    )


@pytest.fixture(scope="session")
def chgnet():
    """The pretrained CHGNet calculator (loaded once; skips where chgnet is not installed)."""
    import importlib.util

    if importlib.util.find_spec("chgnet") is None:
        pytest.skip("chgnet is not installed")
    from matloop.calculators import resolve_calculator

    return resolve_calculator("chgnet")


@pytest.fixture(scope="session")
def emt_cu_dataset():
    """24 rattled/strained 32-atom fcc Cu cells labelled with ASE's EMT."""
    from helpers.reference_data import emt_cu_structures

    return emt_cu_structures(24, seed=0)


@pytest.fixture(scope="session")
def emt_cu_test_dataset():
    """An independent EMT Cu set (different seed)."""
    from helpers.reference_data import emt_cu_structures

    return emt_cu_structures(8, seed=123)


@pytest.fixture(scope="session")
def tiny_cu_model(tmp_path_factory, emt_cu_dataset):
    """Path of a tiny BPNN trained on `emt_cu_dataset` (shared by tests of all modules)."""
    from matloop.training import train

    out = tmp_path_factory.mktemp("tiny_cu_model")
    result = train(emt_cu_dataset, out, tiny_train_config(), progress=False)
    return result.model_path


@pytest.fixture(autouse=True)
def _torch_load_stays_safe():
    """mace-torch sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD on import, which silently disables
    ``torch.load(weights_only=True)``; matloop isolates that import, and every test checks it."""
    yield
    assert "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" not in os.environ, "a test leaked mace's env var"
