"""Weighted linear least squares for linear potentials: streamed normal equations and Bayesian
evidence maximisation (MacKay 1992; Tipping 2001 for automatic relevance determination).

Observations come in *kinds* — ``energy`` (eV/atom: energy rows divided by the atom count),
``forces`` (eV/Å per component) and ``stress`` (eV/Å³ per Voigt component) — each with a relative
precision (a weight per row, set from the training loss weights). :class:`NormalEquations` keeps
XᵀX, Xᵀy, yᵀy and the row count of every kind apart, accumulated chunk by chunk, so memory is
O(P²) whatever the number of structures, and the kinds can be re-weighted afterwards.

The model is y = Xc + ε with ε ~ N(0, (β w_row)⁻¹) and prior c̃ ~ N(0, α⁻¹) on the coefficients
of the *column-scaled* problem (every column scaled to unit weighted norm, so one α suits basis
functions of any magnitude; c = c̃ / s). :func:`evidence_fit` maximises the evidence over (α, β)
by MacKay's fixed point on the eigendecomposition of the scaled XᵀWX; :func:`ard_fit` allows one
α per group of coefficients (e.g. per correlation order) and one β per kind. :func:`ridge_path`
gives the coefficients for any ratio α/β from the same eigendecomposition, so a regularisation can
also be chosen on validation normal equations (:meth:`NormalEquations.mse`).

All arithmetic is float64 numpy/scipy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.linalg

KINDS = ("energy", "forces", "stress")
# β at most this factor above N / yᵀWy: an exactly representable target (zero residual) gives a
# finite, huge noise precision instead of a division by zero
_MAX_BETA_GAIN = 1e12


@dataclass
class _Block:
    gram: np.ndarray  # (P, P) Σ w x xᵀ
    rhs: np.ndarray  # (P,) Σ w x y
    yy: float = 0.0  # Σ w y²
    weight_sum: float = 0.0  # Σ w (for weighted means)
    n_rows: int = 0


class NormalEquations:
    """XᵀWX, XᵀWy and yᵀWy of each observation kind, accumulated chunk by chunk (float64)."""

    def __init__(self, n_params: int) -> None:
        self.n_params = int(n_params)
        self.blocks: dict[str, _Block] = {}

    def _block(self, kind: str) -> _Block:
        if kind not in KINDS:
            raise ValueError(f"unknown observation kind {kind!r}; expected one of {KINDS}")
        if kind not in self.blocks:
            p = self.n_params
            self.blocks[kind] = _Block(np.zeros((p, p)), np.zeros(p))
        return self.blocks[kind]

    def add(
        self,
        kind: str,
        rows: np.ndarray,
        targets: np.ndarray,
        weights: np.ndarray | None = None,
    ) -> None:
        """Add design rows (R, P) with targets (R,) and optional per-row weights (R,)."""
        x = np.asarray(rows, dtype=np.float64)
        y = np.asarray(targets, dtype=np.float64).reshape(-1)
        if x.ndim != 2 or x.shape[1] != self.n_params or len(x) != len(y):
            raise ValueError(f"rows {x.shape} and targets {y.shape} do not match P={self.n_params}")
        keep = np.isfinite(y)
        if weights is not None:
            w = np.asarray(weights, dtype=np.float64).reshape(-1)
            keep &= w > 0
        if not keep.all():
            x, y = x[keep], y[keep]
            w = None if weights is None else w[keep]
        if len(y) == 0:
            return
        block = self._block(kind)
        if weights is None:
            block.gram += x.T @ x
            block.rhs += x.T @ y
            block.yy += float(y @ y)
            block.weight_sum += len(y)
        else:
            xw = x * w[:, None]
            block.gram += xw.T @ x
            block.rhs += xw.T @ y
            block.yy += float((w * y) @ y)
            block.weight_sum += float(w.sum())
        block.n_rows += len(y)

    def transformed(self, t_matrix: np.ndarray, t_offset: np.ndarray) -> NormalEquations:
        """The normal equations in c' where the coefficients are c = T c' + t (every kind)."""
        out = NormalEquations(t_matrix.shape[1])
        for kind, b in self.blocks.items():
            a_t = b.gram @ t_offset
            out.blocks[kind] = _Block(
                _congruence(b.gram, t_matrix),
                t_matrix.T @ (b.rhs - a_t),
                b.yy - 2.0 * float(t_offset @ b.rhs) + float(t_offset @ a_t),
                b.weight_sum,
                b.n_rows,
            )
        return out

    def subset(self, columns: np.ndarray) -> NormalEquations:
        """The normal equations of the columns `columns` only (a nested, smaller basis); self
        when `columns` are all of them in order (no copy of the P × P blocks)."""
        idx = np.asarray(columns, dtype=np.int64)
        if np.array_equal(idx, np.arange(self.n_params)):
            return self
        out = NormalEquations(len(idx))
        for kind, b in self.blocks.items():
            out.blocks[kind] = _Block(
                b.gram[np.ix_(idx, idx)], b.rhs[idx], b.yy, b.weight_sum, b.n_rows
            )
        return out

    def merge(self, other: NormalEquations) -> NormalEquations:
        """Add the rows of `other` (same P) into this one; returns self."""
        if other.n_params != self.n_params:
            raise ValueError("cannot merge normal equations of different sizes")
        for kind, b in other.blocks.items():
            mine = self._block(kind)
            mine.gram += b.gram
            mine.rhs += b.rhs
            mine.yy += b.yy
            mine.weight_sum += b.weight_sum
            mine.n_rows += b.n_rows
        return self

    @property
    def kinds(self) -> list[str]:
        return [k for k in KINDS if k in self.blocks and self.blocks[k].n_rows > 0]

    def n_rows(self, kind: str | None = None) -> int:
        if kind is not None:
            return self.blocks[kind].n_rows if kind in self.blocks else 0
        return sum(b.n_rows for b in self.blocks.values())

    def combined(
        self, kind_weights: Mapping[str, float]
    ) -> tuple[np.ndarray, np.ndarray, float, int]:
        """(A, b, yᵀWy, N) of all kinds with positive weight, each kind scaled by its weight."""
        p = self.n_params
        a, b, yy, n = np.zeros((p, p)), np.zeros(p), 0.0, 0
        for kind in self.kinds:
            w = float(kind_weights.get(kind, 0.0))
            if w <= 0:
                continue
            blk = self.blocks[kind]
            a += w * blk.gram
            b += w * blk.rhs
            yy += w * blk.yy
            n += blk.n_rows
        return a, b, yy, n

    def mse(self, coefficients: np.ndarray, kind: str) -> float:
        """Weighted mean squared residual of `kind` for coefficients c: (yy − 2cᵀb + cᵀAc)/Σw."""
        blk = self.blocks.get(kind)
        if blk is None or blk.n_rows == 0:
            return math.nan
        c = np.asarray(coefficients, dtype=np.float64)
        sq = blk.yy - 2.0 * c @ blk.rhs + c @ blk.gram @ c
        return max(float(sq), 0.0) / blk.weight_sum


def _congruence(gram: np.ndarray, t_matrix: np.ndarray) -> np.ndarray:
    """Tᵀ A T for a symmetric A. When T = [I; M] (:func:`profile_transform`: M has a row per
    eliminated column, a handful) this is A₁₁ + A₁₀M + (A₁₀M)ᵀ + Mᵀ A₀₀ M, O(P²) instead of
    the dense product's O(P³) (32 of 149 s of a five-element fit at P = 4,180)."""
    k = t_matrix.shape[1]
    if not np.array_equal(t_matrix[:k], np.eye(k)):
        return t_matrix.T @ gram @ t_matrix
    tail = t_matrix[k:]
    cross = gram[:k, k:] @ tail
    out = gram[:k, :k] + cross
    out += cross.T
    out += tail.T @ (gram[k:, k:] @ tail)
    return out


