"""New-user input mistakes: repeated --x/--y, dependent fractions, 'Si02' (digit zero), YAML
errors without a position, and repeated rows of a q-batch on a tiny design space."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from matloop.cli import main
from matloop.compositions.core import parse_component, read_composition_table
from matloop.errors import ConfigError, DataError, UnknownElementError
from matloop.surrogate import PolynomialSurrogate, dependent_inputs, load_surrogate
from matloop.utils.config import load_yaml

OXIDES = ["SiO2", "Na2O", "CaO", "Al2O3"]


def _glass(n: int = 40, seed: int = 0) -> pd.DataFrame:
    """Soda-lime-alumina glasses (mol %, rows sum to 100) and a Tg (K) linear in them + noise."""
    rng = np.random.default_rng(seed)
    si, na, ca = rng.uniform(55, 80, n), rng.uniform(5, 25, n), rng.uniform(0, 15, n)
    x = np.column_stack([si, na, ca, np.maximum(0.0, 100 - si - na - ca)])
    x = x / x.sum(axis=1, keepdims=True) * 100
    frame = pd.DataFrame(x, columns=OXIDES)
    frame["Tg"] = 550 + 0.5 * x[:, 0] - 8 * x[:, 1] + 4 * x[:, 2] + 6 * x[:, 3]
    frame["Tg"] += rng.normal(0, 5, n)
    frame["density"] = 2.2 + 0.01 * x[:, 1] + rng.normal(0, 0.01, n)
    return frame


@pytest.fixture()
def glass_csv(tmp_path):
    path = tmp_path / "glass.csv"
    _glass().to_csv(path, index=False)
    return path


def _fit(capsys, csv, out, *options: str) -> tuple[int, str, str]:
    rc = main(["surrogate", "fit", str(csv), *options, "--model", "poly", "--out", str(out)])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def _r2(model_file) -> float:
    return load_surrogate(model_file, with_info=True)[1]["metadata"]["train_metrics"]["r2"]


def test_repeated_and_comma_separated_x_give_every_column(tmp_path, capsys, glass_csv):
    """`--x SiO2 --x Na2O --x CaO` used to fit CaO → Tg alone (the last option won)."""
    for i, xs in enumerate(
        (["--x", "SiO2", "--x", "Na2O", "--x", "CaO"], ["--x", "SiO2,Na2O", "--x", "CaO"])
    ):
        out = tmp_path / f"m{i}.npz"
        rc, text, err = _fit(capsys, glass_csv, out, *xs, "--y", "Tg", "--degree", "1")
        assert rc == 0, err
        assert "on SiO2, Na2O, CaO → Tg" in text
        assert load_surrogate(out, with_info=True)[1]["x_columns"] == ["SiO2", "Na2O", "CaO"]
        assert _r2(out) > 0.99
    # what the last --x alone gave: a poor fit
    rc, text, err = _fit(capsys, glass_csv, tmp_path / "one.npz", "--x", "CaO", "--y", "Tg")
    assert rc == 0, err
    assert _r2(tmp_path / "one.npz") < 0.9


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--x", "SiO2", "--y", "Tg", "--y", "density"], "--y names 2 columns ('Tg', 'density')"),
        (["--x", "SiO2", "--y", "Tg,density"], "a surrogate has one target"),
        (["--x", "SiO2", "--x", "SiO2", "--y", "Tg"], "--x names column(s) 'SiO2' more than once"),
        (["--x", "SiO2,,Na2O", "--y", "Tg"], "empty column name between commas"),
        (["--x", ",", "--y", "Tg"], "--x ',' names no column"),
        (["--x", "SiO2", "--x", "Tg", "--y", "Tg"], "--y 'Tg' is also an input column"),
    ],
)
def test_ambiguous_column_options_are_one_line_errors(tmp_path, capsys, glass_csv, options, words):
    out = tmp_path / "m.npz"
    rc, _, err = _fit(capsys, glass_csv, out, *options)
    assert rc != 0 and words in err, err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize("model", ["poly", "ensemble"])
def test_fractions_summing_to_a_constant_are_named(tmp_path, capsys, glass_csv, model):
    """All four oxides sum to 100: the error said 'too few distinct input values'."""
    xs = [a for c in OXIDES for a in ("--x", c)]
    out = tmp_path / "m.npz"
    rc = main(
        ["surrogate", "fit", str(glass_csv), *xs, "--y", "Tg", "--model", model, "--out", str(out)]
    )
    err = capsys.readouterr().err
    assert rc != 0 and not out.exists()
    assert "'SiO2', 'Na2O', 'CaO', 'Al2O3' are linearly dependent" in err, err
    assert "sum to 100 in every row" in err and "drop one of them" in err
    assert "distinct input values" not in err


def test_dependent_inputs_in_the_python_api():
    frame = _glass()
    X, y = frame[OXIDES].to_numpy() / 100, frame["Tg"].to_numpy()
    with pytest.raises(DataError, match=r"columns 1, 2, 3, 4 are linearly dependent.*sum to 1 "):
        PolynomialSurrogate(2).fit(X, y)
    combo = np.column_stack([X[:, 0], X[:, 1], 2 * X[:, 0] - X[:, 1]])
    assert "fixed linear combination" in dependent_inputs(combo)
    assert "column 'c' has the same value (3)" in dependent_inputs(
        np.column_stack([X[:, :2], np.full(len(X), 3.0)]), ["a", "b", "c"]
    )
    assert dependent_inputs(X[:, :3]) is None  # three of four oxides are independent
    PolynomialSurrogate(2).fit(X[:, :3], y)
    # a 1-D input with two distinct values still gets the sample-count message
    with pytest.raises(DataError, match="too few distinct input values"):
        PolynomialSurrogate(2).fit(np.repeat([1.0, 2.0], 20), y)


@pytest.mark.parametrize(
    ("name", "fix"),
    [("Si02", "'SiO2' (letter O)"), ("Al2O03", None), ("Si0", "'SiO'")],
)
def test_a_count_with_a_leading_zero_is_refused(name, fix):
    with pytest.raises(UnknownElementError, match="a count starts with 0") as info:
        parse_component(name)
    message = str(info.value)
    assert message.startswith(f"{name!r}") and "\n" not in message
    if fix:
        assert f"did you mean {fix}" in message
    else:
        assert "without a leading zero" in message or "did you mean" in message


def test_legitimate_formulas_still_parse():
    expected = {
        "SiO2": {"Si": 1, "O": 2},
        "Al2O3": {"Al": 2, "O": 3},
        "B2O3": {"B": 2, "O": 3},
        "Na2O": {"Na": 2, "O": 1},
        "TiO2": {"Ti": 1, "O": 2},
        "P2O5": {"P": 2, "O": 5},
        "Fe2O3": {"Fe": 2, "O": 3},
        "Li2O": {"Li": 2, "O": 1},
        "ZrO2": {"Zr": 1, "O": 2},
        "Na0.5K0.5O": {"Na": 0.5, "K": 0.5, "O": 1},  # a fractional count starts with 0.
        "Si10O20": {"Si": 10, "O": 20},  # a zero inside a count
        "Ca(OH)2": {"Ca": 1, "O": 2, "H": 2},
    }
    for name, counts in expected.items():
        assert parse_component(name) == pytest.approx(counts), name


def test_a_digit_zero_column_stops_a_composition_table(tmp_path, capsys):
    """A 'Si02' column was silently not a component (with --normalise: dropped from the glass)."""
    frame = _glass().rename(columns={"SiO2": "Si02"})
    for normalise in (False, True):
        with pytest.raises(DataError, match=r"column 'Si02': .*did you mean 'SiO2' \(letter O\)"):
            read_composition_table(frame, normalise_rows=normalise, source="glass.csv")
    # property columns with a bare zero ('T0', 'B0') are still left alone
    other = _glass().assign(T0=1.0, B0=2.0)
    assert read_composition_table(other).components == OXIDES
    path = tmp_path / "typo.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / "m.npz"
    rc = main(
        ["design", "fit", "--data", str(path), "-p", "Tg", "--model", "rf", "--out", str(out)]
    )
    err = capsys.readouterr().err
    assert rc != 0 and "did you mean 'SiO2' (letter O)?" in err and not out.exists()


@pytest.mark.parametrize(("typo", "oxide"), [("Al203", "Al2O3"), ("Na20", "Na2O")])
def test_a_digit_zero_inside_an_oxide_count_is_refused(typo, oxide):
    """'Al203' parses as Al₂₀₃ (no oxygen) and was silently a component of an oxide table."""
    frame = _glass().rename(columns={oxide: typo})
    with pytest.raises(DataError, match=rf"column '{typo}' .*did you mean '{oxide}'"):
        read_composition_table(frame, source="glass.csv", normalise_rows=True)
    # a metal table is not an oxide table: 'C60' there stays a component
    metals = pd.DataFrame({"Cu": [50.0, 60.0], "Au": [40.0, 30.0], "C60": [10.0, 10.0]})
    assert read_composition_table(metals).components == ["Cu", "Au", "C60"]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("model:\n  family: ace\n   params: {}\n", "line 3, column 10: mapping values are not "),
        (
            "a: [1, 2\nb: 3\n",
            "line 2, column 2: expected ',' or ']', but got ':' "
            "(while parsing a flow sequence that starts at line 1)",
        ),
        ("a: 1\n\tb: 2\n", "line 2, column 1: found character '\\t'"),
        (  # YAML keeps the last of two equal keys silently; a config must not
            "model:\n  params:\n    cutoff: 5.0\n    cutoff: 0.5\n",
            "line 4, column 5: key 'cutoff' given twice in one mapping (lines 3 and 4)",
        ),
    ],
)
def test_malformed_yaml_names_line_and_column(tmp_path, text, where):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    message = str(info.value)
    assert message.startswith(f"{path}: malformed YAML at {where}"), message
    assert "\n" not in message


def test_a_batch_on_a_tiny_space_has_distinct_rows():
    """`--batch 3` on a 1-mol%-wide space gave three copies of one corner (with a warning)."""
    from matloop.design import Space, parse_objective
    from matloop.design.bo import suggest

    space = Space.model_validate(
        {
            "total": 100,
            "components": {
                "SiO2": [70, 71],
                "Na2O": [14, 15],
                "CaO": [10, 11],
                "Al2O3": [4, 5],
            },
        }
    )
    frame = _glass().drop(columns="density")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = suggest(
            frame,
            space,
            [parse_objective("Tg:max")],
            batch=3,
            seed=0,
            num_restarts=2,
            raw_samples=32,
            mc_samples=32,
        )
    x = res.table[OXIDES].to_numpy()
    assert len(np.unique(np.round(x, 4), axis=0)) == 3, x
    for row in x:
        assert not space.check_point(row, atol=1e-4)
    fillers = (res.table["acquisition_function"] == "space-filling (maximin distance)").sum()
    assert not any("repeat an earlier suggestion" in m for m in res.messages), res.messages
    assert fillers >= 1  # the situation: qLogNEI alone repeats itself on this space
    assert any(f"found only {3 - fillers} distinct" in m for m in res.messages), res.messages
