"""Reports of an active-learning run: DIR/report.json and DIR/report.html (plots embedded)."""

from __future__ import annotations

import base64
import html
import io
import json
import time
from pathlib import Path
from typing import Any

from matloop.active.state import RunState
from matloop.utils.files import atomic_write_text


def build_report(run_dir: Path, state: RunState, stop_reason: str | None = None) -> dict:
    iterations = state.iterations()
    if stop_reason is None:
        stop_reason = finished_reason(state, iterations)
    final_models: list[str] = iterations[-1]["models"] if iterations else []
    quarantine = state.quarantine()
    meta = state.meta() or {}
    return {
        "run_dir": str(run_dir),
        "database": state.url,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "stop_reason": stop_reason,
        "finished": stop_reason is not None,
        "n_iterations": len(iterations),
        # what the store holds (dataset.xyz): after an interruption, more than the last
        # finished iteration trained on (its record's n_labels)
        "n_labels": len(state.label_keys()),
        "n_attempted": state.n_attempted(),
        "n_quarantined": len(quarantine),
        # matloop.load(run_dir) gives the whole final model (committee or single model)
        "final_model": str(run_dir) if final_models else None,
        "final_committee": final_models,
        "dataset": str(run_dir / "dataset.xyz"),
        "iterations": iterations,
        "quarantine": quarantine,
        "config": meta.get("config"),
    }


def finished_reason(state: RunState, iterations: list[dict]) -> str | None:
    """Why the run stopped, or None while it is unfinished (running or interrupted).

    The loop stores the reason in the record of its last iteration: ``stop_reason`` when that
    iteration selected nothing, ``stopped`` for a criterion (max iterations, budget, test
    target). The latter no longer holds once a later iteration has been selected.
    """
    if not iterations:
        return None
    last = iterations[-1]
    if last.get("stop_reason"):
        return last["stop_reason"]
    if last.get("stopped") and not state.has_selection(int(last["iteration"]) + 1):
        return last["stopped"]
    return None


def _fig_to_b64(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def _plots(report: dict) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    its = report["iterations"]
    if not its:
        return []
    out = []
    n = [r["n_labels"] for r in its]
    if any(r.get("test_force_mae_ev_per_a") is not None for r in its):
        fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
        ax[0].plot(n, [r.get("test_force_mae_ev_per_a") for r in its], "o-")
        ax[0].set_xlabel("number of labels")
        ax[0].set_ylabel("test force MAE (eV/Å)")
        ax[1].plot(n, [r.get("test_energy_mae_mev_per_atom") for r in its], "s-", color="C1")
        ax[1].set_xlabel("number of labels")
        ax[1].set_ylabel("test energy MAE (meV/atom)")
        for a in ax:
            a.set_yscale("log")
            a.grid(alpha=0.3)
        fig.suptitle("Test error against number of labels")
        fig.tight_layout()
        out.append(("Test error", _fig_to_b64(fig)))
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 3.4))
    # exploration of iteration i uses the committee of iteration i-1 (trained on its labels)
    explored = [
        (its[k - 1]["n_labels"], r)
        for k, r in enumerate(its)
        if k > 0 and r.get("explore_max_uncertainty") is not None
    ]
    ax.plot(
        [x for x, _ in explored],
        [r["explore_max_uncertainty"] for _, r in explored],
        "o-",
        label="explored snapshots: max",
    )
    ax.plot(
        [x for x, _ in explored],
        [r["explore_mean_uncertainty"] for _, r in explored],
        "s-",
        label="explored snapshots: mean",
    )
    if any(r.get("test_max_forces_std_mean") is not None for r in its):
        ax.plot(
            n, [r.get("test_max_forces_std_mean") for r in its], "^-", label="test set: mean of max"
        )
    ax.set_xlabel("number of labels the model was trained on")
    ax.set_ylabel("σ (calibrated)")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("Uncertainty against number of labels")
    out.append(("Uncertainty", _fig_to_b64(fig)))
    plt.close(fig)
    cal = [r for r in its if r.get("test_coverage_95") is not None]
    if cal:
        fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
        x = [r["n_labels"] for r in cal]
        ax[0].plot(x, [r.get("test_coverage_95_raw") for r in cal], "o--", label="raw σ")
        ax[0].plot(x, [r.get("test_coverage_95") for r in cal], "o-", label="calibrated σ")
        ax[0].axhline(0.95, color="k", lw=0.8, ls=":", label="ideal")
        ax[0].set_ylabel("test coverage of ±1.96 σ")
        ax[0].set_ylim(0, 1.02)
        ax[1].plot(x, [r.get("test_sigma_spearman") for r in cal], "s-", color="C2")
        ax[1].set_ylabel("Spearman ρ(σ, |error|) on test")
        for a in ax:
            a.set_xlabel("number of labels")
            a.grid(alpha=0.3)
        ax[0].legend()
        fig.suptitle("Calibration of the model's σ")
        fig.tight_layout()
        out.append(("Calibration", _fig_to_b64(fig)))
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 3.4))
    x = [r["iteration"] for r in its]
    ax.bar([i - 0.2 for i in x], [r.get("n_selected", 0) for r in its], 0.4, label="selected")
    ax.bar(
        [i + 0.2 for i in x],
        [r.get("n_failed", 0) for r in its],
        0.4,
        label="quarantined",
        color="C3",
    )
    ax.set_xlabel("iteration")
    ax.set_ylabel("structures")
    ax.legend()
    ax.set_title("Selections and failures per iteration")
    out.append(("Selections and failures", _fig_to_b64(fig)))
    plt.close(fig)
    return out


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