def profile_transform(eqs: NormalEquations, n_fitted: int) -> tuple[np.ndarray, np.ndarray]:
    """(T, t) that eliminate the trailing columns j ≥ `n_fitted` by least squares.

    Those columns (e.g. composition fractions, i.e. corrections to E0 per element) occur only
    in energy rows and get a flat prior: for given c, their optimum is
    c₀ = A₀₀⁺ (b₀ − A₀ₓ c), so the full coefficient vector is T c + t with T = [I; −A₀₀⁺A₀ₓ],
    t = [0; A₀₀⁺b₀]. :meth:`NormalEquations.transformed` then gives the problem in c alone (its
    energy block is the Schur complement).
    """
    blk = eqs.blocks["energy"]
    k = n_fitted
    a00_pinv = np.linalg.pinv(blk.gram[k:, k:], rcond=1e-12, hermitian=True)
    t_matrix = np.vstack([np.eye(k), -a00_pinv @ blk.gram[k:, :k]])
    t_offset = np.concatenate([np.zeros(k), a00_pinv @ blk.rhs[k:]])
    return t_matrix, t_offset


@dataclass
class Posterior:
    """A Gaussian posterior over the coefficients c (original, unscaled units).

    ``covariance_root`` R (P, K) with Σ = R Rᵀ; ``noise_variance`` per kind is (β w_kind)⁻¹, the
    variance of one observation of that kind around the model (eV²/atom², eV²/Å², (eV/Å³)²).
    """

    coefficients: np.ndarray
    covariance_root: np.ndarray
    noise_variance: dict[str, float]
    alpha: np.ndarray  # prior precision per coefficient, scaled coordinates
    beta: dict[str, float]  # noise precision per kind (β·w_kind)
    gamma: float  # effective number of well-determined parameters
    log_evidence: float
    n_rows: int
    iterations: int
    converged: bool
    method: str
    extra: dict = field(default_factory=dict)

    def summary(self) -> dict:
        """JSON-able facts (α as one number when shared)."""
        alpha = np.unique(self.alpha)
        return {
            "method": self.method,
            "alpha": float(alpha[0]) if len(alpha) == 1 else [float(a) for a in alpha],
            "beta": {k: float(v) for k, v in self.beta.items()},
            "noise_std": {k: math.sqrt(v) for k, v in self.noise_variance.items()},
            "effective_parameters": float(self.gamma),
            "log_evidence": float(self.log_evidence),
            "n_rows": int(self.n_rows),
            "iterations": int(self.iterations),
            "converged": bool(self.converged),
            **self.extra,
        }


