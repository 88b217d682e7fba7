"""The design space (``space.yaml``): components with bounds, the total, forbidden components and
linear constraints — and its translation into a unit box with linear constraints for BoTorch.

Example::

    total: 100            # components sum to this (mol %)
    sum_tolerance: 0.5    # measured rows may sum to total ± this (default: 0.5 % of total;
                          # 0: exactly the total, up to float round-off, 1e-9 of the total)
    components:
      SiO2: {min: 40, max: 80}
      B2O3: [0, 20]       # short form [min, max]
      Na2O: {min: 0, max: 25}
      PbO: {min: 0, max: 10}
    forbidden: [PbO]      # fixed at 0 (its max may be > 0, its min must be 0)
    linear_constraints:
      - {coefficients: {Na2O: 1, B2O3: 1}, le: 30}

:func:`load_space` refuses, in one line, settings that contradict each other or cannot take
effect: a forbidden component with a positive min, a max above the total, a linear constraint
with only forbidden components (or zero coefficients), non-finite numbers, a ``sum_tolerance``
not below the total (it warns above 10 % of the total), and bounds or constraints that no
composition with Σ = total satisfies. For those, the message names a smallest set of linear
constraints that cannot hold together, the bounds (and the total) that make them clash, the
range the last one's left side can take, and which single constraint or bound to relax when one
suffices.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, field_validator, model_validator

from matloop.compositions.core import parse_component
from matloop.errors import ConfigError, DataError

#: relative slack of every sum check (1e-9 of the total): float sums of fractions miss the total
#: by round-off (~1e-16 of it), so ``sum_tolerance: 0`` (exactly the total) would refuse them
SUM_RTOL = 1e-9


class Bounds(BaseModel):
    """Bounds of one component, in the units of the total (e.g. mol %)."""

    model_config = ConfigDict(extra="forbid")
    min: FiniteFloat = 0.0
    max: FiniteFloat

    @model_validator(mode="after")
    def _check(self) -> Bounds:
        if self.min < 0 or self.max < self.min:
            raise ValueError(f"need 0 <= min <= max, got min={self.min}, max={self.max}")
        return self


class LinearConstraint(BaseModel):
    """``Σ coefficients[c] · x_c`` ``<=`` le / ``>=`` ge / ``==`` eq (x in units of the total)."""

    model_config = ConfigDict(extra="forbid")
    coefficients: dict[str, FiniteFloat]
    le: FiniteFloat | None = None
    ge: FiniteFloat | None = None
    eq: FiniteFloat | None = None

    @model_validator(mode="after")
    def _one_side(self) -> LinearConstraint:
        n = sum(v is not None for v in (self.le, self.ge, self.eq))
        if n != 1:
            raise ValueError("give exactly one of le, ge, eq")
        if not self.coefficients:
            raise ValueError("coefficients must not be empty")
        return self

    def vector(self, names: Sequence[str]) -> np.ndarray:
        """The coefficients in `names` order (0 for a component the constraint leaves out)."""
        return np.array([self.coefficients.get(n, 0.0) for n in names], dtype=float)

    def __str__(self) -> str:
        """``Na2O + 2*CaO <= 30`` (as written in the YAML)."""
        terms = " ".join(
            f"{'-' if c < 0 else '+'} {'' if abs(c) == 1 else f'{abs(c):g}*'}{n}"
            for n, c in self.coefficients.items()
        ).removeprefix("+ ")
        op, rhs = next(
            (o, v) for o, v in (("<=", self.le), (">=", self.ge), ("==", self.eq)) if v is not None
        )
        return f"{terms} {op} {rhs:g}"


class Space(BaseModel):
    """A composition design space; see the module docstring for the YAML form."""

    model_config = ConfigDict(extra="forbid")
    total: float = Field(100.0, gt=0, allow_inf_nan=False)
    basis: str = Field("mol", pattern="^(mol|wt)$")
    #: how far a measured row's sum may be from the total (units of the total); default 0.5 % of
    #: the total (0.5 mol % of 100, 0.005 of a fraction total of 1)
    sum_tolerance: float | None = Field(None, ge=0, allow_inf_nan=False)
    components: dict[str, Bounds]
    forbidden: list[str] = Field(default_factory=list)
    linear_constraints: list[LinearConstraint] = Field(default_factory=list)

    @field_validator("components", mode="before")
    @classmethod
    def _short_bounds(cls, v: Any) -> Any:
        if isinstance(v, dict):
            out = {}
            for k, b in v.items():
                if isinstance(b, list | tuple) and len(b) == 2:
                    b = {"min": b[0], "max": b[1]}
                out[str(k)] = b
            return out
        return v

    @model_validator(mode="after")
    def _check_names(self) -> Space:
        if not self.components:
            raise ValueError("components must not be empty")
        for name in self.components:
            parse_component(name)  # raises UnknownElementError (a clear message)
        if self.sum_tolerance is None:
            self.sum_tolerance = 0.005 * self.total
        names = set(self.components)
        self.forbidden = list(dict.fromkeys(self.forbidden))  # a repeat would repeat a column
        for f in self.forbidden:
            parse_component(f)
        for i, lc in enumerate(self.linear_constraints):
            unknown = sorted(set(lc.coefficients) - names - set(self.forbidden))
            if unknown:
                raise ValueError(
                    f"linear_constraints[{i}] names unknown component(s) {unknown}; "
                    f"components are {sorted(names)}"
                )
        return self

    # ----------------------------------------------------------------- helpers
    @property
    def sum_atol(self) -> float:
        """How far a row's sum may be from the total (units of the total): ``sum_tolerance``,
        at least :data:`SUM_RTOL` of the total (float round-off; ``sum_tolerance: 0``)."""
        return max(float(self.sum_tolerance or 0.0), SUM_RTOL * self.total)

    @property
    def names(self) -> list[str]:
        """All component names: the space components, then forbidden ones not listed there."""
        return list(self.components) + [f for f in self.forbidden if f not in self.components]

    def check_consistent(self) -> None:
        """:class:`ConfigError` naming every setting that contradicts another or cannot take
        effect (checks that need more than one field, so they run after pydantic's)."""
        problems = []
        bad = {n: b.min for n, b in self.components.items() if n in self.forbidden and b.min > 0}
        if bad:
            mins = ", ".join(f"components.{n}.min = {v:g}" for n, v in bad.items())
            problems.append(
                f"forbidden: {', '.join(bad)} contradicts {mins} (a forbidden component is fixed "
                "at 0); set the min to 0 or remove the component from forbidden"
            )
        above = [f"{n}.max = {b.max:g}" for n, b in self.components.items() if b.max > self.total]
        if above:
            problems.append(
                f"components {', '.join(above)} above total {self.total:g} (bounds are in the "
                "units of the total, e.g. mol % with total: 100)"
            )
        for i, lc in enumerate(self.linear_constraints):
            if all(c == 0 or n in self.forbidden for n, c in lc.coefficients.items()):
                why = [n for n, c in lc.coefficients.items() if c != 0]
                why_text = f"forbidden {', '.join(why)} fixed at 0" if why else "coefficients all 0"
                problems.append(
                    f"linear_constraints[{i}] ({lc}): its left side is always 0 ({why_text}); "
                    "remove it"
                )
        tol, t = self.sum_tolerance, self.total
        if tol is not None and tol >= t:
            problems.append(
                f"sum_tolerance = {tol:g} is not below total {t:g}: any row summing to "
                f"0..{t + tol:g} would pass as a composition; give the rounding slack of measured "
                f"rows (the default is {0.005 * t:g}, 0.5 % of the total) or rescale the rows to "
                "the total"
            )
        elif tol is not None and tol > 0.1 * t:
            warnings.warn(
                f"sum_tolerance = {tol:g} is {100 * tol / t:.3g} % of total {t:g}: rows summing "
                f"to {t - tol:g}..{t + tol:g} are used as they are, not rescaled (the default is "
                f"{0.005 * t:g}, 0.5 %); rescale rows that are further off to the total",
                stacklevel=2,
            )
        if problems:
            raise ConfigError("; ".join(problems))

    def lower(self) -> np.ndarray:
        return np.array(
            [0.0 if n in self.forbidden else self.components[n].min for n in self.names]
        )

    def upper(self) -> np.ndarray:
        return np.array(
            [0.0 if n in self.forbidden else self.components[n].max for n in self.names]
        )

    def check_point(
        self, x: np.ndarray, atol: float = 1e-6, sum_atol: float | None = None
    ) -> list[str]:
        """Violations of bounds/sum/linear constraints for one composition (empty if feasible).

        The sum may differ from the total by `sum_atol` (default: ``atol · max(1, total)``; never
        less than :data:`SUM_RTOL` of the total, the round-off of a float sum); measured or
        rounded compositions pass ``sum_atol=space.sum_tolerance``.
        """
        out = []
        lo, hi = self.lower(), self.upper()
        for n, v, a, b in zip(self.names, x, lo, hi, strict=True):
            if v < a - atol or v > b + atol:
                out.append(f"{n}={v:.6g} outside [{a:g}, {b:g}]")
        if sum_atol is None:
            sum_atol = atol * max(1.0, self.total)
        sum_atol = max(sum_atol, SUM_RTOL * self.total)
        if abs(x.sum() - self.total) > sum_atol:
            out.append(f"sum {x.sum():.8g} != {self.total:g}")
        idx = {n: i for i, n in enumerate(self.names)}
        for i, lc in enumerate(self.linear_constraints):
            lhs = sum(c * x[idx[n]] for n, c in lc.coefficients.items())
            if lc.le is not None and lhs > lc.le + atol:
                out.append(f"linear_constraints[{i}]: {lhs:.6g} > {lc.le:g}")
            if lc.ge is not None and lhs < lc.ge - atol:
                out.append(f"linear_constraints[{i}]: {lhs:.6g} < {lc.ge:g}")
            if lc.eq is not None and abs(lhs - lc.eq) > atol:
                out.append(f"linear_constraints[{i}]: {lhs:.6g} != {lc.eq:g}")
        return out


def load_space(path: str | Path) -> Space:
    """Read and validate a ``space.yaml``; errors name the file."""
    from matloop.utils.config import load_yaml, parse_config

    data = load_yaml(path, what="space file")
    space = parse_config(data, Space, f"{path}: invalid space", "a mapping with 'components', ...")
    try:
        unit_box_problem(space)  # contradictions and infeasibility, before any data is read
    except ConfigError as exc:
        raise ConfigError(f"{path}: invalid space: {exc}") from None
    return space


@dataclass
class UnitBoxProblem:
    """The space in fraction units u = x / total, optimised over its free components.

    Fixed components (forbidden, or min == max) keep their value; the free ones live in the box
    ``[lo/total, hi/total]``. Constraints are in BoTorch's form over the free variables:
    ``Σ coef · z[idx] >= rhs`` (inequalities) and ``== rhs`` (equalities).
    """

    space: Space
    free: np.ndarray  # indices into space.names
    lo: np.ndarray  # over all names, units of the total
    hi: np.ndarray
    A_eq: np.ndarray  # (m_eq, d)
    b_eq: np.ndarray
    A_ge: np.ndarray  # (m_ge, d)
    b_ge: np.ndarray

    @property
    def dim(self) -> int:
        return len(self.free)

    @property
    def fixed(self) -> np.ndarray:
        return np.setdiff1d(np.arange(len(self.lo)), self.free)

    @property
    def zbounds(self) -> np.ndarray:
        """(2, d) bounds of the free variables in fraction units."""
        t = self.space.total
        return np.stack([self.lo[self.free] / t, self.hi[self.free] / t])

    def to_u(self, x: np.ndarray) -> np.ndarray:
        """All components in fraction units (the model's inputs)."""
        return np.atleast_2d(x) / self.space.total

    def to_x(self, z: np.ndarray) -> np.ndarray:
        """Free variables (fraction units) → all components (units of the total), polished."""
        zb = self.zbounds
        z = np.clip(np.atleast_2d(z), zb[0], zb[1])
        x = np.tile(self.lo, (len(z), 1))
        x[:, self.free] = z * self.space.total
        return self._polish(x)

    def _polish(self, x: np.ndarray) -> np.ndarray:
        """Remove the optimiser's round-off so Σ = total holds to machine precision."""
        total = self.space.total
        for r in range(len(x)):
            err = total - x[r].sum()
            if err == 0.0:
                continue
            room = (self.hi - x[r]) if err > 0 else (x[r] - self.lo)
            mask = np.isin(np.arange(len(x[r])), self.free)
            room = np.where(mask, np.clip(room, 0, None), 0.0)
            if room.sum() > 0:
                x[r] += np.sign(err) * room * min(1.0, abs(err) / room.sum())
            j = self.free[np.argmax(x[r, self.free])]
            x[r, j] += total - x[r].sum()
        return x

    def round(self, x: np.ndarray, decimals: int = 6) -> np.ndarray:
        """Round compositions to `decimals` keeping Σ = total (fix-up on a free component)."""
        x = np.round(np.atleast_2d(x), decimals)
        for r in range(len(x)):
            err = round(self.space.total - x[r].sum(), decimals)
            if err == 0:
                continue
            room = (self.hi - x[r]) if err > 0 else (x[r] - self.lo)
            j = self.free[np.argmax(room[self.free])]
            x[r, j] = round(x[r, j] + err, decimals)
        return x

    def feasible_point(self) -> np.ndarray:
        """A feasible z well inside the region, or :class:`ConfigError` if none exists."""
        from scipy.optimize import linprog

        d = self.dim
        zb = self.zbounds
        # maximise a slack t shared by the inequalities and the box (a Chebyshev-like centre)
        c = np.zeros(d + 1)
        c[-1] = -1.0
        A_ub, b_ub = [], []
        for a, b in zip(self.A_ge, self.b_ge, strict=True):
            A_ub.append(np.r_[-a, np.linalg.norm(a)])
            b_ub.append(-b)
        for i in range(d):
            e = np.zeros(d + 1)
            e[i], e[-1] = -1.0, 1.0
            A_ub.append(e)
            b_ub.append(-zb[0, i])
            e = np.zeros(d + 1)
            e[i], e[-1] = 1.0, 1.0
            A_ub.append(e)
            b_ub.append(zb[1, i])
        A_eq = np.c_[self.A_eq, np.zeros(len(self.A_eq))] if len(self.A_eq) else None
        res = linprog(
            c,
            A_ub=np.array(A_ub),
            b_ub=np.array(b_ub),
            A_eq=A_eq,
            b_eq=self.b_eq if len(self.b_eq) else None,
            bounds=[(None, None)] * d + [(0.0, 1.0)],
            method="highs",
        )
        if res.status != 0:
            raise ConfigError(self._infeasible_reason())
        return res.x[:d]

    def botorch_constraints(self, dtype=None):
        """(inequality_constraints, equality_constraints) as BoTorch tuples over z."""
        import torch

        dtype = dtype or torch.double

        def conv(A, b):
            out = []
            for a, rhs in zip(A, b, strict=True):
                nz = np.flatnonzero(np.abs(a) > 0)
                out.append(
                    (
                        torch.tensor(nz, dtype=torch.long),
                        torch.tensor(a[nz], dtype=dtype),
                        float(rhs),
                    )
                )
            return out

        return conv(self.A_ge, self.b_ge) or None, conv(self.A_eq, self.b_eq) or None

    def _infeasible_reason(self) -> str:
        """One line naming the settings that conflict, the numbers, and what to relax."""
        s = self.space
        head = "constraints leave no feasible composition: "
        lo_sum, hi_sum = self.lo.sum(), self.hi.sum()
        if s.total < lo_sum - 1e-9 or s.total > hi_sum + 1e-9:
            return (
                f"{head}the component bounds allow sums "
                f"{lo_sum:g}..{hi_sum:g} but total is {s.total:g}"
                + (f" (forbidden: {', '.join(s.forbidden)})" if s.forbidden else "")
            )
        conflict = self._conflicting_constraints()
        if not conflict:
            return f"{head}bounds, total and linear_constraints cannot all hold at once"
        lcs = s.linear_constraints
        last = conflict[-1]
        given = conflict[:-1]
        lo, hi = self._lhs_range(lcs[last], given)
        named = [f"linear_constraints[{i}] ({lcs[i]})" for i in conflict]
        with_total = self._feasible(conflict, total=False)  # the conflict needs the total
        limits = ([f"total {s.total:g}"] if with_total else []) + self._binding_bounds(
            conflict, with_total
        )
        source = f" (from {', '.join(limits)})" if limits else ""
        if not given:
            text = (
                f"{named[0]} cannot hold: within the component bounds and total {s.total:g} "
                f"its left side ranges {lo:g}..{hi:g}{source}"
            )
        else:
            text = (
                f"{' and '.join(named)} contradict each other: given "
                f"{', '.join(f'linear_constraints[{i}]' for i in given)}, the component bounds "
                f"and total {s.total:g}, the left side of linear_constraints[{last}] ranges "
                f"{lo:g}..{hi:g}{source}"
            )
        return f"{head}{text}; {self._relax_advice(conflict, limits)}"

    def _rows(self, keep: Sequence[int], total: bool):
        """(A_ub, b_ub, A_eq, b_eq) over all names (units of the total) for linprog: the linear
        constraints `keep` (indices) and, when `total`, Σ x = total; None for an empty side."""
        names = self.space.names
        A_ub, b_ub, A_eq, b_eq = [], [], [], []
        for i in keep:
            lc = self.space.linear_constraints[i]
            a = lc.vector(names)
            if lc.eq is not None:
                A_eq.append(a)
                b_eq.append(lc.eq)
            elif lc.le is not None:
                A_ub.append(a)
                b_ub.append(lc.le)
            else:
                A_ub.append(-a)
                b_ub.append(-lc.ge)
        if total:
            A_eq.append(np.ones(len(names)))
            b_eq.append(self.space.total)
        return (
            np.array(A_ub) if A_ub else None,
            b_ub or None,
            np.array(A_eq) if A_eq else None,
            b_eq or None,
        )

    # An infeasible space is explained by a minimal conflicting set (deletion filter): drop one
    # constraint (or bound) at a time and keep it out while the rest stays infeasible.
    def _feasible(
        self,
        keep: Sequence[int],
        lo: np.ndarray | None = None,
        hi: np.ndarray | None = None,
        total: bool = True,
    ) -> bool:
        """Whether some x within [lo, hi] (±inf: unbounded; default: the space's bounds), with
        Σ x = total when `total`, meets the linear constraints `keep` (units of the total)."""
        from scipy.optimize import linprog

        names = self.space.names
        lo = self.lo if lo is None else lo
        hi = self.hi if hi is None else hi
        A_ub, b_ub, A_eq, b_eq = self._rows(keep, total)
        bounds = [
            (None if np.isneginf(a) else a, None if np.isposinf(b) else b)
            for a, b in zip(lo, hi, strict=True)
        ]
        res = linprog(
            np.zeros(len(names)),
            A_ub=A_ub,
            b_ub=b_ub,
            A_eq=A_eq,
            b_eq=b_eq,
            bounds=bounds,
            method="highs",
        )
        return res.status == 0

    def _conflicting_constraints(self) -> list[int]:
        """Indices of a minimal set of linear constraints that cannot hold together within the
        bounds and the total (a single one when one alone cannot hold); [] if none found."""
        every = list(range(len(self.space.linear_constraints)))
        for i in every:  # one that cannot hold on its own is the clearest message
            if not self._feasible([i]):
                return [i]
        if self._feasible(every):
            return []
        keep = every
        for i in every:
            rest = [j for j in keep if j != i]
            if not self._feasible(rest):
                keep = rest
        return keep

    def _bound_text(self, j: int, side: str) -> str:
        """``SiO2 >= 40`` / ``SiO2 <= 80`` (``forbidden PbO`` for a forbidden one's max)."""
        name = self.space.names[j]
        if side == "min":
            return f"{name} >= {self.lo[j]:g}"
        return f"forbidden {name}" if name in self.space.forbidden else f"{name} <= {self.hi[j]:g}"

    def _binding_bounds(self, conflict: list[int], total: bool) -> list[str]:
        """The bounds (texts) without which the `conflict` constraints could hold together."""
        lo, hi = self.lo.copy(), self.hi.copy()
        needed = []
        for j, side in ((j, side) for j in range(len(lo)) for side in ("min", "max")):
            arr = lo if side == "min" else hi
            old, arr[j] = arr[j], -np.inf if side == "min" else np.inf
            if self._feasible(conflict, lo, hi, total):
                arr[j] = old
                needed.append(self._bound_text(j, side))
        return needed

    def _relax_advice(self, conflict: list[int], limits: list[str]) -> str:
        """Which single constraint or bound, dropped or relaxed, makes the space feasible."""
        every = list(range(len(self.space.linear_constraints)))
        fixes = [
            f"linear_constraints[{i}]"
            for i in conflict
            if self._feasible([j for j in every if j != i])
        ]
        t = self.space.total
        for j, name in enumerate(self.space.names):
            if name in self.space.forbidden:
                continue
            for side, loose in (("min", 0.0), ("max", t)):
                if self._bound_text(j, side) not in limits:
                    continue
                lo, hi = self.lo.copy(), self.hi.copy()
                (lo if side == "min" else hi)[j] = loose
                if loose != (self.lo if side == "min" else self.hi)[j] and self._feasible(
                    every, lo, hi
                ):
                    fixes.append(f"components.{name}.{side}")
        if not fixes:
            return (
                "no single change among these makes the space feasible (another conflict "
                "remains): fix this one and load the space again to see the next"
            )
        if len(fixes) == 1:
            return f"relax {fixes[0]}"
        return f"relax one of {', '.join(fixes)}"

    def _lhs_range(self, lc: LinearConstraint, given: Sequence[int] = ()) -> tuple[float, float]:
        """Least and greatest ``Σ coef · x`` over the bounds with Σ x = total and the linear
        constraints `given` (indices) (units of the total)."""
        from scipy.optimize import linprog

        coef = lc.vector(self.space.names)
        A_ub, b_ub, A_eq, b_eq = self._rows(list(given), total=True)
        out = []
        for sign in (1.0, -1.0):
            res = linprog(
                sign * coef,
                A_ub=A_ub,
                b_ub=b_ub,
                A_eq=A_eq,
                b_eq=b_eq,
                bounds=list(zip(self.lo, self.hi, strict=True)),
                method="highs",
            )
            out.append(sign * res.fun)
        return out[0], out[1]


def unit_box_problem(space: Space) -> UnitBoxProblem:
    """Translate `space` into fraction units over its free components (:class:`ConfigError`
    when its settings contradict each other or leave no feasible composition)."""
    space.check_consistent()
    names = space.names
    lo, hi = space.lower(), space.upper()
    t = space.total
    free = np.flatnonzero(hi - lo > 1e-12)
    if free.size == 0:
        raise ConfigError("the space has no free component (all fixed or forbidden)")
    fixed = np.setdiff1d(np.arange(len(names)), free)
    fixed_sum = lo[fixed].sum()
    A_eq = [np.ones(len(free))]
    b_eq = [(t - fixed_sum) / t]
    A_ge, b_ge = [], []
    for lc in space.linear_constraints:
        coef = lc.vector(names)
        a = coef[free] * t
        const = float(coef[fixed] @ lo[fixed])
        if lc.eq is not None:
            A_eq.append(a)
            b_eq.append(lc.eq - const)
        elif lc.ge is not None:
            A_ge.append(a)
            b_ge.append(lc.ge - const)
        else:
            A_ge.append(-a)
            b_ge.append(-(lc.le - const))
    d = len(free)
    prob = UnitBoxProblem(
        space=space,
        free=free,
        lo=lo,
        hi=hi,
        A_eq=np.array(A_eq).reshape(-1, d),
        b_eq=np.array(b_eq),
        A_ge=np.array(A_ge).reshape(-1, d),
        b_ge=np.array(b_ge),
    )
    prob.feasible_point()  # raises ConfigError early when infeasible
    # an equality implied by the others (e.g. a restated total) would leave BoTorch's polytope
    # sampler stuck at one point; after the check above the dropped rows are known to hold
    keep: list[int] = []
    for i in range(len(prob.A_eq)):
        if np.linalg.matrix_rank(prob.A_eq[[*keep, i]], tol=1e-9) > len(keep):
            keep.append(i)
    prob.A_eq, prob.b_eq = prob.A_eq[keep], prob.b_eq[keep]
    return prob


def observed_compositions(
    frame, space: Space, source: str = "data", ignore: tuple[str, ...] | list[str] = ()
) -> np.ndarray:
    """Component amounts of observed rows in ``space.names`` order, validated against the space.

    Component columns absent from the CSV are taken as 0 only for forbidden components; a column
    that looks like a component (a chemical formula) but is not in the space is an error, except
    the `ignore` columns (the objectives: a property may be named ``K`` or ``B``, like an element).
    """
    names = space.names
    extra = []
    for col in frame.columns:
        if col in names or col in ignore:
            continue
        try:
            parse_component(str(col))
        except (ValueError, KeyError):  # not a component name (DataError is a ValueError)
            continue
        vals = np.asarray(frame[col], dtype=float)
        if np.nansum(np.abs(vals)) > 0:
            extra.append(col)
    if extra:
        raise DataError(
            f"{source}: component column(s) {extra} are not in the space (components: {names})"
        )
    missing = [n for n in names if n not in frame.columns and n not in space.forbidden]
    if missing:
        raise DataError(
            f"{source}: missing component column(s) {missing}; columns are {list(frame.columns)}"
        )
    x = np.zeros((len(frame), len(names)))
    for j, n in enumerate(names):
        if n in frame.columns:
            try:
                x[:, j] = np.asarray(frame[n], dtype=float)
            except (TypeError, ValueError) as exc:
                raise DataError(f"{source}: column {n!r} is not numeric: {exc}") from exc
    x = np.where(np.isnan(x), 0.0, x)
    from matloop.compositions.core import validate_sums

    validate_sums(
        x,
        space.total,
        space.sum_atol,
        source=source,
        row_labels=[i + 1 for i in range(len(x))] if len(x) else None,
    )
    return x
