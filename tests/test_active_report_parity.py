"""The AL report shows the final model against the run's test set (parity plot, embedded)."""

import json
import shutil

from matloop.active.report import render_html, write_test_parity


def test_report_has_a_test_parity_plot_of_the_final_model(tmp_path, tiny_cu_model, emt_cu_dataset):
    from ase.io import write

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(tiny_cu_model, run / "model.pt")
    (run / "final_model.json").write_text(json.dumps({"models": ["model.pt"], "sigma_scale": 1}))
    test = tmp_path / "test.xyz"
    write(test, list(emt_cu_dataset)[:4])
    report = {
        "run_dir": str(run),
        "generated_at": "now",
        "stop_reason": "max_iterations",
        "finished": True,
        "n_labels": 4,
        "n_attempted": 4,
        "n_quarantined": 0,
        "final_committee": [str(run / "model.pt")],
        "iterations": [],
        "quarantine": [],
        "config": {"test": {"data": str(test)}},
    }
    assert write_test_parity(run, report) == "test_parity.png"
    assert (run / "test_parity.png").read_bytes()[:4] == b"\x89PNG"
    report["test_parity_plot"] = "test_parity.png"
    assert "Test set parity (final model)" in render_html(report)
    report["config"] = {"test": {"data": None}}
    assert write_test_parity(run, report) is None
