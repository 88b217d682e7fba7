"""Fitting E(V) data: V0 (Å³), E0 (eV), B0 (eV/Å³ inside, GPa at the edges), B0', uncertainties."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from matloop.eos.forms import ALIASES, EOS_NAMES, FORMS
from matloop.errors import DataError
from matloop.units import EV_PER_A3_TO_GPA
from matloop.utils.jsonable import to_jsonable

#: relative RMSE (RMSE / energy span of the data) above which the fit is called poor
POOR_FIT_RELATIVE_RMSE = 0.01
DERIVED = ("v0", "e0", "b0", "b0_prime")


class EOSWarning(UserWarning):
    """A caveat about an equation-of-state fit (minimum outside the data, few points, poor fit)."""


@dataclass
class EOSResult:
    """The outcome of :func:`fit_eos`. Energies eV, volumes Å³, B0 eV/Å³ (see ``b0_gpa``)."""

    eos: str
    volumes: np.ndarray
    energies: np.ndarray
    v0: float
    e0: float
    b0: float
    b0_prime: float
    params: dict[str, float]
    covariance: np.ndarray
    stderr: dict[str, float]
    residuals: np.ndarray
    rmse: float
    b0_second: float | None = None
    degree: int | None = None
    bootstrap: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    _model: Any = field(default=None, repr=False)

    @property
    def b0_gpa(self) -> float:
        return self.b0 * EV_PER_A3_TO_GPA

    def energy(self, volumes) -> np.ndarray:
        """E(V) of the fitted curve (eV) at `volumes` (Å³)."""
        return self._model.energy(np.asarray(volumes, dtype=float), self._model.popt)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary with units in the key names."""
        gpa = EV_PER_A3_TO_GPA

        def conv(d: dict[str, float]) -> dict[str, float]:
            return {
                "v0_a3": d["v0"],
                "e0_ev": d["e0"],
                "b0_gpa": d["b0"] * gpa,
                "b0_prime": d["b0_prime"],
            }

        out: dict[str, Any] = {
            "eos": self.eos,
            "n_points": int(len(self.volumes)),
            "volume_range_a3": [float(self.volumes.min()), float(self.volumes.max())],
            "v0_a3": self.v0,
            "e0_ev": self.e0,
            "b0_gpa": self.b0_gpa,
            "b0_prime": self.b0_prime,
            "rmse_ev": self.rmse,
            "max_abs_residual_ev": float(np.max(np.abs(self.residuals))),
            "uncertainties": {"method": "covariance (1 sigma)", **conv(self.stderr)},
            "parameters_internal_units": dict(self.params),  # eV, Å³, eV/Å³ (ASE order)
            "residuals_ev": [float(r) for r in self.residuals],
            "volumes_a3": [float(v) for v in self.volumes],
            "warnings": list(self.warnings),
        }
        if self.b0_second is not None:
            out["b0_second_per_gpa"] = self.b0_second / gpa
        if self.degree is not None:
            out["degree"] = self.degree
        if self.bootstrap is not None:
            bs = self.bootstrap
            out["bootstrap"] = {
                "n": bs["n"],
                "n_failed": bs["n_failed"],
                "std": conv(bs["std"]),
                "ci95_low": conv(bs["ci95_low"]),
                "ci95_high": conv(bs["ci95_high"]),
            }
        return to_jsonable(out)


