"""Sparse Gaussian-process potential on a SOAP-like descriptor, with predictive variance.

Atomic energies are ε(q̂) = Σ_m α_m k(q̂, x_m) with the dot-product kernel k = (q̂·x)^ζ on the
normalised descriptor of :mod:`matloop.descriptors.soap`, and per-element sparse points x_m
picked from the training atoms by farthest-point sampling (kernel distance). The total energy is
E = Σ_i ε(q̂_i) + Σ_i E0; forces and stress come from autograd through the edge vectors.

Fit (closed form, :meth:`KernelPotential.fit`): the prior ε ~ GP(0, δ² k) is approximated by the
subset of regressors / projected process (DTC) on the sparse points, so α has the prior
N(0, δ² K_mm⁻¹). Observations are per-structure interaction energies (noise σ_E·N, σ_E in
eV/atom) and force components (noise σ_F), with design rows φ_E = Σ_i k(q̂_i, X) and
φ_F = −∂φ_E/∂R (built per structure from forward-mode descriptor derivatives). Then

    A = K_mm/δ² + Σ φᵀφ/σ²,   α = A⁻¹ Σ φᵀ y/σ²,

solved by Cholesky in float64 (jitter added if needed). The DTC predictive variance of a
structure's energy is δ²(k** − φ K_mm⁻¹ φᵀ) + φ A⁻¹ φᵀ with k** = Σ_ij k(q̂_i, q̂_j): the first
term (the part of the structure the sparse points cannot represent) grows away from the
training data, the second is the uncertainty of α.

Loss weights map to noise: ``training.loss`` (energy w_E, forces w_F) scale the sigmas
relative to the defaults (1, 0.02): σ_E,eff = σ_E·√(1/w_E), σ_F,eff = σ_F·√(0.02/w_F); a weight
0 drops those rows. Stress rows are not fitted.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Any

import numpy as np
import torch
from ase import Atoms

from matloop.descriptors.soap import SOAPDescriptor
from matloop.models.base import Potential
from matloop.models.graph import AtomicGraph, atom_blocks, build_graph
from matloop.models.params import KernelParams

# centre atoms per block at inference (bounds autograd memory for large cells)
CHUNK_ATOMS = 1024
# elements of the largest temporary of the force-row construction (2M float64 = 16 MB)
_TEMP_ELEMENTS = 2_000_000
# loss weights that correspond to the params' sigmas (the TrainConfig defaults)
_REFERENCE_WEIGHTS = {"energy": 1.0, "forces": 0.02}
_FLOAT_BUFFERS = ("sparse_points", "weights", "kmm_factor", "posterior_factor", "delta")
# validation energies needed to scale σ (fewer: the GP's own σ is kept)
MIN_CALIBRATION_ENERGIES = 3
# from this many the split-conformal 95 % quantile exists: ⌈(n + 1)·0.95⌉ ≤ n
CONFORMAL_ENERGIES = 19


class KernelPotential(Potential):
    """E = Σ_i Σ_m α_m (q̂_i·x_m)^ζ (sparse points of the atom's element) + Σ_i E0."""

    family = "kernel"
    description = "SOAP-like power spectrum + sparse Gaussian process (energy variance)"
    Params = KernelParams
    custom_fit = True

    def __init__(self, elements: list[str], params: KernelParams | None = None) -> None:
        params = params or KernelParams()
        super().__init__(elements, params)
        self.descriptor = SOAPDescriptor(len(self.elements), params.descriptor)
        n_f = self.descriptor.n_features
        f64 = torch.float64
        self.register_buffer("sparse_points", torch.zeros(0, n_f, dtype=f64))
        self.register_buffer("sparse_counts", torch.zeros(len(self.elements), dtype=torch.long))
        self.register_buffer("weights", torch.zeros(0, dtype=f64))
        self.register_buffer("kmm_factor", torch.zeros(0, 0, dtype=f64))  # chol(K_mm + jitter)
        self.register_buffer("posterior_factor", torch.zeros(0, 0, dtype=f64))  # chol(A)
        self.register_buffer("delta", torch.tensor(float(params.delta), dtype=f64))
        # σ scale for 95 % coverage of validation energies (1: not calibrated)
        self.register_buffer("sigma_scale", torch.tensor(1.0, dtype=f64))

    # --- always float64 ---------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        return torch.float64

    def _apply(self, fn, recurse=True):
        """Device moves apply; dtype casts do not (the model always computes in float64)."""
        saved = [
            (module, name, buf)
            for module in self.modules()
            for name, buf in module._buffers.items()
            if buf is not None and buf.is_floating_point()
        ]
        super()._apply(fn, recurse)
        for module, name, buf in saved:
            new = module._buffers[name]
            if new is not None and new.dtype != buf.dtype:
                module._buffers[name] = buf.to(new.device)
        return self

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # files written before σ was calibrated: their σ is the GP's own
        state_dict.setdefault(prefix + "sigma_scale", torch.tensor(1.0, dtype=torch.float64))
        # sparse points and weights have data-dependent shapes: resize before copying
        for name in (*_FLOAT_BUFFERS, "sparse_counts"):
            key = prefix + name
            if key in state_dict:
                current = self._buffers[name]
                self._buffers[name] = torch.empty(
                    state_dict[key].shape, dtype=current.dtype, device=current.device
                )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def cutoff(self) -> float:
        return self.descriptor.cutoff

    @property
    def n_sparse_total(self) -> int:
        return int(self.sparse_points.shape[0])

    @property
    def is_fitted(self) -> bool:
        return self.n_sparse_total > 0

    def _blocks(self) -> list[tuple[int, int]]:
        """[start, stop) of each element's sparse points."""
        ends = torch.cumsum(self.sparse_counts, 0).tolist()
        starts = [0, *ends[:-1]]
        return list(zip(starts, ends, strict=True))

    # --- physics ---------------------------------------------------------------
    def graph(self, atoms: Atoms) -> AtomicGraph:
        return build_graph(atoms, self.elements, self.cutoff, None, dtype=torch.float64)

    def descriptors(self, graph: AtomicGraph) -> torch.Tensor:
        """q̂ per atom, shape (N, n_features), differentiable w.r.t. the edge vectors."""
        return self.descriptor(
            graph.vectors.double(), graph.centers, graph.neighbor_species, graph.n_total_atoms
        )

    def atom_features(self, graph: AtomicGraph) -> torch.Tensor:
        return self.descriptors(graph)

    def kernel_rows(self, features: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """k(q̂_i, x_m) for every atom and sparse point (0 across elements), shape (N, M)."""
        out = features.new_zeros(len(features), self.n_sparse_total)
        for k, (m0, m1) in enumerate(self._blocks()):
            idx = torch.nonzero(species == k, as_tuple=True)[0]
            if idx.numel() == 0 or m1 == m0:
                continue
            block = (features[idx] @ self.sparse_points[m0:m1].T) ** self.params.zeta
            out[idx, m0:m1] = block
        return out

    def atomic_energies(self, features: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """ε_i (eV), shape (N,)."""
        out = features.new_zeros(len(features))
        for k, (m0, m1) in enumerate(self._blocks()):
            idx = torch.nonzero(species == k, as_tuple=True)[0]
            if idx.numel() == 0 or m1 == m0:
                continue
            block = (features[idx] @ self.sparse_points[m0:m1].T) ** self.params.zeta
            out = out.index_put((idx,), block @ self.weights[m0:m1])
        return out

    def energy(self, graph: AtomicGraph) -> torch.Tensor:
        atomic = self.atomic_energies(self.descriptors(graph), graph.species)
        return atomic.new_zeros(graph.n_structures).index_add(0, graph.structure, atomic)

    def predict(
        self,
        graph: AtomicGraph,
        *,
        forces: bool = True,
        stress: bool = True,
        create_graph: bool = False,
    ) -> dict[str, torch.Tensor]:
        if create_graph or not (forces or stress):
            return super().predict(graph, forces=forces, stress=stress, create_graph=create_graph)
        # block by block of centre atoms (an atom's energy depends only on its own edges), so
        # memory stays bounded for large cells and batches
        vectors_all = graph.vectors.double()
        edge_grad = torch.zeros_like(vectors_all)
        energy = vectors_all.new_zeros(graph.n_structures)
        nbr_species = graph.neighbor_species
        with torch.enable_grad():
            for atoms, edges, centers in atom_blocks(graph, CHUNK_ATOMS):
                vectors = vectors_all[edges].detach().requires_grad_(True)
                n = atoms.stop - atoms.start
                q = self.descriptor(vectors, centers, nbr_species[edges], n)
                atomic = self.atomic_energies(q, graph.species[atoms])
                if atomic.requires_grad:
                    (edge_grad[edges],) = torch.autograd.grad(atomic.sum(), vectors)
                energy = energy.index_add(0, graph.structure[atoms], atomic.detach())
        graph = graph.to(torch.float64)
        out = {"energy": energy}
        out.update(self._outputs_from_edge_gradients(edge_grad, graph, forces, stress))
        return out

    # --- predictive variance ---------------------------------------------------------------
    @property
    def has_variance(self) -> bool:
        return self.is_fitted and self.posterior_factor.numel() > 0

    def _variance_from_rows(self, phi: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        """δ²(prior − φK⁻¹φᵀ) + φA⁻¹φᵀ for rows φ (R, M) with prior variances k** (R,)."""
        solve = torch.linalg.solve_triangular
        a = solve(self.kmm_factor, phi.T, upper=False)
        b = solve(self.posterior_factor, phi.T, upper=False)
        nystrom = torch.clamp(prior - (a * a).sum(0), min=0.0)
        return self.delta**2 * nystrom + (b * b).sum(0)

    @torch.no_grad()
    def energy_variance(
        self, graph: AtomicGraph, per_atom: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Predictive variance of each structure's energy (eV², shape (S,)).

        With `per_atom`, also the variance of each atomic energy ε_i (eV², shape (N,)).
        """
        if not self.has_variance:
            raise RuntimeError("the kernel model is not fitted: it has no variance yet")
        vectors = graph.vectors.double()
        q = torch.cat(
            [
                self.descriptor(
                    vectors[edges], centers, graph.neighbor_species[edges], a.stop - a.start
                )
                for a, edges, centers in atom_blocks(graph, CHUNK_ATOMS)
            ]
        )
        species, structure = graph.species, graph.structure
        rows = self.kernel_rows(q, species)
        phi = rows.new_zeros(graph.n_structures, rows.shape[1]).index_add(0, structure, rows)
        prior = q.new_zeros(graph.n_structures)
        for s in range(graph.n_structures):
            for k in range(len(self.elements)):
                idx = torch.nonzero((structure == s) & (species == k), as_tuple=True)[0]
                for start in range(0, len(idx), CHUNK_ATOMS):
                    part = q[idx[start : start + CHUNK_ATOMS]]
                    prior[s] += ((part @ q[idx].T) ** self.params.zeta).sum()
        scale2 = self.sigma_scale**2
        var = scale2 * self._variance_from_rows(phi, prior)
        if not per_atom:
            return var
        parts = [rows[a : a + CHUNK_ATOMS] for a in range(0, len(rows), CHUNK_ATOMS)]
        atom_var = torch.cat([self._variance_from_rows(r, r.new_ones(len(r))) for r in parts])
        return var, scale2 * atom_var

    # --- closed-form fit ---------------------------------------------------------------
    def fit(
        self,
        train_data: Any,
        valid_data: Any,
        config: Any,
        *,
        out_dir: Any = None,
        progress: bool = True,
    ) -> dict[str, Any]:
        """Sparse GP fit on energies and forces of `train_data` (E0 must already be set)."""
        from tqdm.auto import tqdm

        from matloop.data.dataset import energy_of, forces_of
        from matloop.errors import DataError

        start = time.perf_counter()
        p = self.params
        from matloop.models import family_loss

        training = getattr(config, "training", None)
        weights = family_loss(config, "kernel")
        w_e = float(getattr(weights, "energy", _REFERENCE_WEIGHTS["energy"]))
        w_f = float(getattr(weights, "forces", _REFERENCE_WEIGHTS["forces"]))
        max_time = getattr(training, "max_time", None)
        seed = int(getattr(training, "seed", 0))
        if w_e <= 0 and w_f <= 0:
            raise DataError("the kernel fit needs training.loss.energy or .forces > 0")
        sigma_e = (
            p.energy_sigma * math.sqrt(_REFERENCE_WEIGHTS["energy"] / w_e) if w_e > 0 else None
        )
        sigma_f = p.force_sigma * math.sqrt(_REFERENCE_WEIGHTS["forces"] / w_f) if w_f > 0 else None
        structures = list(train_data)
        if not structures:
            raise DataError("the training set is empty")

        # 1. descriptors of all training atoms
        graphs, feats = [], []
        for atoms in tqdm(
            structures, desc="kernel: descriptors", disable=not progress, leave=False
        ):
            g = self.graph(atoms)
            with torch.no_grad():
                feats.append(self.descriptors(g))
            graphs.append(g)
        all_q = torch.cat(feats)
        all_species = torch.cat([g.species for g in graphs])

        # 2. sparse points per element
        rng = np.random.default_rng(seed)
        points, counts = [], []
        for k in range(len(self.elements)):
            cand = all_q[all_species == k]
            m = min(p.n_sparse, len(cand))
            if m == 0:
                counts.append(0)
                continue
            if p.sparse_method == "fps":
                chosen = _farthest_points(cand, m, p.zeta, int(rng.integers(len(cand))))
            elif p.sparse_method == "cur":
                chosen = _cur_points(cand, m)
            else:
                chosen = torch.from_numpy(rng.choice(len(cand), m, replace=False))
            points.append(cand[chosen])
            counts.append(len(chosen))
        self.sparse_points = torch.cat(points).contiguous()
        self.sparse_counts = torch.tensor(counts, dtype=torch.long)
        n_sparse = self.n_sparse_total
        self.delta = torch.tensor(float(p.delta), dtype=torch.float64)
        kmm = self.kernel_rows(self.sparse_points, self._sparse_species())

        # 3. normal equations, structure by structure (energy and force parts kept apart, so
        # that other noise levels can be tried without rebuilding them)
        gram_e = torch.zeros(n_sparse, n_sparse, dtype=torch.float64)
        gram_f = torch.zeros_like(gram_e)
        rhs_e = torch.zeros(n_sparse, dtype=torch.float64)
        rhs_f = torch.zeros_like(rhs_e)
        order = rng.permutation(len(structures))
        force_budget = None if max_time is None else p.force_time_fraction * float(max_time)
        n_force_structures = n_force_rows = 0
        force_cap = (
            p.max_force_structures if p.max_force_structures is not None else len(structures)
        )
        bar = tqdm(order, desc="kernel: design rows", disable=not progress, leave=False)
        for i in bar:
            atoms, g, q = structures[i], graphs[i], feats[i]
            if sigma_e is not None:
                phi_e = self.kernel_rows(q, g.species).sum(0) / len(atoms)
                y_e = (energy_of(atoms) - self.reference_energy(atoms)) / len(atoms)
                gram_e.add_(torch.outer(phi_e, phi_e))
                rhs_e.add_(phi_e, alpha=y_e)
            f_ref = forces_of(atoms)
            use_forces = (
                sigma_f is not None
                and f_ref is not None
                and n_force_structures < force_cap
                and (force_budget is None or time.perf_counter() - start < force_budget)
            )
            if use_forces:
                phi_f = self._force_rows(g, q)  # (3N, M)
                y_f = torch.from_numpy(np.asarray(f_ref, dtype=np.float64)).reshape(-1)
                gram_f.addmm_(phi_f.T, phi_f)
                rhs_f.addmv_(phi_f.T, y_f)
                n_force_structures += 1
                n_force_rows += phi_f.shape[0]
        bar.close()
        if sigma_f is not None and n_force_structures < len(structures):
            n_with = sum(forces_of(a) is not None for a in structures)
            if n_force_structures < n_with:
                warnings.warn(
                    f"kernel fit used the forces of {n_force_structures} of {n_with} structures "
                    "(training.max_time / max_force_structures)",
                    stacklevel=2,
                )

        # 4. solve (optionally for several noise levels, keeping the best on validation data)
        eye = torch.eye(n_sparse, dtype=torch.float64)
        self.kmm_factor = _cholesky(kmm + p.jitter * eye)

        def solve(s_e: float | None, s_f: float | None):
            system = kmm / self.delta**2
            rhs = torch.zeros_like(rhs_e)
            if s_e is not None:
                system = system + gram_e / s_e**2
                rhs = rhs + rhs_e / s_e**2
            if s_f is not None and n_force_rows:
                system = system + gram_f / s_f**2
                rhs = rhs + rhs_f / s_f**2
            factor = _cholesky(system, base_jitter=p.jitter * float(system.diagonal().mean()))
            return factor, torch.cholesky_solve(rhs[:, None], factor).squeeze(1)

        selection = None
        if p.select_sigmas and valid_data is not None and len(valid_data):
            sigma_e, sigma_f, selection = self._select_sigmas(valid_data, sigma_e, sigma_f, solve)
        factor, weights = solve(sigma_e, sigma_f)
        self.posterior_factor = factor
        self.weights = weights
        self.sigma_scale = torch.tensor(1.0, dtype=torch.float64)
        calibration = self._calibrate(valid_data) if valid_data is not None else None
        return {
            "n_sparse": n_sparse,
            "n_sparse_per_element": dict(zip(self.elements, counts, strict=True)),
            "n_energy_rows": len(structures) if sigma_e is not None else 0,
            "n_force_rows": n_force_rows,
            "n_force_structures": n_force_structures,
            "energy_sigma_ev_per_atom": sigma_e,
            "force_sigma_ev_per_a": sigma_f,
            "sigma_selection": selection,
            "calibration": calibration,
            "fit_seconds": round(time.perf_counter() - start, 2),
        }

    def _calibrate(self, valid_data) -> dict[str, Any] | None:
        """Scale σ from the validation energies per atom (errors ε, GP σ's, z = ε/σ).

        The GP's own variance follows from the fixed prior scale δ and can miss the model's
        bias (in a small active-learning run 20–100 times below the errors). With at least
        CONFORMAL_ENERGIES energies the scale is the split-conformal one (95 % of |ε| within
        1.96σ); with fewer, that quantile does not exist, and σ is only widened, to the
        root-mean-square z when it exceeds 1. Below MIN_CALIBRATION_ENERGIES σ stays the
        GP's own (recorded as None).
        """
        from matloop.data.dataset import energy_of
        from matloop.models.ace.uncertainty import calibration_scale, coverage_stats

        errors, sigmas = [], []
        for atoms in valid_data:
            y = energy_of(atoms)
            if y is None or not math.isfinite(y):
                continue
            g = self.graph(atoms)
            with torch.no_grad():
                predicted = float(self.energy(g).sum()) + self.reference_energy(atoms)
            n = len(atoms)
            errors.append((predicted - y) / n)
            sigmas.append(math.sqrt(float(self.energy_variance(g)[0])) / n)
        if len(errors) < MIN_CALIBRATION_ENERGIES:
            return None
        err, sig = np.asarray(errors), np.asarray(sigmas)
        if len(err) >= CONFORMAL_ENERGIES:
            scale = calibration_scale(err, sig)
        else:
            scale = max(1.0, coverage_stats(err, sig)["ml_scale"])
        self.sigma_scale = torch.tensor(scale, dtype=torch.float64)
        return {
            "energy": {
                "scale": scale,
                "n_validation": len(err),
                "rule": "conformal" if len(err) >= CONFORMAL_ENERGIES else "widen only",
                "unscaled": coverage_stats(err, sig),
                "scaled": coverage_stats(err, scale * sig),
            }
        }

    def _select_sigmas(self, valid_data, sigma_e, sigma_f, solve):
        """Try ×{1/3, 1, 3} on each configured sigma; keep the best Σ (rmse/σ)² on `valid_data`."""
        from matloop.data.dataset import energy_of, forces_of

        rows_e, y_e, rows_f, y_f = [], [], [], []
        for atoms in valid_data:
            g = self.graph(atoms)
            with torch.no_grad():
                q = self.descriptors(g)
            n = len(atoms)
            rows_e.append(self.kernel_rows(q, g.species).sum(0) / n)
            y_e.append((energy_of(atoms) - self.reference_energy(atoms)) / n)
            f_ref = forces_of(atoms)
            if sigma_f is not None and f_ref is not None:
                rows_f.append(self._force_rows(g, q))
                y_f.append(torch.from_numpy(np.asarray(f_ref, dtype=np.float64)).reshape(-1))
        phi_e, target_e = torch.stack(rows_e), torch.tensor(y_e, dtype=torch.float64)
        phi_f = torch.cat(rows_f) if rows_f else None
        target_f = torch.cat(y_f) if y_f else None
        factors = (1 / 3, 1.0, 3.0)
        tried = []
        for fe in factors if sigma_e is not None else (None,):
            for ff in factors if sigma_f is not None else (None,):
                s_e = None if fe is None else sigma_e * fe
                s_f = None if ff is None else sigma_f * ff
                _, w = solve(s_e, s_f)
                e_rmse = float(torch.sqrt(((phi_e @ w - target_e) ** 2).mean()))
                score = (e_rmse / sigma_e) ** 2 if sigma_e is not None else 0.0
                f_rmse = None
                if phi_f is not None:
                    f_rmse = float(torch.sqrt(((phi_f @ w - target_f) ** 2).mean()))
                    score += (f_rmse / sigma_f) ** 2
                tried.append(
                    {
                        "energy_sigma": s_e,
                        "force_sigma": s_f,
                        "valid_energy_rmse_ev_per_atom": e_rmse,
                        "valid_force_rmse_ev_per_a": f_rmse,
                        "score": score,
                    }
                )
        best = min(tried, key=lambda row: row["score"])
        return best["energy_sigma"], best["force_sigma"], tried

    def _sparse_species(self) -> torch.Tensor:
        return torch.repeat_interleave(torch.arange(len(self.elements)), self.sparse_counts)

    def _force_rows(self, graph: AtomicGraph, features: torch.Tensor) -> torch.Tensor:
        """∂F/∂α: forces of each kernel column, shape (3N, M), chunked over centre atoms."""
        n_atoms = graph.n_total_atoms
        out = features.new_zeros(n_atoms, 3, self.n_sparse_total)
        blocks = self._blocks()
        vectors = graph.vectors.double()
        # small blocks of atoms keep every temporary (edges × 3 × M) below ~16 MB: large
        # short-lived tensors are mmap'ed and page-faulted afresh each time (measured: as much
        # system time as compute with whole 108-atom cells and M = 2000)
        per_atom = 3 * max(self.n_sparse_total, 1) * max(len(vectors) / max(n_atoms, 1), 1.0)
        size = int(min(CHUNK_ATOMS, max(1, _TEMP_ELEMENTS // per_atom)))
        for atoms, edges, centers in atom_blocks(graph, size):
            n = atoms.stop - atoms.start
            q, dq = self.descriptor.edge_derivatives(
                vectors[edges], centers, graph.neighbor_species[edges], n
            )  # (n, F), (E, F, 3)
            center_species = graph.species[atoms][centers]
            edge_grad = features.new_zeros(len(centers), 3, self.n_sparse_total)
            for k, (m0, m1) in enumerate(blocks):
                sel = torch.nonzero(center_species == k, as_tuple=True)[0]
                if sel.numel() == 0 or m1 == m0:
                    continue
                x = self.sparse_points[m0:m1]
                zeta = self.params.zeta
                dots = q @ x.T  # (n, M_k)
                slope = zeta * dots ** (zeta - 1)  # ∂k/∂(q̂·x)
                d_sel = dq.transpose(1, 2)[sel].reshape(-1, dq.shape[1])  # (E_k·3, F)
                proj = (d_sel @ x.T).reshape(len(sel), 3, m1 - m0)  # (E_k, 3, M_k)
                edge_grad[sel, :, m0:m1] = proj * slope[centers[sel]][:, None, :]
            # F_a = Σ_{e: centre a} ∂E/∂r_e − Σ_{e: neighbour a} ∂E/∂r_e
            out.index_add_(0, graph.centers[edges], edge_grad)
            out.index_add_(0, graph.neighbors[edges], -edge_grad)
        return out.reshape(3 * n_atoms, self.n_sparse_total)


def _farthest_points(features: torch.Tensor, m: int, zeta: int, first: int) -> torch.Tensor:
    """Indices of up to `m` rows chosen greedily to maximise the kernel distance to those chosen.

    Kernel distance² between normalised rows: 2 − 2(q̂·q̂')^ζ. Stops early when every remaining
    row duplicates a chosen one (e.g. a perfect crystal has one environment).
    """
    chosen = [first]
    dist = 2.0 - 2.0 * (features @ features[first]) ** zeta
    for _ in range(1, m):
        nxt = int(torch.argmax(dist))
        if float(dist[nxt]) <= 1e-10:
            break
        chosen.append(nxt)
        dist = torch.minimum(dist, 2.0 - 2.0 * (features @ features[nxt]) ** zeta)
    return torch.tensor(chosen, dtype=torch.long)


def _cur_points(features: torch.Tensor, m: int) -> torch.Tensor:
    """Indices of up to `m` rows with the largest leverage scores (CUR; Mahoney & Drineas 2009).

    Leverage of row i = Σ_j U_ij² over the left singular vectors of the (atoms × features)
    matrix that carry its rank; rows duplicating an already chosen one are skipped.
    """
    u, s, _ = torch.linalg.svd(features, full_matrices=False)
    rank = max(int((s > s[0] * 1e-8).sum()), 1)
    leverage = (u[:, :rank] ** 2).sum(1)
    chosen: list[int] = []
    for i in torch.argsort(leverage, descending=True).tolist():
        if chosen and float((features[chosen] @ features[i]).max()) >= 1.0 - 1e-10:
            continue  # the same environment again (rows are normalised)
        chosen.append(i)
        if len(chosen) == m:
            break
    return torch.tensor(chosen, dtype=torch.long)


def _cholesky(matrix: torch.Tensor, base_jitter: float = 0.0) -> torch.Tensor:
    """Lower Cholesky factor; adds growing jitter to the diagonal if the matrix is not PD."""
    jitter = base_jitter
    scale = float(matrix.diagonal().abs().mean()) or 1.0
    eye = torch.eye(len(matrix), dtype=matrix.dtype)
    for _ in range(12):
        factor, info = torch.linalg.cholesky_ex(matrix + jitter * eye)
        if int(info) == 0:
            return factor
        jitter = max(jitter * 10.0, 1e-12 * scale)
    raise RuntimeError("kernel fit: the system matrix is not positive definite even with jitter")