# (key in the iteration record, column heading in words with units)
ITERATION_COLUMNS = [
    ("iteration", "iteration"),
    ("n_labels", "labels"),
    ("n_selected", "selected"),
    ("n_failed", "failed"),
    ("explore_max_uncertainty", "largest σ explored"),
    ("walker_limit", "walker σ limit"),
    ("test_energy_mae_mev_per_atom", "test energy MAE (meV/atom)"),
    ("test_force_mae_ev_per_a", "test force MAE (eV/Å)"),
    ("seconds", "wall time (s)"),
]
CALIBRATION_COLUMNS = [
    ("iteration", "iteration"),
    ("sigma_scale", "σ scale"),
    ("new_labels_coverage_95", "95 % coverage, new labels"),
    ("new_labels_spearman", "rank corr. σ–error, new labels"),
    ("test_coverage_95_raw", "95 % coverage, test, raw σ"),
    ("test_coverage_95", "95 % coverage, test, calibrated"),
    ("test_sigma_spearman", "rank corr. σ–error, test"),
]
TIMING_COLUMNS = [
    ("iteration", "iteration"),
    ("explore_seconds", "explore (s)"),
    ("select_seconds", "select (s)"),
    ("label_seconds", "label (s)"),
    ("fit_seconds", "fit (s)"),
]


def _table(records: list[dict], columns: list[tuple[str, str]]) -> str:
    head = "".join(f"<th>{html.escape(t)}</th>" for _, t in columns)
    rows = "".join(
        "<tr>" + "".join(f"<td>{_fmt(r.get(k))}</td>" for k, _ in columns) + "</tr>"
        for r in records
    )
    return f"<table><tr>{head}</tr>{rows}</table>"


def _sources_table(records: list[dict]) -> str:
    """Where each iteration's selected structures came from (explorer, temperature)."""
    rows = "".join(
        f"<tr><td>{r['iteration']}</td><td>"
        + html.escape(", ".join(f"{k}: {v}" for k, v in sorted(r["selected_from"].items())))
        + "</td></tr>"
        for r in records
        if r.get("selected_from")
    )
    return (
        f"<table><tr><th>iteration</th><th>selected from (explorer: count)</th></tr>{rows}</table>"
    )


