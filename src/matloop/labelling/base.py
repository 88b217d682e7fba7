"""The labeller interface: prepare → run → parse, with a three-state status and recovery.

A labelling never raises for a failed calculation: it returns a :class:`LabelResult` whose
status is SUCCESS, FAILED (the code did not produce a result, e.g. SCF not converged after all
corrections) or INCONSISTENT (it produced a result that must not be trusted: NaN, absurd forces,
missing forces). Failures are data that the active-learning loop quarantines.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import math
import re
import signal
import subprocess
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import InputError, SCFError

from matloop.errors import ConfigError
from matloop.neighbors import geometry_problem
from matloop.utils.jsonable import to_jsonable


class LabelStatus(enum.StrEnum):
    """Outcome of one labelling."""

    SUCCESS = "success"
    FAILED = "failed"
    INCONSISTENT = "inconsistent"


class ScfConvergenceError(RuntimeError):
    """A self-consistent-field cycle did not converge (raised by matloop's own DFT wrappers)."""


class LabelTimeout(RuntimeError):
    """The calculation ran longer than the labeller's time limit."""


@dataclass
class Attempt:
    """One try of a calculation: the settings used and what went wrong (None on success)."""

    settings: dict[str, Any]
    error_kind: str | None
    message: str
    seconds: float


@dataclass
class LabelResult:
    """What a labelling produced.

    `atoms` carries a SinglePointCalculator with energy (eV), forces (eV/Å) and, where computed,
    stress (eV/Å³) on SUCCESS; on failure it is the input structure without results.
    """

    status: LabelStatus
    atoms: Atoms
    reason: str = ""
    labeller: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status is LabelStatus.SUCCESS

    def provenance(self) -> dict[str, Any]:
        """JSON-friendly record of how this label was made."""
        return {
            "status": self.status.value,
            "reason": self.reason,
            "labeller": self.labeller,
            "settings": to_jsonable(self.settings),
            "attempts": [
                {
                    "settings": to_jsonable(a.settings),
                    "error_kind": a.error_kind,
                    "message": a.message[:500],
                    "seconds": round(a.seconds, 4),
                }
                for a in self.attempts
            ],
            "seconds": round(self.seconds, 4),
        }


@dataclass
class ValidationLimits:
    """Limits a result must respect to be accepted as training data."""

    max_force: float = 50.0  # eV/Å; larger components are treated as a broken calculation
    max_abs_energy_per_atom: float = 1.0e5  # eV/atom
    require_forces: bool = True
    # eV/Å³ (≈ 1.6 TPa, the data readers' limit); a collapsed cell has zero forces but not this
    max_stress: float = 10.0


def validate_result(
    atoms: Atoms,
    energy: float | None,
    forces: np.ndarray | None,
    stress: np.ndarray | None,
    limits: ValidationLimits,
) -> str | None:
    """Return why a computed result must not be used, or None when it is acceptable."""
    n = len(atoms)
    if energy is None:
        return "no energy in the result"
    if not math.isfinite(float(energy)):
        return f"non-finite energy {energy}"
    if n and abs(float(energy)) / n > limits.max_abs_energy_per_atom:
        return f"absurd energy {float(energy) / n:.4g} eV/atom"
    if forces is None:
        if limits.require_forces:
            return "no forces in the result"
    else:
        forces = np.asarray(forces, dtype=float)
        if forces.shape != (n, 3):
            return f"forces have shape {forces.shape}, expected ({n}, 3)"
        if not np.all(np.isfinite(forces)):
            return "non-finite forces"
        fmax = float(np.abs(forces).max()) if n else 0.0
        if fmax > limits.max_force:
            return f"absurd forces: max |F| component {fmax:.4g} eV/Å > {limits.max_force:g}"
    if stress is not None:
        stress = np.asarray(stress, dtype=float)
        if stress.shape != (6,):
            return f"stress has shape {stress.shape}, expected Voigt (6,): xx yy zz yz xz xy"
        if not np.all(np.isfinite(stress)):
            return "non-finite stress"
        smax = float(np.abs(stress).max())
        if smax > limits.max_stress:
            return f"absurd stress: max |σ| component {smax:.4g} eV/Å³ > {limits.max_stress:g}"
    return None


#: exception classes of reference codes that mean "SCF did not converge" (GPAW, PySCF, ...)
_SCF_ERROR_NAMES = {"KohnShamConvergenceError", "ConvergenceError", "SCFConvergenceError"}


def classify_exception(exc: BaseException) -> str:
    """Map an exception from a reference code to an error kind: 'scf', 'timeout', 'crash' or
    'config' (a setup or input the code cannot run, e.g. a missing package, an element without
    parameters, ASE's InputError: never retried)."""
    if isinstance(exc, ConfigError | ImportError):  # a missing package is no SCF problem
        return "config"
    if isinstance(exc, NotImplementedError | InputError):
        # an element without parameters, a property the code lacks, atoms it refuses: the
        # same input fails the same way again, so no retry
        return "config"
    if isinstance(exc, LabelTimeout | TimeoutError | subprocess.TimeoutExpired):
        return "timeout"
    if isinstance(exc, ScfConvergenceError | SCFError):
        return "scf"
    # optional codes' own types, matched by name so that they need not be installed
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & _SCF_ERROR_NAMES:
        return "scf"
    if isinstance(exc, MemoryError | OSError):
        return "crash"
    # last resort for codes that raise generic errors: the message text
    text = f"{type(exc).__name__} {exc}".lower()
    if "converge" in text or re.search(r"(?<![a-z])scf", text):  # 'scf', not 'pyscf'
        return "scf"
    if "timeout" in text or "walltime" in text or "time limit" in text:
        return "timeout"
    return "crash"


def _label_results(energy: float, free_energy: float | None) -> dict[str, Any]:
    """``energy`` and ``free_energy`` (eV) of a label: the code's own free energy where it gave
    a finite one (smeared DFT: Mermin free energy ≠ energy), otherwise the energy."""
    free = energy if free_energy is None or not math.isfinite(free_energy) else free_energy
    return {"energy": float(energy), "free_energy": float(free)}


def _bare_copy(atoms: Atoms) -> Atoms:
    """A copy of `atoms` without calculator or constraints (what one attempt computes on)."""
    work = atoms.copy()
    work.calc = None
    work.set_constraint()
    return work


def _labelled(
    atoms: Atoms,
    energy: float,
    forces: np.ndarray | None,
    stress: np.ndarray | None,
    free_energy: float | None,
) -> Atoms:
    """A copy of `atoms` (constraints kept, for MD started from it) with its label attached:
    the code's raw results (eV, eV/Å, Voigt eV/Å³) in ``calc.results``."""
    from ase.calculators.singlepoint import SinglePointCalculator

    out = atoms.copy()
    results = _label_results(energy, free_energy)
    if forces is not None:
        results["forces"] = np.asarray(forces, dtype=float)
    if stress is not None:
        results["stress"] = np.asarray(stress, dtype=float)
    out.calc = SinglePointCalculator(out, **results)
    return out


def _describe_exception(exc: BaseException, kind: str) -> str:
    """One line: the exception type and text, and for a crash where it was raised."""
    message = f"{type(exc).__name__}: {exc}".strip()
    if kind == "crash":
        tb = traceback.extract_tb(exc.__traceback__)
        if tb:
            message += f" (at {tb[-1].filename}:{tb[-1].lineno})"
    return message


DEFAULT_TIMEOUT_S = 3600.0
"""Default time limit of one reference calculation (s): a hung code is stopped, not waited on."""


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`LabelTimeout` after `seconds` (main thread only; elsewhere no limit)."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum, frame):  # noqa: ARG001
        raise LabelTimeout(f"timeout after {seconds:g} s")

    before = {p.pid for p in _children()}
    old = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, float(seconds))
    try:
        yield
    except LabelTimeout:
        _stop_children_since(before)
        raise
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0.0)
        signal.signal(signal.SIGALRM, old)


