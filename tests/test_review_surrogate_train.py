"""Review regressions: surrogate input checks and committee member reuse."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from matloop.cli import main
from matloop.data import Dataset, label_with
from matloop.errors import DataError
from matloop.surrogate import BootstrapEnsemble, PolynomialSurrogate, read_columns
from matloop.training import TrainConfig
from matloop.training.committee import train_committee


def _csv(path, text):
    path.write_text(text)
    return path


def test_poly_refuses_too_few_distinct_inputs(tmp_path, capsys):
    # 5 rows but only 2 distinct volumes: a quadratic is not determined by them
    data = _csv(tmp_path / "rep.csv", "V,E\n10,1\n10,1.1\n10,0.9\n11,0.5\n11,0.6\n")
    out = tmp_path / "m.npz"
    rc = main(
        ["surrogate", "fit", str(data), "--x", "V", "--y", "E", "--model", "poly", "-o", str(out)]
    )
    assert rc != 0 and not out.exists()
    err = capsys.readouterr().err
    assert "distinct" in err and "Traceback" not in err
    with pytest.raises(DataError, match="distinct"):
        PolynomialSurrogate(degree=2).fit([10, 10, 10, 11, 11], [1, 1.1, 0.9, 0.5, 0.6])
    PolynomialSurrogate(degree=1).fit([10, 10, 10, 11, 11], [1, 1.1, 0.9, 0.5, 0.6])


def test_ensemble_members_are_never_underdetermined():
    # bootstrap resamples of 4 points often hold only 2 distinct ones; such members used to get
    # arbitrary (pinv) quadratic coefficients and wreck the mean far from the data
    x = np.array([10.0, 11.0, 12.0, 14.0])
    y = 0.1 * x**2
    est = BootstrapEnsemble(PolynomialSurrogate(degree=2), n_estimators=20, random_state=1)
    est.fit(x, y)
    for member in est.estimators_:
        assert np.allclose(member.predict(x), y, atol=1e-8)


def test_csv_with_repeated_header_refused(tmp_path):
    data = _csv(tmp_path / "dup.csv", "V,E,V\n10,1,3\n11,0.5,3\n12,2,3\n")
    with pytest.raises(DataError, match="more than once"):
        read_columns(data, ["V", "E"])


@pytest.mark.parametrize(
    "extra",
    [
        ["--plot", "p.png", "--plot-range", "nan,10"],
        ["--plot", "p.png", "--plot-range", "14,10"],
        ["--std-threshold", "-1"],
        ["--seed", "-3"],
    ],
)
def test_surrogate_fit_bad_options_refused_before_writing(tmp_path, capsys, monkeypatch, extra):
    monkeypatch.chdir(tmp_path)
    v = np.linspace(10, 14, 9)
    _csv(tmp_path / "ev.csv", "V,E\n" + "".join(f"{a},{0.5 * (a - 12) ** 2}\n" for a in v))
    rc = main(["surrogate", "fit", "ev.csv", "--x", "V", "--y", "E", "-o", "m.npz", *extra])
    err = capsys.readouterr().err
    assert rc != 0 and not (tmp_path / "m.npz").exists() and not (tmp_path / "p.png").exists()
    assert err.startswith("error: ") and "internal error" not in err


def test_committee_does_not_reuse_members_of_other_seeds(tmp_path):
    data = []
    for i in range(6):
        a = bulk("Cu", "fcc", a=3.61, cubic=True)
        a.rattle(0.05, seed=i)
        data.append(label_with(a, EMT()))
    cfg = TrainConfig.model_validate(
        {
            "model": {
                "family": "bpnn",
                "params": {
                    "descriptor": {
                        "cutoff": 4.0,
                        "n_radial": 4,
                        "n_angular_eta": 1,
                        "zetas": [1.0],
                    },
                    "hidden": [4],
                },
            },
            "training": {"max_epochs": 2, "num_threads": 1},
        }
    )
    ds = Dataset(data)
    paths = train_committee(ds, tmp_path / "c", cfg, n_members=2, seeds=[0, 1])
    again = train_committee(ds, tmp_path / "c", cfg, n_members=2, seeds=[5, 6])
    seeds = [json.loads((p.parent / "member.json").read_text())["seed"] for p in again]
    assert seeds == [5, 6]
    assert [p.parent.name for p in paths] == [p.parent.name for p in again]
