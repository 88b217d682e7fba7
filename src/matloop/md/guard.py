"""Watch a model's uncertainty during MD (an observer for :func:`matloop.md.run_md`).

σ comes from :func:`matloop.calculators.uncertainty.predict_uncertainty`: the largest atomic force
std (eV/Å; committees, ``ace``) or the energy std (eV/atom; ``kernel``). The guard warns once when
a linear model's extrapolation grade passes 1 (the structure is outside its training set: see
:mod:`matloop.models.ace.uncertainty` for the two rules, MaxVol active set or force σ relative to
the validation atoms'), and with a limit it stops the run at the first check whose σ passes it,
writing that frame.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from matloop.calculators.uncertainty import predict_uncertainty, uncertainty_kind
from matloop.errors import ConfigError, MatloopError

UNITS = {"forces": "eV/Å (largest atomic force std)", "energy": "eV/atom (energy std)"}
#: what a grade above 1 means, per grade rule (see matloop.models.ace.uncertainty.grade_rule)
GRADE_MEANING = {
    "maxvol": "an atom lies outside the MaxVol active set of the training atoms",
    "sigma": "an atom's force σ is {grade:.2g}× the largest on the validation and training atoms",
    "mixed": "an atom lies outside the training data (MaxVol active set or force σ)",
}


def untrusted_maxvol(calc: Any) -> str | None:
    """Why the MaxVol grade of a model fitted before the sigma rule means nothing (its fit facts
    show fewer sampled atoms than MIN_CANDIDATES_PER_ROW per active-set row), else None."""
    from matloop.models.ace.uncertainty import MIN_CANDIDATES_PER_ROW

    facts = ((getattr(calc, "metadata", None) or {}).get("fit") or {}).get("active_set") or {}
    for fact in facts.values():
        rows, atoms = int(fact.get("active_set", 0) or 0), int(fact.get("candidates", 0) or 0)
        if "rule" not in fact and rows and atoms < MIN_CANDIDATES_PER_ROW * rows:
            return (
                f"its MaxVol active set came from {atoms} atoms for {rows} rows (fewer than "
                f"{MIN_CANDIDATES_PER_ROW} per row)"
            )
    return None


def grade_warning(step: int, grade: float, rule: str | None, sigma: str) -> str:
    """The one-line warning of a structure whose extrapolation grade passed 1; `sigma` is the
    structure's σ with its unit."""
    meaning = GRADE_MEANING.get(rule or "maxvol", GRADE_MEANING["maxvol"]).format(grade=grade)
    return (
        f"step {step}: extrapolation grade {grade:.2f} > 1 — {meaning}: the model is "
        f"extrapolating (σ = {sigma}) and its forces may be wrong; add such frames to the "
        "training set (matloop md --learn does it on the fly) or stop at a σ with "
        "--max-uncertainty"
    )


