"""The linear atomic cluster expansion basis: atomic base A, product basis φ, design rows.

Conventions (all chosen so that a fitted model is exactly an ML-PACE C-tilde basis; details and
formulas in CONVENTIONS.md next to this file):

* radial base g_k(r) = PACE ``ChebExpCos`` with a ``distance`` inner cutoff, R_nl = g_n;
* harmonics: complex, Condon–Shortley, Y_00 = 1 (PACE); evaluated as real harmonics;
* A_{μnlm}(i) = Σ_{j: μ_j = μ} R_nl(r_ij) Y_lm(r̂_ij), r_ij = R_j − R_i;
* φ_p(i) = δ(μ_i, μ_0(p)) Σ_m C_p[m] Π_t A_{μ_t n_t l_t m_t}(i), ranks ν = 1..`order`
  (body order ν+1), tuples v_t = (μ_t, n_t, l_t) sorted, Σ l even, and the truncation
  Σ_t (n_t + 1 + w_l·l_t) ≤ D_ν (the per-order max degree);
* E = Σ_i [Σ_p c_p φ_p(i) + Σ_j cr(r_ij)] with the PACE core repulsion cr (not fitted).

Evaluation is vectorised over edges (R·Y) and atoms (A by scatter-add, products by a DAG of
gathers: every rank-k product of A's is a rank-(k−1) product times one A), with no per-triplet
graph. Design rows use ∂φ(i)/∂A(i) per atom and ∂A/∂r per edge.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import scipy.sparse
import torch
from torch import Tensor

from matloop.models.ace.angular import (
    harmonics_transposed,
    polynomial_harmonics,
    real_spherical_harmonics,
    real_spherical_harmonics_with_gradient,
)
from matloop.models.ace.coupling import invariant_couplings
from matloop.models.ace.radial import RadialBasis
from matloop.models.graph import AtomicGraph

VOIGT = ([0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1])
# atoms per block when building design rows (bounds ∂A/∂r of their neighbour slots and the
# block's (atoms·nA × 3·targets) columns)
_DESIGN_BLOCK_ATOMS = 16


@dataclass
class DesignRows:
    """Linear-model rows: quantity = offset + rows @ c (eV, eV/Å, eV)."""

    energy: Tensor  # (S, P)
    forces: Tensor | None  # (3N, P), atom-major x0 y0 z0 x1 ...
    virial: Tensor | None  # (S, 6, P) ∂E/∂ε, Voigt xx yy zz yz xz xy
    offset_energy: Tensor  # (S,)
    offset_forces: Tensor | None  # (3N,)
    offset_virial: Tensor | None  # (S, 6)
    n_atoms: Tensor  # (S,)


@dataclass(frozen=True)
class BasisFunction:
    """One invariant of the species-independent spec (before the centre element is chosen)."""

    mus: tuple[int, ...]
    ns: tuple[int, ...]
    ls: tuple[int, ...]
    real: np.ndarray  # coupling on real harmonics, shape (2l_1+1, ...)
    complex: np.ndarray  # same invariant on complex harmonics (what PACE's C-tilde needs)


def one_particle_degree(n: int, l: int, l_weight: float) -> float:  # noqa: E741
    return n + 1 + l_weight * l


def enumerate_functions(
    n_elements: int, n_radial: int, max_l: int, max_degree: list[float], l_weight: float
) -> list[BasisFunction]:
    """All independent invariants up to rank len(max_degree) under the degree truncation."""
    singles = [
        (mu, n, l)
        for mu in range(n_elements)
        for n in range(n_radial)
        for l in range(max_l + 1)  # noqa: E741
        if one_particle_degree(n, l, l_weight) <= max(max_degree) + 1e-9
    ]
    degree = [one_particle_degree(n, ell, l_weight) for _, n, ell in singles]
    out: list[BasisFunction] = []
    for rank, limit in enumerate(max_degree, start=1):
        for combo in _combinations(degree, rank, limit + 1e-9):
            vs = [singles[k] for k in combo]
            ls = tuple(v[2] for v in vs)
            if rank == 1 and ls[0] != 0:
                continue
            if sum(ls) % 2 or 2 * max(ls) > sum(ls):
                continue
            groups = tuple(combo.index(k) for k in combo)
            real, cplx = invariant_couplings(ls, groups)
            mus = tuple(v[0] for v in vs)
            ns = tuple(v[1] for v in vs)
            out.extend(BasisFunction(mus, ns, ls, r, c) for r, c in zip(real, cplx, strict=True))
    return out


@functools.lru_cache(maxsize=64)
def count_coefficients(
    n_elements: int, n_radial: int, max_l: int, max_degree: tuple[float, ...], l_weight: float
) -> int:
    """Coefficients P = n_el × functions per element of the basis these settings give."""
    functions = enumerate_functions(n_elements, n_radial, max_l, list(max_degree), l_weight)
    return n_elements * len(functions)


def _combinations(degree: list[float], rank: int, limit: float):
    """Non-decreasing index tuples of length `rank` with Σ degree ≤ limit."""

    def rec(start: int, left: int, budget: float):
        if left == 0:
            yield ()
            return
        for k in range(start, len(degree)):
            if degree[k] * left <= budget:
                for rest in rec(k, left - 1, budget - degree[k]):
                    yield (k, *rest)

    yield from rec(0, rank, limit)


class AceBasis(torch.nn.Module):
    """Linear ACE basis for `elements`: P = n_el × (functions per centre element) coefficients."""

    def __init__(
        self,
        elements: list[str],
        *,
        cutoff: float,
        n_radial: int,
        max_l: int,
        max_degree: list[float],
        l_weight: float = 1.5,
        radial_scale: float = 2.0,
        inner_cutoff: Tensor,
        inner_width: float = 0.2,
        core_strength: float = 0.0,
        core_decay: float = 1.0,
    ) -> None:
        super().__init__()
        self.elements = list(elements)
        self.cutoff = float(cutoff)
        self.max_l = int(max_l)
        n_el = len(self.elements)
        self.radial = RadialBasis(
            n_radial,
            cutoff,
            inner_cutoff,
            inner_width,
            scale=radial_scale,
            core_strength=core_strength,
            core_decay=core_decay,
        )
        self.functions = enumerate_functions(n_el, n_radial, max_l, max_degree, l_weight)
        self.n_per_element = len(self.functions)
        self.n_coefficients = n_el * self.n_per_element
        self.order = max((len(f.ls) for f in self.functions), default=1)
        self._build_tables()

    # --- static structure ---------------------------------------------------------------
    def _build_tables(self) -> None:
        """A columns, product-node DAG and sparse couplings C_k (P_spec × Q_k) per rank."""
        n_el = len(self.elements)
        nl = sorted({(n, ell) for f in self.functions for n, ell in zip(f.ns, f.ls, strict=True)})
        offsets, cols_n, cols_lm = {}, [], []
        for n, l in nl:  # noqa: E741
            offsets[n, l] = len(cols_n)
            cols_n.extend([n] * (2 * l + 1))
            cols_lm.extend(range(l * l, (l + 1) ** 2))
        self.n_a_element = len(cols_n)  # columns of A per neighbour element
        self.n_a = n_el * self.n_a_element
        self.register_buffer("_col_n", torch.tensor(cols_n, dtype=torch.long), persistent=False)
        self.register_buffer("_col_lm", torch.tensor(cols_lm, dtype=torch.long), persistent=False)
        # per rank: rows of sorted A indices, with the function index and coefficient
        per_rank: dict[int, list] = {}
        for p, f in enumerate(self.functions):
            idx = np.nonzero(np.abs(f.real) > 1e-14)
            base = [
                mu * self.n_a_element + offsets[n, ell]
                for mu, n, ell in zip(f.mus, f.ns, f.ls, strict=True)
            ]
            rows = np.stack([base[t] + idx[t] for t in range(len(f.ls))], axis=1)
            rows = np.sort(rows, axis=1)
            per_rank.setdefault(len(f.ls), []).append((rows, np.full(len(rows), p), f.real[idx]))
        self.order = max(per_rank, default=1)
        nodes: dict[int, np.ndarray] = {}
        for k in range(self.order, 0, -1):
            rows = [r for r, _, _ in per_rank.get(k, [])]
            if k < self.order:
                rows.append(nodes[k + 1][:, :k])
            if k == 1:
                rows.append(np.arange(self.n_a)[:, None])
            nodes[k] = np.unique(np.concatenate(rows), axis=0)
        self._nodes = nodes
        self._parents, self._lasts, self._couplings = [], [], []
        for k in range(1, self.order + 1):
            if k > 1:
                parent = _row_lookup(nodes[k - 1], nodes[k][:, :-1])
                self._parents.append(torch.from_numpy(parent))
                self._lasts.append(torch.from_numpy(nodes[k][:, -1].copy()))
            entries = per_rank.get(k, [])
            if entries:
                rows = np.concatenate([r for r, _, _ in entries])
                func = np.concatenate([q for _, q, _ in entries])
                vals = np.concatenate([v for _, _, v in entries])
                node = _row_lookup(nodes[k], rows)
                c = _sparse(
                    torch.from_numpy(np.stack([func, node])),
                    torch.from_numpy(vals),
                    (self.n_per_element, len(nodes[k])),
                ).coalesce()
            else:
                c = _sparse(
                    torch.zeros(2, 0, dtype=torch.long),
                    torch.zeros(0, dtype=torch.float64),
                    (self.n_per_element, len(nodes[k])),
                ).coalesce()
            self._couplings.append(c)
        self._cache: dict = {}
        self._static: dict = {}

    # --- evaluation -----------------------------------------------------------------------
    def edge_basis(self, vectors: Tensor, pair: Tensor) -> Tensor:
        """R_nl(r_e) Y_lm(r̂_e) for the A columns of one neighbour element, shape (E, nA_el)."""
        r = torch.linalg.vector_norm(vectors, dim=1)
        g = self.radial(r, pair)
        y = real_spherical_harmonics(vectors / r[:, None], self.max_l)
        return g[:, self._col_n] * y[:, self._col_lm]

    def pair_index(self, species: Tensor, centers: Tensor, neighbors: Tensor) -> Tensor:
        n_el = len(self.elements)
        return species[centers] * n_el + species[neighbors]

    def atomic_base(
        self, edge_values: Tensor, centers: Tensor, nbr_species: Tensor, n_atoms: int
    ) -> Tensor:
        """A (N, nA): Σ over each atom's edges into the neighbour element's column block."""
        n_el = len(self.elements)
        out = edge_values.new_zeros(n_atoms * n_el, self.n_a_element)
        out = out.index_add(0, centers * n_el + nbr_species, edge_values)
        return out.reshape(n_atoms, self.n_a)

    def products(self, a: Tensor) -> list[Tensor]:
        """[AA_1 = A, AA_2, …]: AA_k (N, Q_k) products of k A's (the DAG nodes)."""
        out = [a]
        for parent, last in zip(self._parents, self._lasts, strict=True):
            out.append(out[-1][:, parent] * a[:, last])
        return out

    def spec_features(self, a: Tensor) -> Tensor:
        """φ per atom for the species-independent spec, (N, P_spec)."""
        prods = self.products(a)
        out = a.new_zeros(a.shape[0], self.n_per_element)
        for c, aa in zip(self._couplings, prods, strict=True):
            if c._nnz():
                out = out + torch.sparse.mm(c.to(a.dtype), aa.T).T
        return out

    def _edges(self, graph: AtomicGraph, vectors: Tensor | None = None) -> tuple[Tensor, Tensor]:
        vectors = graph.vectors if vectors is None else vectors
        pair = self.pair_index(graph.species, graph.centers, graph.neighbors)
        return self.edge_basis(vectors, pair), pair

    def atom_features(self, graph: AtomicGraph) -> Tensor:
        """(N, P): row i is φ(i), zero outside atom i's element block."""
        values, _ = self._edges(graph)
        a = self.atomic_base(values, graph.centers, graph.neighbor_species, graph.n_total_atoms)
        spec = self.spec_features(a)
        return self._place(spec, graph.species)

    def _place(self, spec: Tensor, species: Tensor) -> Tensor:
        n_el = len(self.elements)
        out = spec.new_zeros(spec.shape[0], n_el, self.n_per_element)
        out[torch.arange(spec.shape[0]), species] = spec
        return out.reshape(spec.shape[0], self.n_coefficients)

    def node_weights(self, coefficients: Tensor, key: tuple | None = None) -> list[Tensor]:
        """W_k (n_el, Q_k) = c_element @ C_k: the energy as Σ_k Σ_q W_k[μ_i, q] AA_k[i, q].

        Cached under `key` (callers that own the coefficients pass one that changes whenever
        they do); without a key nothing is cached.
        """
        if key is None or self._cache.get("key") != key:
            c = coefficients.reshape(len(self.elements), self.n_per_element)
            weights = [
                torch.sparse.mm(cc.T.to(c.dtype), c.T).T.contiguous() for cc in self._couplings
            ]
            self._cache = {"key": key, "weights": weights}
        return self._cache["weights"]

    def atomic_energies(
        self, a: Tensor, species: Tensor, coefficients: Tensor, key: tuple | None = None
    ) -> Tensor:
        """ε_i = φ(i)·c (eV), (N,), without forming φ."""
        weights = self.node_weights(coefficients, key)
        single = len(self.elements) == 1
        total = a.new_zeros(a.shape[0])
        for w, aa in zip(weights, self.products(a), strict=True):
            total = total + (aa @ w[0] if single else (aa * w[species]).sum(1))
        return total

    def energy_and_gradient(
        self, a: Tensor, species: Tensor, coefficients: Tensor, key: tuple | None = None
    ) -> tuple[Tensor, Tensor]:
        """ε_i (N,) (eV) and ∂ε_i/∂A(i) (N, nA), by a hand-written reverse pass over the DAG.

        Works on the transposed layout (nodes × atoms) so that every gather and scatter moves
        contiguous rows.
        """
        weights = self.node_weights(coefficients, key)
        at = a.T.contiguous()
        single = len(self.elements) == 1
        prods, lefts, rights = [at], [], []
        for parent, last in zip(self._parents, self._lasts, strict=True):
            lefts.append(prods[-1].index_select(0, parent))
            rights.append(at.index_select(0, last))
            prods.append(lefts[-1] * rights[-1])
        if single:
            node_w = [w[0][:, None] for w in weights]
            energy = sum(w[0] @ p for w, p in zip(weights, prods, strict=True))
        else:
            node_w = [w.T[:, species] for w in weights]
            per_el = sum(w @ p for w, p in zip(weights, prods, strict=True))  # (n_el, N)
            energy = per_el.gather(0, species[None, :])[0]
        grad_a = torch.zeros_like(at)
        grad = node_w[-1].expand(prods[-1].shape)
        for k in range(len(prods) - 1, 0, -1):
            grad_a.index_add_(0, self._lasts[k - 1], grad * lefts[k - 1])
            # the level below starts from its own weights (one pass fewer than zeros + add)
            # (a fresh tensor: the single-element weights are the cached ones, broadcast)
            below = torch.empty_like(prods[k - 1]).copy_(node_w[k - 1])
            grad = below.index_add_(0, self._parents[k - 1], grad * rights[k - 1])
        grad_a += grad
        return energy, grad_a.T

    def edge_terms(self, vectors: Tensor, pair: Tensor) -> tuple[Tensor, tuple]:
        """A columns per edge (E, nA_el) and what :meth:`edge_gradient` needs."""
        r = torch.linalg.vector_norm(vectors, dim=1)
        unit = vectors / r[:, None]
        g, dg = self.radial.with_derivative(r, pair)
        y, dy = real_spherical_harmonics_with_gradient(unit, self.max_l)
        values = g[:, self._col_n] * y[:, self._col_lm]
        return values, (r, unit, g, dg, y, dy)

    def edge_gradient(self, terms: tuple, w_edge: Tensor) -> Tensor:
        """Σ_a w_a ∂(R Y)_a/∂r_e per edge (E, 3), without the (E, 3, nA) Jacobian."""
        r, unit, g, dg, y, dy = terms
        n_lm = y.shape[1]
        h = w_edge.new_zeros(len(r), n_lm).index_add_(1, self._col_lm, w_edge * g[:, self._col_n])
        hd = w_edge.new_zeros(len(r), n_lm).index_add_(1, self._col_lm, w_edge * dg[:, self._col_n])
        radial = (hd * y).sum(1)
        tangential = torch.bmm(dy, h.unsqueeze(2)).squeeze(2)
        return radial[:, None] * unit + tangential / r[:, None]

    def energy_and_edge_gradient(
        self,
        vectors: Tensor,
        centers: Tensor,
        species: Tensor,
        nbr_species: Tensor,
        coefficients: Tensor,
        key: tuple | None = None,
    ) -> tuple[Tensor, Tensor]:
        """ε_i (N,) (eV, without core repulsion) and ∂E/∂r_e (E, 3), for MD.

        `centers` must be sorted. The edges are first laid out as (atom, neighbour slot), slots
        past an atom's last neighbour holding a vector beyond the cutoff (so R = 0 there), and
        every per-edge quantity is computed in that layout: A = Σ_j R ⊗ Y and the
        back-propagation to the edges are then batched matrix products with no scatter of
        (E, K) or (E, LM) blocks.
        """
        n, n_el, k_rad = species.shape[0], len(self.elements), self.radial.n_basis
        slot, width = _padded_slots(centers, n)
        far = vectors.new_zeros(n * width, 3)
        far[:, 0] = 2.0 * self.cutoff
        vec = far.index_copy_(0, slot, vectors)
        nbr = torch.zeros(n * width, dtype=torch.long).index_copy_(0, slot, nbr_species)
        r = torch.linalg.vector_norm(vec, dim=1)
        unit = vec / r[:, None]
        pair = species.repeat_interleave(width) * n_el + nbr
        g, dg = self.radial.with_derivative(r, pair)  # (n·width, K), zero on padding slots
        y_t, dy_t = polynomial_harmonics(unit, self.max_l)  # (LM, n·width), (3, LM, n·width)
        n_lm = y_t.shape[0]
        g3, dg3 = self._species_blocks(g, nbr, n, width), self._species_blocks(dg, nbr, n, width)
        y3 = y_t.view(n_lm, n, width).transpose(0, 1)  # (n, LM, width)
        cols = self._padded_columns(n_lm)
        a = torch.bmm(y3, g3).reshape(n, -1).index_select(1, cols)  # (n, nA)
        energy, grad_a = self.energy_and_gradient(a, species, coefficients, key)
        w = a.new_zeros(n, n_lm * n_el * k_rad).index_copy_(1, cols, grad_a)
        w = w.view(n, n_lm, n_el * k_rad)
        h = torch.bmm(w, g3.transpose(1, 2))  # (n, LM, width)
        hd = torch.bmm(w, dg3.transpose(1, 2))
        radial = (hd * y3).sum(1).reshape(-1)  # (n·width,)
        full = (dy_t.view(3, n_lm, n, width) * h.transpose(0, 1)[None]).sum(1).reshape(3, -1)
        full = full.T
        tangential = full - (full * unit).sum(1, keepdim=True) * unit
        grad = radial[:, None] * unit + tangential / r[:, None]
        return energy, grad.index_select(0, slot)

    def _species_blocks(self, values: Tensor, nbr: Tensor, n: int, width: int) -> Tensor:
        """(n·width, K) per-slot radial values → (n, width, n_el·K), each slot's values in the
        block of its neighbour's element (zero elsewhere)."""
        n_el, k_rad = len(self.elements), values.shape[1]
        if n_el == 1:
            return values.view(n, width, k_rad)
        out = values.new_zeros(n * width * n_el, k_rad)
        rows = torch.arange(n * width) * n_el + nbr
        return out.index_copy_(0, rows, values).view(n, width, n_el * k_rad)

    def _padded_columns(self, n_lm: int) -> Tensor:
        """Index of each A column in the flattened (LM, n_el·K) per-atom product of
        :meth:`energy_and_edge_gradient`."""
        k_rad = self.radial.n_basis
        key = ("padded_columns", n_lm, k_rad)
        if key not in self._static:
            n_el = len(self.elements)
            per_el = self._col_lm * (n_el * k_rad) + self._col_n
            blocks = [per_el + mu * k_rad for mu in range(n_el)]
            self._static[key] = torch.cat(blocks)
        return self._static[key]

    def core_energy(self, vectors: Tensor, pair: Tensor) -> Tensor:
        """cr(r_e) per edge (eV)."""
        return self.radial.core_repulsion(torch.linalg.vector_norm(vectors, dim=1), pair)

    # --- design rows ----------------------------------------------------------------------
    def design_rows(
        self, graph: AtomicGraph, *, forces: bool = True, stress: bool = True
    ) -> DesignRows:
        """Rows of energy, forces and virial that are linear in the coefficients."""
        vec = graph.vectors
        n, s_count = graph.n_total_atoms, graph.n_structures
        pair = self.pair_index(graph.species, graph.centers, graph.neighbors)
        values = self.edge_basis(vec, pair)
        a = self.atomic_base(values, graph.centers, graph.neighbor_species, n)
        phi = self._place(self.spec_features(a), graph.species)
        energy = phi.new_zeros(s_count, self.n_coefficients).index_add(0, graph.structure, phi)
        offsets = self._core_rows(graph, pair, forces, stress)
        f_rows = v_rows = None
        if forces or stress:
            f_rows, v_rows = self._gradient_rows(graph, pair, a, forces, stress)
        return DesignRows(
            energy=energy,
            forces=f_rows,
            virial=v_rows,
            offset_energy=offsets[0],
            offset_forces=offsets[1],
            offset_virial=offsets[2],
            n_atoms=graph.n_atoms,
        )

    def _core_rows(self, graph: AtomicGraph, pair: Tensor, forces: bool, stress: bool):
        from matloop.models.outputs import forces_from_edge_gradients, virials_from_edge_gradients

        vec = graph.vectors.detach().requires_grad_(True)
        with torch.enable_grad():
            core = self.core_energy(vec, pair)
            edge_structure = graph.structure[graph.centers]
            energy = core.new_zeros(graph.n_structures).index_add(0, edge_structure, core)
            grad = (
                torch.autograd.grad(energy.sum(), vec)[0]
                if core.requires_grad
                else torch.zeros_like(vec)
            )
        f = forces_from_edge_gradients(grad, graph).reshape(-1) if forces else None
        v = virials_from_edge_gradients(grad, graph)[:, VOIGT[0], VOIGT[1]] if stress else None
        return energy.detach(), f, v

    def _jacobian_entries(self) -> list[tuple[Tensor, Tensor, Tensor]]:
        """Per rank k: (a·P_spec + p, q·k + t, C_pq) with ∂φ_p/∂A_a = Σ_(q,t) C_pq cof[q, t]."""
        if "jac" in self._static:
            return self._static["jac"]
        entries = []
        for k, c in enumerate(self._couplings, start=1):
            p, q = c.indices()
            nodes = torch.from_numpy(self._nodes[k])
            target = torch.cat([nodes[q, t] * self.n_per_element + p for t in range(k)])
            source = torch.cat([q * k + t for t in range(k)])
            entries.append((target, source, c.values().repeat(k)))
        self._static["jac"] = entries
        return entries

    def _jacobian_pattern(self) -> tuple[np.ndarray, np.ndarray, list]:
        """The structural non-zeros of ∂φ_spec/∂A, a few per function (4 % of nA × P_spec for
        the default basis), in (p, a) order: their functions p and A columns a, and per rank
        (position among them, q·k + t, C_pq)."""
        if "pattern" in self._static:
            return self._static["pattern"]
        entries = self._jacobian_entries()
        p_spec = self.n_per_element
        flat = (
            torch.unique(torch.cat([t for t, _, _ in entries]))
            if entries
            else torch.zeros(0, dtype=torch.long)
        )
        func, col = flat % p_spec, flat // p_spec
        order = torch.argsort(func * self.n_a + col)
        func, col = func[order], col[order]
        lookup = torch.full((self.n_a * p_spec,), -1, dtype=torch.long)
        lookup[col * p_spec + func] = torch.arange(len(func))
        per_rank = [(lookup[t], s, v) for t, s, v in entries]
        self._static["pattern"] = (func.numpy(), col.numpy(), per_rank)
        return self._static["pattern"]

    def _cofactors(self, a: Tensor, k: int) -> Tensor:
        """Π_{s≠t} A[a_s(q)] per node q of rank k and slot t, shape (N, Q_k·k)."""
        nodes = torch.from_numpy(self._nodes[k])
        if k == 1:
            return a.new_ones(a.shape[0], nodes.shape[0])
        f = a[:, nodes]  # (N, Q, k)
        ones = f.new_ones(f.shape[0], f.shape[1], 1)
        before = torch.cumprod(torch.cat([ones, f[:, :, :-1]], 2), 2)
        after = torch.cumprod(torch.cat([ones, f.flip(2)[:, :, :-1]], 2), 2).flip(2)
        return (before * after).reshape(a.shape[0], -1)

    def phi_jacobian_values(self, a: Tensor) -> Tensor:
        """∂φ_spec(i)/∂A(i) at the structural non-zeros of :meth:`_jacobian_pattern`, (N, nnz)."""
        funcs, _, per_rank = self._jacobian_pattern()
        out = a.new_zeros(a.shape[0], len(funcs))
        for k, (target, source, values) in enumerate(per_rank, start=1):
            if values.numel():
                out.index_add_(1, target, self._cofactors(a, k)[:, source] * values.to(a.dtype))
        return out

    def _stacked_jacobian(self, a: Tensor, species: Tensor) -> scipy.sparse.csr_matrix:
        """∂φ/∂A of a block of B atoms side by side, (n_el·P_spec × B·nA): row μ·P_spec + p,
        column b·nA + a holds ∂φ_p(b)/∂A_a(b) for an atom b of element μ, so a product with
        per-atom columns sums over the block's atoms."""
        funcs, cols, _ = self._jacobian_pattern()
        n_b = a.shape[0]
        rows = (species.numpy()[:, None] * self.n_per_element + funcs[None, :]).reshape(-1)
        columns = (np.arange(n_b)[:, None] * self.n_a + cols[None, :]).reshape(-1)
        values = self.phi_jacobian_values(a).reshape(-1).numpy()
        shape = (len(self.elements) * self.n_per_element, n_b * self.n_a)
        return scipy.sparse.csr_matrix((values, (rows, columns)), shape=shape)

    def _slot_jacobian(self, vec: Tensor, pair: Tensor, slot: Tensor, n_b: int, width: int):
        """∂A(b)/∂r_e for the edges of a block of `n_b` atoms laid out in `width` neighbour
        slots each: (n_b, nA, 3, width), zero on empty slots."""
        n_el, n_col = len(self.elements), self.n_a_element
        far = vec.new_zeros(n_b * width, 3)
        far[:, 0] = 2.0 * self.cutoff  # empty slots: beyond the cutoff, so R = dR = 0
        vec_pad = far.index_copy_(0, slot, vec)
        pair_pad = torch.zeros(n_b * width, dtype=torch.long).index_copy_(0, slot, pair)
        r = torch.linalg.vector_norm(vec_pad, dim=1)
        unit = vec_pad / r[:, None]
        g, dg = self.radial.with_derivative(r, pair_pad)  # (n_b·width, K)
        y, dy = harmonics_transposed(unit, self.max_l)  # (LM, ·), (3, LM, ·) tangential
        col_n, col_lm = self._col_n, self._col_lm
        # ∂(R_n Y_lm)/∂r = R_n' Y_lm r̂ + R_n ∇_S Y_lm / r, per (A column, slot)
        radial = (dg.T[col_n] * y[col_lm]).view(n_col, 1, n_b, width).permute(2, 0, 1, 3)
        scale = (g.T[col_n] / r).view(n_col, 1, n_b, width).permute(2, 0, 1, 3)
        dyc = dy[:, col_lm].view(3, n_col, n_b, width).permute(2, 1, 0, 3)
        jac = vec.new_empty(n_b, n_col, 3, width)
        torch.mul(dyc, scale, out=jac)
        jac.addcmul_(radial, unit.T.reshape(3, n_b, width).transpose(0, 1)[:, None])
        if n_el == 1:
            return jac
        nbr = torch.zeros(n_b * width, dtype=torch.long).index_copy_(0, slot, pair % n_el)
        mask = torch.nn.functional.one_hot(nbr, n_el).to(jac.dtype).T.reshape(n_el, n_b, 1, width)
        out = jac.new_empty(n_b, n_el, n_col, 3, width)
        for mu in range(n_el):
            torch.mul(jac, mask[mu][:, :, None], out=out[:, mu])
        return out.view(n_b, self.n_a, 3, width)

    def _gradient_rows(
        self, graph: AtomicGraph, pair: Tensor, a: Tensor, forces: bool, stress: bool
    ) -> tuple[Tensor | None, Tensor | None]:
        """Force rows (3N, P) and virial rows (S, 6, P), from ∂φ(b)/∂A(b) (sparse) and the
        ∂A(b)/∂r of each neighbour slot, per block of atoms b (:meth:`_block_rows`)."""
        n_el, p_spec = len(self.elements), self.n_per_element
        n, n_s = graph.n_total_atoms, graph.n_structures
        p_all = n_el * p_spec
        rows = {
            "forces": a.new_zeros(p_all, 3, n) if forces else None,
            "virial": a.new_zeros(p_all, 9, n_s) if stress else None,
        }
        centers_np = graph.centers.numpy()
        for a0 in range(0, n, _DESIGN_BLOCK_ATOMS):
            a1 = min(n, a0 + _DESIGN_BLOCK_ATOMS)
            e0, e1 = (int(x) for x in np.searchsorted(centers_np, [a0, a1]))
            if e1 > e0:
                self._block_rows(graph, pair, a, (a0, a1, e0, e1), rows)
        out_f = out_v = None
        if forces:
            out_f = rows["forces"].permute(2, 1, 0).reshape(3 * n, p_all)  # (atom, xyz) rows
        if stress:
            v = rows["virial"].view(p_all, 3, 3, n_s)
            v = 0.5 * (v + v.transpose(1, 2))[:, VOIGT[0], VOIGT[1]]  # (P, 6, S)
            out_v = v.permute(2, 1, 0).contiguous()
        return out_f, out_v

    def _block_rows(self, graph: AtomicGraph, pair: Tensor, a: Tensor, span: tuple, rows: dict):
        """Add the rows of the atoms a0:a1 (edges e0:e1) into `rows` (see `_gradient_rows`).

        Z[(b, a), (j, x)] = ∂A_a(b)/∂R_jx (each neighbour slot's ∂A/∂r counted at its atom j
        and, with the other sign, at b) and the virial moments Σ_slots ∂A/∂r ⊗ r per
        structure: one product of ∂φ/∂A of the block's atoms side by side (sparse) with Z sums
        over the atoms and their A columns at once, so no per-edge (E, 3, P) array is formed.
        """
        a0, a1, e0, e1 = span
        n_b, centers, nbr_atoms = a1 - a0, graph.centers[e0:e1], graph.neighbors[e0:e1]
        slot, width = _padded_slots(centers - a0, n_b)
        d = self._slot_jacobian(graph.vectors[e0:e1], pair[e0:e1], slot, n_b, width)
        d_rows = d.view(n_b, self.n_a * 3, width)
        parts, columns = [], []
        if rows["forces"] is not None:
            atoms, where = torch.unique(
                torch.cat([torch.arange(a0, a1), nbr_atoms]), return_inverse=True
            )
            # r_e = R_j − R_b: a slot counts +1 at b and −1 at its neighbour j (rows are −∂E/∂R);
            # a slot holding an image of b itself cancels
            move = d.new_zeros(n_b * width, len(atoms))
            move[slot, where[slot // width]] += 1.0
            move[slot, where[n_b:]] -= 1.0
            parts.append(torch.bmm(d_rows, move.view(n_b, width, -1)).view(n_b * self.n_a, -1))
            columns.append(("forces", 3, atoms))
        if rows["virial"] is not None:
            vec_pad = d.new_zeros(n_b * width, 3).index_copy(0, slot, graph.vectors[e0:e1])
            moments = torch.bmm(d_rows, vec_pad.view(n_b, width, 3)).view(n_b, self.n_a, 9)
            structures, where = torch.unique(graph.structure[a0:a1], return_inverse=True)
            per = moments.new_zeros(n_b, self.n_a, 9, len(structures))
            per[torch.arange(n_b), :, :, where] = moments
            parts.append(per.view(n_b * self.n_a, -1))
            columns.append(("virial", 9, structures))
        jac = self._stacked_jacobian(a[a0:a1], graph.species[a0:a1])
        prod = torch.from_numpy(jac @ torch.cat(parts, 1).numpy())
        start = 0
        for name, k, index in columns:
            block = prod[:, start : start + k * len(index)].view(len(prod), k, len(index))
            rows[name].index_add_(2, index, block)
            start += k * len(index)

    # --- description for exporters --------------------------------------------------------
    def describe(self) -> list[dict]:
        """Per coefficient: element, mu0, rank, mus, ns (0-based), ls, coupling [(ms, value)]."""
        out = []
        for mu0, element in enumerate(self.elements):
            for f in self.functions:
                idx = np.nonzero(np.abs(f.complex) > 1e-14)
                ms = np.stack([i - l for i, l in zip(idx, f.ls, strict=True)], axis=1)  # noqa: E741
                coupling = [
                    (tuple(int(m) for m in row), float(v))
                    for row, v in zip(ms, f.complex[idx].real, strict=True)
                ]
                out.append(
                    {
                        "element": element,
                        "mu0": mu0,
                        "rank": len(f.ls),
                        "mus": list(f.mus),
                        "ns": list(f.ns),
                        "ls": list(f.ls),
                        "coupling": coupling,
                    }
                )
        return out


def _function_keys(basis: AceBasis) -> list[tuple]:
    """(mus, ns, ls, k) per function of the spec: k numbers the couplings of equal (mus, ns, ls)."""
    seen: dict[tuple, int] = {}
    keys = []
    for f in basis.functions:
        base = (f.mus, f.ns, f.ls)
        keys.append((*base, seen.get(base, 0)))
        seen[base] = seen.get(base, 0) + 1
    return keys


def nested_columns(small: AceBasis, large: AceBasis) -> np.ndarray:
    """Coefficient index in `large` of every coefficient of `small` (P_small,).

    A basis truncated at a lower degree, order or l (same elements, radial functions and
    cutoffs) is a subset of the larger one, so its design rows are columns of the larger
    one's; raises ValueError when `small` is not such a subset.
    """
    same = (small.elements, small.cutoff, small.radial.scale) == (
        large.elements,
        large.cutoff,
        large.radial.scale,
    ) and torch.equal(small.radial.inner_cutoff, large.radial.inner_cutoff)
    if not same:
        raise ValueError("bases with different elements, cutoffs or radial scale are not nested")
    index = {key: j for j, key in enumerate(_function_keys(large))}
    try:
        spec = np.array([index[key] for key in _function_keys(small)], dtype=np.int64)
    except KeyError as exc:
        raise ValueError(f"basis function {exc.args[0]} is not in the larger basis") from None
    per = large.n_per_element
    return np.concatenate([mu0 * per + spec for mu0 in range(len(small.elements))])


def _padded_slots(centers: Tensor, n_atoms: int) -> tuple[Tensor, int]:
    """Slot of each edge in an (atom, neighbour) layout of `width` slots per atom, and width
    (`centers` sorted)."""
    first = torch.searchsorted(centers, torch.arange(n_atoms, device=centers.device))
    pos = torch.arange(len(centers)) - first[centers]
    width = int(pos.max()) + 1 if len(pos) else 1
    return centers * width + pos, width


def _sparse(indices: Tensor, values: Tensor, shape: tuple[int, int]) -> Tensor:
    """COO tensor from indices built here (known valid; skips torch's invariant checks)."""
    return torch.sparse_coo_tensor(indices, values, shape, check_invariants=False)


def _row_lookup(table: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Index of each row of `rows` in the lexicographically sorted unique `table`."""
    base = int(max(table.max(initial=0), rows.max(initial=0))) + 1
    weights = base ** np.arange(table.shape[1] - 1, -1, -1, dtype=np.int64)
    keys = table.astype(np.int64) @ weights
    found = np.searchsorted(keys, rows.astype(np.int64) @ weights)
    return found.astype(np.int64)


__all__ = ["AceBasis", "BasisFunction", "DesignRows", "enumerate_functions"]
