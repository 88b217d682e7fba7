"""On-the-fly learning during MD: label where the model is unsure, refit, continue.

``matloop md MODEL STRUCTURE --learn --reference CALC --train-data LABELS --max-uncertainty X``
runs MD with MODEL; at every check (``--uncertainty-interval`` steps) the model's σ
(:mod:`matloop.calculators.uncertainty`) is compared with X. Above it, the current frame is labelled
by the reference, added to the labels, the model is refitted with its own training settings
(from its metadata; a linear ``ace`` model refits in seconds) and MD continues from the same
positions and velocities with the new model.

Everything lives in one folder (``--learn-dir``): ``labels.xyz`` (all labels, the given ones
first), ``models/model_NNN/``, ``checkpoint.xyz`` (positions and momenta), ``state.json``
(step, current model, events) and ``md_log.txt``. The MD checkpoints every ``checkpoint_steps``
and after every refit, so rerunning the same command after a kill resumes from the last
checkpoint.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from matloop.errors import ConfigError, DataError
from matloop.utils.files import atomic_path, atomic_write_text


@dataclass
class OnTheFlySettings:
    """MD and learning settings (K, GPa, fs; σ threshold in the model's σ units)."""

    reference: str
    threshold: float
    ensemble: str = "nvt"
    temperature_k: float = 300.0
    pressure_gpa: float = 0.0
    timestep_fs: float = 1.0
    steps: int = 1000
    seed: int = 0
    check_interval: int = 10
    checkpoint_steps: int = 500
    max_labels: int = 200
    thermostat: str = "langevin"
    barostat: str = "mtk"


class OnTheFlyLearner:
    """Resumable on-the-fly learning in `folder` (see module docstring)."""

    def __init__(self, folder: str | Path, settings: OnTheFlySettings) -> None:
        if not settings.threshold > 0:
            raise ConfigError("--learn needs --max-uncertainty X > 0 (the σ that triggers a label)")
        self.dir = Path(folder)
        self.s = settings
        self.state_path = self.dir / "state.json"

    # -- state ---------------------------------------------------------------------------------
    def start(self, model: str, atoms: Atoms, train_data: str | Path | None) -> dict[str, Any]:
        """Fresh state (or the saved one when the folder holds a run)."""
        from ase.io import read

        from matloop.calculators import resolve_calculator

        if self.state_path.exists():
            state = json.loads(self.state_path.read_text())
            before = state.get("reference", self.s.reference)
            if before != self.s.reference:
                raise ConfigError(
                    f"{self.dir} holds labels of --reference {before}, not {self.s.reference}: "
                    "one run never mixes two references; use another --learn-dir"
                )
            return state
        if train_data is None:
            raise ConfigError("--learn needs --train-data: the labels to refit on")
        labels = read(str(train_data), ":")
        if not labels or any(a.calc is None for a in labels):
            raise DataError(f"{train_data}: --train-data needs labelled structures")
        calc = resolve_calculator(model)
        from matloop.calculators.uncertainty import require_uncertainty

        require_uncertainty(calc, f"model {model}")
        if not getattr(calc, "metadata", {}).get("config"):
            raise ConfigError(f"model {model} has no training settings in its metadata to refit")
        resolve_calculator(self.s.reference)  # an unknown reference fails before any MD
        self.dir.mkdir(parents=True, exist_ok=True)
        self._write_labels(labels)
        self._write_frame(atoms)
        state = {
            "step": 0,
            "reference": self.s.reference,
            "model": str(Path(calc.path).resolve()),
            "n_refits": 0,
            "events": [],
            "log": [],
            "finished": False,
        }
        self._save(state)
        return state

    def _save(self, state: dict[str, Any]) -> None:
        atomic_write_text(self.state_path, json.dumps(state, indent=1))

    def _write_labels(self, labels: list[Atoms]) -> None:
        from ase.io import write

        with atomic_path(self.dir / "labels.xyz") as tmp:
            write(tmp, labels, format="extxyz")

    def _write_frame(self, atoms: Atoms) -> None:
        from ase.io import write

        frame = atoms.copy()
        frame.set_constraint()
        frame.calc = None
        with atomic_path(self.dir / "checkpoint.xyz") as tmp:
            write(tmp, frame, format="extxyz")

    def labels(self) -> list[Atoms]:
        from ase.io import read

        return read(str(self.dir / "labels.xyz"), ":")

    # -- one event -----------------------------------------------------------------------------
    def _label_and_refit(self, atoms: Atoms, state: dict[str, Any]) -> tuple[str, int]:
        """Label `atoms` with the reference (unless labels.xyz already ends with the label of
        the pending event, from a run killed while refitting), refit on all labels; the new
        model's path and the number of labels it was fitted on."""
        from matloop.active.report import load_model_or_run
        from matloop.calculators import resolve_calculator
        from matloop.data import Dataset, label_with
        from matloop.training import TrainConfig, train
        from matloop.training.config import parse_config

        labels = self.labels()
        step = state.get("pending", {}).get("step")
        if step is None or labels[-1].info.get("otf_step") != step:
            frame = atoms.copy()
            frame.set_constraint()
            labelled = label_with(frame, resolve_calculator(self.s.reference), config_type="otf")
            if step is not None:
                labelled.info["otf_step"] = step
            labels.append(labelled)
            self._write_labels(labels)
        old = load_model_or_run(state["model"])
        config = parse_config(old.metadata["config"], TrainConfig, "model metadata")
        out = self.dir / "models" / f"model_{state['n_refits'] + 1:03d}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = train(Dataset(labels, validate=False), out, config=config, progress=False)
        return str(Path(result.model_path).resolve()), len(labels)

    def _event(self, atoms: Atoms, state: dict[str, Any]) -> None:
        """Label and refit for ``state["pending"]``; record the event and save the state."""
        path, n_labels = self._label_and_refit(atoms, state)
        event = state.pop("pending")
        state["n_refits"] += 1
        state["model"] = path
        state["events"].append({**event, "n_labels": n_labels})
        self._save(state)

    # -- driver --------------------------------------------------------------------------------
    def run(
        self,
        model: str,
        atoms: Atoms,
        train_data: str | Path | None = None,
        *,
        progress: bool = False,
    ) -> dict:
        """Run (or resume) to `settings.steps`; return the state (events, labels, log).

        ``progress=True`` shows a bar over the MD steps (stderr), "refitting" while it refits."""
        from ase.io import read
        from tqdm.auto import tqdm

        from matloop.active.report import load_model_or_run
        from matloop.calculators.uncertainty import predict_uncertainty
        from matloop.md import run_md

        state = self.start(model, atoms, train_data)
        atoms = read(str(self.dir / "checkpoint.xyz"))
        if state.get("pending"):  # killed while labelling or refitting: finish that event
            self._event(atoms, state)
        calc = load_model_or_run(state["model"])
        bar = tqdm(
            total=self.s.steps,
            initial=state["step"],
            desc="MD (on the fly)",
            unit="step",
            disable=not progress,
            leave=False,
        )
        while state["step"] < self.s.steps:
            hit: dict[str, Any] = {}

            def observe(step: int, live: Atoms, calc=calc, hit=hit) -> str | None:
                sigma = predict_uncertainty(calc, live).structure
                state["max_sigma"] = max(state.get("max_sigma", 0.0), sigma)
                if sigma > self.s.threshold:
                    hit.update(step=step, sigma=sigma)
                    return "uncertain"
                return None

            n = min(self.s.checkpoint_steps, self.s.steps - state["step"])
            res = run_md(
                atoms,
                calc,
                ensemble=self.s.ensemble,
                temperature_k=self.s.temperature_k,
                pressure_gpa=self.s.pressure_gpa,
                timestep_fs=self.s.timestep_fs,
                steps=n,
                progress=False,
                seed=self.s.seed + state["step"],
                keep_velocities=True,
                thermostat=self.s.thermostat,
                barostat=self.s.barostat,
                log_interval=self.s.check_interval,
                observe=observe,
                observe_interval=self.s.check_interval,
            )
            t0 = state["step"] * self.s.timestep_fs / 1000.0
            state["log"] += [
                [t0 + t, temp, e]
                for t, temp, e in zip(
                    res.time_ps[1:], res.temperature_k[1:], res.epot_ev[1:], strict=True
                )
            ]
            state["step"] += res.steps
            bar.update(res.steps)
            atoms = res.atoms
            atoms.set_constraint()
            if hit and len(state["events"]) < self.s.max_labels:
                bar.set_description(f"refitting (σ {hit['sigma']:.3g})")
                # the frame and the event are saved first: a rerun finishes this event and
                # never labels the frame twice
                self._write_frame(atoms)
                state["pending"] = {"step": state["step"], "sigma": hit["sigma"]}
                self._save(state)
                self._event(atoms, state)
                bar.set_description("MD (on the fly)")
                calc = load_model_or_run(state["model"])
            elif hit:
                state["stopped"] = "label budget spent"
                self._write_frame(atoms)
                self._save(state)
                break
            self._write_frame(atoms)
            self._save(state)
        bar.close()
        state["finished"] = state["step"] >= self.s.steps
        self._save(state)
        return state


def summarise(state: dict[str, Any], timestep_fs: float) -> str:
    """One line: steps, labels added, refits, final model."""
    events = state["events"]
    return (
        f"on-the-fly: {state['step']} steps ({state['step'] * timestep_fs / 1000:g} ps), "
        f"{len(events)} label(s) added at step(s) "
        f"{', '.join(str(e['step']) for e in events[:10]) or '–'}"
        f"{' …' if len(events) > 10 else ''}; model: {state['model']}"
    )


def mean_temperature(state: dict[str, Any]) -> float:
    """Mean temperature (K) over the second half of the logged rows."""
    temps = np.array([row[1] for row in state["log"]], dtype=float)
    return float(np.mean(temps[len(temps) // 2 :])) if temps.size else float("nan")