def render_html(report: dict) -> str:
    its = report["iterations"]
    kind = next((r["sigma_kind"] for r in its if r.get("sigma_kind")), None)
    sigma_unit = {
        "forces": "σ: largest atomic force std (eV/Å)",
        "energy": "σ: energy std (eV/atom)",
    }.get(kind, "σ: committee forces_std (eV/Å)")
    qrows = (
        "".join(
            f"<tr><td>{_fmt(q['key'])}</td><td>{q['iteration']}</td><td>{_fmt(q['formula'])}</td>"
            f"<td>{_fmt(q['status'])}</td><td>{_fmt(q['reason'])}</td></tr>"
            for q in report["quarantine"]
        )
        or "<tr><td colspan=5>none</td></tr>"
    )
    plots = _plots(report)
    if report.get("test_parity_plot"):
        png = (Path(report["run_dir"]) / report["test_parity_plot"]).read_bytes()
        plots.insert(0, ("Test set parity (final model)", base64.b64encode(png).decode()))
    imgs = "".join(
        f"<h2>{html.escape(t)}</h2><img src='data:image/png;base64,{b}' alt='{html.escape(t)}'>"
        for t, b in plots
    )
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>matloop active learning report</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;font-size:90%}}
img{{max-width:100%}}</style></head><body>
<h1>Active learning report</h1>
<p>Run: <code>{html.escape(report["run_dir"])}</code> — generated {report["generated_at"]}</p>
<p><b>Status:</b> {
        "finished: " + html.escape(str(report["stop_reason"]))
        if report["finished"]
        else "in progress / interrupted"
    }<br>
<b>Labels:</b> {report["n_labels"]} successful, {report["n_quarantined"]} quarantined,
{report["n_attempted"]} attempted<br>
<b>Final model:</b> <code>matloop.load("{html.escape(report["run_dir"])}")</code> gives
{"the committee as one calculator" if len(report["final_committee"]) > 1 else "the model"}
with its calibrated σ (files: <code>{_fmt(", ".join(report["final_committee"]))}</code>)</p>
{imgs}
<h2>Iterations</h2>
<p>{html.escape(sigma_unit)}, calibrated by the σ scale.</p>
{_table(its, ITERATION_COLUMNS)}
<h2>Calibration of σ</h2>
<p>Each iteration's new labels were predicted, with σ, by the previous model before they were
computed; the σ scale (maximum likelihood over all such labels so far) multiplies σ. Coverage:
fraction of errors within ±1.96 σ (ideal 0.95). Rank correlation: Spearman's ρ between σ and the
size of the error (per atom for forces, per structure for energies).</p>
{_table(its, CALIBRATION_COLUMNS)}
<h2>Where the labels came from</h2>
{_sources_table(its)}
<h2>Time per iteration</h2>
{_table(its, TIMING_COLUMNS)}
<h2>Quarantine</h2>
<table><tr><th>key</th><th>iteration</th><th>formula</th><th>status</th><th>reason</th></tr>
{qrows}</table>
</body></html>
"""


def write_reports(
    run_dir: str | Path, state: RunState | None = None, stop_reason: str | None = None
) -> dict:
    """Write DIR/report.json, DIR/report.html and DIR/dataset.xyz; return the report dict."""
    run_dir = Path(run_dir)
    if state is None:
        state = open_state(run_dir)
    report = build_report(run_dir, state, stop_reason)
    labelled = state.labelled()
    if labelled:
        from ase.io import write

        from matloop.utils.files import atomic_path

        for a in labelled:
            a.info.pop("matloop_key", None)
        with atomic_path(run_dir / "dataset.xyz") as tmp:
            write(tmp, labelled, format="extxyz")
    if report["final_committee"]:
        write_final_model(run_dir, report)
        report["test_parity_plot"] = write_test_parity(run_dir, report)
    atomic_write_text(run_dir / "report.json", json.dumps(report, indent=2, default=str))
    atomic_write_text(run_dir / "report.html", render_html(report))
    return report


def write_test_parity(run_dir: Path, report: dict) -> str | None:
    """DIR/test_parity.png: the final model against the run's test set (``test.data``), if any.

    Returns the file name, or None when the run has no test set (or it is no longer there).
    """
    test = ((report.get("config") or {}).get("test") or {}).get("data")
    if not test or not Path(test).is_file():
        return None
    from matloop.data import read_dataset
    from matloop.evaluation import parity_plot, predict

    pred = predict(load_final_model(run_dir), read_dataset(test, require_forces=False))
    its = report["iterations"]  # the final model was trained on its last iteration's labels
    n_labels = its[-1]["n_labels"] if its else report["n_labels"]
    parity_plot(pred, run_dir / "test_parity.png", f"final model ({n_labels} labels) on {test}")
    return "test_parity.png"


def write_final_model(run_dir: Path, report: dict) -> None:
    """DIR/final_model.json: the final model's files (relative to DIR) and its σ scale."""
    its = report["iterations"]
    paths = []
    for p in report["final_committee"]:
        p = Path(p)
        try:
            paths.append(str(p.resolve().relative_to(run_dir.resolve())))
        except ValueError:
            paths.append(str(p.resolve()))
    record = {
        "models": paths,
        "sigma_scale": float(its[-1].get("sigma_scale") or 1.0),
        "sigma_kind": its[-1].get("sigma_kind"),
    }
    atomic_write_text(run_dir / "final_model.json", json.dumps(record, indent=2))


