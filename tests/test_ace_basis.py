"""The ACE basis: harmonics and couplings in PACE's conventions, invariance, design rows."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special
import torch
from ase import Atoms
from ase.build import bulk
from scipy.spatial.transform import Rotation

from matloop.models.ace.angular import (
    real_spherical_harmonics,
    real_spherical_harmonics_with_gradient,
    real_to_complex,
)
from matloop.models.ace.basis import AceBasis
from matloop.models.ace.coupling import clebsch_gordan, invariant_couplings
from matloop.models.graph import build_graph, collate
from matloop.models.outputs import forces_from_edge_gradients, virials_from_edge_gradients

ELEMENTS = ["Cu", "Au"]


def _basis(order: int = 4, degree: float = 8, max_l: int = 3) -> AceBasis:
    return AceBasis(
        ELEMENTS,
        cutoff=4.5,
        n_radial=6,
        max_l=max_l,
        max_degree=[degree] * order,
        inner_cutoff=torch.full((2, 2), 1.6, dtype=torch.float64),
        core_strength=20.0,
    )


@pytest.fixture(scope="module")
def basis() -> AceBasis:
    return _basis()


def _alloy(seed: int = 1, repeat=(2, 2, 2)) -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.7) * repeat
    rng = np.random.default_rng(seed)
    atoms.symbols[rng.choice(len(atoms), len(atoms) // 3, replace=False)] = "Au"
    atoms.set_cell(atoms.cell.array @ (np.eye(3) + rng.uniform(-0.03, 0.03, (3, 3))), True)
    atoms.rattle(0.08, seed=seed)
    return atoms


def _unit_vectors(n: int, seed: int = 0) -> np.ndarray:
    u = np.random.default_rng(seed).normal(size=(n, 3))
    return u / np.linalg.norm(u, axis=1)[:, None]


def test_harmonics_are_pace_normalised_complex_harmonics():
    u = _unit_vectors(7)
    lmax = 5
    real = real_spherical_harmonics(torch.from_numpy(u), lmax).numpy()
    theta, phi = np.arccos(u[:, 2]), np.arctan2(u[:, 1], u[:, 0])
    for ell in range(lmax + 1):
        ref = np.stack(
            [scipy.special.sph_harm_y(ell, m, theta, phi) for m in range(-ell, ell + 1)], 1
        ) * np.sqrt(4 * np.pi)
        ours = real[:, ell * ell : (ell + 1) ** 2] @ real_to_complex(ell).T
        np.testing.assert_allclose(ours, ref, atol=1e-12)
    assert np.allclose(real[:, 0], 1.0)  # PACE: Y00 = 1


def test_harmonic_gradient_matches_autograd():
    vec = torch.from_numpy(_unit_vectors(5, seed=2) * 2.3).requires_grad_(True)
    r = torch.linalg.vector_norm(vec, dim=1, keepdim=True)
    y = real_spherical_harmonics(vec / r, 4)
    _, grad = real_spherical_harmonics_with_gradient((vec / r).detach(), 4)
    for k in range(y.shape[1]):
        (ref,) = torch.autograd.grad(y[:, k].sum(), vec, retain_graph=True)
        np.testing.assert_allclose((grad[:, :, k] / r.detach()).numpy(), ref.numpy(), atol=1e-12)


def test_clebsch_gordan_known_values():
    assert clebsch_gordan(1, 1, 1, -1, 0, 0) == pytest.approx(1 / np.sqrt(3))
    assert clebsch_gordan(1, 0, 1, 0, 2, 0) == pytest.approx(np.sqrt(2 / 3))
    assert clebsch_gordan(2, 1, 1, 0, 2, 1) == pytest.approx(np.sqrt(1 / 6))
    # known numbers of independent invariants
    assert invariant_couplings((2, 2, 2, 2), (0, 1, 2, 3))[0].shape[0] == 5
    assert invariant_couplings((2, 2, 2, 2), (0, 0, 0, 0))[0].shape[0] == 1
    assert invariant_couplings((1, 1, 1), (0, 1, 2))[0].shape[0] == 0  # odd Σl


def test_couplings_are_rotation_invariant_in_real_and_complex_form():
    ls = (1, 2, 3, 2)
    real, cplx = invariant_couplings(ls, (0, 1, 2, 3))
    rng = np.random.default_rng(3)
    points = rng.normal(size=(4, 5, 3))

    def values(rot):
        a_real = []
        for t, ell in enumerate(ls):
            u = points[t] @ rot.T
            u = u / np.linalg.norm(u, axis=1)[:, None]
            y = real_spherical_harmonics(torch.from_numpy(u), ell).numpy()
            a_real.append(y[:, ell * ell :].sum(0))
        a_cplx = [real_to_complex(ell) @ a for ell, a in zip(ls, a_real, strict=True)]
        r = np.einsum("kabcd,a,b,c,d->k", real, *a_real)
        c = np.einsum("kabcd,a,b,c,d->k", cplx, *a_cplx)
        return r, c

    r0, c0 = values(np.eye(3))
    r1, _ = values(Rotation.random(random_state=4).as_matrix())
    np.testing.assert_allclose(r0, r1, atol=1e-10 * np.abs(r0).max())
    np.testing.assert_allclose(c0.imag, 0, atol=1e-12 * np.abs(r0).max())
    np.testing.assert_allclose(c0.real, r0, atol=1e-12 * np.abs(r0).max())


def test_features_are_invariant(basis):
    atoms = _alloy()
    feats = basis.atom_features(build_graph(atoms, ELEMENTS, basis.cutoff))
    assert feats.shape == (len(atoms), basis.n_coefficients)
    moved = atoms.copy()
    rot = Rotation.random(random_state=5).as_matrix()
    moved.set_cell(atoms.cell.array @ rot.T, scale_atoms=True)
    moved.translate([0.3, -1.2, 0.7])
    perm = np.random.default_rng(0).permutation(len(atoms))
    moved = moved[perm]
    other = basis.atom_features(build_graph(moved, ELEMENTS, basis.cutoff))
    np.testing.assert_allclose(other.numpy(), feats[perm].numpy(), atol=1e-10)
    # only the centre element's block is non-zero
    p = basis.n_per_element
    is_au = np.array(atoms.get_chemical_symbols()) == "Au"
    assert torch.all(feats[is_au][:, :p] == 0) and torch.all(feats[~is_au][:, p:] == 0)


def test_features_are_linearly_independent():
    small = _basis(order=3, degree=7, max_l=2)
    rows = []
    for seed in range(6):
        atoms = _alloy(seed, repeat=(2, 2, 1))
        atoms.rattle(0.3, seed=seed)
        rows.append(small.atom_features(build_graph(atoms, ELEMENTS, small.cutoff)))
    feats = torch.cat(rows).numpy()
    p = small.n_per_element
    for block in (feats[:, :p], feats[:, p:]):
        used = block[np.abs(block).sum(1) > 0]
        s = np.linalg.svd(used / np.linalg.norm(used, axis=0), compute_uv=False)
        assert s[-1] / s[0] > 1e-8, (s[-1], s[0], p)


def _autograd_reference(basis: AceBasis, graph, coefficients: torch.Tensor):
    vec = graph.vectors.clone().requires_grad_(True)
    pair = basis.pair_index(graph.species, graph.centers, graph.neighbors)
    a = basis.atomic_base(
        basis.edge_basis(vec, pair), graph.centers, graph.neighbor_species, graph.n_total_atoms
    )
    atomic = basis.atomic_energies(a, graph.species, coefficients)
    energy = atomic.new_zeros(graph.n_structures).index_add(0, graph.structure, atomic)
    core = basis.core_energy(vec, pair)
    energy = energy.index_add(0, graph.structure[graph.centers], core)
    (grad,) = torch.autograd.grad(energy.sum(), vec)
    forces = forces_from_edge_gradients(grad, graph).reshape(-1)
    virial = virials_from_edge_gradients(grad, graph)[:, [0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]
    return energy.detach(), forces, virial


def test_design_rows_equal_autograd_of_energy(basis):
    atoms_list = [_alloy(1), _alloy(2, repeat=(1, 2, 2))]
    # one structure squeezed below the inner cutoff so the core repulsion contributes
    atoms_list[1].positions[1] = atoms_list[1].positions[0] + [1.2, 0.3, 0.0]
    graph = collate([build_graph(a, ELEMENTS, basis.cutoff) for a in atoms_list])
    coefficients = torch.randn(basis.n_coefficients, dtype=torch.float64, generator=None)
    rows = basis.design_rows(graph)
    energy, forces, virial = _autograd_reference(basis, graph, coefficients)
    assert rows.offset_energy[1] > 0.1  # core repulsion is on
    scale = 1 + energy.abs().max()
    np.testing.assert_allclose(
        rows.energy @ coefficients + rows.offset_energy, energy, rtol=0, atol=1e-10 * scale
    )
    f = rows.forces @ coefficients + rows.offset_forces
    np.testing.assert_allclose(f, forces, rtol=0, atol=1e-10 * (1 + forces.abs().max()))
    v = torch.einsum("skp,p->sk", rows.virial, coefficients) + rows.offset_virial
    np.testing.assert_allclose(v, virial, rtol=0, atol=1e-10 * (1 + virial.abs().max()))
    assert rows.forces.shape == (3 * graph.n_total_atoms, basis.n_coefficients)
    assert rows.virial.shape == (2, 6, basis.n_coefficients)
    # a batch gives the rows of its structures one by one
    single = basis.design_rows(build_graph(atoms_list[1], ELEMENTS, basis.cutoff))
    n0 = len(atoms_list[0])
    np.testing.assert_allclose(rows.forces[3 * n0 :], single.forces, atol=1e-12)
    np.testing.assert_allclose(rows.energy[1], single.energy[0], atol=1e-10)


def test_design_rows_over_many_blocks_equal_autograd(basis):
    """Atoms are processed in blocks: 24 + 9 + 1 atoms put block edges inside a structure,
    a block across two structures and a structure of one atom (no neighbours within 4.5 Å)."""
    lone = Atoms("Au", cell=[6.0, 6.0, 6.0], pbc=True)
    atoms_list = [_alloy(3, repeat=(2, 3, 4)), _alloy(4, repeat=(3, 3, 1)), lone]
    graph = collate([build_graph(a, ELEMENTS, basis.cutoff) for a in atoms_list])
    coefficients = torch.randn(basis.n_coefficients, dtype=torch.float64)
    rows = basis.design_rows(graph)
    energy, forces, virial = _autograd_reference(basis, graph, coefficients)
    f = rows.forces @ coefficients + rows.offset_forces
    np.testing.assert_allclose(f, forces, rtol=0, atol=1e-10 * (1 + forces.abs().max()))
    v = torch.einsum("skp,p->sk", rows.virial, coefficients) + rows.offset_virial
    np.testing.assert_allclose(v, virial, rtol=0, atol=1e-10 * (1 + virial.abs().max()))
    assert rows.forces[-3:].abs().max() == 0 and rows.virial[2].abs().max() == 0
    # forces or stresses alone give the same rows as both together
    only_f = basis.design_rows(graph, forces=True, stress=False)
    only_s = basis.design_rows(graph, forces=False, stress=True)
    assert only_f.virial is None and only_s.forces is None
    np.testing.assert_array_equal(only_f.forces, rows.forces)
    np.testing.assert_array_equal(only_s.virial, rows.virial)


def test_describe_gives_complex_couplings_of_every_coefficient(basis):
    entries = basis.describe()
    assert len(entries) == basis.n_coefficients
    ranks = {e["rank"] for e in entries}
    assert ranks == {1, 2, 3, 4}
    for e in entries[:: max(1, len(entries) // 50)]:
        assert all(sum(ms) == 0 for ms, _ in e["coupling"])
        assert len(e["mus"]) == len(e["ns"]) == len(e["ls"]) == e["rank"]
    assert {e["element"] for e in entries} == set(ELEMENTS)
