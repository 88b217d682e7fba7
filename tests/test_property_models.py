"""Crystal-graph and boosted-tree property models: learning, classes, σ, OOD, save/load."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from test_property_data import make_crystals

from matloop.errors import ConfigError, ModelFileError
from matloop.property import CrystalGraphModel, GBTBaseline, from_structures, load_model

FAST_CGCNN = {
    "atom_dim": 32,
    "hidden_dim": 48,
    "n_conv": 2,
    "epochs": 40,
    "patience": 40,
    "n_members": 2,
    "mc_samples": 3,
    "batch_size": 32,
}


@pytest.fixture(scope="module")
def crystals():
    return make_crystals(n_strain=3)


@pytest.fixture(scope="module")
def cgcnn(crystals):
    return CrystalGraphModel(target="volume_per_atom", params=FAST_CGCNN, seed=0).fit(crystals)


def _mae_vs_mean(model, data, target):
    tr = data.subset([data.ids.index(i) for i in model.train_ids_])
    te = data.subset([i for i, x in enumerate(data.ids) if x in set(model.val_ids_)])
    y = te.target(target)
    mae = np.abs(model.predict(te) - y).mean()
    return mae, np.abs(y - tr.target(target).mean()).mean()


def test_cgcnn_learns_volume_and_calibrates(cgcnn, crystals):
    mae, mae_mean = _mae_vs_mean(cgcnn, crystals, "volume_per_atom")
    assert mae < 0.5 * mae_mean  # Å³/atom on the held-out validation part
    mean, std = cgcnn.predict(crystals, return_std=True)
    assert mean.shape == std.shape == (len(crystals),) and (std > 0).all()
    assert 0.5 < cgcnn.evaluate(crystals)["coverage_95"] <= 1.0


def test_gbt_learns_emt_energy(crystals):
    model = GBTBaseline(target="energy_per_atom", params={"max_iter": 100}).fit(crystals)
    mae, mae_mean = _mae_vs_mean(model, crystals, "energy_per_atom")
    assert mae < 0.6 * mae_mean  # eV/atom
    ens = GBTBaseline(
        target="energy_per_atom", params={"max_iter": 40, "uncertainty": "ensemble", "n_members": 3}
    ).fit(crystals)
    assert (ens.predict(crystals, return_std=True)[1] > 0).all()


def test_multi_target_cgcnn(crystals):
    params = {**FAST_CGCNN, "epochs": 15, "n_members": 1, "mc_samples": 0}
    model = CrystalGraphModel(target=["energy_per_atom", "volume_per_atom"], params=params)
    mean, std = model.fit(crystals).predict(crystals, return_std=True)
    assert mean.shape == std.shape == (len(crystals), 2)
    assert set(model.evaluate(crystals)["per_target"]) == {"energy_per_atom", "volume_per_atom"}


@pytest.mark.parametrize("cls", [CrystalGraphModel, GBTBaseline])
def test_classification_of_structure_type(cls, crystals):
    params = {**FAST_CGCNN, "epochs": 30} if cls is CrystalGraphModel else {"max_iter": 60}
    model = cls(target="structure", task="classification", params=params).fit(crystals)
    proba = model.predict_proba(crystals)
    assert proba.shape == (len(crystals), 5)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-6)
    result = model.evaluate(crystals)
    assert result["roc_auc"] > 0.85 and result["accuracy"] > 0.5
    labels, std = model.predict(crystals, return_std=True)
    assert set(labels) <= set(model.classes_) and std.shape == (len(crystals),)


def test_ood_flags_out_of_family_structure(cgcnn, crystals):
    odd = [
        bulk("NaCl", "rocksalt", a=5.64),
        bulk("Si", "diamond", a=5.43),
        bulk("MgO", "rocksalt", a=4.21),
    ]
    scores = cgcnn.ood_score(from_structures(odd))
    in_family = cgcnn.ood_score(crystals.subset(range(10)))
    assert (scores > cgcnn.ood_threshold_).all()
    assert scores.min() > np.median(in_family)
    idx, dist = cgcnn.nearest(crystals.subset([0]), crystals, k=3)
    assert idx[0, 0] == 0 and dist[0, 0] < 1e-4  # a structure is its own nearest neighbour


@pytest.mark.parametrize("kind", ["cgcnn", "gbt"])
def test_save_load_round_trip(kind, cgcnn, crystals, tmp_path):
    model = cgcnn if kind == "cgcnn" else GBTBaseline("energy_per_atom", params={"max_iter": 30})
    if kind == "gbt":
        model.fit(crystals)
    model.save(tmp_path / "m")
    back = load_model(tmp_path / "m")
    a, sa = model.predict(crystals, return_std=True)
    b, sb = back.predict(crystals, return_std=True)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    np.testing.assert_allclose(sa, sb, rtol=1e-6)
    np.testing.assert_allclose(model.ood_score(crystals), back.ood_score(crystals), rtol=1e-5)
    (tmp_path / "m" / "model.json").write_text("{not json")
    with pytest.raises(ModelFileError, match="corrupted"):
        load_model(tmp_path / "m")


def test_exported_forest_matches_sklearn(crystals):
    from sklearn.ensemble import HistGradientBoostingRegressor

    from matloop.property.estimators import export_forest, forest_raw
    from matloop.property.features import descriptor_matrix

    part = crystals.subset(range(0, len(crystals), 2))
    X = descriptor_matrix(part.structures)
    X[::7, -1] = np.nan  # missing values take the learnt branch
    y = part.target("energy_per_atom")
    est = HistGradientBoostingRegressor(max_iter=40).fit(X, y)
    np.testing.assert_allclose(forest_raw(export_forest(est), X)[:, 0], est.predict(X), rtol=1e-10)


def test_bad_settings_are_one_line_errors(crystals):
    with pytest.raises(ConfigError, match="unknown split"):
        GBTBaseline("energy_per_atom", split="spacegroup").fit(crystals)
    with pytest.raises(ConfigError, match="unknown task"):
        GBTBaseline("energy_per_atom", task="ranking").fit(crystals)


def test_a_query_unlike_the_training_set_is_far_but_finite(crystals, tmp_path):
    """A feature constant over training used to divide by ~1e-8: distances of 1e15."""
    model = GBTBaseline(target="energy_per_atom", params={"max_iter": 20}).fit(crystals)
    big = from_structures([bulk("Cu", "fcc", a=3.61, cubic=True).repeat((4, 4, 4))])
    near = from_structures([bulk("Cu", "fcc", a=3.61).repeat((2, 1, 1))])
    far_d, near_d = model.nearest(big, None, 1)[1][0, 0], model.nearest(near, None, 1)[1][0, 0]
    assert near_d < far_d < 1e3
    assert model.ood_score(big)[0] > model.ood_threshold_ > model.ood_score(near)[0]
    model.save(tmp_path / "m")
    again = load_model(tmp_path / "m")
    np.testing.assert_allclose(again.nearest(big, None, 1)[1], far_d, rtol=1e-5)
