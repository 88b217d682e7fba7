"""An offline HTML report of a structure → property model on one dataset (metrics + plots)."""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

import numpy as np

from matloop.property.data import PropertyDataset
from matloop.property.estimators import StructurePropertyModel


def write_report(
    model: StructurePropertyModel,
    dataset: PropertyDataset,
    directory: str | os.PathLike,
    title: str,
    target: str | None = None,
) -> dict:
    """Metrics of `model` on `dataset` for `target` (default: the model's first), PNG plots and
    ``report.html`` in `directory`."""
    from matloop.property import metrics as M
    from matloop.utils.files import atomic_write_text

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    data = model._labelled(dataset)
    result = model.evaluate(data, target=target)
    t = model._target_index(target)
    y = model._encode(data)
    plots = []
    if model.task == "classification":
        proba = model.predict_proba(data)
        M.plot_roc(y, proba, model.classes_, d / "roc.png")
        M.plot_reliability(y, proba, d / "calibration.png")
        plots = ["roc.png", "calibration.png"]
    else:
        mean, std = model.predict(data, return_std=True)
        mean, std = mean.reshape(len(data), -1)[:, t], std.reshape(len(data), -1)[:, t]
        ok = np.isfinite(y[:, t])
        name = model.targets_[t]
        label = f"{name} ({model.units_.get(name) or 'no unit'})"
        M.plot_parity(y[ok, t], mean[ok], std[ok], d / "parity.png", label)
        M.plot_calibration(y[ok, t], mean[ok], std[ok], d / "calibration.png")
        plots = ["parity.png", "calibration.png"]
    rows = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{_fmt(v)}</td></tr>"
        for k, v in result.items()
        if not isinstance(v, dict)
    )
    images = "".join(f'<img src="{p}" width="420">' for p in plots)
    selection = getattr(model, "selection_", None)
    chosen = ""
    if selection:  # model: auto, the families compared on the validation part at fit time
        result["model_selection"] = selection
        scores = ", ".join(f"{k} {_fmt(v)}" for k, v in selection["validation"].items())
        chosen = (
            f"<p>model: auto chose {html.escape(selection['chosen'])} by validation "
            f"{html.escape(selection['metric'])} of {html.escape(selection['target'])} "
            f"({scores}; n = {selection['n_val']})</p>"
        )
    text = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "</head><body style='font-family:sans-serif'>"
        f"<h1>{html.escape(title)}</h1><p>model: {model.kind}, task: {model.task}, "
        f"targets: {html.escape(', '.join(model.targets_))}, split: {model.split}, "
        f"train/val: {model.n_train_}/{model.n_val_}, train time {model.train_time_s_:.1f} s</p>"
        f"{chosen}<table border='1' cellpadding='3'>{rows}</table><div>{images}</div></body></html>"
    )
    atomic_write_text(d / "report.html", text)
    atomic_write_text(d / "report.json", json.dumps(result, indent=1))
    return result


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))
