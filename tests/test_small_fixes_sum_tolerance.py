"""``sum_tolerance: 0`` in a design space means "exactly the total": sampled, rounded and
suggested compositions pass the sum checks up to float round-off (they used to fail whenever the
float sum missed the total by ~1e-14)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from matloop.cli import main
from matloop.design.space import Space, load_space, observed_compositions, unit_box_problem

DATA = Path(__file__).parent / "data" / "design"
COMPONENTS = ["SiO2", "Na2O", "CaO", "Al2O3", "PbO"]


def _exact_space(tmp_path: Path) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text((DATA / "space.yaml").read_text() + "sum_tolerance: 0\n")
    return path


def test_sampled_and_rounded_compositions_pass_an_exact_sum(tmp_path):
    space = load_space(_exact_space(tmp_path))
    assert space.sum_tolerance == 0
    prob = unit_box_problem(space)
    rng = np.random.default_rng(0)
    z = rng.uniform(prob.zbounds[0], prob.zbounds[1], (500, prob.dim))
    x = prob.to_x(z)
    x = x[[not space.check_point(r) for r in x]]  # inside the linear constraint
    assert len(x) > 100
    for rows in (x, prob.round(x), prob.round(x, 2)):
        assert np.any(rows.sum(axis=1) != space.total)  # the float sums do miss the total
        for r in rows:
            assert space.check_point(r, sum_atol=space.sum_tolerance) == []
        frame = pd.DataFrame(rows, columns=space.names)
        np.testing.assert_array_equal(observed_compositions(frame, space), rows)
    # a real miss is still one
    off = x[0].copy()
    off[0] += 1e-4
    assert space.check_point(off, sum_atol=0.0) == [f"sum {off.sum():.8g} != 100"]


def test_fraction_total_with_exact_sum():
    space = Space.model_validate(
        {
            "total": 1.0,
            "sum_tolerance": 0,
            "components": {"SiO2": [0.4, 0.8], "Na2O": [0, 0.6], "CaO": [0, 0.2]},
        }
    )
    row = np.array([0.6, 0.3, 0.1])  # sums to 1 − 1.1e-16 in floats
    assert row.sum() != 1.0 and space.check_point(row, sum_atol=space.sum_tolerance) == []
    assert space.sum_atol == 1e-9


def test_suggested_compositions_pass_an_exact_sum(tmp_path, capsys):
    """`design suggest` rows under sum_tolerance 0 are taken back in as data and as candidates
    (both checks use the space's sum tolerance)."""
    space = _exact_space(tmp_path)
    out = tmp_path / "next.csv"
    args = ["design", "suggest", "--data", str(DATA / "observed.csv"), "--space", str(space)]
    args += ["--objective", "nd:max", "--batch", "8", "--seed", "1", "--restarts", "2"]
    args += ["--raw-samples", "64", "--out", str(out), "-q"]
    assert main(args) == 0, capsys.readouterr().err
    suggested = pd.read_csv(out)
    sp = load_space(space)
    for r in suggested[COMPONENTS].to_numpy(float):
        assert sp.check_point(r, sum_atol=sp.sum_tolerance) == []
    # the suggestions as measured rows (what --data reads) and as a candidate pool
    grown = pd.concat([pd.read_csv(DATA / "observed.csv"), suggested[COMPONENTS]])
    observed_compositions(grown[COMPONENTS], sp)
    pool = tmp_path / "pool.csv"
    suggested[COMPONENTS].to_csv(pool, index=False)
    again = ["design", "suggest", "--data", str(DATA / "observed.csv"), "--space", str(space)]
    again += ["--candidates", str(pool), "--objective", "nd:max", "--batch", "4", "--model", "rf"]
    again += ["--out", str(tmp_path / "again.csv"), "-q"]
    assert main(again) == 0, capsys.readouterr().err
    assert "outside the space" not in capsys.readouterr().out
    assert len(pd.read_csv(tmp_path / "again.csv")) == 4
