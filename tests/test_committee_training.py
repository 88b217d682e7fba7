"""train_committee / load_committee: seeds, bootstrap subsets, reuse of finished members."""

from __future__ import annotations

import json

import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT

from matloop.data import Dataset, label_with
from matloop.training import TrainConfig
from matloop.training.committee import load_committee, train_committee


def test_train_and_load_committee(tmp_path):
    data = []
    for i in range(8):
        a = bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 1, 1)
        a.rattle(0.08, seed=i)
        data.append(label_with(a, EMT()))
    ds = Dataset(data)
    cfg = TrainConfig.model_validate(
        {
            "model": {
                "family": "bpnn",
                "params": {
                    "descriptor": {
                        "cutoff": 4.0,
                        "n_radial": 6,
                        "n_angular_eta": 1,
                        "zetas": [1.0],
                    },
                    "hidden": [8],
                },
            },
            "training": {"max_epochs": 10, "num_threads": 1},
        }
    )
    paths = train_committee(ds, tmp_path / "c", cfg, n_members=2, seeds=[3, 4])
    assert len(paths) == 2 and all(p.exists() for p in paths)
    recs = [json.loads((p.parent / "member.json").read_text()) for p in paths]
    assert [r["seed"] for r in recs] == [3, 4]
    assert all(r["n_train"] == 8 and r["n_unique"] < 8 and r["n_valid"] > 0 for r in recs)
    mtimes = [p.stat().st_mtime for p in paths]
    again = train_committee(ds, tmp_path / "c", cfg, n_members=2, seeds=[3, 4])
    assert again == paths and [p.stat().st_mtime for p in paths] == mtimes  # reused
    comm = load_committee(paths)
    atoms = data[0].copy()
    atoms.calc = comm
    atoms.get_forces()
    assert comm.results["energy_std"] > 0
    assert comm.results["forces_std"].shape == (len(atoms),)
    assert np.all(comm.results["forces_std"] > 0)
    desc = comm.get_descriptors(atoms)
    assert desc.shape[0] == len(atoms)
