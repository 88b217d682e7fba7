"""Render the validation report as one self-contained HTML page (inline CSS, base64 PNGs)."""

from __future__ import annotations

from html import escape
from typing import Any

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; }
th { background: #f3f3f3; }
.pass { background: #d9f2d9; font-weight: bold; } .fail { background: #f8d0d0; font-weight: bold; }
.info { background: #eee; } .verdict { font-size: 1.2em; padding: 0.5em; }
img { max-width: 100%; margin: 0.5em 0; border: 1px solid #ddd; }
.small { color: #666; font-size: 0.85em; }
"""

_METRIC_COLUMNS = (
    ("n_structures", "structures", "{:d}"),
    ("n_atoms", "atoms", "{:d}"),
    ("energy_mae_mev_per_atom", "E MAE (meV/atom)", "{:.3g}"),
    ("energy_rmse_mev_per_atom", "E RMSE (meV/atom)", "{:.3g}"),
    ("force_mae_ev_per_a", "F MAE (eV/Å)", "{:.3g}"),
    ("force_rmse_ev_per_a", "F RMSE (eV/Å)", "{:.3g}"),
    ("stress_mae_gpa", "σ MAE (GPa)", "{:.3g}"),
    ("stress_rmse_gpa", "σ RMSE (GPa)", "{:.3g}"),
)


def _fmt(fmt: str, value: Any) -> str:
    if value is None:
        return "–"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return escape(str(value))


def _metrics_table(title: str, metrics: dict) -> str:
    cols = [c for c in _METRIC_COLUMNS if c[0] in metrics]
    head = "".join(f"<th>{escape(label)}</th>" for _, label, _ in cols)
    rows = [("all", metrics)] + sorted(metrics.get("per_config_type", {}).items())
    body = "".join(
        "<tr><td>"
        + escape(str(name))
        + "</td>"
        + "".join(f"<td>{_fmt(fmt, m.get(key))}</td>" for key, _, fmt in cols)
        + "</tr>"
        for name, m in rows
    )
    return f"<h3>{escape(title)}</h3><table><tr><th>config_type</th>{head}</tr>{body}</table>"


def _img(figures: dict[str, str], key: str, alt: str) -> str:
    if key not in figures:
        return ""
    src = f"data:image/png;base64,{figures[key]}"
    return f'<img alt="{escape(alt)}" title="{escape(key)}" src="{src}">'


def render_html(report: dict[str, Any], figures: dict[str, str]) -> str:
    """The report page; `figures` maps a name to a base64 PNG."""
    verdict = report.get("passed")
    vclass, vtext = {
        True: ("pass", "All checks passed"),
        False: ("fail", f"{report.get('n_failed')} check(s) failed"),
        None: ("info", "No check was judged"),
    }[verdict]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>matloop validation: {escape(str(report.get('model')))}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Validation report: {escape(str(report.get('model')))}</h1>",
        "<p class='small'>"
        + escape(
            f"family {report.get('model_family')}, elements {report.get('model_elements')}; "
            f"test data {report.get('test_data')}; training data {report.get('train_data')}; "
            f"reference {report.get('reference')}; created {report.get('created')} "
            f"in {report.get('seconds', 0):.0f} s"
        )
        + "</p>",
        f"<p class='verdict {vclass}'>{escape(vtext)} "
        f"({report.get('n_passed')} passed, {report.get('n_failed')} failed)</p>",
        *(f"<p class='info'>{escape(note)}</p>" for note in report.get("notes", [])),
        "<h2>Checks</h2><table><tr><th>check</th><th>result</th><th>value</th><th>details</th>"
        "</tr>",
    ]
    for c in report["checks"]:
        cls, word = {True: ("pass", "PASS"), False: ("fail", "FAIL"), None: ("info", "info")}[
            c["passed"]
        ]
        detail = c.get("detail")
        parts.append(
            f"<tr><td>{escape(c['name'])}</td><td class='{cls}'>{word}</td>"
            f"<td>{escape(c['summary'])}</td><td>{escape(str(detail) if detail else '')}</td></tr>"
        )
    parts.append("</table>")
    parts.append(
        "<p class='small'>Thresholds can be changed with <code>matloop validate --config "
        "thresholds.yaml</code> or options such as <code>--max-ratio</code>.</p>"
    )

    parts.append("<h2>Errors</h2>")
    parts.append(_metrics_table("Test set", report.get("test_metrics", {})))
    if report.get("train_metrics"):
        parts.append(_metrics_table("Training set", report["train_metrics"]))
        ratios = report.get("test_train_ratio", {})
        if ratios:
            parts.append(
                "<p>Test/train MAE ratio: "
                + escape(", ".join(f"{k.split('_')[0]} {v:.2f}×" for k, v in ratios.items()))
                + "</p>"
            )
    parts.append(_img(figures, "parity_test", "parity plots, test set"))
    parts.append(_img(figures, "error_histogram_test", "error histograms, test set"))

    phys = report.get("physics", {}).get("structures", [])
    if phys:
        keys = [k for k in phys[0] if k not in ("index",)]
        parts.append("<h2>Physics checks on test structures</h2><table><tr><th>index</th>")
        parts.append("".join(f"<th>{escape(k)}</th>" for k in keys) + "</tr>")
        for row in phys:
            parts.append(
                f"<tr><td>{row['index']}</td>"
                + "".join(
                    f"<td>{_fmt('{:.3g}', row.get(k)) if isinstance(row.get(k), float) else escape(str(row.get(k)))}</td>"  # noqa: E501
                    for k in keys
                )
                + "</tr>"
            )
        parts.append("</table>")

    nve = report.get("nve", {})
    parts.append("<h2>NVE molecular dynamics</h2>")
    if "error" in nve:
        parts.append(f"<p class='fail'>{escape(nve['error'])}</p>")
    parts.append(
        "<p>" + escape(f"structure: {nve.get('structure')}, {nve.get('n_atoms')} atoms") + "</p>"
    )
    parts.append(_img(figures, "nve", "NVE temperature and energy"))

    if report.get("reference"):
        parts.append(f"<h2>Comparison with the reference ({escape(str(report['reference']))})</h2>")
        parts.append(_img(figures, "eos", "equation of state, model vs reference"))
        parts.append(_img(figures, "rdf", "radial distribution function, model vs reference"))

    parts.append(
        "<h2>Settings</h2><pre>"
        + escape(
            "\n".join(f"{k}: {v}" for k, v in report.get("settings", {}).items())
            + "\n\nthresholds:\n"
            + "\n".join(f"  {k}: {v}" for k, v in report.get("thresholds", {}).items())
        )
        + "</pre></body></html>"
    )
    return "\n".join(p for p in parts if p)
