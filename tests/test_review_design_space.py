"""`space.yaml` settings that contradict each other, cannot take effect, or leave no feasible
composition are refused in one line when the space is loaded, before any data or model is read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from matloop.cli import main
from matloop.design import Space, load_space, unit_box_problem
from matloop.errors import ConfigError

DATA = Path(__file__).parent / "data" / "design"
OBS = str(DATA / "observed.csv")
# the soda-lime space of tests/data/design/space.yaml with PbO given a positive min
SODA_LIME_PBO_MIN = """total: 100
components:
  SiO2: {min: 50, max: 80}
  Na2O: {min: 5, max: 25}
  CaO: [0, 15]
  Al2O3: [0, 5]
  PbO: {min: 5, max: 10}
forbidden: [PbO]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def test_forbidden_component_with_positive_min_is_refused(tmp_path):
    # before: loaded, and PbO was silently fixed at 0 despite min: 5
    path = write(tmp_path, SODA_LIME_PBO_MIN)
    with pytest.raises(ConfigError, match=r"space\.yaml: .*forbidden: PbO contradicts "):
        load_space(path)
    sp = Space.model_validate(
        {"components": {"SiO2": [40, 100], "PbO": {"min": 5, "max": 20}}, "forbidden": ["PbO"]}
    )
    with pytest.raises(ConfigError, match=r"components\.PbO\.min = 5 \(a forbidden component"):
        unit_box_problem(sp)