def column_scales(gram: np.ndarray) -> np.ndarray:
    """s_j = √(XᵀWX)_jj; columns that never occur get 1 (their coefficient stays at the prior)."""
    s = np.sqrt(np.clip(np.diag(gram), 0.0, None))
    return np.where(s > 0, s, 1.0)


@dataclass
class ScaledSystem:
    """The column-scaled problem Ã = D⁻¹AD⁻¹, b̃ = D⁻¹b and its eigendecomposition Ã = VΛVᵀ."""

    scales: np.ndarray
    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    projected_rhs: np.ndarray  # Vᵀb̃
    yy: float
    n_rows: int
    log_weight_term: float = 0.0  # Σ_k ½ N_k ln w_k, so evidences of other noise models compare

    @classmethod
    def build(cls, eqs: NormalEquations, kind_weights: Mapping[str, float]) -> ScaledSystem:
        a, b, yy, n_rows = eqs.combined(kind_weights)
        s = column_scales(a)
        lam, v = scipy.linalg.eigh(a / np.outer(s, s), check_finite=False, driver="evd")
        lam = np.clip(lam, 0.0, None)
        log_w = sum(
            0.5 * eqs.n_rows(k) * math.log(float(kind_weights[k]))
            for k in eqs.kinds
            if float(kind_weights.get(k, 0.0)) > 0
        )
        return cls(s, lam, v, v.T @ (b / s), float(yy), int(n_rows), log_w)

    def coefficients(self, ratio: float) -> np.ndarray:
        """Posterior mean for α/β = `ratio` (ridge in scaled coordinates), original units."""
        u = self.projected_rhs / (self.eigenvalues + ratio)
        return (self.eigenvectors @ u) / self.scales


def _evidence_terms(sys: ScaledSystem, alpha: float, beta: float):
    lam, z = sys.eigenvalues, sys.projected_rhs
    denom = alpha + beta * lam
    u = beta * z / denom  # Vᵀm̃
    gamma = float(np.sum(beta * lam / denom))
    e_w = float(u @ u)
    e_d = sys.yy - 2.0 * float(u @ z) + float(lam @ (u * u))
    e_d = max(e_d, sys.yy * 1e-15, 1e-300)
    return u, gamma, e_w, e_d, denom


