"""Oxide-glass structure descriptors: values checked against textbook glass compositions."""

from __future__ import annotations

import numpy as np
import pytest

from matloop.compositions.features import GLASS_FEATURES, CompositionFeaturizer
from matloop.design.models import PropertyModel
from matloop.errors import UnknownElementError

COMPS = ["SiO2", "B2O3", "Al2O3", "Na2O", "K2O", "CaO", "PbO", "TiO2", "CaF2"]


def glass(**mol_pct) -> dict[str, float]:
    """The glass descriptors of one composition given in mol %, by name."""
    x = np.array([[mol_pct.get(c, 0.0) for c in COMPS]])
    f = CompositionFeaturizer(COMPS, stats=False, glass=True)
    values = f.transform(x)[0, len(COMPS) :]
    assert len(values) == len(GLASS_FEATURES)
    return dict(zip(GLASS_FEATURES, values, strict=True))


def test_nbo_per_tetrahedron_of_silicates_and_aluminosilicates():
    assert glass(SiO2=100)["gl_nbo_t"] == 0.0
    ns2 = glass(SiO2=200 / 3, Na2O=100 / 3)  # sodium disilicate: Q3, one NBO per Si
    assert ns2["gl_nbo_t"] == pytest.approx(1.0)
    assert glass(SiO2=50, Na2O=50)["gl_nbo_t"] == pytest.approx(2.0)  # metasilicate
    albite = glass(SiO2=75, Al2O3=12.5, Na2O=12.5)  # every Na⁺ compensates one AlO4⁻
    assert albite["gl_nbo_t"] == pytest.approx(0.0)
    assert albite["gl_al_uncompensated"] == pytest.approx(0.0)
    assert albite["gl_T_per_O"] == pytest.approx(0.5)  # fully polymerised network: T/O = ½
    peraluminous = glass(SiO2=60, Al2O3=25, CaO=15)  # 50 Al, 30 charges: 20 Al left over
    assert peraluminous["gl_al_uncompensated"] == pytest.approx(20 / 125)
    # PbO is an intermediate: no NBOs from modifiers, but the variant counting it has them
    lead = glass(SiO2=50, PbO=50)
    assert lead["gl_nbo_t"] == 0.0 and lead["gl_nbo_t_int"] == pytest.approx(2.0)
    assert lead["gl_lone_pair"] == pytest.approx(0.5)


def test_borate_anomaly_and_mixed_alkali():
    nb = glass(B2O3=80, Na2O=20)  # R = 0.25: a quarter of the boron four-coordinated
    assert nb["gl_n4"] == pytest.approx(0.25)
    assert nb["gl_borate_R"] == pytest.approx(0.25 / 1.25)
    assert nb["gl_borate_K"] == 0.0
    assert glass(SiO2=60, B2O3=20, Na2O=20)["gl_borate_K"] == pytest.approx(0.75)  # K = 3
    assert glass(SiO2=70, Na2O=30)["gl_mixed_alkali"] == 0.0
    mixed = glass(SiO2=70, Na2O=15, K2O=15)
    assert mixed["gl_mixed_alkali"] == pytest.approx(0.5)
    assert mixed["gl_alkali_share"] == 1.0
    assert glass(SiO2=70, Na2O=15, CaO=15)["gl_alkali_share"] == pytest.approx(0.5)


def test_field_strength_density_proxies_and_non_oxides():
    silica = glass(SiO2=100)
    assert silica["gl_fs_mean"] == pytest.approx(4 / 0.54**2)  # Si⁴⁺ Shannon radius 0.54 Å
    assert silica["gl_former"] == 1.0 and silica["gl_O_per_cation"] == 2.0
    assert silica["gl_mass_per_O"] == pytest.approx(60.08 / 2, rel=1e-3)
    # lead raises the mass per ionic volume far above silica's
    assert glass(SiO2=50, PbO=50)["gl_ionic_density"] > 1.5 * silica["gl_ionic_density"]
    assert glass(SiO2=80, TiO2=20)["gl_d0"] == pytest.approx(0.2)
    fluoride = glass(SiO2=80, CaF2=20)  # F⁻ counts as half an oxygen
    assert fluoride["gl_O_per_cation"] == pytest.approx((160 + 20) / 100)
    assert fluoride["gl_modifier"] == pytest.approx(0.2)


def test_featurizer_glass_option_names_scale_and_bad_formula():
    f = CompositionFeaturizer(COMPS, glass=True)
    x = np.array([[70, 0, 5, 15, 0, 10, 0, 0, 0], [0.7, 0, 0.05, 0.15, 0, 0.1, 0, 0, 0]])
    F = f.transform(x)
    assert F.shape == (2, len(f.get_feature_names_out())) and np.all(np.isfinite(F))
    np.testing.assert_allclose(F[0], F[1])  # scale invariant
    base = CompositionFeaturizer(COMPS).transform(x)
    np.testing.assert_array_equal(F[:, : base.shape[1]], base)  # an addition, nothing changed
    with pytest.raises(UnknownElementError):
        CompositionFeaturizer(["SiO2", "Xq2O"], glass=True)


def test_property_model_with_glass_features_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.dirichlet([4, 1, 1, 2, 1, 1, 1, 1, 1], 60) * 100
    f = CompositionFeaturizer(COMPS, stats=False, glass=True)
    nbo = f.transform(x)[:, f.get_feature_names_out().index("gl_nbo_t")]
    y = 800 - 150 * nbo + rng.normal(0, 2, len(x))
    model = PropertyModel(
        COMPS, ["Tg"], kind="hgb", features="glass", n_members=2, hgb_params={"max_iter": 60}
    )
    model.fit(x, y)
    assert model.get_params()["features"] == "glass"
    path = tmp_path / "m.npz"
    model.save(path)
    np.testing.assert_allclose(PropertyModel.load(path).predict(x), model.predict(x))