def call_with_time_limit(fn: Callable[[], Any], seconds: float | None) -> Any:
    """Return ``fn()``; raise :class:`LabelTimeout` once it has run `seconds` (None/0: no limit).

    In the main thread a SIGALRM interrupts the call (:func:`time_limit`). In any other thread
    (a Dask worker runs its tasks in a thread pool, where no signal can be used) `fn` runs in a
    helper thread that is waited on for `seconds`; when it is still running, the processes it
    started are stopped and a LabelTimeout is raised here and in the helper thread (which ends
    as soon as its code next runs Python bytecode; a long call into compiled code finishes first).
    """
    if not seconds:
        return fn()
    if threading.current_thread() is threading.main_thread():
        with time_limit(seconds):
            return fn()
    return _call_in_thread(fn, float(seconds))


def _call_in_thread(fn: Callable[[], Any], seconds: float) -> Any:
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed over to the waiting thread
            box["error"] = exc

    before = {p.pid for p in _children()}
    worker = threading.Thread(target=target, name="matloop-label-attempt", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        _raise_in_thread(worker, LabelTimeout)
        _stop_children_since(before)
        raise LabelTimeout(f"timeout after {seconds:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _raise_in_thread(thread: threading.Thread, exc_type: type[BaseException]) -> None:
    """Ask `thread` to raise `exc_type` when it next executes Python code."""
    import ctypes

    if thread.ident is None:
        return
    ident = ctypes.c_ulong(thread.ident)
    if ctypes.pythonapi.PyThreadState_SetAsyncExc(ident, ctypes.py_object(exc_type)) > 1:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ident, None)  # as the C API asks


def _children() -> list:
    import psutil

    return psutil.Process().children(recursive=True)


def _stop_children_since(before: set[int], grace_s: float = 5.0) -> None:
    """Stop the processes started since `before` (pids): a code run by ASE's file-IO calculators
    (mpirun and its ranks) keeps running when the wait for it is interrupted, holding cores
    and writing into the directory of the next attempt. Terminate, then kill after `grace_s`."""
    import psutil

    started = [p for p in _children() if p.pid not in before]
    for proc in started:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(started, timeout=grace_s)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()


#: error kinds a handler ladder can be given for ('config' is never retried)
HANDLER_KINDS = ("scf", "timeout", "crash")


def check_handlers(handlers: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Return a copy of correction ladders ``{error_kind: [settings patch, ...]}``; raise a
    ConfigError for an error kind that never occurs (a ladder that would silently never run)
    or a patch that is not a mapping of setting names."""
    if not isinstance(handlers, dict):
        raise ConfigError(
            f"handlers must be {{error kind: [settings patch, ...]}}, got {handlers!r}"
        )
    out: dict[str, list[dict[str, Any]]] = {}
    for kind, ladder in handlers.items():
        if kind not in HANDLER_KINDS:
            raise ConfigError(
                f"handlers: unknown error kind {kind!r}; the kinds are {', '.join(HANDLER_KINDS)}"
                " ('config' failures are never retried)"
            )
        if not isinstance(ladder, list | tuple) or not all(isinstance(x, dict) for x in ladder):
            raise ConfigError(f"handlers[{kind!r}] must be a list of settings patches (mappings)")
        out[kind] = [dict(x) for x in ladder]
    return out


class Labeller:
    """Base class of reference labellers (a picklable description of a calculation).

    Subclasses implement :meth:`prepare` (build the calculator for the current settings),
    :meth:`run` (compute) and :meth:`parse` (read energy/forces/stress). :meth:`label` drives
    them with error handlers: on a recognised failure the handler ladder for that error kind
    patches the settings (e.g. more SCF iterations, smaller mixing, smearing) and retries, at
    most `max_retries` times, then gives up with status FAILED.

    Handlers: ``{error_kind: [settings_patch, ...]}``, patches applied cumulatively in order;
    error kinds are 'scf', 'timeout' and 'crash' (another key is a ConfigError; ``{}``: no
    retry). 'config' (a :class:`ConfigError` such as a missing package, an element without
    parameters, or a structure :meth:`structure_problem` refuses) has no ladder: it fails at once.
    """

    name: str = "labeller"
    default_handlers: dict[str, list[dict[str, Any]]] = {"crash": [{}]}

    def __init__(
        self,
        settings: dict[str, Any] | None = None,
        *,
        handlers: dict[str, list[dict[str, Any]]] | None = None,
        max_retries: int = 3,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
        limits: ValidationLimits | None = None,
        compute_stress: bool | None = None,
    ) -> None:
        if int(max_retries) < 0:
            raise ConfigError(f"max_retries must be >= 0, got {max_retries}")
        if timeout_s is not None and not (timeout_s >= 0 and math.isfinite(timeout_s)):
            raise ConfigError(f"timeout_s must be a finite number of seconds >= 0, got {timeout_s}")
        self.settings = dict(settings or {})
        self.handlers = check_handlers(self.default_handlers if handlers is None else handlers)
        self.max_retries = int(max_retries)
        self.timeout_s = timeout_s
        self.limits = limits or ValidationLimits()
        self.compute_stress = compute_stress

    # -- the three steps ---------------------------------------------------------------------
    def prepare(self, atoms: Atoms, settings: dict[str, Any]) -> Any:
        """Return a calculator (or any object `run` needs) for `settings`."""
        raise NotImplementedError

    def run(self, atoms: Atoms, prepared: Any) -> Any:
        """Run the calculation; return whatever :meth:`parse` reads."""
        raise NotImplementedError

    def parse(
        self, atoms: Atoms, raw: Any
    ) -> tuple[float | None, np.ndarray | None, np.ndarray | None]:
        """Return (energy eV, forces eV/Å, stress eV/Å³ Voigt or None); a fourth element, the
        free energy (eV) where the code reports one apart from the energy, is optional."""
        raise NotImplementedError

    # -- driver ------------------------------------------------------------------------------
    def label(self, atoms: Atoms) -> LabelResult:
        """Compute a reference label for `atoms` with recovery; never raises for a failed run.

        Every attempt works on a fresh copy of `atoms` without constraints (a label holds the
        code's raw energy eV, forces eV/Å and stress eV/Å³, not forces zeroed by FixAtoms: read
        them from ``calc.results`` or with ``apply_constraint=False``), and a fresh calculator
        from :meth:`prepare`, so a failed or timed-out attempt leaves nothing behind.
        """
        start = time.perf_counter()
        settings = dict(self.settings)
        attempts: list[Attempt] = []
        problem = self.structure_problem(atoms)
        if problem is not None:
            attempts.append(Attempt(dict(settings), "config", problem, 0.0))
            return self._failed(atoms, settings, attempts, start)
        ladder_pos: dict[str, int] = {}
        for _ in range(self.max_retries + 1):
            t0 = time.perf_counter()
            work = _bare_copy(atoms)
            try:
                attempt = functools.partial(self._attempt, work, dict(settings))
                energy, forces, stress, *extra = call_with_time_limit(attempt, self.timeout_s)
            except Exception as exc:  # noqa: BLE001 - a failed calculation is data
                kind = classify_exception(exc)
                message = _describe_exception(exc, kind)
                attempts.append(Attempt(dict(settings), kind, message, time.perf_counter() - t0))
                patch = self._next_patch(kind, ladder_pos)
                if patch is None:
                    break
                settings = {**settings, **patch}
                continue
            attempts.append(Attempt(dict(settings), None, "", time.perf_counter() - t0))
            reason = validate_result(work, energy, forces, stress, self.limits)
            if reason is not None:
                return LabelResult(
                    LabelStatus.INCONSISTENT,
                    atoms.copy(),
                    reason,
                    self.name,
                    settings,
                    attempts,
                    time.perf_counter() - start,
                )
            out = _labelled(atoms, energy, forces, stress, extra[0] if extra else None)
            return LabelResult(
                LabelStatus.SUCCESS,
                out,
                "",
                self.name,
                settings,
                attempts,
                time.perf_counter() - start,
            )
        return self._failed(atoms, settings, attempts, start)

    def _attempt(self, work: Atoms, settings: dict[str, Any]) -> tuple:
        prepared = self.prepare(work, settings)
        raw = self.run(work, prepared)
        return tuple(self.parse(work, raw))

    def _failed(
        self, atoms: Atoms, settings: dict[str, Any], attempts: list[Attempt], start: float
    ) -> LabelResult:
        last = attempts[-1]
        reason = f"{last.error_kind}: {last.message} (gave up after {len(attempts)} attempt(s))"
        return LabelResult(
            LabelStatus.FAILED,
            atoms.copy(),
            reason,
            self.name,
            settings,
            attempts,
            time.perf_counter() - start,
        )

    def structure_problem(self, atoms: Atoms) -> str | None:
        """Why `atoms` cannot be labelled at all (a 'config' failure, no attempt), or None."""
        problem = geometry_problem(atoms)
        if problem is not None:
            return problem
        if self.compute_stress and not atoms.pbc.all():
            return (
                f"compute_stress is set but the structure is not periodic in 3-D "
                f"(pbc={atoms.pbc.tolist()}): stress needs a periodic cell"
            )
        return None

    def _next_patch(self, kind: str, pos: dict[str, int]) -> dict[str, Any] | None:
        ladder = self.handlers.get(kind, [])
        i = pos.get(kind, 0)
        if i >= len(ladder):
            return None
        pos[kind] = i + 1
        return dict(ladder[i])

    def __call__(self, atoms: Atoms) -> LabelResult:
        return self.label(atoms)

    def describe(self) -> dict[str, Any]:
        """JSON-friendly description (name and base settings) for provenance."""
        return {"labeller": self.name, "settings": to_jsonable(self.settings)}