def _log_evidence(p, n, alpha_logdet, alpha_ew, beta_terms, logdet_h):
    """ln p(y|α,β) up to constants: ½ln|A₀| − ½αE_W + Σ_k(½N_k ln β_k − ½β_k E_D,k) − ½ln|H|."""
    value = 0.5 * alpha_logdet - 0.5 * alpha_ew - 0.5 * logdet_h - 0.5 * n * math.log(2 * math.pi)
    for n_k, beta_k, e_d_k in beta_terms:
        value += 0.5 * n_k * math.log(beta_k) - 0.5 * beta_k * e_d_k
    return value


def _clip_alpha(alpha: float, beta: float, lam_max: float) -> float:
    """α within [1e-15, 1e15] × β·λ_max: outside, the prior is numerically absent or total
    (an evidence that keeps rising as α → 0 would otherwise drive it to 0 and Σ to infinity)."""
    if not math.isfinite(alpha):
        alpha = 1e15 * beta * lam_max
    top = max(beta * lam_max, 1e-300)
    return min(max(alpha, 1e-15 * top), 1e15 * top)


def evidence_fit(
    eqs: NormalEquations,
    kind_weights: Mapping[str, float],
    *,
    max_iter: int = 500,
    tol: float = 1e-8,
    system: ScaledSystem | None = None,
) -> tuple[Posterior, ScaledSystem]:
    """One prior precision α and one noise precision β (row precision β·w_kind), by evidence."""
    if system is None:
        system = ScaledSystem.build(eqs, kind_weights)
    sys = system
    p, n = len(sys.scales), sys.n_rows
    if n == 0:
        raise ValueError("no observations to fit")
    beta_max = _MAX_BETA_GAIN * n / max(sys.yy, 1e-300)
    lam_max = float(sys.eigenvalues.max()) if len(sys.eigenvalues) else 1.0
    alpha = 1.0
    beta = n / max(sys.yy, 1e-300)
    converged = False
    it = 0
    while it < max_iter:
        it += 1
        _, gamma, e_w, e_d, _ = _evidence_terms(sys, alpha, beta)
        new_beta = min(max(n - gamma, 1e-12) / e_d, beta_max)
        new_alpha = _clip_alpha(max(gamma, 1e-12) / max(e_w, 1e-300), new_beta, lam_max)
        change = abs(math.log(new_alpha / alpha)) + abs(math.log(new_beta / beta))
        alpha, beta = new_alpha, new_beta
        if change < tol:
            converged = True
            break
    u, gamma, e_w, e_d, denom = _evidence_terms(sys, alpha, beta)
    log_ev = sys.log_weight_term + _log_evidence(
        p, n, p * math.log(alpha), alpha * e_w, [(n, beta, e_d)], float(np.log(denom).sum())
    )
    post = _eigen_posterior(sys, kind_weights, alpha, beta, u, denom)
    post.gamma, post.log_evidence, post.iterations, post.converged = gamma, log_ev, it, converged
    post.method = "evidence"
    return post, sys


def _eigen_posterior(sys, kind_weights, alpha, beta, u, denom) -> Posterior:
    coef = (sys.eigenvectors @ u) / sys.scales
    root = (sys.eigenvectors / np.sqrt(denom)[None, :]) / sys.scales[:, None]
    weights = {k: float(w) for k, w in kind_weights.items() if w > 0}
    return Posterior(
        coefficients=coef,
        covariance_root=root,
        noise_variance={k: 1.0 / (beta * w) for k, w in weights.items()},
        alpha=np.full(len(coef), alpha),
        beta={k: beta * w for k, w in weights.items()},
        gamma=0.0,
        log_evidence=math.nan,
        n_rows=sys.n_rows,
        iterations=0,
        converged=True,
        method="",
    )


