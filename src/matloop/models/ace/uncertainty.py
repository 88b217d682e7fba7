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
- ``extrapolation_grade`` ((N,)): ≤ 1 where the training atoms of that element cover the atom,
  > 1 is extrapolation. Two rules, chosen per element at the fit (:func:`grade_map`):

  * ``maxvol``: max_j |(φ(i) G)_j| with G = V A⁻¹ (Podryabinkin & Shapeev 2017): A is the
    MaxVol (D-optimal) active set of training atoms' features, projected on the span V of the
    training features of that element; ≤ 1 inside the active set's parallelotope. Computed over
    a sample of at most ``active_set_atoms`` training atoms per element, so a training atom
    outside that sample may still score slightly above 1. Used only where the active set is
    well determined: at least :data:`MIN_CANDIDATES_PER_ROW` sampled atoms per active-set row.
  * ``sigma``: σ_F(i) / max of σ_F over the validation (and training) atoms of the element,
    σ_F the epistemic (noise-free, unscaled) force std of the atom, √(mean over x, y, z of
    xᵀΣx). With about as many atoms as the rank of the features the active set is every
    sampled atom, A is nearly singular and the MaxVol grade of ordinary held-out atoms reaches
    10²–10³ (measured: EMT Cu–Au, 974 atoms, P = 3006); the posterior σ is defined however
    little data there is. The validation atoms set the scale (fitted atoms' own σ is far
    lower): an element without any gets no grade.

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
_BUFFERS = ("covariance_root", "noise_variance", "sigma_scale", "grade_map", "grade_reference")
# relative singular-value floor of the training features kept for the active set
_RANK_TOL = 1e-9
#: sampled training atoms per active-set row below which an element's MaxVol active set is not
#: trusted (its grade uses the ``sigma`` rule). Measured (default basis): EMT Cu–Au, 1.1 atoms
#: per row: held-out atoms of the training distribution grade 30–500; mlearn Cu, 10.7 per row
#: (5000 sampled, rank 467): held-out test frames up to 11 (39 % above 1), while their sigma-rule
#: grade stays ≤ 0.91. With the default 5000 sampled atoms this leaves MaxVol to bases of rank
#: ≤ 250 per element
MIN_CANDIDATES_PER_ROW = 20


class AcePosterior(torch.nn.Module):
    """Posterior buffers of a linear potential (always float64; empty until fitted)."""

    def __init__(self) -> None:
        super().__init__()
        f64 = torch.float64
        self.register_buffer("covariance_root", torch.zeros(0, 0, dtype=f64))  # (P, K)
        self.register_buffer("noise_variance", torch.zeros(3, dtype=f64))  # energy, forces, stress
        self.register_buffer("sigma_scale", torch.ones(2, dtype=f64))  # energy, forces
        self.register_buffer("grade_map", torch.zeros(0, 0, dtype=f64))  # (P, R)
        # (n_elements,) eV/Å: largest epistemic force std of the validation and training atoms
        # of each element graded by the sigma rule; 0 for the others
        self.register_buffer("grade_reference", torch.zeros(0, dtype=f64))

    @property
    def has_variance(self) -> bool:
        return self.covariance_root.numel() > 0

    @property
    def has_grade(self) -> bool:
        return self.grade_map.numel() > 0 or self.has_sigma_grade

    @property
    def has_sigma_grade(self) -> bool:
        """True when some element's grade is the σ ratio (its grade needs the force rows)."""
        return bool((self.grade_reference > 0).any())

    def grade_rule(self) -> str | None:
        """``"maxvol"``, ``"sigma"``, ``"mixed"`` (per element) or None (no grade)."""
        if not self.has_grade:
            return None
        if not self.has_sigma_grade:
            return "maxvol"
        return "mixed" if self.grade_map.numel() > 0 else "sigma"

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

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, *args, **kwargs
    ):
        # data-dependent shapes: resize before copying
        for name in _BUFFERS:
            key = prefix + name
            if key in state_dict:
                self._buffers[name] = torch.empty(state_dict[key].shape, dtype=torch.float64)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, *args, **kwargs
        )
        # models saved before the sigma rule have no grade_reference: every grade is MaxVol
        key = prefix + "grade_reference"
        if key in missing_keys:
            missing_keys.remove(key)
            self._buffers["grade_reference"] = torch.zeros(0, dtype=torch.float64)


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


def force_variance(force_rows: torch.Tensor, root: torch.Tensor) -> torch.Tensor:
    """Epistemic force variance per atom (N,), (eV/Å)²: the mean over x, y, z of xᵀΣx of the
    force rows (3N, P) (no noise, no calibration scale)."""
    return _row_variance(force_rows, root).reshape(-1, 3).mean(1)