def test_suggest_refuses_forbidden_min_in_one_line(tmp_path, capsys):
    path = write(tmp_path, SODA_LIME_PBO_MIN)
    out = tmp_path / "next.csv"
    args = ["design", "suggest", "--data", OBS, "--space", str(path), "--objective", "nd:max"]
    rc = main([*args, "--batch", "1", "--restarts", "1", "--raw-samples", "8", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and not out.exists()
    assert len(err.splitlines()) == 1 and "forbidden: PbO contradicts" in err


def test_max_above_total_is_refused(tmp_path):
    # mol % bounds with a fraction total: before, accepted (the sums 0..130 include 1)
    path = write(tmp_path, "total: 1\ncomponents: {SiO2: [0, 80], Na2O: [0, 50]}\n")
    with pytest.raises(ConfigError, match=r"SiO2\.max = 80, Na2O\.max = 50 above total 1"):
        load_space(path)


def test_linear_constraint_without_a_free_component_is_refused(tmp_path):
    head = "components: {SiO2: [50, 100], Na2O: [0, 50]}\nforbidden: [PbO]\n"
    path = write(tmp_path, head + "linear_constraints: [{coefficients: {PbO: 1}, le: 5}]\n")
    with pytest.raises(ConfigError, match=r"\(PbO <= 5\): its left side is always 0 \(forbidden"):
        load_space(path)
    path = write(tmp_path, head + "linear_constraints: [{coefficients: {Na2O: 0}, ge: 1}]\n")
    with pytest.raises(ConfigError, match=r"coefficients all 0"):
        load_space(path)


def test_infeasible_linear_constraint_is_named(tmp_path):
    # before: "bounds, total and linear_constraints cannot all hold at once"
    path = write(
        tmp_path,
        "components: {SiO2: [50, 80], Na2O: [20, 50]}\n"
        "linear_constraints: [{coefficients: {Na2O: 2, SiO2: -1}, ge: 60}]\n",
    )
    with pytest.raises(
        ConfigError,
        match=r"linear_constraints\[0\] \(2\*Na2O - SiO2 >= 60\) cannot hold: .*ranges -40\.\.50",
    ):
        load_space(path)


def test_infeasible_sums_are_refused_at_load(tmp_path, capsys):
    # before: loaded (and passed `matloop config validate`); failed only once work started
    path = write(tmp_path, "components: {SiO2: [60, 80], Na2O: [50, 60]}\n")
    with pytest.raises(ConfigError, match="bounds allow sums 110..140 but total is 100"):
        load_space(path)
    assert main(["config", "validate", str(path), "--kind", "space"]) == 1
    assert "no feasible composition" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text, where",
    [
        ("components: {SiO2: {min: 0, max: .inf}, Na2O: [0, 50]}\n", "components.SiO2.max"),
        ("components: {SiO2: [0, .nan], Na2O: [0, 50]}\n", "components.SiO2.max"),
        ("total: .inf\ncomponents: {SiO2: [0, 100]}\n", "total"),
        (
            "components: {SiO2: [0, 100], Na2O: [0, 50]}\n"
            "linear_constraints: [{coefficients: {Na2O: 1}, le: .nan}]\n",
            "linear_constraints.0.le",
        ),
    ],
)
def test_non_finite_numbers_are_refused(tmp_path, text, where):
    # before: loaded, then a ValueError from scipy's linprog (or nan bounds read as infeasible)
    with pytest.raises(ConfigError, match=rf"{where}: Input should be a finite number"):
        load_space(write(tmp_path, text))


def test_consistent_spaces_still_load(tmp_path):
    sp = load_space(DATA / "space.yaml")  # forbidden PbO with max 10 > 0 is fixed at 0
    assert sp.upper()[sp.names.index("PbO")] == 0.0
    path = write(
        tmp_path,
        "components: {SiO2: [0, 100], Na2O: [0, 20]}\nforbidden: [PbO]\n"
        "linear_constraints: [{coefficients: {Na2O: 1, PbO: 1}, le: 30}]\n",  # redundant: fine
    )
    prob = unit_box_problem(load_space(path))
    assert np.isclose(prob.to_x(prob.feasible_point()).sum(), 100.0)


def load_error(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load_space(path)
    return str(info.value)


def test_contradicting_equalities_are_named_in_one_line(tmp_path, capsys):
    # before: "bounds, total and linear_constraints cannot all hold at once" (no names, no numbers)
    path = write(
        tmp_path,
        "components: {SiO2: [0, 100], B2O3: [0, 100], Na2O: [0, 100]}\n"
        "linear_constraints:\n"
        "  - {coefficients: {SiO2: 1}, eq: 50}\n"
        "  - {coefficients: {SiO2: 1, Na2O: 1}, eq: 40}\n",
    )
    msg = load_error(path)
    assert (
        "linear_constraints[0] (SiO2 == 50) and linear_constraints[1] (SiO2 + Na2O == 40) "
        "contradict each other: given linear_constraints[0], the component bounds and total 100, "
        "the left side of linear_constraints[1] ranges 50..100 (from Na2O >= 0); "
        "relax one of linear_constraints[0], linear_constraints[1]"
    ) in msg
    assert main(["config", "validate", str(path), "--kind", "space"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "(SiO2 + Na2O == 40) contradict each other" in err


def test_equalities_that_contradict_the_total_name_it(tmp_path):
    path = write(
        tmp_path,
        "components: {SiO2: [0, 100], B2O3: [0, 100], Na2O: [0, 100]}\n"
        "linear_constraints:\n"
        "  - {coefficients: {CaO: 1}, le: 10}\n"  # always 0: refused first
        "  - {coefficients: {SiO2: 1, B2O3: 1}, eq: 60}\n"
        "  - {coefficients: {Na2O: 1}, eq: 50}\n"
        "forbidden: [CaO]\n",
    )
    with pytest.raises(ConfigError, match=r"linear_constraints\[0\] \(CaO <= 10\): its left"):
        load_space(path)
    path.write_text(path.read_text().replace("{CaO: 1}, le: 10", "{Na2O: 1, CaO: 1}, le: 55"))
    msg = load_error(path)
    assert "linear_constraints[1] (SiO2 + B2O3 == 60) and linear_constraints[2] (Na2O == 50)" in msg
    assert "of linear_constraints[2] ranges 40..40 (from total 100, CaO >= 0);" in msg
    assert "linear_constraints[0]" not in msg


def test_equality_against_bounds_names_the_bounds_to_relax(tmp_path):
    # before: named the constraint and its range, not which bounds limit it
    path = write(
        tmp_path,
        "components: {SiO2: [0, 30], B2O3: [0, 40], Na2O: [0, 100]}\n"
        "linear_constraints: [{coefficients: {SiO2: 1, B2O3: 1}, eq: 90}]\n",
    )
    assert load_error(path).endswith(
        "linear_constraints[0] (SiO2 + B2O3 == 90) cannot hold: within the component bounds and "
        "total 100 its left side ranges 0..70 (from SiO2 <= 30, B2O3 <= 40); relax one of "
        "linear_constraints[0], components.SiO2.max, components.B2O3.max"
    )


def test_two_separate_conflicts_say_that_one_fix_is_not_enough(tmp_path):
    path = write(
        tmp_path,
        "components: {SiO2: [0, 100], B2O3: [0, 100], Na2O: [0, 100], CaO: [0, 100]}\n"
        "linear_constraints:\n"
        "  - {coefficients: {SiO2: 1}, eq: 50}\n"
        "  - {coefficients: {SiO2: 1, Na2O: 1}, eq: 40}\n"
        "  - {coefficients: {B2O3: 1}, eq: 30}\n"
        "  - {coefficients: {B2O3: 1, Na2O: 1}, le: 20}\n",
    )
    msg = load_error(path)
    assert "linear_constraints[2] (B2O3 == 30) and linear_constraints[3] (B2O3 + Na2O <= 20)" in msg
    assert msg.endswith(
        "no single change among these makes the space feasible (another conflict remains): fix "
        "this one and load the space again to see the next"
    )


def test_a_restated_equality_does_not_freeze_the_sampler(tmp_path):
    # before: the implied rows made BoTorch's polytope sampler return one point n times
    path = write(
        tmp_path,
        "components: {SiO2: [40, 80], Na2O: [0, 40], CaO: [0, 20]}\n"
        "linear_constraints:\n"
        "  - {coefficients: {SiO2: 1, Na2O: 1, CaO: 1}, eq: 100}\n"
        "  - {coefficients: {SiO2: 1}, eq: 60}\n"
        "  - {coefficients: {SiO2: 2}, eq: 120}\n",
    )
    from matloop.design.bo import space_filling

    prob = unit_box_problem(load_space(path))
    x = prob.to_x(space_filling(prob, 4, seed=0)[0])
    assert np.allclose(x[:, 0], 60) and np.allclose(x.sum(axis=1), 100)
    assert np.ptp(x[:, 1]) > 5  # spread along Na2O + CaO = 40, not one point


@pytest.mark.parametrize("tol", [100, 250])
def test_sum_tolerance_not_below_the_total_is_refused(tmp_path, tol):
    # before: loaded; every row summing to 0..200 then passed as a composition
    path = write(tmp_path, f"sum_tolerance: {tol}\ncomponents: {{SiO2: [40, 80], Na2O: [0, 60]}}\n")
    with pytest.raises(ConfigError, match=rf"space: sum_tolerance = {tol} is not below total 100"):
        load_space(path)


def test_sum_tolerance_warns_above_ten_percent_and_is_quiet_below(tmp_path, recwarn):
    head = "components: {SiO2: [40, 80], Na2O: [0, 60]}\n"
    assert load_space(write(tmp_path, head + "sum_tolerance: 10\n")).sum_tolerance == 10
    assert load_space(write(tmp_path, head + "sum_tolerance: 0\n")).sum_tolerance == 0
    assert not recwarn.list
    with pytest.warns(
        UserWarning,
        match=r"sum_tolerance = 15 is 15 % of total 100: rows summing "
        r"to 85\.\.115",
    ):
        load_space(write(tmp_path, head + "sum_tolerance: 15\n"))
    with pytest.raises(ConfigError, match=r"sum_tolerance: Input should be greater than or equal"):
        load_space(write(tmp_path, head + "sum_tolerance: -1\n"))
