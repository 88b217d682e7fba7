"""RDF, coordination numbers and EOS on real structures and calculators."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from matloop.analysis import compute_rdf, coordination_numbers, equation_of_state
from matloop.errors import DataError


def test_rdf_first_peak_fcc_cu_at_nearest_neighbour_distance():
    a = 3.61
    cu = bulk("Cu", "fcc", a=a)  # 1-atom cell: repeated automatically for rmax = 6 Å
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(3):
        f = cu.repeat(3)
        f.positions += rng.normal(0, 0.05, f.positions.shape)
        frames.append(f)
    rdf = compute_rdf(frames, rmax=6.0, nbins=120)
    assert rdf.first_peak == pytest.approx(a / np.sqrt(2), abs=0.06)
    assert a / np.sqrt(2) < rdf.first_minimum() < a  # between first and second shells
    assert rdf.coordination_number() == pytest.approx(12.0, abs=0.3)
    assert rdf.n_frames == 3
    # g(r) tends to 1 on average at large r
    assert np.mean(rdf.g[rdf.r > 4.5]) == pytest.approx(1.0, abs=0.35)


def test_rdf_diamond_si_partial_and_coordination():
    si = bulk("Si", "diamond", a=5.43)
    rdf = compute_rdf(si, rmax=4.5, nbins=90, elements=("Si", "Si"))
    assert rdf.first_peak == pytest.approx(5.43 * np.sqrt(3) / 4, abs=0.06)
    assert rdf.coordination_number() == pytest.approx(4.0, abs=0.1)
    assert set(coordination_numbers(si.repeat(2), 2.6)) == {4}
    with pytest.raises(DataError, match="element 'Cu'"):
        compute_rdf(si, elements=("Si", "Cu"))


def test_rdf_needs_periodic_cell():
    from ase.build import molecule

    with pytest.raises(DataError, match="periodic"):
        compute_rdf(molecule("H2O"))


def test_eos_emt_cu():
    curve = equation_of_state(bulk("Cu", "fcc", a=3.6, cubic=True), EMT(), n_points=7)
    # EMT Cu: a0 ≈ 3.59 Å (V0 ≈ 11.57 Å³/atom), B0 ≈ 134 GPa
    assert curve.v0_a3_per_atom == pytest.approx(11.57, abs=0.1)
    assert curve.b0_gpa == pytest.approx(134, rel=0.05)
    assert len(curve.to_dict()["volumes_a3_per_atom"]) == 7
