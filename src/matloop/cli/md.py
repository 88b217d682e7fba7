"""CLI: `matloop md` (molecular dynamics), `matloop validate` (report) and `matloop analyze`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from matloop.cli._options import (
    ENERGY_KEY,
    FORCE,
    FORCES_KEY,
    PROGRESS,
    PROGRESS_HELP,
    QUIET,
    STRESS_KEY,
    check_outputs,
    given,
    refuse_overwrites,
)

if TYPE_CHECKING:
    from matloop.active.onthefly import OnTheFlySettings


def _calculator(spec: str):
    from matloop.calculators import resolve_calculator

    return resolve_calculator(spec)


def _check_structure(atoms, path: Path) -> None:
    """Cell, positions and distances usable for MD (the same checks as training data)."""
    from matloop.data.dataset import validate_structure

    validate_structure(atoms, source=str(path), require_energy=False, require_forces=False)


def md_command(
    model: str = typer.Argument(
        ..., help="Model file/directory, or a calculator name (emt, sw, kumagai, module:function)."
    ),
    structure: Path = typer.Argument(..., help="Start structure (any ASE-readable file)."),
    ensemble: str = typer.Option("nve", "--ensemble", "-e", help="nve, nvt or npt."),
    temperature: float = typer.Option(300.0, "--temperature", "-T", help="Temperature (K)."),
    pressure: float | None = typer.Option(
        None, "--pressure", "-P", help="Pressure for NPT (GPa; default 0)."
    ),
    timestep: float = typer.Option(1.0, "--timestep", help="Time step (fs)."),
    steps: int = typer.Option(1000, "--steps", "-n", help="Number of MD steps."),
    traj: Path | None = typer.Option(
        None, "--traj", help="Trajectory output (.traj, .xyz/.extxyz or .pdb)."
    ),
    log: Path | None = typer.Option(None, "--log", help="Log output (text table)."),
    final: Path | None = typer.Option(
        None,
        "--final",
        help="Write the last structure, with its momenta, here: the end of the run whatever "
        "the trajectory interval, to continue with --keep-velocities (.traj keeps every digit; "
        ".xyz rounds positions to 1e-8 Å).",
    ),
    keep_velocities: bool = typer.Option(
        False,
        "--keep-velocities",
        help="Start from the momenta the structure file holds (a --final file) instead of "
        "drawing new ones at --temperature.",
    ),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the initial velocities/thermostat."),
    thermostat: str | None = typer.Option(
        None, help="NVT thermostat: langevin (default) or nose-hoover."
    ),
    barostat: str | None = typer.Option(
        None, help="NPT barostat: mtk (default; correct ensemble) or berendsen."
    ),
    log_interval: int | None = typer.Option(None, min=1, help="Steps between log rows."),
    traj_interval: int | None = typer.Option(None, min=1, help="Steps between trajectory frames."),
    summary_json: Path | None = typer.Option(None, "--json", help="Write the run summary here."),
    progress: bool = PROGRESS,
    max_uncertainty: float | None = typer.Option(
        None,
        "--max-uncertainty",
        help="Stop when the model's σ exceeds this (eV/Å: largest atomic force std; eV/atom "
        "for models with only an energy std), writing the offending frame.",
    ),
    uncertainty_interval: int | None = typer.Option(
        None,
        "--uncertainty-interval",
        min=1,
        help="Steps between uncertainty checks (default 10 with --max-uncertainty, else 100).",
    ),
    uncertain_frame: Path | None = typer.Option(
        None,
        "--uncertain-frame",
        help="Where the frame that passed --max-uncertainty goes (default: uncertain_frame.xyz "
        "beside --traj, or in the current folder).",
    ),
    learn: bool = typer.Option(
        False,
        "--learn",
        help="On-the-fly learning: when σ passes --max-uncertainty, label the frame with "
        "--reference, refit and continue (rerun to resume).",
    ),
    reference: str | None = typer.Option(
        None, "--reference", help="Reference calculator for --learn (emt, kumagai, ...)."
    ),
    train_data: Path | None = typer.Option(
        None, "--train-data", help="Labels the model was fitted on (--learn refits on them)."
    ),
    learn_dir: Path = typer.Option(
        Path("otf-run"), "--learn-dir", help="Folder of --learn's labels, models, checkpoint."
    ),
    max_labels: int = typer.Option(200, "--max-labels", min=1, help="Labels --learn may add."),
    force: bool = FORCE,
) -> None:
    """Run molecular dynamics and print temperature, pressure and the NVE energy drift."""
    from matloop.md import ensemble_settings
    from matloop.md.runner import check_traj_path

    check_traj_path(traj)
    check_traj_path(final, option="--final")
    _refuse_options_of_other_ensembles(
        ensemble, pressure=pressure, thermostat=thermostat, barostat=barostat
    )
    md_settings = ensemble_settings(  # the ensemble is checked before anything is read
        ensemble,
        temperature,
        pressure_gpa=0.0 if pressure is None else pressure,
        thermostat=thermostat or "langevin",
        barostat=barostat or "mtk",
    )
    if learn:
        from matloop.active.onthefly import OnTheFlySettings
        from matloop.errors import ConfigError

        if reference is None or max_uncertainty is None:
            raise ConfigError("--learn needs --reference CALC and --max-uncertainty X")
        unused = [
            o
            for o, v in (
                ("--traj", traj),
                ("--log", log),
                ("--json", summary_json),
                ("--final", final),
            )
            if v
        ]
        if unused:
            raise ConfigError(
                f"--learn writes its log, checkpoint and state.json in --learn-dir ({learn_dir}); "
                f"drop {' '.join(unused)}"
            )
        settings = OnTheFlySettings(
            reference=reference,
            threshold=max_uncertainty,
            ensemble=ensemble,
            temperature_k=temperature,
            pressure_gpa=0.0 if pressure is None else pressure,
            timestep_fs=timestep,
            steps=steps,
            seed=seed,
            check_interval=uncertainty_interval or 10,
            max_labels=max_labels,
            thermostat=thermostat or "langevin",
            barostat=barostat or "mtk",
        )
        _learn(model, structure, settings, train_data, learn_dir, progress)
        return
    from matloop.errors import Interrupted
    from matloop.md import check_elements, read_structure, run_md
    from matloop.md.guard import UncertaintyGuard
    from matloop.md.runner import MDInterrupted, write_structure
    from matloop.utils.files import atomic_write_text

    outputs = {"--traj": traj, "--log": log, "--json": summary_json, "--final": final}
    if max_uncertainty is not None:  # the frame is written only when a limit is set
        outputs["--uncertain-frame"] = UncertaintyGuard.frame_path_for(uncertain_frame, traj)
    refuse_overwrites(force, outputs, {"STRUCTURE": structure, "MODEL": model})
    atoms = read_structure(structure)
    if keep_velocities and not atoms.has("momenta"):
        import warnings

        warnings.warn(
            f"--keep-velocities: {structure} holds no momenta; drawing them at {temperature:g} K",
            stacklevel=2,
        )
    _check_structure(atoms, structure)
    calc = _calculator(model)
    check_elements(atoms, calc, model, where=str(structure))
    guard = UncertaintyGuard.for_cli(calc, max_uncertainty, uncertain_frame, traj, force)
    if uncertainty_interval is None:  # a warning-only check need not slow MD down
        uncertainty_interval = 10 if max_uncertainty is not None else 100
    try:
        result = run_md(
            atoms,
            calc,
            ensemble=md_settings,
            timestep_fs=timestep,
            steps=steps,
            traj=traj,
            log=log,
            progress=progress,
            seed=seed,
            log_interval=log_interval,
            traj_interval=traj_interval,
            observe=guard,
            observe_interval=uncertainty_interval,
            keep_velocities=keep_velocities,
        )
    except MDInterrupted as exc:  # the log and trajectory so far are written
        raise Interrupted(str(exc)) from None
    s = result.summary()
    if guard is not None:
        s.update(guard.summary())
    typer.echo(
        f"{s['ensemble'].upper()} {s['n_atoms']} atoms, {s['steps']} steps × {timestep:g} fs "
        f"= {s['duration_ps']:g} ps in {s['seconds']:.1f} s "
        f"({s['atom_steps_per_s']:.3g} atom-steps/s)"
    )
    typer.echo(f"mean temperature (second half): {s['mean_temperature_k_second_half']:.1f} K")
    if s["mean_pressure_gpa_second_half"] is not None:
        typer.echo(f"mean pressure (second half): {s['mean_pressure_gpa_second_half']:.3f} GPa")
    typer.echo(f"largest force: {s['max_force_ev_per_a']:.3f} eV/Å")
    if s["nve_drift_mev_per_atom_per_ps"] is not None:
        typer.echo(f"NVE energy drift: {s['nve_drift_mev_per_atom_per_ps']:.4g} meV/atom/ps")
    if log is not None:
        typer.echo(f"log: {log}")
    if traj is not None:
        typer.echo(f"trajectory: {traj}{_last_frame_note(result.steps, steps, traj_interval)}")
    if final is not None:
        write_structure(final, result.atoms)
        typer.echo(f"final structure: {final} (step {result.steps})")
    if summary_json is not None:
        atomic_write_text(summary_json, json.dumps(s, indent=2) + "\n")
    if guard is not None:
        guard.finish()


def _last_frame_note(done: int, steps: int, traj_interval: int | None) -> str:
    """Where the trajectory ends when its frame grid misses the last step run (frames stay
    evenly spaced, as ASE and LAMMPS dumps, for the MSD); empty when it holds that step."""
    from matloop.md.runner import default_traj_interval

    every = traj_interval or default_traj_interval(steps)
    last = done - done % every
    if last == done:
        return ""
    return f" (frames every {every} steps: the last is step {last} of {done}; the log has the end)"


def _learn(
    model: str,
    structure: Path,
    settings: OnTheFlySettings,
    train_data: Path | None,
    learn_dir: Path,
    progress: bool,
) -> None:
    """`matloop md --learn`: on-the-fly learning (see :mod:`matloop.active.onthefly`)."""
    from matloop.active.onthefly import OnTheFlyLearner, summarise
    from matloop.md import read_structure

    learner = OnTheFlyLearner(learn_dir, settings)
    state = learner.run(model, read_structure(structure), train_data, progress=progress)
    typer.echo(summarise(state, settings.timestep_fs))
    typer.echo(f"labels: {learn_dir / 'labels.xyz'}; state: {learn_dir / 'state.json'}")


def validate_command(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="Model file/directory (or a calculator name)."),
    test: Path = typer.Option(..., "--test", help="Test data (any ASE-readable file or .db)."),
    train: Path | None = typer.Option(None, "--train", help="Training data (for the ratio)."),
    energy_key: str = ENERGY_KEY,
    forces_key: str = FORCES_KEY,
    stress_key: str = STRESS_KEY,
    reference: str | None = typer.Option(
        None,
        "--reference",
        help="Reference calculator: built-in name (emt, sw) or module:function.",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory for report.html/json."),
    nve_ps: float | None = typer.Option(None, "--nve-ps", help="NVE run length (ps); 0 skips."),
    nve_temperature: float | None = typer.Option(None, "--nve-temperature", help="NVE T (K)."),
    timestep: float | None = typer.Option(
        None, "--timestep", help="MD time step (fs) of the NVE, equilibration and RDF runs."
    ),
    config: Path | None = typer.Option(
        None, "--config", help="YAML with 'thresholds:' and/or 'settings:' (see docs)."
    ),
    max_ratio: float | None = typer.Option(None, help="Threshold: test/train error ratio."),
    max_drift: float | None = typer.Option(None, help="Threshold: |NVE drift| meV/atom/ps."),
    max_force: float | None = typer.Option(None, help="Threshold: largest force (eV/Å)."),
    seed: int | None = typer.Option(
        None, "--seed", min=0, help="Seed of MD velocities (default 0)."
    ),
    progress: bool | None = typer.Option(
        None, "--progress/--no-progress", " /-q", " /--quiet", help=PROGRESS_HELP + " Default on."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite a report already in --out."),
) -> None:
    """Write DIR/report.html (self-contained) and DIR/report.json; exit 0 even if checks fail."""
    from matloop.validation import ReportSettings, Thresholds, build_report, load_report_config

    _check_report_dir(out, force)

    thresholds, settings = (
        load_report_config(config) if config is not None else (Thresholds(), ReportSettings())
    )
    t_upd = {
        k: v
        for k, v in {
            "max_test_train_ratio": max_ratio,
            "max_nve_drift_mev_per_atom_per_ps": max_drift,
            "max_force_ev_per_a": max_force,
        }.items()
        if v is not None
    }
    s_upd = {
        k: v
        for k, v in {
            "nve_ps": nve_ps,
            "nve_temperature_k": nve_temperature,
            "nve_timestep_fs": timestep,
            "seed": seed,
            "progress": progress,
        }.items()
        if v is not None
    }
    # a key given on the command line wins over the config's; its default does not
    keys = {"energy_key": energy_key, "forces_key": forces_key, "stress_key": stress_key}
    s_upd |= {k: v for k, v in keys.items() if given(ctx, k)}
    # only what the config or an option set counts as set (a default largest-force limit
    # follows the reference data; a limit the user gave stands)
    thresholds = Thresholds.model_validate({**thresholds.model_dump(exclude_unset=True), **t_upd})
    settings = ReportSettings.model_validate({**settings.model_dump(), **s_upd})
    calc = _calculator(model)
    report = build_report(
        calc,
        test,
        train_ds=train,
        reference=reference,
        out_dir=out,
        thresholds=thresholds,
        settings=settings,
        model_name=model,
    )
    for check in report["checks"]:
        mark = {True: "PASS", False: "FAIL", None: "----"}[check["passed"]]
        typer.echo(f"[{mark}] {check['name']}: {check['summary']}")
    verdict = "all checks passed" if report["passed"] else "some checks FAILED"
    typer.echo(f"{verdict}; report: {Path(out) / 'report.html'}")


def _check_report_dir(out: Path, force: bool) -> None:
    """--out may hold other files, but an earlier report in it is kept unless --force."""
    from matloop.errors import ConfigError

    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")
    for name in ("report.json", "report.html"):
        refuse_overwrites(force, {"--out": out / name})


def rdf_command(
    traj: Path = typer.Argument(..., help="Trajectory (or a single structure)."),
    rmax: float = typer.Option(6.0, help="Largest distance (Å)."),
    nbins: int = typer.Option(120, help="Number of bins."),
    elements: str | None = typer.Option(None, help="Partial RDF pair, e.g. 'Si,Si'."),
    skip: int = typer.Option(0, min=0, help="Frames to skip at the start (equilibration)."),
    plot: Path | None = typer.Option(None, "--plot", help="Write a PNG of g(r)."),
    out_json: Path | None = typer.Option(None, "--json", help="Write r, g(r) and the peaks."),
    force: bool = FORCE,
    quiet: bool = QUIET,
) -> None:
    """Radial distribution function, first peak and first-shell coordination number."""
    from matloop.analysis import compute_rdf, read_trajectory
    from matloop.analysis.plots import plot_rdfs, save_figure
    from matloop.errors import ConfigError
    from matloop.utils.files import atomic_write_text

    check_outputs(force, {"--json": out_json}, plot, {"TRAJ": traj})
    frames = read_trajectory(traj)[skip:]
    if not frames:
        raise ConfigError(f"--skip {skip} leaves no frames")
    pair = None
    if elements:
        parts = [p.strip() for p in elements.split(",")]
        if len(parts) != 2:
            raise ConfigError(f"--elements needs two symbols like 'Si,Si', got {elements!r}")
        pair = (parts[0], parts[1])
    rdf = compute_rdf(frames, rmax=rmax, nbins=nbins, elements=pair, progress=not quiet)
    typer.echo(
        f"{rdf.n_frames} frames: first peak {rdf.first_peak:.3f} Å, first minimum "
        f"{rdf.first_minimum():.3f} Å, coordination {rdf.coordination_number():.2f}"
    )
    if plot is not None:
        save_figure(plot_rdfs({traj.name: rdf}), plot)
        typer.echo(f"plot: {plot}")
    if out_json is not None:
        atomic_write_text(out_json, json.dumps(rdf.to_dict(), indent=2) + "\n")


def msd_command(
    traj: Path = typer.Argument(..., help="Trajectory written by `matloop md` (or any ASE one)."),
    dt: float | None = typer.Option(
        None, "--dt", help="Time between frames (ps); default: the frames' stored times."
    ),
    element: str | None = typer.Option(None, help="Only atoms of this element."),
    fit_start: float = typer.Option(0.1, help="Fit window start, fraction of the longest lag."),
    fit_end: float = typer.Option(0.5, help="Fit window end, fraction of the longest lag."),
    skip: int = typer.Option(0, min=0, help="Frames to skip at the start (equilibration)."),
    plot: Path | None = typer.Option(None, "--plot", help="Write a PNG of MSD(t) and the fit."),
    out_json: Path | None = typer.Option(None, "--json", help="Write MSD(t) and D."),
    force: bool = FORCE,
) -> None:
    """Mean-squared displacement and the diffusion coefficient (Einstein relation)."""
    from matloop.analysis import diffusion_from_trajectory, frame_times_ps, read_trajectory
    from matloop.analysis.plots import plot_msd, save_figure
    from matloop.utils.files import atomic_write_text

    check_outputs(force, {"--json": out_json}, plot, {"TRAJ": traj})
    frames = read_trajectory(traj)[skip:]
    times = frame_times_ps(frames, dt)
    d = diffusion_from_trajectory(frames, times, element=element, fit_window=(fit_start, fit_end))
    typer.echo(
        f"D = {d.d_a2_per_ps:.4g} Å²/ps = {d.d_cm2_per_s:.4g} cm²/s "
        f"(fit {d.fit_start_ps:.4g}–{d.fit_end_ps:.4g} ps, R² = {d.r2:.3f}, {len(frames)} frames)"
    )
    if plot is not None:
        save_figure(plot_msd(d), plot)
        typer.echo(f"plot: {plot}")
    if out_json is not None:
        atomic_write_text(out_json, json.dumps(d.to_dict(), indent=2) + "\n")


def register(app: typer.Typer) -> None:
    """Attach `md`, `validate` and `analyze` to the root app."""
    app.command("md")(md_command)
    app.command("validate")(validate_command)
    analyze = typer.Typer(no_args_is_help=True, help="Analyse trajectories: RDF, MSD/diffusion.")
    analyze.command("rdf")(rdf_command)
    analyze.command("msd")(msd_command)
    app.add_typer(analyze, name="analyze", help="Analyse trajectories: RDF, MSD/diffusion.")


_ENSEMBLE_OPTIONS = {"nve": set(), "nvt": {"thermostat"}, "npt": {"pressure", "barostat"}}


def _refuse_options_of_other_ensembles(ensemble: str, **given: object) -> None:
    """One line for an option the ensemble would ignore (`--pressure` under NVT, say)."""
    from matloop.errors import ConfigError

    allowed = _ENSEMBLE_OPTIONS.get(str(ensemble).lower())
    if allowed is None:  # an unknown ensemble: ensemble_settings names the choices
        return
    foreign = [name for name, value in given.items() if value is not None and name not in allowed]
    if foreign:
        options = ", ".join(f"--{name}" for name in foreign)
        raise ConfigError(f"{options} has no effect in {ensemble.upper()}; leave it out")
