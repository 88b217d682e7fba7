"""Numerical review of matloop.analysis against neighbour lists, ASE and known lattices."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.emt import EMT

from matloop.analysis import (
    compute_rdf,
    coordination_numbers,
    diffusion_from_trajectory,
    equation_of_state,
    mean_squared_displacement,
    msd_fft,
)


def _hot_fcc(sigma: float, seed: int, n_frames: int = 1) -> list[Atoms]:
    """108-atom Cu frames with Gaussian displacements of `sigma` Å per component."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n_frames):
        f = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(3)
        f.positions += rng.normal(0.0, sigma, f.positions.shape)
        frames.append(f)
    return frames


def _mean_neighbours(frames: list[Atoms], cutoff: float) -> float:
    return float(np.mean([coordination_numbers(f, cutoff).mean() for f in frames]))


# ---------------------------------------------------------------- RDF and coordination


@pytest.mark.parametrize(
    ("atoms", "expected"),
    [
        (bulk("Cu", "fcc", a=3.61), 12),
        (bulk("Fe", "bcc", a=2.87), 8),
        (bulk("Si", "diamond", a=5.43), 4),
        (bulk("NaCl", "rocksalt", a=5.64), 6),
    ],
)
def test_perfect_lattice_coordination_is_exact(atoms, expected):
    # the integral of g uses ASE's exact shell volumes, not 4πr²dr (was 11.9996 for fcc)
    rdf = compute_rdf(atoms, rmax=6.0, nbins=120)
    assert rdf.coordination_number() == pytest.approx(expected, abs=1e-6)