def load_model_or_run(path: str | Path, **kwargs: Any):
    """A saved potential as an ASE Calculator; a run directory gives its final model."""
    from matloop.calculators import load_calculator

    if (Path(path) / "final_model.json").is_file():
        return load_final_model(path, **kwargs)
    return load_calculator(path, **kwargs)


def load_final_model(run_dir: str | Path, **kwargs: Any):
    """The final model of a run: one model with its own σ, or the committee (calibrated σ)."""
    from matloop.calculators import load_calculator
    from matloop.errors import DataError

    run_dir = Path(run_dir)
    try:
        record = json.loads((run_dir / "final_model.json").read_text())
        paths = [run_dir / p for p in record["models"]]
        scale = float(record.get("sigma_scale") or 1.0)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{run_dir / 'final_model.json'} is unreadable: {exc}") from exc
    if len(paths) == 1:
        return load_calculator(paths[0], **kwargs)
    from matloop.calculators.committee import CommitteeCalculator

    members = [load_calculator(p, **kwargs) for p in paths]
    # σ is calibrated on force errors (committees publish forces_std); energy_std stays raw
    forces_scale = scale if record.get("sigma_kind") in (None, "forces") else 1.0
    return CommitteeCalculator(members, forces_scale=forces_scale)


def open_state(run_dir: str | Path) -> RunState:
    """Open the state database of an existing run directory."""
    from matloop.errors import ConfigError

    run_dir = Path(run_dir)
    db = run_dir / "state.db"
    if db.exists():
        return RunState(db)
    cfg = run_dir / "config.yaml"
    if cfg.exists():
        from matloop.utils.config import load_yaml

        url = ((load_yaml(cfg) or {}).get("state") or {}).get("database")
        if url:
            # config.yaml holds the URL with its password masked: libpq then takes the
            # password from PGPASSWORD or ~/.pgpass
            return RunState(str(url).replace(":***@", "@"))
    raise ConfigError(f"{run_dir} is not an active-learning run directory (no state.db)")


def status(run_dir: str | Path) -> dict[str, Any]:
    """A short summary of a run (works while it is running or after a crash)."""
    state = open_state(run_dir)
    its = state.iterations()
    return {
        "iterations_done": len(its),
        "n_labels": len(state.label_keys()),
        "n_pending": len(state.pending()),
        "n_quarantined": len(state.quarantine()),
        "n_attempted": state.n_attempted(),
        "last": its[-1] if its else None,
        "quarantine": state.quarantine(),
        "stop_reason": finished_reason(state, its),
    }