def posterior_for_ratio(
    sys: ScaledSystem, kind_weights: Mapping[str, float], ratio: float
) -> Posterior:
    """The posterior with α/β fixed to `ratio` and β at its evidence optimum given that ratio."""
    n = sys.n_rows
    beta = n / max(sys.yy, 1e-300)
    beta_max = _MAX_BETA_GAIN * n / max(sys.yy, 1e-300)
    for _ in range(200):
        _, gamma, _, e_d, _ = _evidence_terms(sys, ratio * beta, beta)
        new_beta = min(max(n - gamma, 1e-12) / e_d, beta_max)
        if abs(math.log(new_beta / beta)) < 1e-10:
            beta = new_beta
            break
        beta = new_beta
    alpha = ratio * beta
    u, gamma, e_w, e_d, denom = _evidence_terms(sys, alpha, beta)
    p = len(sys.scales)
    post = _eigen_posterior(sys, kind_weights, alpha, beta, u, denom)
    post.gamma = gamma
    post.log_evidence = sys.log_weight_term + _log_evidence(
        p, n, p * math.log(alpha), alpha * e_w, [(n, beta, e_d)], float(np.log(denom).sum())
    )
    post.method = "validation"
    return post


def validation_score(
    coefficients: np.ndarray, valid: NormalEquations, score_weights: Mapping[str, float]
) -> float:
    """Σ_kind w_kind · MSE_kind on validation normal equations (the trainer's weighted loss)."""
    score = 0.0
    for kind in valid.kinds:
        w = float(score_weights.get(kind, 0.0))
        if w > 0:
            score += w * valid.mse(coefficients, kind)
    return score


def ridge_path(
    sys: ScaledSystem,
    valid: NormalEquations,
    score_weights: Mapping[str, float],
    ratios: Sequence[float] | None = None,
) -> list[tuple[float, float]]:
    """(α/β, validation score) over a log grid of ratios (default 1e-12…1e2 × mean eigenvalue)."""
    if ratios is None:
        scale = float(np.mean(sys.eigenvalues)) or 1.0
        ratios = scale * np.logspace(-12, 2, 29)
    return [
        (float(r), validation_score(sys.coefficients(float(r)), valid, score_weights))
        for r in ratios
    ]


