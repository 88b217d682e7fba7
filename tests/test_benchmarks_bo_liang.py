"""Helpers of the Liang et al. pool-BO benchmark: reading the authors' arrays safely, checking
them, and comparing with their published numbers (synthetic files, no data from ../shared)."""

from __future__ import annotations

import importlib.util
import io
import pickle
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
spec = importlib.util.spec_from_file_location("_bench_bo_liang", BENCH / "bo_liang.py")
bo_liang = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bo_liang)


def _object_npy(path: Path, runs: list[list[int]]) -> None:
    arr = np.empty(len(runs), dtype=object)
    arr[:] = runs
    np.save(path, arr, allow_pickle=True)


def test_authors_counts_become_top_curves_and_bad_runs_are_flagged(tmp_path):
    N, n_top = 20, 2
    # run 1 stops once both top rows are found (the authors' files do that); run 2 "loses" a hit
    _object_npy(tmp_path / "a.npy", [[0, 1, 1, 2], [1, 1, 0, 0, 1, 2] + [2] * 14])
    curves, check = bo_liang.anchor_curves(tmp_path / "a.npy", N, n_top)
    assert curves.shape == (2, N)
    assert curves[0, -1] == 1.0 and curves[0, 1] == 0.5  # padded with the final count
    assert check == {"runs": 2, "runs_inconsistent": 1}
    out = bo_liang.ef_af(curves, N)
    assert out["EF"]["10"] == pytest.approx(1.0 / (10 / N))
    assert out["experiments_to"]["1.0"] == 6


def test_a_file_that_would_run_code_is_refused(tmp_path, capsys):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    payload = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        payload, {"descr": "|O", "fortran_order": False, "shape": (1,)}
    )
    payload.write(pickle.dumps(np.array([Evil()], dtype=object), protocol=3))
    (tmp_path / "evil.npy").write_bytes(payload.getvalue())
    with pytest.raises(pickle.UnpicklingError, match="refusing builtins.print"):
        bo_liang._load_object_npy(tmp_path / "evil.npy")
    assert "pwned" not in capsys.readouterr().out


def test_comparison_with_the_authors_2020_numbers():
    ok = {"EF_max": 4.2, "experiments_to": {"0.8": 35}}
    assert bo_liang.compare_reference("P3HT", ok) == {"EF_max": True, "experiments_to_0.8": True}
    slow = {"EF_max": 3.9, "experiments_to": {}}
    assert bo_liang.compare_reference("P3HT", slow) == {
        "EF_max": False,
        "experiments_to_0.8": False,
    }
    assert bo_liang.compare_reference("Crossed barrel", ok) is None


def test_selection_score_counts_the_eleven_targets():
    res = {
        "Crossed barrel": {"EF": {"30": 3.8, "50": 3.85, "100": 3.6}, "EF_max": 4.0},
        "Perovskite": {"EF_max": 1.8, "experiments_to": {"0.8": 31}},
        "AgNP": {"EF_max": 5.0, "experiments_to": {"0.8": 20}},
        "P3HT": {"EF_max": 3.9, "experiments_to": {}},
        "AutoAM": {"EF_max": 2.7, "experiments_to": {"0.8": 25}},
    }
    score = bo_liang.targets_met(res)
    # met: CB @30 and @100, Perovskite EF_max, AgNP both, AutoAM both; missed: CB @50, P3HT both
    assert (score["targets_met"], score["of"]) == (7, 11)
    assert not score["met"]["Crossed barrel EF@50"] and not score["met"]["Perovskite Top% 0.8"]
    efs = [4.0, 1.8, 5.0, 3.9, 2.7]
    assert score["geomean_EF_max"] == pytest.approx(np.prod(efs) ** (1 / 5))
