"""The active-learning loop: label initial → train → (explore → select → label → retrain) until
a stop criterion; every step is persisted so a rerun resumes.

The model is a committee (σ from the members' spread) or, with ``model.committee: 1``, one model
with its own σ (the ``ace`` posterior, the ``kernel`` GP variance). Every iteration the σ of the
previous model is compared with the errors it made on the labels just computed (predictions made
before they were labels): the running maximum-likelihood factor on σ (``sigma_scale``) calibrates
the next exploration and selection, and the record keeps the 95 % coverage and the rank
correlation of σ with the true error, on those labels and on the test set.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from ase import Atoms

from matloop.active.config import ActiveLearningConfig, sigma_defaults
from matloop.active.state import RunState
from matloop.errors import ConfigError, DataError

log = logging.getLogger("matloop.active")


def _label_task(labeller, atoms: Atoms):
    """Top-level (picklable) labelling task for executors."""
    return labeller.label(atoms)


class ActiveLearner:
    """Drive one run directory. ``run()`` is idempotent: call it again after a crash."""

    def __init__(
        self,
        config: ActiveLearningConfig,
        run_dir: str | Path,
        *,
        scheduler: Any = None,
        executor: Any = None,
        progress: bool = True,
    ) -> None:
        self.cfg = config
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.progress = progress
        self.state = RunState(config.state.database or self.dir / "state.db")
        self._executor = executor
        self._scheduler = scheduler or config.execution.scheduler
        self._own_executor = False
        self._train_config = None
        self._test = None
        self._starts: list[Atoms] | None = None
        self._timing: dict[str, float | None] = {}
        #: the configuration the run had before this process changed it (None: unchanged)
        self._config_before: dict[str, Any] | None = None

    # -- helpers -----------------------------------------------------------------------------
    def say(self, msg: str) -> None:
        log.info(msg)
        if self.progress:
            print(f"[al] {msg}", flush=True)

    @property
    def executor(self):
        if self._executor is None:
            from matloop.execution import make_executor

            self._executor = make_executor(self._scheduler, config=self.cfg.execution)
            self._own_executor = True
        return self._executor

    def labeller(self):
        from matloop.labelling import CalculatorLabeller, ValidationLimits

        ref = self.cfg.reference
        lab = CalculatorLabeller(
            ref.calculator,
            ref.settings,
            handlers=ref.handlers,
            max_retries=ref.max_retries,
            timeout_s=ref.timeout_s,
            limits=ValidationLimits(max_force=ref.max_force),
            compute_stress=ref.compute_stress,
        )
        return lab

    def train_config(self):
        if self._train_config is None:
            self._train_config = self.cfg.model.train_config()  # typed and checked at load
        return self._train_config

    def starts(self) -> list[Atoms]:
        if self._starts is None:
            from ase.io import read

            path = self.cfg.initial.structures
            try:
                frames = read(path, ":")
            except FileNotFoundError as exc:
                raise ConfigError(f"initial.structures: file not found: {path}") from exc
            except Exception as exc:  # noqa: BLE001
                raise DataError(f"initial.structures: cannot read {path}: {exc}") from exc
            if not frames:
                raise DataError(f"initial.structures: {path} holds no structure")
            for a in frames:
                a.calc = None
            self._starts = frames
        return self._starts

    def test_data(self):
        if self._test is None and self.cfg.test.data:
            from matloop.data import read_dataset

            self._test = read_dataset(self.cfg.test.data)
        return self._test

    # -- phases ------------------------------------------------------------------------------
    def initial_selection(self) -> None:
        if self.state.has_selection(0):
            return
        from matloop.active.explorers import RattleStarts, initial_structures
        from matloop.active.select import distinct

        rng = np.random.default_rng([self.cfg.seed, 0])
        generators = list(self.cfg.strategy.starts) or [
            RattleStarts(rattle=self.cfg.initial.rattle)
        ]
        structures = initial_structures(generators, self.starts(), self.cfg.initial.n_label, rng)
        n_made = len(structures)
        structures = [structures[i] for i in distinct(structures)]
        cands = []
        for i, atoms in enumerate(structures):
            kvp = {"origin": "initial", "unc": 0.0, "explorer": atoms.info.pop("explorer")}
            if "temperature" in atoms.info:
                kvp["temperature"] = float(atoms.info.pop("temperature"))
            cands.append((f"it000-c{i:03d}", atoms, kvp))
        self.state.write_selection(0, cands, {"n_candidates": len(cands), "n_above": len(cands)})
        self.say(f"iteration 0: {len(cands)} initial structures selected")
        if len(cands) < n_made:
            remedy = (
                "vary strategy.starts (their settings or kinds)"
                if self.cfg.strategy.starts
                else "raise initial.rattle"
            )
            warnings.warn(
                f"{n_made - len(cands)} of the {n_made} initial structures repeat another one "
                f"(identical or symmetry-equivalent) and are not labelled; {remedy} or give more "
                "initial.structures",
                stacklevel=2,
            )

    def label_pending(self, iteration: int) -> dict[str, int]:
        pending = self.state.pending(iteration)
        stats = {"ok": 0, "failed": 0, "inconsistent": 0}
        if not pending:
            return stats
        self.say(
            f"iteration {iteration}: labelling {len(pending)} structure(s) "
            f"with {self.cfg.reference.calculator}"
        )
        labeller = self.labeller()
        keys = [k for k, _ in pending]
        for i, result in self.executor.map_unordered(_LabelFn(labeller), [a for _, a in pending]):
            self.state.record_label(keys[i], iteration, result)
            if result.ok:
                stats["ok"] += 1
            else:
                stats[result.status.value] += 1
                self.say(f"  quarantined {keys[i]}: {result.status.value}: {result.reason[:120]}")
        return stats

    def train(self, iteration: int) -> list[str]:
        from matloop.data import Dataset
        from matloop.training.committee import train_committee

        n = self.cfg.model.committee
        done = self.state.model_members(iteration)
        if len(done) >= n:
            return [done[k] for k in range(n)]
        data = self.state.labelled()
        if len(data) < 2:
            raise DataError(
                f"only {len(data)} successful label(s) after iteration {iteration}; cannot train "
                "(see `matloop al status` for the quarantine)"
            )
        init: list[str | None] = [None] * n
        if self.cfg.model.warm_start and iteration > 0 and n > 1:
            prev = self.state.model_members(iteration - 1)
            init = [prev.get(k) for k in range(n)]
        what = f"a committee of {n}" if n > 1 else f"one {self.cfg.model.family} model"
        self.say(f"iteration {iteration}: training {what} on {len(data)} labels")
        out = self.dir / "models" / f"iter_{iteration:03d}"
        seeds = [self.cfg.seed * 1000 + 100 * iteration + k for k in range(n)]
        ds = Dataset(data, source="active learning labels", validate=False)
        paths = train_committee(
            ds,
            out,
            self.train_config(),
            n_members=n,
            seeds=seeds,
            bootstrap=self.cfg.model.bootstrap and n > 1,
            executor=self.executor if self.executor.n_workers > 1 else None,
            init_models=init,
            max_time=self.cfg.model.max_time_s,
        )
        for k, p in enumerate(paths):
            meta = {}
            marker = p.parent / "member.json"
            if not marker.exists():
                marker = out / f"member_{k}" / "member.json"
            if marker.exists():
                meta = json.loads(marker.read_text())
            self.state.record_model(iteration, k, str(p), meta)
        return [str(p) for p in paths]

    def committee(self, iteration: int):
        """The model of `iteration`: a committee, or the single model with its own σ."""
        from matloop.calculators.uncertainty import require_uncertainty

        model = load_model(self.state.models(iteration))
        require_uncertainty(model, f"the {self.cfg.model.family} model")
        return model

    def evaluate(self, committee, scale: float = 1.0) -> dict[str, Any]:
        """Test-set errors (MAE per atom / per force component) and σ calibration."""
        test = self.test_data()
        if test is None:
            return {}
        return test_metrics(committee, test, scale=scale)

    def sigma_scale(self, iteration: int) -> float:
        """Calibration factor on the σ of the model of `iteration` (1 before any data)."""
        for r in self.state.iterations():
            if r["iteration"] == iteration:
                return float(r.get("sigma_scale") or 1.0)
        return 1.0

    def calibration(self, iteration: int) -> dict[str, Any]:
        """Compare the σ of model `iteration`-1 with its errors on this iteration's new labels."""
        from matloop.calculators.uncertainty import calibration_data, calibration_metrics, fit_scale

        prev = {r["iteration"]: r for r in self.state.iterations()}.get(iteration - 1, {})
        sum_z2 = float(prev.get("calibration_sum_z2") or 0.0)
        n_vals = int(prev.get("calibration_n_values") or 0)
        out: dict[str, Any] = {}
        new = [a for a in self.state.labelled() if a.info["config_type"] == f"al_it{iteration:03d}"]
        if iteration > 0 and new and self.cfg.strategy.calibrate:
            data = calibration_data(self.committee(iteration - 1), new)
            used = float(prev.get("sigma_scale") or 1.0)
            m = calibration_metrics(data, used)
            out.update(
                new_labels_coverage_95=m["coverage_95"],
                new_labels_spearman=m["spearman"],
                new_labels_scale_fit=fit_scale(data),
                sigma_kind=data.kind,
            )
            sum_z2 += float(np.sum((data.errors / np.maximum(data.sigmas, 1e-12)) ** 2))
            n_vals += int(data.errors.size)
        out["calibration_sum_z2"] = sum_z2
        out["calibration_n_values"] = n_vals
        out["sigma_scale"] = float(np.sqrt(sum_z2 / n_vals)) if n_vals else 1.0
        return out

    def walker_limit(self, model, scale: float, labelled: list[Atoms]) -> float:
        """σ (the model's σ unit: eV/Å, or eV/atom for an energy σ) at which walkers stop: the
        smaller of a multiple of the labelled structures' median σ and the fixed
        ``explore.uncertainty_limit`` (the σ kind's default when neither is set)."""
        from matloop.calculators.uncertainty import predict_uncertainty, uncertainty_kind

        factor = self.cfg.strategy.walker_stop_factor
        if factor is None or not labelled:
            return self.cfg.explore.fixed_limit(uncertainty_kind(model))
        cap = self.cfg.explore.uncertainty_limit
        pool = [
            labelled[i]
            for i in np.linspace(0, len(labelled) - 1, min(30, len(labelled))).astype(int)
        ]
        ref = float(np.median([predict_uncertainty(model, a, scale).structure for a in pool]))
        relative = factor * max(ref, 1e-6)
        return relative if cap is None else min(relative, cap)

    def walker_driver(self, n_labels: int):
        """The calculator that moves the walkers (None: the model itself)."""
        st = self.cfg.strategy
        if st.walker_driver is None or (
            st.walker_driver_until is not None and n_labels >= st.walker_driver_until
        ):
            return None
        from matloop.calculators import resolve_calculator

        return resolve_calculator(st.walker_driver)

    def explore_and_select(self, iteration: int, committee) -> dict[str, Any]:
        """Explore with the previous committee and persist this iteration's candidates."""
        from matloop.active.explore import explore, walker_counts
        from matloop.active.select import select_candidates

        if self.state.has_selection(iteration):
            return self.state.selection_info(iteration)
        cfg = self.cfg
        labelled = self.state.labelled()
        rng = np.random.default_rng([cfg.seed, iteration, 7])
        starts = []
        for w in range(cfg.explore.walkers):
            if labelled and rng.random() < cfg.explore.start_from_dataset:
                a = labelled[int(rng.integers(len(labelled)))].copy()
            else:
                a = self.starts()[int(rng.integers(len(self.starts())))].copy()
            a.calc = None
            starts.append(a)
            del w
        t0 = time.perf_counter()
        scale = self.sigma_scale(iteration - 1)
        limit = self.walker_limit(committee, scale, labelled)
        kind = _sigma_kind(committee)
        sigma, unit, _, _ = sigma_defaults(kind)
        threshold = cfg.select.threshold_for(kind)
        self.say(
            f"iteration {iteration}: exploring with {cfg.explore.walkers} MD walker(s), "
            f"σ ({sigma}) limit {limit:.3g} {unit}, selection threshold {threshold:.3g} {unit} "
            f"(calibration ×{scale:.3g})"
        )
        res = explore(
            starts,
            committee,
            cfg.explore,
            seed=cfg.seed,
            iteration=iteration,
            limit=limit,
            scale=scale,
            ramp_from=cfg.strategy.ramp_from_k,
            driver=self.walker_driver(len(labelled)),
        )
        t_explore = time.perf_counter() - t0
        remaining = cfg.budget.max_labels - self.state.n_attempted()
        n_max = max(0, min(cfg.select.max_per_iteration, remaining))
        keep = _within(res.uncertainties, limit if cfg.strategy.select_within_limit else None)
        picks = select_candidates(
            [res.snapshots[i] for i in keep],
            [res.uncertainties[i] for i in keep],
            threshold=threshold,
            max_n=n_max,
            diversity=cfg.select.diversity,
            descriptor=cfg.select.descriptor,
            calc=committee,
            labelled=labelled,
            method=cfg.strategy.selection,
        )
        picks = [keep[i] for i in picks]
        target = cfg.stop.uncertainty_target
        reached = target is not None and res.max_uncertainty <= target
        if reached:  # the run stops here: nothing is selected (nor counted against the budget)
            picks = []
        n_above = int(np.sum(np.asarray(res.uncertainties) > threshold))
        info = {
            "n_snapshots": len(res.snapshots),
            "n_above": n_above,
            "max_uncertainty": res.max_uncertainty,
            "mean_uncertainty": res.mean_uncertainty,
            "walkers": res.walkers,
            "explore_seconds": t_explore,
            "select_seconds": time.perf_counter() - t0 - t_explore,
            "walker_limit": limit,
            "threshold": threshold,
            "sigma_kind": kind,
            "sigma_scale_used": scale,
            "selected_uncertainties": [float(res.uncertainties[i]) for i in picks],
            # what decided this outcome: a resume with other settings explores again after
            # an iteration that selected nothing (see _reopening_changes)
            "settings": exploring_settings(cfg.model_dump(mode="json")),
        }
        cands = []
        for j, i in enumerate(picks):
            snap = res.snapshots[i]
            kvp = {
                "origin": "explore",
                "unc": float(res.uncertainties[i]),
                "temperature": float(snap.info.get("temperature", 0.0)),
                "explorer": str(snap.info.get("explorer", "md")),
            }
            cands.append((f"it{iteration:03d}-c{j:03d}", snap, kvp))
        self.state.write_selection(iteration, cands, info)
        self.say(
            f"iteration {iteration}: {walker_counts(res.walkers)}, "
            f"{len(res.snapshots)} snapshots, max {sigma} "
            f"{res.max_uncertainty:.3g} {unit}, {n_above} above threshold {threshold:.3g} {unit}, "
            f"{len(picks)} selected"
            + (f" (uncertainty target {target:.3g} {unit} reached)" if reached else "")
        )
        return info

    def finish_iteration(
        self, iteration: int, t_start: float, label_stats: dict, stop: str | None = None
    ) -> dict:
        """Store the record of `iteration` (once); `stop`: the run ends with it, stored in the
        same row so that a rerun after a kill ends there too."""
        # the label/fit times of this iteration's _label_and_train (none if it labelled nothing)
        timing, self._timing = self._timing, {}
        existing = {r["iteration"]: r for r in self.state.iterations()}
        if iteration in existing:
            return existing[iteration]
        committee = self.committee(iteration)
        sel = self.state.selection_info(iteration)
        q = self.state.quarantine()
        record: dict[str, Any] = {
            "iteration": iteration,
            "n_labels": len(self.state.labelled()),
            "n_attempted": self.state.n_attempted(),
            "n_selected": sum(
                1 for _ in self.state.db.select(kind="candidate", iteration=iteration)
            ),
            "n_failed": sum(1 for r in q if r["iteration"] == iteration),
            "n_quarantined_total": len(q),
            "explore_max_uncertainty": sel.get("max_uncertainty"),
            "explore_mean_uncertainty": sel.get("mean_uncertainty"),
            "n_snapshots": sel.get("n_snapshots"),
            "n_above_threshold": sel.get("n_above"),
            "models": self.state.models(iteration),
            "finished_at": time.time(),
            "seconds": time.perf_counter() - t_start,
            "explore_seconds": sel.get("explore_seconds"),
            "select_seconds": sel.get("select_seconds"),
            "label_seconds": timing.get("label"),
            "fit_seconds": timing.get("fit"),
            "walker_limit": sel.get("walker_limit"),
            "select_threshold": sel.get("threshold"),
            # the unit of every σ above (reports name it from this): eV/Å or eV/atom
            "sigma_kind": _sigma_kind(committee),
            "selected_from": self.selection_sources(iteration),
        }
        record.update(self.calibration(iteration))
        record.update(self.evaluate(committee, record["sigma_scale"]))
        if stop is not None:
            record["stop_reason"] = stop
        self.state.record_iteration(iteration, record)
        msg = f"iteration {iteration} done: {record['n_labels']} labels"
        if "test_force_mae_ev_per_a" in record:
            msg += (
                f", test force MAE {record['test_force_mae_ev_per_a']:.4f} eV/Å, energy MAE "
                f"{record['test_energy_mae_mev_per_atom']:.2f} meV/atom"
            )
        self.say(msg)
        return record

    def selection_sources(self, iteration: int) -> dict[str, int]:
        """How many of the iteration's candidates each explorer (and temperature) produced."""
        counts: dict[str, int] = {}
        for row in self.state.db.select(kind="candidate", iteration=iteration):
            name = row.get("explorer", row.get("origin", "?"))
            if row.get("temperature"):
                name += f" {row.temperature:.0f} K"
            counts[name] = counts.get(name, 0) + 1
        return counts

    def stop_reason(self, record: dict, next_selection: dict | None) -> str | None:
        cfg = self.cfg
        st = cfg.stop
        if (
            st.test_force_mae_target is not None
            and record.get("test_force_mae_ev_per_a") is not None
            and record["test_force_mae_ev_per_a"] <= st.test_force_mae_target
        ):
            return "test force MAE target reached"
        if (
            st.test_energy_mae_target_mev_per_atom is not None
            and record.get("test_energy_mae_mev_per_atom") is not None
            and record["test_energy_mae_mev_per_atom"] <= st.test_energy_mae_target_mev_per_atom
        ):
            return "test energy MAE target reached"
        if record["iteration"] >= st.max_iterations:
            return "max iterations reached"
        if self.state.n_attempted() >= cfg.budget.max_labels:
            return "label budget spent"
        return None

    # -- driver ------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run (or resume) the loop to completion; write report.json and report.html."""
        from matloop.utils.threads import default_torch_threads, torch_threads

        with torch_threads(default_torch_threads()):  # restored for the caller afterwards
            return self._run()

    def _run(self) -> dict[str, Any]:
        from matloop.active.state import public_config

        cfg_dump = self.cfg.model_dump(mode="json")
        meta = self.state.meta()
        if meta is None:
            self.state.write_meta(cfg_dump)
        elif meta.get("config") != public_config(cfg_dump):
            self._config_before = meta.get("config") or {}
            self._check_resume_config(self._config_before, public_config(cfg_dump))
            self.state.write_meta(cfg_dump)
        from matloop.utils.files import atomic_write_text

        # the copy on disk never holds a database password (public_config masks it)
        text = yaml.safe_dump(public_config(cfg_dump), sort_keys=False)
        atomic_write_text(self.dir / "config.yaml", text)
        self.labeller().check()
        if self._scheduler:
            _ = self.executor  # connect now: an unreachable scheduler fails before any work
        try:
            stop = self._loop()
        finally:
            if self._own_executor and self._executor is not None:
                self._executor.close()
                self._executor = None
        from matloop.active.report import write_reports

        report = write_reports(self.dir, self.state, stop_reason=stop)
        self.say(f"finished ({stop}); report: {self.dir / 'report.html'}")
        return report

    def _check_resume_config(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        """Refuse another reference once labels exist; otherwise warn, naming every change."""
        changes = config_changes(old, new)
        mixed = [k for k in changes if k in LABEL_KEYS]
        n_done = self.state.count(kind="label") + self.state.count(kind="quarantine")
        if mixed and n_done:
            raise ConfigError(
                f"{self.dir} holds {n_done} reference calculation(s) made with other "
                f"settings ({_describe(changes, mixed)}): one run never mixes two references "
                "in its training set; restore them, or start a new --dir"
            )
        text = _describe(changes, list(changes))
        unused = [k for k in changes if k in INITIAL_KEYS]
        if unused and self.state.has_selection(0):
            text += f"; {', '.join(unused)}: no effect, the initial structures are selected"
        warnings.warn(
            f"the configuration differs from the one {self.dir} was started with ({text}); "
            "resuming with the new settings",
            stacklevel=3,
        )

    def _loop(self) -> str:
        iteration = 0
        t0 = time.perf_counter()
        self.initial_selection()
        stats = self._label_and_train(0)
        record = self.finish_iteration(0, t0, stats)
        while True:
            # an iteration whose candidates are already selected was begun by an earlier run
            # (they count against the budget already): finish it before testing the criteria
            if not self.state.has_selection(iteration + 1):
                reason = self.stop_reason(record, None)
                self._mark(iteration, "stopped", reason, record)
                if reason:
                    return reason
            iteration += 1
            t0 = time.perf_counter()
            done = {r["iteration"]: r for r in self.state.iterations()}
            if iteration in done:
                record = done[iteration]
                if record.get("stop_reason") and not self._reopen(iteration, record):
                    return record["stop_reason"]
                continue
            if not self.state.has_selection(iteration):
                committee = self.committee(iteration - 1)
                info = self.explore_and_select(iteration, committee)
            else:
                info = self.state.selection_info(iteration)
            st = self.cfg.stop
            n_sel = self.state.count(kind="candidate", iteration=iteration)
            if n_sel == 0:
                why = "no snapshot above the selection threshold"
                if not info.get("n_snapshots"):
                    # nothing was measured: not a sign of a converged model (σ max is 0 here)
                    why = _no_snapshot_reason(info)
                elif (
                    st.uncertainty_target is not None
                    and (info.get("max_uncertainty") or 0.0) <= st.uncertainty_target
                ):
                    why = "uncertainty target reached"
                self._copy_models(iteration)
                self.finish_iteration(iteration, t0, {}, stop=why)
                self._mark_stop(iteration, why)  # a record stored by an older version
                return why
            stats = self._label_and_train(iteration)
            record = self.finish_iteration(iteration, t0, stats)

    def _reopen(self, iteration: int, record: dict[str, Any]) -> bool:
        """Whether the run goes on after `iteration`, which selected nothing and so ended an
        earlier run (``stop_reason``): yes if a setting that decides exploration or selection
        has changed since (the iteration stays, without labels; the reason is cleared). If not,
        say why a resume with other settings does not continue."""
        reason = record["stop_reason"]
        changed = self._reopening_changes(iteration)
        if changed:
            self.say(
                f"iteration {iteration} ended the run ({reason}) with other settings "
                f"({', '.join(changed)}): exploring again"
            )
            self._mark(iteration, "stop_reason", None, record)
            return True
        if self._config_before is not None:
            self.say(
                f"iteration {iteration} ended the run ({reason}) and the new settings do not "
                "change that; to explore again, change explore.* (e.g. temperatures, steps), "
                "select.threshold, strategy.*, stop.uncertainty_target or seed"
            )
        return False

    def _reopening_changes(self, iteration: int) -> list[str]:
        """The exploring settings (:func:`exploring_settings`) that differ from those the
        exploration of `iteration` ran with."""
        info = self.state.selection_info(iteration)
        now = exploring_settings(self.cfg.model_dump(mode="json"))
        used = info.get("settings")
        if used is None:  # explored by an older matloop: what is known of its settings
            found = set()
            if self._config_before is not None:
                found |= set(_setting_changes(exploring_settings(self._config_before), now))
            temperatures = {w.get("temperature") for w in info.get("walkers") or ()}
            if not temperatures <= set(self.cfg.explore.temperatures):
                found.add("explore.temperatures")
            kind = info.get("sigma_kind")
            if kind and info.get("threshold") != self.cfg.select.threshold_for(kind):
                found.add("select.threshold")
            return sorted(found)
        return _setting_changes(used, now)

    def _label_and_train(self, iteration: int) -> dict[str, int]:
        """Label the pending candidates and train; the times of what this process did (None
        for a step finished before a kill: its time is unknown, not 0)."""
        t0 = time.perf_counter()
        stats = self.label_pending(iteration)
        t1 = time.perf_counter()
        trained = len(self.state.model_members(iteration)) < self.cfg.model.committee
        self.train(iteration)
        self._timing = {
            "label": t1 - t0 if any(stats.values()) else None,
            "fit": time.perf_counter() - t1 if trained else None,
        }
        return stats

    def _copy_models(self, iteration: int) -> None:
        """An iteration without new labels keeps the previous committee."""
        prev = self.state.model_members(iteration - 1)
        for k, p in prev.items():
            self.state.record_model(iteration, k, p, {"reused": True})

    def _mark_stop(self, iteration: int, reason: str) -> None:
        """The run ended in `iteration` without new labels (a rerun ends there too)."""
        self._mark(iteration, "stop_reason", reason)

    def _mark(
        self, iteration: int, key: str, value: str | None, record: dict | None = None
    ) -> None:
        """Set `key` in the stored record of `iteration` (None clears it).

        ``stopped``: the stop criterion met after `iteration` (max iterations, budget, test
        target), kept so that ``al report`` and ``al status`` know the run finished; a rerun
        with other criteria tests them again.
        """
        if record is not None and record.get(key) == value:
            return
        with self.state.db:
            for row in self.state.db.select(kind="iteration", iteration=iteration):
                if row.data.get(key) != value:
                    self.state.db.update(row.id, data={key: value})  # merged into its data
        if record is not None:
            record[key] = value


#: settings that decide the values of the labels: a run does not change them once it has any
LABEL_KEYS = ("reference.calculator", "reference.settings", "reference.compute_stress")
#: settings only used to make the initial structures (iteration 0)
INITIAL_KEYS = ("initial.n_label", "initial.rattle", "strategy.starts")


def exploring_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The parts of a configuration dump that decide what an exploration finds and selects
    (and whether it counts as converged); the initial structures' settings excluded."""
    strategy = {k: v for k, v in (config.get("strategy") or {}).items() if k != "starts"}
    target = (config.get("stop") or {}).get("uncertainty_target")
    return {
        "seed": config.get("seed"),
        "explore": config.get("explore"),
        "select": config.get("select"),
        "strategy": strategy,
        "stop": {"uncertainty_target": target},
    }


def _setting_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``section.key`` of the settings in `old` that differ in `new` (keys `old` lacks, added
    by a later matloop with their defaults, do not count)."""
    out = []
    for key in config_changes(old, new):
        section, _, name = key.partition(".")
        if section in old and (not name or name in (old[section] or {})):
            out.append(key)
    return out


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``section.key`` → (old, new) for every setting that differs between two config dumps."""
    out: dict[str, tuple[Any, Any]] = {}
    for section in sorted(set(old) | set(new)):
        a, b = old.get(section), new.get(section)
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                if a.get(key) != b.get(key):
                    out[f"{section}.{key}"] = (a.get(key), b.get(key))
        elif a != b:
            out[section] = (a, b)
    return out


def _describe(changes: dict[str, tuple[Any, Any]], keys: list[str]) -> str:
    """``key: old → new`` for `keys` (long values shortened)."""

    def short(v: Any) -> str:
        text = json.dumps(v, sort_keys=True, default=str)
        return text if len(text) <= 60 else text[:57] + "..."

    return "; ".join(f"{k}: {short(changes[k][0])} → {short(changes[k][1])}" for k in keys)


def _sigma_kind(model) -> str:
    """``"energy"`` for a model whose only σ is energy_std (eV/atom), else ``"forces"``."""
    from matloop.calculators.uncertainty import uncertainty_kind

    return "energy" if uncertainty_kind(model) == "energy" else "forces"


def _no_snapshot_reason(info: dict[str, Any]) -> str:
    """Stop reason of an exploration that recorded no snapshot at all (every walker stopped
    before its first one: unphysical geometry, non-finite σ, an MD error)."""
    counts: dict[str, int] = {}
    for w in info.get("walkers") or ():
        why = str(w.get("stopped", "?"))
        counts[why] = counts.get(why, 0) + 1
    stops = ", ".join(f"{k} ×{n}" for k, n in sorted(counts.items())) or "none"
    return (
        f"the walkers recorded no snapshot (stopped: {stops}): the model is not stable in MD "
        "yet; label more starting structures (initial.n_label), or use a shorter "
        "explore.timestep_fs or sample_interval, or strategy.walker_driver"
    )


def _within(uncertainties: list[float], limit: float | None) -> list[int]:
    """Indices of the snapshots with σ ≤ `limit` (all without a limit, or when none is)."""
    inside = [i for i, u in enumerate(uncertainties) if limit is None or u <= limit]
    return inside or list(range(len(uncertainties)))


class _LabelFn:
    """Picklable callable: label one structure."""

    def __init__(self, labeller) -> None:
        self.labeller = labeller

    def __call__(self, atoms: Atoms):
        return self.labeller.label(atoms)


def load_model(paths: list[str]):
    """One calculator: the single model, or a committee of several."""
    from matloop.calculators import load_calculator
    from matloop.training.committee import load_committee

    return load_calculator(paths[0]) if len(paths) == 1 else load_committee(paths)


def test_metrics(model, test, scale: float = 1.0) -> dict[str, Any]:
    """Test errors (:mod:`matloop.evaluation`: energy MAE meV/atom, force MAE/RMSE eV/Å per
    component) and, for a model with σ, its calibration: 95 % coverage of ±1.96·scale·σ
    (``test_coverage_95``; uncalibrated: ``..._raw``), the Spearman correlation of σ with
    the error (``test_sigma_spearman``) and the mean per-structure σ (``test_sigma_mean``)."""
    from matloop.calculators.uncertainty import (
        calibration_data,
        calibration_metrics,
        uncertainty_kind,
    )
    from matloop.data import Dataset
    from matloop.evaluation import compare, metrics_from_predictions, predict

    ds = test if isinstance(test, Dataset) else Dataset(list(test), validate=False)
    data = None
    if uncertainty_kind(model) is None:
        pred = predict(model, ds)
    else:  # one pass: σ and the predictions come from the same evaluation
        done: list[Atoms] = []
        data = calibration_data(model, ds, predictions=done)
        pred = compare(ds, done)
    m = metrics_from_predictions(pred)
    out: dict[str, Any] = {
        "test_energy_mae_mev_per_atom": m["energy_mae_mev_per_atom"],
        "test_force_mae_ev_per_a": m.get("force_mae_ev_per_a"),
        "test_force_rmse_ev_per_a": m.get("force_rmse_ev_per_a"),
    }
    if data is None:
        return out
    cal, raw = calibration_metrics(data, scale), calibration_metrics(data, 1.0)
    out.update(
        test_coverage_95=cal["coverage_95"],
        test_coverage_95_raw=raw["coverage_95"],
        test_sigma_spearman=cal["spearman"],
        sigma_kind=data.kind,
    )
    if data.kind == "forces":
        n = [len(a) for a in ds]
        per_structure = [s.max() for s in np.split(data.rank_sigmas, np.cumsum(n)[:-1])]
        out["test_max_forces_std_mean"] = scale * float(np.mean(per_structure))
    out["test_sigma_mean"] = scale * float(np.mean(data.rank_sigmas))
    return out


test_metrics.__test__ = False  # not a pytest test


def run_active_learning(
    config: ActiveLearningConfig | str | Path,
    run_dir: str | Path,
    *,
    scheduler: Any = None,
    executor: Any = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run or resume an active-learning run in `run_dir`; return the report dict.

    The configuration's files and reference are checked (``check_inputs``) before any work.
    """
    from matloop.active.config import check_inputs, load_config

    if not isinstance(config, ActiveLearningConfig):
        config = load_config(config)
    check_inputs(config)
    return ActiveLearner(
        config, run_dir, scheduler=scheduler, executor=executor, progress=progress
    ).run()