def ard_fit(
    eqs: NormalEquations,
    kind_weights: Mapping[str, float],
    groups: np.ndarray | None = None,
    *,
    per_kind_noise: bool = True,
    start: Posterior | None = None,
    max_iter: int = 60,
    tol: float = 1e-5,
) -> Posterior:
    """Evidence maximisation with one α per coefficient group and (optionally) one β per kind.

    Each iteration factorises H = diag(α) + Σ_k β_k Ã_k (Cholesky, O(P³)); γ_g = Σ_{j∈g}
    (1 − α_g Σ_jj), α_g = γ_g/|m̃_g|², β_k = (N_k − γ_k)/E_D,k with γ_k = β_k tr(Ã_k Σ).
    """
    kinds = [k for k in eqs.kinds if float(kind_weights.get(k, 0.0)) > 0]
    if not kinds:
        raise ValueError("no observations to fit")
    a_all, _, _, _ = eqs.combined(kind_weights)
    s = column_scales(a_all)
    outer = np.outer(s, s)
    grams = {k: eqs.blocks[k].gram / outer for k in kinds}
    rhs = {k: eqs.blocks[k].rhs / s for k in kinds}
    yy = {k: eqs.blocks[k].yy for k in kinds}
    n_k = {k: eqs.blocks[k].n_rows for k in kinds}
    p = len(s)
    groups = np.zeros(p, dtype=int) if groups is None else np.asarray(groups, dtype=int)
    labels = np.unique(groups)
    w = {k: float(kind_weights[k]) for k in kinds}
    if start is not None:
        alpha_g = {g: float(np.mean(start.alpha[groups == g])) for g in labels}
        beta_k = {k: float(start.beta[k]) for k in kinds}
    else:
        alpha_g = {g: 1.0 for g in labels}
        beta_k = {k: n_k[k] / max(yy[k], 1e-300) for k in kinds}
    n_total = sum(n_k.values())
    converged, it = False, 0
    while it < max_iter:
        it += 1
        alpha = np.array([alpha_g[g] for g in groups])
        h_data = sum(beta_k[k] * grams[k] for k in kinds)
        data_scale = float(np.trace(h_data))
        chol = _cholesky(np.diag(alpha) + h_data)
        m = scipy.linalg.cho_solve((chol, True), sum(beta_k[k] * rhs[k] for k in kinds))
        inv_l = scipy.linalg.solve_triangular(chol, np.eye(p), lower=True, check_finite=False)
        sigma_diag = (inv_l * inv_l).sum(0)
        new_alpha = {}
        for g in labels:
            sel = groups == g
            gamma_g = float(np.sum(1.0 - alpha_g[g] * sigma_diag[sel]))
            raw = max(gamma_g, 1e-12) / max(float(m[sel] @ m[sel]), 1e-300)
            new_alpha[g] = _clip_alpha(raw, 1.0, data_scale)
        e_d = {
            k: max(yy[k] - 2 * m @ rhs[k] + m @ grams[k] @ m, yy[k] * 1e-15, 1e-300) for k in kinds
        }
        if per_kind_noise:
            new_beta = {}
            sigma = inv_l.T @ inv_l
            for k in kinds:
                # γ_k = β_k tr(Ã_k Σ) = β_k Σ_ij (Ã_k)_ij Σ_ij (both symmetric)
                gamma_k = beta_k[k] * float(np.sum(grams[k] * sigma))
                cap = _MAX_BETA_GAIN * n_k[k] / max(yy[k], 1e-300)
                new_beta[k] = min(max(n_k[k] - gamma_k, 1e-12) / e_d[k], cap)
        else:
            gamma = float(np.sum(1.0 - alpha * sigma_diag))
            e_d_w = sum(e_d[k] * w[k] for k in kinds)
            yy_w = sum(yy[k] * w[k] for k in kinds)
            common = min(max(n_total - gamma, 1e-12) / e_d_w, _MAX_BETA_GAIN * n_total / yy_w)
            new_beta = {k: common * w[k] for k in kinds}
        change = max(
            [abs(math.log(new_alpha[g] / alpha_g[g])) for g in labels]
            + [abs(math.log(new_beta[k] / beta_k[k])) for k in kinds]
        )
        alpha_g, beta_k = new_alpha, new_beta
        if change < tol:
            converged = True
            break
    alpha = np.array([alpha_g[g] for g in groups])
    h = np.diag(alpha) + sum(beta_k[k] * grams[k] for k in kinds)
    chol = _cholesky(h)
    m = scipy.linalg.cho_solve((chol, True), sum(beta_k[k] * rhs[k] for k in kinds))
    inv_l = scipy.linalg.solve_triangular(chol, np.eye(p), lower=True, check_finite=False)
    gamma = float(np.sum(1.0 - alpha * (inv_l * inv_l).sum(0)))
    e_d = {k: max(yy[k] - 2 * m @ rhs[k] + m @ grams[k] @ m, 1e-300) for k in kinds}
    log_ev = _log_evidence(
        p,
        n_total,
        float(np.log(alpha).sum()),
        float(alpha @ (m * m)),
        [(n_k[k], beta_k[k], e_d[k]) for k in kinds],
        2.0 * float(np.log(np.diag(chol)).sum()),
    )
    # Σ̃ = L⁻ᵀL⁻¹, so R = D⁻¹ L⁻ᵀ gives Σ = R Rᵀ in original units
    root = inv_l.T / s[:, None]
    return Posterior(
        coefficients=m / s,
        covariance_root=root,
        noise_variance={k: 1.0 / beta_k[k] for k in kinds},
        alpha=alpha,
        beta=dict(beta_k),
        gamma=gamma,
        log_evidence=log_ev,
        n_rows=n_total,
        iterations=it,
        converged=converged,
        method="ard" if len(labels) > 1 else "evidence_per_kind",
    )


def _cholesky(matrix: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor, with a growing diagonal jitter if round-off broke definiteness."""
    jitter = 0.0
    scale = float(np.mean(np.abs(np.diag(matrix)))) or 1.0
    for _ in range(10):
        try:
            return scipy.linalg.cholesky(
                matrix + jitter * np.eye(len(matrix)), lower=True, check_finite=False
            )
        except np.linalg.LinAlgError:
            jitter = max(10 * jitter, 1e-14 * scale)
    raise np.linalg.LinAlgError("posterior precision is not positive definite")
