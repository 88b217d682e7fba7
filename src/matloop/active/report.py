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
    if stop_reason is None and iterations:
        stop_reason = iterations[-1].get("stop_reason")
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
        "n_labels": iterations[-1]["n_labels"] if iterations else len(state.label_keys()),
        "n_attempted": state.n_attempted(),
        "n_quarantined": len(quarantine),
        "final_model": final_models[0] if final_models else None,
        "final_committee": final_models,
        "dataset": str(run_dir / "dataset.xyz"),
        "iterations": iterations,
        "quarantine": quarantine,
        "config": meta.get("config"),
    }


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
    explored = [(its[k - 1]["n_labels"], r) for k, r in enumerate(its)
                if k > 0 and r.get("explore_max_uncertainty") is not None]
    ax.plot([x for x, _ in explored], [r["explore_max_uncertainty"] for _, r in explored], "o-",
            label="explored snapshots: max")
    ax.plot([x for x, _ in explored], [r["explore_mean_uncertainty"] for _, r in explored],
            "s-", label="explored snapshots: mean")
    if any(r.get("test_max_forces_std_mean") is not None for r in its):
        ax.plot(n, [r.get("test_max_forces_std_mean") for r in its], "^-",
                label="test set: mean of max")
    ax.set_xlabel("number of labels the committee was trained on")
    ax.set_ylabel("committee forces_std (eV/Å)")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("Uncertainty against number of labels")
    out.append(("Uncertainty", _fig_to_b64(fig)))
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 3.4))
    x = [r["iteration"] for r in its]
    ax.bar([i - 0.2 for i in x], [r.get("n_selected", 0) for r in its], 0.4, label="selected")
    ax.bar([i + 0.2 for i in x], [r.get("n_failed", 0) for r in its], 0.4, label="quarantined",
           color="C3")
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


def render_html(report: dict) -> str:
    cols = ["iteration", "n_labels", "n_selected", "n_failed", "n_above_threshold",
            "explore_max_uncertainty", "test_energy_mae_mev_per_atom", "test_force_mae_ev_per_a",
            "seconds"]
    rows = "".join(
        "<tr>" + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in cols) + "</tr>"
        for r in report["iterations"]
    )
    qrows = "".join(
        f"<tr><td>{_fmt(q['key'])}</td><td>{q['iteration']}</td><td>{_fmt(q['formula'])}</td>"
        f"<td>{_fmt(q['status'])}</td><td>{_fmt(q['reason'])}</td></tr>"
        for q in report["quarantine"]
    ) or "<tr><td colspan=5>none</td></tr>"
    imgs = "".join(
        f"<h2>{html.escape(t)}</h2><img src='data:image/png;base64,{b}' alt='{html.escape(t)}'>"
        for t, b in _plots(report)
    )
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>matloop active learning report</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:3px 8px;font-size:90%}}
img{{max-width:100%}}</style></head><body>
<h1>Active learning report</h1>
<p>Run: <code>{html.escape(report['run_dir'])}</code> — generated {report['generated_at']}</p>
<p><b>Status:</b> {'finished: ' + html.escape(str(report['stop_reason']))
                    if report['finished'] else 'in progress / interrupted'}<br>
<b>Labels:</b> {report['n_labels']} successful, {report['n_quarantined']} quarantined,
{report['n_attempted']} attempted<br>
<b>Final model:</b> <code>{_fmt(report['final_model'])}</code>
(load with <code>matloop.load(path)</code>)</p>
{imgs}
<h2>Iterations</h2>
<table><tr>{''.join(f'<th>{c}</th>' for c in cols)}</tr>{rows}</table>
<h2>Quarantine</h2>
<table><tr><th>key</th><th>iteration</th><th>formula</th><th>status</th><th>reason</th></tr>
{qrows}</table>
</body></html>
"""


def write_reports(run_dir: str | Path, state: RunState | None = None,
                  stop_reason: str | None = None) -> dict:
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
    atomic_write_text(run_dir / "report.json", json.dumps(report, indent=2, default=str))
    atomic_write_text(run_dir / "report.html", render_html(report))
    return report


def open_state(run_dir: str | Path) -> RunState:
    """Open the state database of an existing run directory."""
    from matloop.errors import ConfigError

    run_dir = Path(run_dir)
    db = run_dir / "state.db"
    if db.exists():
        return RunState(db)
    cfg = run_dir / "config.yaml"
    if cfg.exists():
        import yaml

        url = (yaml.safe_load(cfg.read_text()) or {}).get("state", {}).get("database")
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
        "stop_reason": its[-1].get("stop_reason") if its else None,
    }
