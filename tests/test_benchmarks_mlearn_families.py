"""Helpers of the family-comparison benchmark scripts (no data from ../shared, no training)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


table_mod = _load("mlearn_table")
delta_mod = _load("delta_foundation")
md_mod = _load("family_md_speed")


def _result(element, model, e, f, valid_e=1.0, valid_f=0.05, config="c.yaml"):
    return {
        "element": element,
        "model": model,
        "energy_mae_mev_per_atom": e,
        "force_mae_ev_per_a": f,
        "train_seconds": 100.0,
        "train_cpu_seconds": 90.0,
        "config": config,
        "best_valid": {
            "valid_energy_rmse_mev_per_atom": valid_e,
            "valid_force_rmse_ev_per_a": valid_f,
        },
    }


def _write(tmp_path: Path, name: str, payload: dict) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(payload))
    return path


def test_targets_and_ratios_use_08_of_best_published():
    e_t, f_t = table_mod.targets("Cu")  # best of GAP/MTP: 0.41 meV/atom, 0.01 eV/Å
    assert e_t == pytest.approx(0.8 * 0.41)
    assert f_t == pytest.approx(0.8 * 0.01)
    e_r, f_r = table_mod.ratios(_result("Cu", "bpnn", 0.328, 0.016))
    assert e_r == pytest.approx(1.0)
    assert f_r == pytest.approx(2.0)


def test_table_selects_by_validation_marks_best_and_not_run(tmp_path):
    files = [
        # two bpnn variants on Cu: the worse-on-test one has the better validation score
        _write(tmp_path, "mlearn_bpnn_Cu.json", _result("Cu", "bpnn", 0.9, 0.02, valid_e=0.5)),
        _write(
            tmp_path,
            "mlearn_bpnn_nocap_Cu.json",
            _result("Cu", "bpnn", 0.3, 0.007, valid_e=5.0, config="nocap.yaml"),
        ),
        _write(tmp_path, "mlearn_painn_Cu.json", _result("Cu", "painn", 0.4, 0.006)),
    ]
    results = table_mod.load_results(files)
    assert [r["_file"] for r in table_mod.ranked(results["Cu"]["bpnn"])] == [
        "mlearn_bpnn_Cu.json",
        "mlearn_bpnn_nocap_Cu.json",
    ]
    md = {"results": {"Cu": {"painn": {"status": "ok", "atom_steps_per_cpu_s": 1234.5}}}}
    text = table_mod.table(results, md, ["bpnn", "painn", "kernel"])
    rows = {line.split(" | ")[1]: line for line in text.splitlines() if line.startswith("| Cu")}
    assert "0.90" in rows["bpnn (c, selected)"]  # selected on validation, not on test
    assert "**best**" in rows["painn (c)"] and "1,234" in rows["painn (c)"]
    assert "not run" in rows["kernel"]
    assert "| Ni | bpnn | not run" in text
    assert "- Cu: target" in text and "best family **painn**" in text
    assert "does not meet" in text  # painn E ratio 0.4 / 0.328 > 1


def test_validation_score_missing_is_inf():
    assert table_mod.validation_score({"best_valid": {}}) == float("inf")


def test_md_throughput_missing_and_status():
    assert table_mod.md_throughput(None, "Cu", "bpnn") == "–"
    md = {"results": {"Cu": {"mace": {"status": "missing"}}}}
    assert table_mod.md_throughput(md, "Cu", "mace") == "missing"
    assert table_mod.md_throughput(md, "Si", "mace") == "–"


def test_delta_step_budget_and_spread():
    # n = 10: 9 fitted structures, 30 epochs = 68 steps -> raised to the 400 minimum
    assert delta_mod.step_budget(10, 400, 30, 1200) == 400
    # n = 100: 90 fitted, 30 epochs -> ceil(675)
    assert delta_mod.step_budget(100, 400, 30, 1200) == 675
    assert delta_mod.step_budget(200, 400, 30, 1200) == 1200  # capped
    s = delta_mod.spread([1.0, 3.0])
    assert s["mean"] == 2.0 and s["min"] == 1.0 and s["max"] == 3.0
    assert s["std"] == pytest.approx(2**0.5, abs=1e-4)
    assert delta_mod.spread([5.0])["std"] == 0.0


def test_family_md_find_model(tmp_path):
    model, data, reason = md_mod.find_model("kernel", "Cu", tmp_path)
    assert model is None and "not found" in reason
    (tmp_path / "m.pt").write_bytes(b"x")
    _write(tmp_path, "mlearn_painn_Cu.json", {"model_path": str(tmp_path / "m.pt")})
    model, data, reason = md_mod.find_model("painn", "Cu", tmp_path)
    assert model == tmp_path / "m.pt" and reason == ""
    _write(tmp_path, "mlearn_mace_Cu.json", {"model_path": str(tmp_path / "gone.pt")})
    model, _, reason = md_mod.find_model("mace", "Cu", tmp_path)
    assert model is None and "gone.pt" in reason


def test_family_md_cell_sizes():
    assert len(md_mod.cell("Cu", 500)) == 500
    assert len(md_mod.cell("Si", 500)) == 512


def test_markdown_tables_render_missing_and_spread():
    report = {
        "results": {
            "Cu": {
                "emt": {
                    "status": "ok",
                    "n_atoms": 500,
                    "atom_steps_per_cpu_s": 2e4,
                    "atom_steps_per_s": 1e4,
                },
                "kernel": {"status": "missing", "reason": "mlearn_kernel_Cu.json not found"},
            }
        }
    }
    text = md_mod.markdown(report)
    assert "| Cu | emt | 500 | 20,000 | 10,000 |" in text
    assert "missing: mlearn_kernel_Cu.json not found" in text
    s = delta_mod.spread
    delta = {
        "chgnet_alone": {"energy_mae_mev_per_atom": 88.5, "force_mae_ev_per_a": 0.192},
        "summary": [
            {
                "n_labels": 10,
                "steps": 400,
                "chgnet_shifted_energy_mae_mev_per_atom": s([90.0, 92.0]),
                "delta": {
                    "energy_mae_mev_per_atom": s([8.0, 10.0]),
                    "force_mae_ev_per_a": s([0.1, 0.12]),
                    "train_cpu_s": s([30.0, 32.0]),
                },
                "scratch": {
                    "energy_mae_mev_per_atom": s([20.0, 22.0]),
                    "force_mae_ev_per_a": s([0.2, 0.22]),
                    "train_cpu_s": s([30.0, 30.0]),
                },
            }
        ],
    }
    text = delta_mod.markdown(delta)
    assert "| 10 | 400 | 9.0 ± 1.4 | 0.110 ± 0.014 | 21.0 ± 1.4 |" in text
    assert "| CHGNet alone | 0 | 88.5 | 0.192 |" in text
