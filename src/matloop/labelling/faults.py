"""A fault-injecting reference calculator, to test that failures never become training data.

``FaultyCalculator`` wraps a real calculator (EMT by default) and, for a deterministic fraction
of structures (decided by a hash of the positions and `seed`, so a rerun sees the same fault),
fails in one of the ways real reference codes fail: an exception, SCF non-convergence (half of
them recoverable with more iterations), NaN results, absurd forces, or hanging past the time
limit. Available as the built-in calculator ``faulty``.
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from matloop.labelling.base import ScfConvergenceError

FAULT_KINDS = ("exception", "scf", "nan", "absurd", "timeout")


class FaultyCalculator(Calculator):
    """EMT-like calculator that fails on purpose for a fraction of structures.

    Parameters: `base` (calculator spec, default 'emt'), `seed`, probabilities `p_exception`,
    `p_scf`, `p_nan`, `p_absurd`, `p_timeout`; `max_iterations` (a recoverable SCF fault needs
    150, an unrecoverable one never converges); `hang_s` (how long a 'timeout' fault sleeps);
    `log` (file to which every call appends ``key<TAB>fault``; default env MATLOOP_FAULT_LOG).
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(
        self,
        base: str = "emt",
        seed: int = 0,
        p_exception: float = 0.0,
        p_scf: float = 0.0,
        p_nan: float = 0.0,
        p_absurd: float = 0.0,
        p_timeout: float = 0.0,
        max_iterations: int = 100,
        hang_s: float = 5.0,
        delay_s: float = 0.0,
        log: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        from matloop.calculators import resolve_calculator

        self.base = resolve_calculator(base)
        self.seed = int(seed)
        self.probs = [p_exception, p_scf, p_nan, p_absurd, p_timeout]
        if sum(self.probs) > 1.0:
            raise ValueError("fault probabilities add up to more than 1")
        self.max_iterations = int(max_iterations)
        self.hang_s = float(hang_s)
        self.delay_s = float(delay_s)
        self.log = log or os.environ.get("MATLOOP_FAULT_LOG")

    def fault_for(self, atoms) -> tuple[str | None, float]:
        """The fault this structure triggers (None: none) and a second uniform number."""
        h = hashlib.sha256()
        h.update(np.round(atoms.get_positions(), 6).tobytes())
        h.update(atoms.numbers.tobytes())
        h.update(str(self.seed).encode())
        digest = h.digest()
        u = int.from_bytes(digest[:8], "little") / 2**64
        v = int.from_bytes(digest[8:16], "little") / 2**64
        edge = 0.0
        for kind, p in zip(FAULT_KINDS, self.probs, strict=True):
            edge += p
            if u < edge:
                return kind, v
        return None, v

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        fault, v = self.fault_for(self.atoms)
        if self.log:
            key = self.atoms.info.get("matloop_key", "")
            with open(self.log, "a") as fh:
                fh.write(f"{key}\t{fault or 'ok'}\n")
        if self.delay_s:
            time.sleep(self.delay_s)
        if fault == "exception":
            raise RuntimeError("injected crash: segmentation fault in reference code")
        if fault == "scf":
            needed = 150 if v < 0.5 else 10**9
            if self.max_iterations < needed:
                raise ScfConvergenceError(
                    f"SCF not converged in {self.max_iterations} iterations (injected)"
                )
        if fault == "timeout":
            time.sleep(self.hang_s)
        work = self.atoms.copy()
        work.calc = self.base
        energy = work.get_potential_energy()
        forces = work.get_forces()
        self.results = {"energy": energy, "free_energy": energy, "forces": forces}
        if work.pbc.all():
            self.results["stress"] = work.get_stress()
        if fault == "nan":
            self.results["energy"] = float("nan")
            self.results["free_energy"] = float("nan")
        elif fault == "absurd":
            f = forces.copy()
            f[0] += 1.0e4
            self.results["forces"] = f