@torch.no_grad()
def predictive_std(model, graph, *, forces: bool = True) -> dict[str, np.ndarray]:
    """``energy_std`` (S,) eV/atom and, with `forces`, ``forces_std`` (N,) eV/Å (scaled)."""
    return _predictive_std(model, graph, forces=forces)[0]


def _predictive_std(model, graph, *, forces: bool) -> tuple[dict[str, np.ndarray], torch.Tensor]:
    """predictive_std and the epistemic force variance (N,) it came from (empty without
    `forces`)."""
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
    epistemic = torch.zeros(0, dtype=torch.float64)
    if forces and design.forces is not None:
        epistemic = force_variance(design.forces, root[:n_coef])
        out["forces_std"] = scale_f * (epistemic + noise_f).sqrt().numpy()
    return out, epistemic


@torch.no_grad()
def extrapolation_grade(model, graph, variance: torch.Tensor | None = None) -> np.ndarray:
    """Per-atom extrapolation grade (N,): ≤ 1 interpolation, > 1 extrapolation.

    `variance` (N,): the atoms' epistemic force variance (:func:`force_variance`) when already
    computed (the ``sigma`` rule needs it)."""
    post = posterior_of(model)
    if post is None or not post.has_grade:
        raise RuntimeError("this model has no extrapolation grade: fit it first")
    graph = graph.to(torch.float64)
    grade = torch.zeros(graph.n_total_atoms, dtype=torch.float64)
    if post.grade_map.numel() > 0:
        feats = basis_of(model).atom_features(graph).double()
        grade = (feats @ post.grade_map).abs().amax(1)
    if post.has_sigma_grade:
        if variance is None or len(variance) != len(grade):
            variance = _predictive_std(model, graph, forces=True)[1]
        reference = post.grade_reference[graph.species.long()]
        ratio = variance.clamp(min=0).sqrt() / reference.clamp(min=1e-300)
        grade = torch.maximum(grade, torch.where(reference > 0, ratio, 0.0))
    return grade.numpy()


def uncertainty_results(model, graph, properties: Sequence[str]) -> dict[str, object]:
    """The requested members of :data:`PROPERTIES` for a one-structure graph.

    σ and the ``sigma``-rule grade come from the same force rows: asking for either gives both
    (MD checks ask for the grade, then ``forces_std``)."""
    wanted = set(properties)
    post = posterior_of(model)
    want_grade = bool(wanted & {"extrapolation_grade", "max_extrapolation_grade"})
    sigma_grade = post is not None and post.has_sigma_grade
    out: dict[str, object] = {}
    variance = None
    if wanted & {"energy_std", "forces_std"} or (want_grade and sigma_grade):
        # both at once: callers (AL explorers, validation) ask for one after the other, and the
        # energy rows come with the force rows
        std, variance = _predictive_std(model, graph, forces=True)
        out["energy_std"] = float(std["energy_std"][0])
        if "forces_std" in std:
            out["forces_std"] = std["forces_std"]
    if want_grade or sigma_grade:
        grade = extrapolation_grade(model, graph, variance)
        out["extrapolation_grade"] = grade
        out["max_extrapolation_grade"] = float(grade.max()) if len(grade) else 0.0
    return out


def grade_rule(model) -> str | None:
    """How `model` grades extrapolation (see :meth:`AcePosterior.grade_rule`); None: it has no
    grade (or is no linear model)."""
    post = posterior_of(model)
    return post.grade_rule() if post is not None else None


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
    """G (P, R) such that grade(φ) = max |φ G|, from each element's MaxVol active set.

    Only elements whose active set is determined (≥ :data:`MIN_CANDIDATES_PER_ROW` sampled
    atoms per row of it) get columns; the others are listed with ``"rule": "sigma"`` in the
    returned info (element index → facts) and are graded by their force σ instead.
    """
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
        if len(feats) < MIN_CANDIDATES_PER_ROW * rank:
            info[int(k)] = {
                "candidates": len(feats),
                "columns": len(cols),
                "rank": rank,
                "rule": "sigma",
            }
            continue
        v = vt[:rank].T  # (P_k, r)
        proj = sub @ v
        idx = maxvol(proj)
        g_k = np.zeros((n_params, rank))
        g_k[cols] = v @ scipy.linalg.inv(proj[idx])
        blocks.append(g_k)
        info[int(k)] = {
            "candidates": len(feats),
            "columns": len(cols),
            "active_set": rank,
            "rule": "maxvol",
        }
    if not blocks:
        return np.zeros((n_params, 0)), info
    return np.concatenate(blocks, axis=1), info