def normalise_eos_name(name: str) -> str:
    """Map a user-given EOS name (bm3, birchmurnaghan, vinet, ...) to its canonical name."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in EOS_NAMES:
        raise DataError(f"unknown equation of state {name!r}; choose one of {', '.join(EOS_NAMES)}")
    return key


# ---------------------------------------------------------------------------------------------
# models: each knows its parameters, how to fit them and how to derive (V0, E0, B0, B0')


class _PhysicalModel:
    def __init__(self, name: str):
        self.name = name
        self.func, self.names, _ = FORMS[name]
        self.n_params = len(self.names)
        self.popt: np.ndarray | None = None

    def energy(self, v, popt):
        return self.func(v, *popt)

    def initial_guess(self, v, e) -> np.ndarray:
        c2, c1, c0 = np.polyfit(v, e, 2)
        if c2 <= 0:
            raise DataError(
                "the energies have no minimum: E(V) curves downward over the data "
                f"({v.min():.4g}–{v.max():.4g} Å³); compute volumes around the equilibrium"
            )
        vmin = -c1 / (2 * c2)
        e0 = c0 + c1 * vmin + c2 * vmin**2
        b0 = 2 * c2 * vmin
        guess = {"e0": e0, "b0": b0, "b0_prime": 4.0, "b0_second": -(3.5 + 35 / 9) / b0, "v0": vmin}
        return np.array([guess[n] for n in self.names])

    def fit(self, v, e, p0=None):
        from scipy.optimize import curve_fit

        if p0 is None:
            p0 = self.initial_guess(v, e)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # OptimizeWarning for zero dof, overflow on bad steps
            with np.errstate(all="ignore"):
                popt, pcov = curve_fit(self.func, v, e, p0=p0, maxfev=20000)
        if not np.all(np.isfinite(popt)):
            raise RuntimeError("non-finite parameters")
        return popt, pcov

    def derived(self, popt) -> np.ndarray:
        p = dict(zip(self.names, popt, strict=True))
        return np.array([p["v0"], p["e0"], p["b0"], p["b0_prime"]])


class _PolynomialModel:
    """E = Σ c_k t^k with t = (V − Vc)/Vs (scaled for conditioning)."""

    def __init__(self, degree: int):
        if degree < 2:
            raise DataError(f"polynomial EOS needs degree ≥ 2, got {degree}")
        self.name = "poly"
        self.degree = int(degree)
        self.n_params = self.degree + 1
        self.names = tuple(f"c{k}" for k in range(self.n_params))
        self.center = 0.0
        self.scale = 1.0
        self.popt: np.ndarray | None = None

    def _t(self, v):
        return (np.asarray(v, dtype=float) - self.center) / self.scale

    def energy(self, v, popt):
        return np.polynomial.polynomial.polyval(self._t(v), popt)

    def fit(self, v, e, p0=None):
        if p0 is None:  # first fit fixes the scaling; refits (bootstrap) keep it
            self.center = float(np.mean(v))
            self.scale = float(np.ptp(v)) / 2 or 1.0
        a = np.vander(self._t(v), self.n_params, increasing=True)
        coef, *_ = np.linalg.lstsq(a, e, rcond=None)
        dof = len(v) - self.n_params
        s2 = float(np.sum((e - a @ coef) ** 2)) / dof if dof > 0 else np.inf
        cov = s2 * np.linalg.pinv(a.T @ a)
        return coef, cov

    def derived(self, popt, v_hint: float | None = None) -> np.ndarray:
        P = np.polynomial.Polynomial(popt)
        d1, d2, d3 = P.deriv(1), P.deriv(2), P.deriv(3)
        roots = d1.roots()
        roots = roots[np.abs(roots.imag) < 1e-9].real
        roots = roots[d2(roots) > 0]
        if roots.size == 0:
            raise DataError(
                f"the degree-{self.degree} polynomial fitted to E(V) has no minimum; "
                "compute volumes around the equilibrium or use another --eos"
            )
        hint = 0.0 if v_hint is None else (v_hint - self.center) / self.scale
        t0 = roots[np.argmin(np.abs(roots - hint))]
        v0 = self.center + self.scale * t0
        e2 = d2(t0) / self.scale**2  # d²E/dV²
        e3 = d3(t0) / self.scale**3
        b0 = v0 * e2
        bp = -(1.0 + v0 * e3 / e2)
        return np.array([v0, P(t0), b0, bp])


def _make_model(eos: str, degree: int):
    return _PolynomialModel(degree) if eos == "poly" else _PhysicalModel(eos)


def _derived(model, popt, v_hint):
    if isinstance(model, _PolynomialModel):
        return model.derived(popt, v_hint)
    return model.derived(popt)


# ---------------------------------------------------------------------------------------------


def validate_ev_data(volumes, energies, *, source: str = "E(V) data") -> tuple[np.ndarray, ...]:
    """Check E(V) data; return (volumes, energies) sorted by volume, exact duplicates dropped.

    Raises :class:`DataError` for mismatched lengths, non-finite or non-positive volumes and a
    volume listed twice with different energies; warns (:class:`EOSWarning`) for exact duplicates.
    """
    v = np.asarray(volumes, dtype=float).ravel()
    e = np.asarray(energies, dtype=float).ravel()
    if v.shape != e.shape:
        raise DataError(f"{source}: {v.size} volumes but {e.size} energies")
    if v.size == 0:
        raise DataError(f"{source}: no points")
    bad = np.flatnonzero(~np.isfinite(v) | ~np.isfinite(e))
    if bad.size:
        raise DataError(f"{source}: non-finite value at point(s) {', '.join(map(str, bad + 1))}")
    bad = np.flatnonzero(v <= 0)
    if bad.size:
        raise DataError(
            f"{source}: volumes must be positive (Å³); point {bad[0] + 1} has V = {v[bad[0]]:g}"
        )
    order = np.argsort(v, kind="stable")
    v, e = v[order], e[order]
    same = np.flatnonzero(np.isclose(np.diff(v), 0.0, rtol=0.0, atol=1e-8 * np.max(v)))
    if same.size:
        conflicting = [i for i in same if not np.isclose(e[i], e[i + 1], rtol=0, atol=1e-9)]
        if conflicting:
            i = conflicting[0]
            raise DataError(
                f"{source}: volume {v[i]:.6g} Å³ appears more than once with different energies "
                f"({e[i]:.8g} and {e[i + 1]:.8g} eV); remove the duplicate rows"
            )
        keep = np.ones(v.size, dtype=bool)
        keep[same + 1] = False
        warnings.warn(
            f"{source}: {same.size} duplicated volume(s) with identical energies dropped "
            f"(e.g. V = {v[same[0]]:.6g} Å³)",
            EOSWarning,
            stacklevel=3,
        )
        v, e = v[keep], e[keep]
    return v, e


def fit_eos(
    volumes,
    energies,
    eos: str = "bm3",
    *,
    degree: int = 3,
    bootstrap: int = 0,
    random_state: int | None = 0,
    source: str = "E(V) data",
) -> EOSResult:
    """Fit an equation of state to E(V) points (volumes Å³, energies eV, any consistent cell).

    `eos`: ``bm3`` (Birch–Murnaghan 3rd order), ``bm4``, ``vinet``, ``murnaghan`` or ``poly``
    (polynomial of `degree` in V). Parameter uncertainties come from the least-squares covariance
    (``stderr``, 1σ) and, with ``bootstrap=N``, from N residual-bootstrap refits.
    Caveats (V0 outside the data, few points, poor fit, unusual B0') are issued as
    :class:`EOSWarning` and listed in ``result.warnings``; unusable data raise :class:`DataError`.
    """
    eos = normalise_eos_name(eos)
    notes: list[str] = []

    def caveat(msg: str) -> None:
        notes.append(msg)
        warnings.warn(msg, EOSWarning, stacklevel=3)

    v, e = validate_ev_data(volumes, energies, source=source)
    model = _make_model(eos, degree)
    n, p = v.size, model.n_params
    label = f"{eos}" + (f" (degree {degree})" if eos == "poly" else "")
    if n < p:
        raise DataError(
            f"{source}: {n} distinct point(s) but the {label} equation of state has {p} "
            f"parameters; provide at least {p} (better {p + 7}) volumes"
        )
    if n < p + 3:
        caveat(
            f"only {n} points for a {p}-parameter {label} fit: parameter uncertainties are "
            f"{'undefined' if n == p else 'unreliable'}; use at least {p + 3} (typically 11)"
        )
    v_hint = float(v[np.argmin(e)])
    try:
        popt, pcov = model.fit(v, e)
        model.popt = popt
        d = _derived(model, popt, v_hint)
    except RuntimeError as exc:
        raise DataError(
            f"{source}: the {label} fit did not converge ({exc}); check that the data "
            "bracket an energy minimum"
        ) from None
    v0, e0, b0, bp = (float(x) for x in d)
    if not b0 > 0:
        raise DataError(f"{source}: the {label} fit gives a non-positive bulk modulus ({b0:g})")

    residuals = e - model.energy(v, popt)
    rmse = float(np.sqrt(np.mean(residuals**2)))

    # 1σ of the derived quantities from the covariance (delta method)
    pcov = np.asarray(pcov, dtype=float)
    if n > p and np.all(np.isfinite(pcov)):
        jac = _jacobian(lambda q: _derived(model, q, v_hint), popt)
        cov_d = jac @ pcov @ jac.T
        sd = np.sqrt(np.clip(np.diag(cov_d), 0, None))
    else:
        sd = np.full(4, np.nan)
    stderr = dict(zip(DERIVED, (float(x) for x in sd), strict=True))

    if not (v.min() <= v0 <= v.max()):
        caveat(
            f"the fitted minimum V0 = {v0:.4f} Å³ lies outside the data "
            f"({v.min():.4f}–{v.max():.4f} Å³): V0, B0 and B0' are extrapolations; "
            "compute volumes on both sides of the minimum"
        )
    span = float(np.ptp(e))
    if span > 0 and rmse / span > POOR_FIT_RELATIVE_RMSE:
        caveat(
            f"poor {label} fit: RMSE {rmse * 1000:.3g} meV is {100 * rmse / span:.2g} % of the "
            f"energy span ({span * 1000:.3g} meV); the data may be noisy or not EOS-shaped"
        )
    if not (1.0 <= bp <= 12.0):
        caveat(f"unusual B0' = {bp:.3g} from the {label} fit (typical solids: 3–6)")

    bs = None
    if bootstrap and bootstrap > 0:
        bs = _bootstrap(model, v, e, popt, residuals, int(bootstrap), random_state, v_hint)
        if bs["n_failed"] > 0.1 * bootstrap:
            caveat(f"{bs['n_failed']} of {bootstrap} bootstrap refits failed")

    params = dict(zip(model.names, (float(x) for x in popt), strict=True))
    return EOSResult(
        eos=eos,
        volumes=v,
        energies=e,
        v0=v0,
        e0=e0,
        b0=b0,
        b0_prime=bp,
        params=params,
        covariance=pcov,
        stderr=stderr,
        residuals=residuals,
        rmse=rmse,
        b0_second=params.get("b0_second"),
        degree=model.degree if eos == "poly" else None,
        bootstrap=bs,
        warnings=notes,
        _model=model,
    )


def _jacobian(fun, x, rel_step: float = 1e-6) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    f0 = np.asarray(fun(x), dtype=float)
    jac = np.empty((f0.size, x.size))
    for j in range(x.size):
        h = rel_step * max(abs(x[j]), 1e-3)
        xp, xm = x.copy(), x.copy()
        xp[j] += h
        xm[j] -= h
        jac[:, j] = (np.asarray(fun(xp)) - np.asarray(fun(xm))) / (2 * h)
    return jac


def _bootstrap(model, v, e, popt, residuals, n_boot, random_state, v_hint) -> dict[str, Any]:
    """Residual bootstrap: refit to fitted + resampled (dof-inflated) residuals."""
    rng = np.random.default_rng(random_state)
    n, p = v.size, model.n_params
    fitted = e - residuals
    scaled = residuals * np.sqrt(n / (n - p)) if n > p else residuals
    samples, failed = [], 0
    # as many points as parameters: the residuals are zero by construction, so resampling
    # them would report a spread of ~0 (false precision); the spread is undefined instead
    for _ in range(n_boot if n > p else 0):
        e_star = fitted + rng.choice(scaled, size=n, replace=True)
        try:
            q, _ = model.fit(v, e_star, p0=popt)
            samples.append(_derived(model, q, v_hint))
        except (RuntimeError, DataError, ValueError, np.linalg.LinAlgError):
            failed += 1
    arr = np.array(samples) if samples else np.full((1, 4), np.nan)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN: no successful refit
        lo, hi = np.nanpercentile(arr, [2.5, 97.5], axis=0)

    def as_dict(x):
        return dict(zip(DERIVED, (float(y) for y in x), strict=True))

    return {
        "n": n_boot,
        "n_failed": failed,
        "std": as_dict(np.nanstd(arr, axis=0, ddof=1) if len(samples) > 1 else np.full(4, np.nan)),
        "ci95_low": as_dict(lo),
        "ci95_high": as_dict(hi),
    }