def test_partial_rdf_coordination_two_species_unequal_counts():
    # L1₂ Cu₃Au: Au has 12 Cu neighbours, Cu has 4 Au and 8 Cu
    a = 3.75
    l12 = Atoms(
        "AuCu3",
        scaled_positions=[[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
        cell=[a] * 3,
        pbc=True,
    )
    expected = {("Au", "Cu"): 12, ("Cu", "Au"): 4, ("Cu", "Cu"): 8, ("Au", "Au"): 0}
    for pair, n in expected.items():
        rdf = compute_rdf(l12, rmax=5.0, nbins=100, elements=pair)
        assert rdf.coordination_number(3.0) == pytest.approx(n, abs=1e-6), pair


def test_ideal_gas_rdf_tends_to_one():
    rng = np.random.default_rng(0)
    n, box = 1500, 25.0
    gas = Atoms(f"Ar{n}", positions=rng.uniform(0, box, (n, 3)), cell=[box] * 3, pbc=True)
    rdf = compute_rdf(gas, rmax=10.0, nbins=50)
    assert np.mean(rdf.g[rdf.r > 2]) == pytest.approx(1.0, abs=0.02)
    # n(r) = ρ·(4/3)πr³ (ideal gas), up to (N − 1)/N and counting noise
    assert rdf.coordination_number(8.0) == pytest.approx(
        n / box**3 * 4 / 3 * np.pi * 8**3, rel=0.02
    )


def test_coordination_number_matches_neighbour_list_inside_a_bin():
    # cutoffs at bin centres: the old code counted the whole bin (up to cutoff + dr/2)
    # (off by 0.35–0.64 neighbours here); exact at bin edges, interpolated inside a bin
    frames = _hot_fcc(0.15, seed=3, n_frames=2)
    rdf = compute_rdf(frames, rmax=5.0, nbins=100)  # dr = 0.05 Å
    for cutoff in (2.325, 2.475, 2.725):
        assert rdf.coordination_number(cutoff) == pytest.approx(
            _mean_neighbours(frames, cutoff), abs=0.15
        ), cutoff
    for edge in (2.5, 2.8, 3.3):
        assert rdf.coordination_number(edge) == pytest.approx(
            _mean_neighbours(frames, edge), abs=1e-9
        ), edge
    n = rdf.running_coordination()
    k = int(np.searchsorted(rdf.r, 2.475))
    assert n[k] == pytest.approx(_mean_neighbours(frames, rdf.r[k]), abs=0.15)


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_first_minimum_not_fooled_by_noise_in_a_single_hot_frame(seed):
    # one 108-atom frame, default bins: the old search stopped at noise on the peak's flank
    # (e.g. 2.625 Å, coordination 6.6 instead of ≈ 12)
    frames = _hot_fcc(0.2, seed=seed)
    rdf = compute_rdf(frames, rmax=5.0, nbins=100)
    assert 2.9 < rdf.first_minimum() < 3.5
    assert rdf.coordination_number() == pytest.approx(12.0, abs=1.0)
    assert rdf.coordination_number() == pytest.approx(
        _mean_neighbours(frames, rdf.first_minimum()), abs=0.05
    )


def test_hcp_and_bcc_shells_still_resolved():
    hcp = compute_rdf(bulk("Mg", "hcp", a=3.21, c=5.21), rmax=6.0, nbins=120)
    assert hcp.coordination_number() == pytest.approx(12, abs=1e-6)
    rng = np.random.default_rng(1)
    frames = []
    for _ in range(3):
        f = bulk("Fe", "bcc", a=2.87, cubic=True).repeat(4)
        f.positions += rng.normal(0.0, 0.05, f.positions.shape)
        frames.append(f)
    bcc = compute_rdf(frames, rmax=5.5, nbins=110)
    assert 2.55 < bcc.first_minimum() < 2.8
    assert bcc.coordination_number() == pytest.approx(8.0, abs=0.2)


def test_skewed_cell_of_same_lattice_gives_same_rdf():
    # a heavily sheared (triclinic) basis of the same fcc lattice; heights < rmax
    prim = bulk("Cu", "fcc", a=3.61)
    c = np.array(prim.cell)
    skew = prim.copy()
    skew.set_cell([c[0], c[1] + 2 * c[0], c[2] + c[1] - c[0]], scale_atoms=False)
    r0 = compute_rdf(prim, rmax=6.0, nbins=60)
    r1 = compute_rdf(skew, rmax=6.0, nbins=60)
    np.testing.assert_allclose(r1.g, r0.g, atol=1e-10)


def test_rdf_matches_ase_analysis_over_frames():
    from ase.geometry.analysis import Analysis

    frames = _hot_fcc(0.1, seed=7, n_frames=2)
    rdf = compute_rdf(frames, rmax=5.0, nbins=50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        ref = np.mean(Analysis(frames).get_rdf(5.0, 50), axis=0)
    np.testing.assert_allclose(rdf.g, ref, atol=1e-12)


# ---------------------------------------------------------------- MSD and diffusion


def test_msd_through_triclinic_boundaries_equals_direct_average():
    rng = np.random.default_rng(0)
    cell = np.array([[6.0, 0, 0], [4.5, 5.0, 0], [3.0, -2.5, 5.5]])
    x = np.cumsum(rng.normal(0, 0.2, (200, 20, 3)), axis=0)
    frames = []
    for p in x:
        a = Atoms("Ar20", positions=p, cell=cell, pbc=True)
        a.wrap()
        frames.append(a)
    msd = mean_squared_displacement(frames, remove_com=False)
    np.testing.assert_allclose(msd, msd_fft(x), atol=1e-9)


def test_slab_with_zero_cell_vector_keeps_the_jump_check():
    # 2-D periodic cell with a zero third vector: heights were 0/0 (RuntimeWarnings, no check)
    rng = np.random.default_rng(0)
    cell = [6.0, 6.0, 0.0]

    def frames(step):
        x = np.cumsum(rng.normal(0, step, (20, 8, 3)), axis=0) + 3.0
        out = []
        for p in x:
            a = Atoms("Ar8", positions=p, cell=cell, pbc=[True, True, False])
            a.wrap()
            out.append(a)
        return out

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mean_squared_displacement(frames(0.05))
    with pytest.warns(UserWarning, match="cell's width"):
        mean_squared_displacement(frames(1.5))


def test_diffusion_units_agree_with_ase_diffusion_coefficient():
    from ase.md.analysis import DiffusionCoefficient

    sigma, dt_ps = 0.1, 0.01  # Å per component per frame, ps between frames
    rng = np.random.default_rng(2)
    x = np.cumsum(rng.normal(0, sigma, (400, 100, 3)), axis=0) + 5.0
    frames = [Atoms("Ar100", positions=p, cell=[10.0] * 3, pbc=True) for p in x]
    times = np.arange(len(frames)) * dt_ps
    ours = diffusion_from_trajectory(frames, times)
    exact = sigma**2 / (2 * dt_ps)  # Å²/ps, Einstein 3-D: MSD = 6 D t
    assert ours.d_a2_per_ps == pytest.approx(exact, rel=0.05)
    assert ours.d_cm2_per_s == pytest.approx(exact * 1e-4, rel=0.05)
    ase_dc = DiffusionCoefficient(frames, dt_ps * 1000 * units.fs)
    ase_dc.calculate(ignore_n_images=0, number_of_segments=4)
    d_ase = ase_dc.get_diffusion_coefficients()[0][0] * 1000 * units.fs  # → Å²/ps
    assert ours.d_a2_per_ps == pytest.approx(d_ase, rel=0.1)


# ---------------------------------------------------------------- EOS


def test_eos_matches_ase_equation_of_state_on_same_points():
    from ase.eos import EquationOfState

    cu = bulk("Cu", "fcc", a=3.6, cubic=True)
    curve = equation_of_state(cu, EMT(), n_points=9)
    v0, e0, b = EquationOfState(
        curve.volumes_a3_per_atom, curve.energies_ev_per_atom, eos="birchmurnaghan"
    ).fit()
    assert curve.v0_a3_per_atom == pytest.approx(v0, rel=1e-9)
    assert curve.b0_gpa == pytest.approx(b * 160.21766208, rel=1e-9)
