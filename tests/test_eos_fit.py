"""matloop.eos: fits against ASE on real E(V) data (matscipy Si, EMT Cu), uncertainties, caveats."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from ase.build import bulk
from ase.eos import EquationOfState

from matloop.eos import EOSWarning, compute_eos_data, fit_eos, validate_ev_data
from matloop.eos.forms import birch_murnaghan3, birch_murnaghan4, murnaghan, vinet
from matloop.errors import ConfigError, DataError
from matloop.units import EV_PER_A3_TO_GPA


@pytest.fixture(scope="module")
def si_sw():
    return compute_eos_data(bulk("Si", "diamond", a=5.431), "sw", strain=0.06, points=11)


@pytest.fixture(scope="module")
def cu_emt():
    return compute_eos_data(bulk("Cu", "fcc", a=3.6), "emt", strain=0.08, points=11)


def _quiet_fit(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error", EOSWarning)  # clean data must not raise caveats
        return fit_eos(*args, **kwargs)


@pytest.mark.parametrize(
    "eos,ase_name", [("bm3", "birchmurnaghan"), ("vinet", "vinet"), ("murnaghan", "murnaghan")]
)
@pytest.mark.parametrize("data", ["si_sw", "cu_emt"])
def test_agrees_with_ase(request, data, eos, ase_name):
    v, e = request.getfixturevalue(data)
    res = _quiet_fit(v, e, eos)
    ref = EquationOfState(v, e, eos=ase_name)
    v0, e0, b0 = ref.fit()
    assert res.v0 == pytest.approx(v0, rel=1e-6)
    assert res.e0 == pytest.approx(e0, rel=1e-8)
    assert res.b0 == pytest.approx(b0, rel=1e-5)
    assert res.b0_prime == pytest.approx(ref.eos_parameters[2], rel=1e-4)
    assert res.rmse < 1e-4


def test_physical_values_sw_si(si_sw):
    res = _quiet_fit(*si_sw, "bm3")
    # Stillinger–Weber diamond Si: a = 5.431 Å (V = 40.05 Å³ / 2 atoms), B0 ≈ 101 GPa
    assert res.v0 == pytest.approx(5.431**3 / 4, rel=2e-3)
    assert res.b0_gpa == pytest.approx(101.4, abs=1.5)
    assert res.b0_gpa == pytest.approx(res.b0 * EV_PER_A3_TO_GPA)


@pytest.mark.parametrize(
    "eos,func,params",
    [
        ("bm3", birch_murnaghan3, (-10.8, 0.55, 4.2, 40.9)),
        ("vinet", vinet, (-10.8, 0.55, 4.2, 40.9)),
        ("murnaghan", murnaghan, (-10.8, 0.55, 4.2, 40.9)),
        ("bm4", birch_murnaghan4, (-10.8, 0.55, 4.2, -9.0, 40.9)),
    ],
)
def test_recovers_known_parameters(eos, func, params):
    v = np.linspace(36.0, 46.0, 15)
    res = _quiet_fit(v, func(v, *params), eos)
    assert res.e0 == pytest.approx(params[0], abs=1e-8)
    assert res.b0 == pytest.approx(params[1], rel=1e-5)
    assert res.b0_prime == pytest.approx(params[2], rel=1e-4)
    assert res.v0 == pytest.approx(params[-1], rel=1e-7)
    if eos == "bm4":
        assert res.b0_second == pytest.approx(params[3], rel=1e-3)


def test_bm4_derivatives_are_b0_and_b0_prime():
    """Check B = V E'' and dB/dP of the BM4 form numerically (guards the hand-derived c4)."""
    e0, b0, bp, bpp, v0 = -5.0, 0.6, 4.5, -8.0, 20.0
    h = 1e-3

    def pressure(v):
        return -(
            birch_murnaghan4(v + h, e0, b0, bp, bpp, v0)
            - birch_murnaghan4(v - h, e0, b0, bp, bpp, v0)
        ) / (2 * h)

    def bulk_mod(v):
        return -v * (pressure(v + h) - pressure(v - h)) / (2 * h)

    assert bulk_mod(v0) == pytest.approx(b0, rel=1e-5)
    dbdp = (bulk_mod(v0 + 0.01) - bulk_mod(v0 - 0.01)) / (pressure(v0 + 0.01) - pressure(v0 - 0.01))
    assert dbdp == pytest.approx(bp, rel=1e-3)


def test_polynomial_and_bm4_close_to_bm3(si_sw):
    bm3 = _quiet_fit(*si_sw, "bm3")
    for eos in ("bm4", "poly"):
        res = _quiet_fit(*si_sw, eos)
        assert res.v0 == pytest.approx(bm3.v0, rel=1e-4)
        assert res.b0_gpa == pytest.approx(bm3.b0_gpa, rel=1e-2)
    poly = _quiet_fit(*si_sw, "poly", degree=4)
    assert poly.degree == 4 and poly.b0_prime == pytest.approx(bm3.b0_prime, rel=0.05)


def test_uncertainties_cover_truth_with_noise():
    truth = (-10.8, 0.55, 4.2, 40.9)
    v = np.linspace(37.0, 45.0, 11)
    rng = np.random.default_rng(1)
    e = birch_murnaghan3(v, *truth) + rng.normal(0.0, 1e-3, v.size)
    res = fit_eos(v, e, "bm3", bootstrap=200, random_state=0)
    assert res.bootstrap["n"] == 200 and res.bootstrap["n_failed"] == 0
    for key, true in zip(("e0", "b0", "b0_prime", "v0"), truth, strict=True):
        se, bs = res.stderr[key], res.bootstrap["std"][key]
        assert se > 0 and bs > 0
        assert 0.3 < bs / se < 3.0  # two independent estimates of the same spread
        assert abs(getattr(res, key) - true) < 4 * se
        lo, hi = res.bootstrap["ci95_low"][key], res.bootstrap["ci95_high"][key]
        assert lo < getattr(res, key) < hi
    d = res.to_dict()
    assert d["uncertainties"]["b0_gpa"] == pytest.approx(res.stderr["b0"] * EV_PER_A3_TO_GPA)
    assert set(d) >= {"v0_a3", "e0_ev", "b0_gpa", "b0_prime", "rmse_ev", "bootstrap"}


def test_minimum_outside_data_warns(si_sw):
    v, e = si_sw
    with pytest.warns(EOSWarning) as record:
        res = fit_eos(v[:5], e[:5], "bm3")
    assert any("outside the data" in str(w.message) for w in record)
    assert res.v0 > v[4]
    assert any("outside the data" in w for w in res.warnings)


def test_few_points_warns_and_too_few_raise(si_sw):
    v, e = si_sw
    with pytest.warns(EOSWarning, match="only 5 points"):
        fit_eos(v[::2][:5], e[::2][:5], "bm3")
    with pytest.raises(DataError, match="3 distinct point.*4 parameters"):
        fit_eos(v[[0, 5, 10]], e[[0, 5, 10]], "bm3")
    with pytest.raises(DataError, match="5 parameters"):
        fit_eos(v[[0, 2, 5, 10]], e[[0, 2, 5, 10]], "bm4")


def test_poor_fit_warns(si_sw):
    v, e = si_sw
    rng = np.random.default_rng(3)
    noisy = e + rng.normal(0.0, 0.3 * np.ptp(e), e.size)
    with pytest.warns(EOSWarning) as record:
        fit_eos(v, noisy, "bm3")
    assert any("poor bm3 fit" in str(w.message) for w in record)


def test_duplicates_and_bad_values(si_sw):
    v, e = si_sw
    with pytest.warns(EOSWarning, match="duplicated volume"):
        vv, ee = validate_ev_data(np.r_[v, v[3]], np.r_[e, e[3]])
    assert vv.size == v.size and np.all(np.diff(vv) > 0)
    with pytest.raises(DataError, match="more than once with different energies"):
        fit_eos(np.r_[v, v[3]], np.r_[e, e[3] + 0.01])
    with pytest.raises(DataError, match="positive"):
        fit_eos(np.r_[-1.0, v], np.r_[0.0, e])
    with pytest.raises(DataError, match="non-finite"):
        fit_eos(np.r_[v, np.nan], np.r_[e, 0.0])
    with pytest.raises(DataError, match="unknown equation of state"):
        fit_eos(v, e, "sj")


def test_concave_data_is_an_error(si_sw):
    v, e = si_sw
    with pytest.raises(DataError, match="no minimum"):
        fit_eos(v, -e, "bm3")
    with pytest.raises(DataError, match="no minimum"):
        fit_eos(v, -e, "poly", degree=2)


def test_energy_curve_and_timing(si_sw):
    import time

    v, e = si_sw
    t0 = time.perf_counter()
    res = fit_eos(v, e, "bm3")
    assert time.perf_counter() - t0 < 0.5  # generous; the benchmark measures it properly
    np.testing.assert_allclose(res.energy(v), e, atol=1e-4)
    np.testing.assert_allclose(res.residuals, e - res.energy(v), atol=1e-12)


def test_compute_eos_data_volumes(cu_emt):
    atoms = bulk("Cu", "fcc", a=3.6)
    v, e = compute_eos_data(atoms, "emt", strain=0.04, points=5)
    np.testing.assert_allclose(v, atoms.get_volume() * (1 + np.linspace(-0.04, 0.04, 5)))
    from ase.calculators.emt import EMT

    a = atoms.copy()
    a.set_cell(atoms.cell * 1.04 ** (1 / 3), scale_atoms=True)
    a.calc = EMT()
    assert e[-1] == pytest.approx(a.get_potential_energy(), abs=1e-10)
    with pytest.raises(ConfigError, match="strain"):
        compute_eos_data(atoms, "emt", strain=0.9)
    with pytest.raises(ConfigError, match="unknown calculator"):
        compute_eos_data(atoms, "no-such-calculator")