class UncertaintyGuard:
    """Observer: ``guard(step, atoms)`` returns ``"max_uncertainty"`` to stop the run."""

    def __init__(
        self,
        calc: Any,
        max_uncertainty: float | None = None,
        frame_path: str | Path | None = None,
        timestep_fs: float | None = None,
        overwrite: bool = False,
    ) -> None:
        self.calc = calc
        self.kind = uncertainty_kind(calc)
        if self.kind is None:
            raise ConfigError(
                "--max-uncertainty needs a model with an uncertainty (a committee, the kernel "
                "or the ace family)"
            )
        if max_uncertainty is not None and not max_uncertainty > 0:
            raise ConfigError(f"--max-uncertainty must be > 0, got {max_uncertainty!r}")
        self.limit = max_uncertainty
        self.frame_path = Path(frame_path) if frame_path is not None else None
        if self.limit is not None and self.frame_path is not None and not overwrite:
            from matloop.utils.files import refuse_overwrite

            refuse_overwrite(self.frame_path, False, "--uncertain-frame")
        self.max_seen = 0.0
        self.max_grade: float | None = None
        self.stopped_at: tuple[int, float] | None = None
        self._warned = False
        from matloop.models.ace.uncertainty import grade_rule

        model = getattr(calc, "model", None)
        self.grade_rule = grade_rule(model) if model is not None else None
        # models fitted before the sigma rule: a MaxVol grade from too few atoms is noise
        self._untrusted = untrusted_maxvol(calc) if self.grade_rule == "maxvol" else None
        if self._untrusted is not None:
            self.grade_rule = "untrusted"

    @classmethod
    def for_cli(
        cls,
        calc: Any,
        max_uncertainty: float | None,
        frame: Path | None,
        traj: Path | None,
        force: bool = False,
    ) -> UncertaintyGuard | None:
        """The guard `matloop md` uses: None for a model without σ and no limit asked; `force`
        lets it overwrite an earlier frame."""
        if uncertainty_kind(calc) is None and max_uncertainty is None:
            return None
        frame = cls.frame_path_for(frame, traj)
        return cls(calc, max_uncertainty, frame, overwrite=force)

    @staticmethod
    def frame_path_for(frame: Path | None, traj: Path | None) -> Path:
        """Where `matloop md` writes the frame that passed the limit: `frame`, else
        uncertain_frame.xyz beside `traj`, else in the current folder."""
        if frame is not None:
            return frame
        return (traj.parent if traj is not None else Path(".")) / "uncertain_frame.xyz"

    def __call__(self, step: int, atoms: Atoms) -> str | None:
        unc = predict_uncertainty(self.calc, atoms)
        self.max_seen = max(self.max_seen, unc.structure)
        if unc.grade is not None and unc.grade.size:
            grade = float(unc.grade.max())
            self.max_grade = grade if self.max_grade is None else max(self.max_grade, grade)
            if self._untrusted is not None and not self._warned:
                self._warned = True
                warnings.warn(
                    f"this model's extrapolation grade is not meaningful ({self._untrusted}): "
                    "no extrapolation warnings in this run; refit it with this matloop version "
                    "to get a grade from its validation σ",
                    stacklevel=2,
                )
            elif grade > 1.0 and not self._warned:
                self._warned = True
                sigma = f"{unc.structure:.3g} {UNITS[unc.kind]}"
                warnings.warn(grade_warning(step, grade, self.grade_rule, sigma), stacklevel=2)
        if self.limit is not None and unc.structure > self.limit:
            self.stopped_at = (step, unc.structure)
            self._write(atoms, step, unc.structure, unc.atoms)
            return "max_uncertainty"
        return None

    def _write(self, atoms: Atoms, step: int, sigma: float, per_atom: np.ndarray) -> None:
        from ase.io import write

        from matloop.utils.files import atomic_path

        if self.frame_path is None:
            return
        frame = atoms.copy()
        frame.set_constraint()
        frame.calc = None
        frame.info.update(md_step=int(step), sigma=float(sigma), sigma_kind=self.kind)
        frame.arrays["sigma"] = np.asarray(per_atom, dtype=float)
        with atomic_path(self.frame_path) as tmp:
            write(tmp, frame, format="extxyz")

    def summary(self) -> dict[str, Any]:
        """Largest σ seen (and grade), and where the run stopped."""
        out: dict[str, Any] = {"max_uncertainty_seen": self.max_seen, "uncertainty_kind": self.kind}
        if self.max_grade is not None:
            out["max_extrapolation_grade"] = self.max_grade
            out["extrapolation_grade_rule"] = self.grade_rule
        if self.stopped_at is not None:
            out["stopped_at_step"] = self.stopped_at[0]
        return out

    def finish(self) -> None:
        """Raise the one-line error of a run stopped by the limit (after outputs are written)."""
        if self.stopped_at is None:
            return
        step, sigma = self.stopped_at
        where = f"; frame written to {self.frame_path}" if self.frame_path else ""
        raise MatloopError(
            f"stopped at step {step}: σ = {sigma:.3g} {UNITS[self.kind or 'forces']} exceeds "
            f"--max-uncertainty {self.limit:g}{where}"
        )
