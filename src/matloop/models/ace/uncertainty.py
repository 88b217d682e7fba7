"""Uncertainty of a linear potential from its Bayesian posterior, and the extrapolation grade.

Interface with ``family.py`` (``AcePotential``): the model holds an :class:`AcePosterior` as the
submodule ``model.posterior`` (created empty in ``__init__``, filled by
:func:`matloop.models.ace.fitting.fit_ace`; its buffers resize themselves when a saved model is
loaded), and the basis as ``model.basis`` with ``design_rows(graph, forces=, stress=)`` and
``atom_features(graph)``. Models without a ``basis`` attribute may provide those two methods
themselves.

With the posterior c ~ N(m, Σ), Σ = R Rᵀ, and the noise variance σ²_kind of one observation of
each kind (from the evidence maximisation), a quantity linear in c with design row x has the
predictive variance xᵀΣx + σ²_kind. Reported (same meaning and units as
:class:`~matloop.calculators.committee.CommitteeCalculator`):

- ``energy_std`` (eV/atom): s_E · √(φ_Sᵀ Σ φ_S / N² + σ²_E), φ_S = Σ_i φ(i) of the structure;
- ``forces_std`` (eV/Å, (N,)): per atom s_F · √(mean over x, y, z of (xᵀΣx + σ²_F));
- ``extrapolation_grade`` ((N,)): max_j |(φ(i) G)_j| with G = V A⁻¹ (Podryabinkin & Shapeev
  2017): A is the MaxVol (D-optimal) active set of training atoms' features, projected on the
  span V of the training features of that element; ≤ 1 inside the active set's parallelotope,
  > 1 is extrapolation. Computed over a sample of at most ``active_set_atoms`` training atoms
  per element, so a training atom outside that sample may still score slightly above 1.

s_E and s_F (1 unless calibrated) are set so that a new error falls inside ±1.96σ with
probability 95 % (:func:`calibration_scale`, a split-conformal quantile): s_F from the validation
force components, s_E from the validation energies pooled with the training energies'
leave-one-out (PRESS) errors (:func:`press_z`, :func:`group_press_z`), which a linear model
gives without refitting — 20–30 validation energies alone leave the scale uncertain.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import scipy.linalg
import torch

# the uncertainty results a fitted linear model offers (see MatloopCalculator)
PROPERTIES = (
    "energy_std",
    "forces_std",
    "extrapolation_grade",
    "max_extrapolation_grade",
)
NOISE_KINDS = ("energy", "forces", "stress")
_BUFFERS = ("covariance_root", "noise_variance", "sigma_scale", "grade_map")
# relative singular-value floor of the training features kept for the active set
_RANK_TOL = 1e-9


class AcePosterior(torch.nn.Module):
    """Posterior buffers of a linear potential (always float64; empty until fitted)."""

    def __init__(self) -> None:
        super().__init__()
        f64 = torch.float64
        self.register_buffer("covariance_root", torch.zeros(0, 0, dtype=f64))  # (P, K)
        self.register_buffer("noise_variance", torch.zeros(3, dtype=f64))  # energy, forces, stress
        self.register_buffer("sigma_scale", torch.ones(2, dtype=f64))  # energy, forces
        self.register_buffer("grade_map", torch.zeros(0, 0, dtype=f64))  # (P, R)

    @property
    def has_variance(self) -> bool:
        return self.covariance_root.numel() > 0

    @property
    def has_grade(self) -> bool:
        return self.grade_map.numel() > 0

    def set_posterior(self, covariance_root: np.ndarray, noise_variance: dict[str, float]) -> None:
        self.covariance_root = torch.as_tensor(covariance_root, dtype=torch.float64).contiguous()
        self.noise_variance = torch.tensor(
            [float(noise_variance.get(k, 0.0)) for k in NOISE_KINDS], dtype=torch.float64
        )
        self.sigma_scale = torch.ones(2, dtype=torch.float64)

    def _apply(self, fn, recurse=True):
        """Device moves apply; dtype casts do not (the posterior stays float64)."""
        saved = {name: buf for name, buf in self._buffers.items() if buf is not None}
        super()._apply(fn, recurse)
        for name, buf in saved.items():
            new = self._buffers[name]
            if new is not None and new.dtype != buf.dtype:
                self._buffers[name] = buf.to(new.device)
        return self

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # data-dependent shapes: resize before copying
        for name in _BUFFERS:
            key = prefix + name
            if key in state_dict:
                self._buffers[name] = torch.empty(state_dict[key].shape, dtype=torch.float64)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def posterior_of(model) -> AcePosterior | None:
    post = getattr(model, "posterior", None)
    return post if isinstance(post, AcePosterior) else None


def basis_of(model):
    """The object with ``design_rows`` / ``atom_features`` (``model.basis`` or the model)."""
    return getattr(model, "basis", model)


# --- predictive standard deviations ----------------------------------------------------------
def _row_variance(rows: torch.Tensor, root: torch.Tensor) -> torch.Tensor:
    """xᵀΣx for every row x (R, P), Σ = R Rᵀ, in blocks of rows."""
    out = []
    for start in range(0, len(rows), 2048):
        proj = rows[start : start + 2048].double() @ root
        out.append((proj * proj).sum(1))
    return torch.cat(out) if out else rows.new_zeros(0, dtype=torch.float64)


@torch.no_grad()
def predictive_std(model, graph, *, forces: bool = True) -> dict[str, np.ndarray]:
    """``energy_std`` (S,) eV/atom and, with `forces`, ``forces_std`` (N,) eV/Å (scaled)."""
    post = posterior_of(model)
    if post is None or not post.has_variance:
        raise RuntimeError("this model has no posterior: fit it first")
    graph = graph.to(torch.float64)
    design = basis_of(model).design_rows(graph, forces=forces, stress=False)
    n_atoms = design.n_atoms.double()
    root = post.covariance_root
    n_coef = design.energy.shape[1]
    noise_e, noise_f = float(post.noise_variance[0]), float(post.noise_variance[1])
    scale_e, scale_f = (float(x) for x in post.sigma_scale)
    rows_e = design.energy.double()
    if root.shape[0] > n_coef:  # E0 rows of the root: append the composition of each structure
        counts = rows_e.new_zeros(len(rows_e), root.shape[0] - n_coef)
        counts.index_put_(
            (graph.structure, graph.species),
            torch.ones(len(graph.species), dtype=torch.float64),
            accumulate=True,
        )
        rows_e = torch.cat([rows_e, counts], 1)
    var_e = _row_variance(rows_e, root) / n_atoms**2 + noise_e
    out = {"energy_std": scale_e * var_e.sqrt().numpy()}
    if forces and design.forces is not None:
        var_f = _row_variance(design.forces, root[:n_coef]).reshape(-1, 3) + noise_f
        out["forces_std"] = scale_f * var_f.mean(1).sqrt().numpy()
    return out


@torch.no_grad()
def extrapolation_grade(model, graph) -> np.ndarray:
    """Per-atom extrapolation grade (N,): ≤ 1 interpolation, > 1 extrapolation."""
    post = posterior_of(model)
    if post is None or not post.has_grade:
        raise RuntimeError("this model has no active set: fit it first")
    feats = basis_of(model).atom_features(graph.to(torch.float64)).double()
    return (feats @ post.grade_map).abs().amax(1).numpy()


def uncertainty_results(model, graph, properties: Sequence[str]) -> dict[str, object]:
    """The requested members of :data:`PROPERTIES` for a one-structure graph."""
    wanted = set(properties)
    out: dict[str, object] = {}
    if wanted & {"energy_std", "forces_std"}:
        # both at once: callers (AL explorers, validation) ask for one after the other, and the
        # energy rows come with the force rows
        std = predictive_std(model, graph, forces=True)
        out["energy_std"] = float(std["energy_std"][0])
        if "forces_std" in std:
            out["forces_std"] = std["forces_std"]
    if wanted & {"extrapolation_grade", "max_extrapolation_grade"}:
        grade = extrapolation_grade(model, graph)
        out["extrapolation_grade"] = grade
        out["max_extrapolation_grade"] = float(grade.max()) if len(grade) else 0.0
    return out


# --- calibration ------------------------------------------------------------------------
def calibration_scale(errors: np.ndarray, sigmas: np.ndarray, coverage: float = 0.95) -> float:
    """Scale s such that |error| ≤ z·s·σ (z the Gaussian quantile) for a new error with
    probability ≥ `coverage`: the split-conformal quantile, i.e. the ⌈(n + 1)·coverage⌉-th
    smallest of the n ratios |error|/σ (the plain empirical quantile is too small for small n)."""
    from statistics import NormalDist

    errors, sigmas = np.abs(np.asarray(errors, float)), np.asarray(sigmas, float)
    keep = np.isfinite(errors) & (sigmas > 0)
    if not keep.any():
        return 1.0
    ratio = np.sort(errors[keep] / sigmas[keep])
    rank = min(math.ceil((len(ratio) + 1) * coverage), len(ratio))
    z = NormalDist().inv_cdf(0.5 + coverage / 2)
    scale = float(ratio[rank - 1]) / z
    return scale if scale > 0 and math.isfinite(scale) else 1.0


def press_z(
    rows: np.ndarray,
    targets: np.ndarray,
    coefficients: np.ndarray,
    covariance_root: np.ndarray,
    noise_variance: float,
) -> np.ndarray:
    """Leave-one-out (PRESS) z-scores of training rows of a Gaussian linear model, no refits.

    With posterior N(m, Σ = R Rᵀ) and noise variance σ², leaving out a row x with residual
    r = y − xᵀm gives the residual r/(1 − h) and the predictive variance σ²/(1 − h),
    h = xᵀΣx/σ²; so z = r/√(σ² − xᵀΣx). Rows with h ≈ 1 (nothing else determines them) are
    dropped.
    """
    x = np.asarray(rows, float)
    left = noise_variance - ((x @ covariance_root) ** 2).sum(1)
    ok = left > 1e-9 * noise_variance
    return (np.asarray(targets, float) - x @ coefficients)[ok] / np.sqrt(left[ok])


def group_press_z(
    rows: np.ndarray,
    targets: np.ndarray,
    coefficients: np.ndarray,
    covariance_root: np.ndarray,
    noise_variances: np.ndarray,
) -> float:
    """PRESS z-score of the first row when the whole group of rows (a structure) is left out.

    With D = diag(σ²) of the group and M = D − XΣXᵀ, the left-out residuals are D M⁻¹ r and
    their predictive covariance D M⁻¹ D, so z₀ = (M⁻¹r)₀ / √(M⁻¹)₀₀.
    """
    x = np.asarray(rows, float)
    proj = x @ covariance_root
    m = np.diag(np.asarray(noise_variances, float)) - proj @ proj.T
    r = np.asarray(targets, float) - x @ coefficients
    e0 = np.zeros(len(r))
    e0[0] = 1.0
    try:
        chol = scipy.linalg.cho_factor(m, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        return math.nan
    a, b = scipy.linalg.cho_solve(chol, np.stack([r, e0], 1), check_finite=False).T
    return float(a[0] / math.sqrt(b[0])) if b[0] > 0 else math.nan


def coverage_stats(errors: np.ndarray, sigmas: np.ndarray) -> dict[str, float]:
    """Fraction of |error| ≤ 1.96σ, mean Gaussian NLL and the ML scale √mean(z²)."""
    errors, sigmas = np.asarray(errors, float), np.maximum(np.asarray(sigmas, float), 1e-300)
    z2 = (errors / sigmas) ** 2
    return {
        "coverage_95": float(np.mean(np.abs(errors) <= 1.96 * sigmas)),
        "nll": float(np.mean(0.5 * z2 + np.log(sigmas) + 0.5 * math.log(2 * math.pi))),
        "ml_scale": float(np.sqrt(np.mean(z2))),
        "n": int(len(errors)),
    }


# --- extrapolation grade: MaxVol active set -------------------------------------------------
def maxvol(matrix: np.ndarray, tol: float = 1.01, max_iter: int = 10_000) -> np.ndarray:
    """Row indices of an (approximately) maximum-volume r×r submatrix of `matrix` (n, r), n ≥ r.

    Goreinov et al. 2010: start from QR with column pivoting of the transpose, then swap rows
    while some coefficient |B_ij| of B = M M[I]⁻¹ exceeds `tol`.
    """
    n, r = matrix.shape
    if n < r:
        raise ValueError(f"maxvol needs at least as many rows as columns ({n} < {r})")
    _, _, piv = scipy.linalg.qr(matrix.T, pivoting=True, mode="economic")
    idx = np.array(piv[:r])
    b = scipy.linalg.solve(matrix[idx].T, matrix.T, check_finite=False).T  # (n, r)
    for _ in range(max_iter):
        i, j = np.unravel_index(np.argmax(np.abs(b)), b.shape)
        if abs(b[i, j]) <= tol:
            break
        # rank-one update of B after putting row i in place j of the active set
        row = b[i].copy()
        row[j] -= 1.0
        b -= np.outer(b[:, j], row / b[i, j])
        idx[j] = i
    return idx


class FeatureSample:
    """A bounded uniform sample (reservoir) of per-atom feature rows for each element."""

    def __init__(self, n_elements: int, capacity: int, seed: int = 0) -> None:
        self.capacity = int(capacity)
        self.rows: list[list[np.ndarray]] = [[] for _ in range(n_elements)]
        self.seen = [0] * n_elements
        self.rng = np.random.default_rng(seed)

    def add(self, features: np.ndarray, species: np.ndarray) -> None:
        for k in np.unique(species):
            for row in features[species == k]:
                self.seen[k] += 1
                bucket = self.rows[k]
                if len(bucket) < self.capacity:
                    bucket.append(row.copy())
                else:
                    slot = int(self.rng.integers(self.seen[k]))
                    if slot < self.capacity:
                        bucket[slot] = row.copy()

    def columns(self, columns: np.ndarray) -> FeatureSample:
        """A copy holding only the feature columns `columns` (a nested, smaller basis); self when
        `columns` are all of them in order."""
        width = next((len(b[0]) for b in self.rows if b), 0)
        if np.array_equal(columns, np.arange(width)):
            return self
        out = FeatureSample(len(self.rows), self.capacity)
        out.rows = [[row[columns] for row in bucket] for bucket in self.rows]
        out.seen = list(self.seen)
        return out

    def matrix(self, k: int) -> np.ndarray:
        return np.asarray(self.rows[k]) if self.rows[k] else np.zeros((0, 0))


def grade_map(sample: FeatureSample, n_params: int) -> tuple[np.ndarray, dict]:
    """G (P, R) such that grade(φ) = max |φ G|, from each element's MaxVol active set."""
    blocks, info = [], {}
    for k in range(len(sample.rows)):
        feats = sample.matrix(k)
        if len(feats) == 0:
            continue
        cols = np.flatnonzero(np.abs(feats).max(0) > 0)
        if len(cols) == 0:
            continue
        sub = feats[:, cols]
        _, s, vt = scipy.linalg.svd(sub, full_matrices=False, check_finite=False)
        rank = int(np.sum(s > _RANK_TOL * s[0]))
        v = vt[:rank].T  # (P_k, r)
        proj = sub @ v
        idx = maxvol(proj)
        g_k = np.zeros((n_params, rank))
        g_k[cols] = v @ scipy.linalg.inv(proj[idx])
        blocks.append(g_k)
        info[int(k)] = {"candidates": len(feats), "columns": len(cols), "active_set": rank}
    if not blocks:
        return np.zeros((n_params, 0)), info
    return np.concatenate(blocks, axis=1), info
