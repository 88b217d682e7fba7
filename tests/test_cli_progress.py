"""Long commands give feedback on stderr by default, none with -q; stdout is the same."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from ase.build import bulk
from ase.io import write

from matloop.cli import main

DESIGN = Path(__file__).parent / "data" / "design"
SPACE = str(DESIGN / "space.yaml")
OBS = str(DESIGN / "observed.csv")


def _both(capsys, args: list[str]) -> tuple[str, str, str]:
    """Run `args` with feedback, then again with -q (and --force); (stdout, stderr, stderr -q).

    Asserts both runs succeed and print the same stdout."""
    assert main(args) == 0, capsys.readouterr().err
    out, err = capsys.readouterr()
    assert main([*args, "--force", "-q"]) == 0, capsys.readouterr().err
    out_q, err_q = capsys.readouterr()
    assert out == out_q
    return out, err, err_q


@pytest.fixture(scope="module")
def cu_traj(tmp_path_factory) -> Path:
    """Ten rattled frames of fcc Cu (32 atoms), a real periodic trajectory."""
    frames = []
    for i in range(10):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
        atoms.rattle(0.05, seed=i)
        frames.append(atoms)
    path = tmp_path_factory.mktemp("traj") / "cu.xyz"
    write(path, frames)
    return path


def test_rdf_bar_over_frames(cu_traj, tmp_path, capsys):
    out, err, err_q = _both(
        capsys, ["analyze", "rdf", str(cu_traj), "--rmax", "4", "--json", str(tmp_path / "g.json")]
    )
    assert "10 frames: first peak" in out
    assert "RDF" in err and "frame" in err
    assert err_q == ""


def test_eos_compute_bar_over_volumes(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("matloop.utils.progress.BAR_DELAY_S", 0.0)  # the bar at once
    structure = tmp_path / "cu.xyz"
    write(structure, bulk("Cu", "fcc", a=3.61, cubic=True))
    args = ["eos", "compute", str(structure), "-c", "emt", "--points", "5"]
    out, err, err_q = _both(capsys, [*args, "--out", str(tmp_path / "ev.csv")])
    assert "wrote" in out and "5 volumes" in out
    assert "E(V)" in err
    assert err_q == ""


def test_surrogate_fit_stage_lines(tmp_path, capsys):
    x = np.linspace(0.0, 1.0, 40)
    csv = tmp_path / "d.csv"
    pd.DataFrame({"x": x, "y": np.sin(3 * x)}).to_csv(csv, index=False)
    args = ["surrogate", "fit", str(csv), "--x", "x", "--y", "y", "--test-size", "0.25"]
    out, err, err_q = _both(capsys, [*args, "-o", str(tmp_path / "m.npz")])
    assert "40 rows" in out and "test (10 rows)" in out
    assert "fitting a GP on 30 rows for the test…" in err and "fitting a GP on 40 rows…" in err
    assert err_q == ""
    # the fast models are not announced, and a bad --kernel is still one error line
    assert main([*args, "--model", "poly", "-o", str(tmp_path / "p.npz")]) == 0
    assert capsys.readouterr().err == ""
    assert main([*args, "--kernel", "cosine", "-o", str(tmp_path / "k.npz")]) == 1
    assert capsys.readouterr().err.count("\n") == 1


def test_design_suggest_stage_lines(tmp_path, capsys):
    args = ["design", "suggest", "--data", OBS, "--space", SPACE, "--objective", "nd:max"]
    args += ["--restarts", "2", "--raw-samples", "32", "--out", str(tmp_path / "next.csv")]
    out, err, err_q = _both(capsys, args)
    assert "1 suggestion(s)" in out
    assert "fitting GP models of nd (6 rows)…" in err
    assert "optimising" in err and "(2 restarts, batch 1)…" in err
    assert err_q == ""


def test_design_suggest_pool_stage_lines(tmp_path, capsys):
    obs = pd.read_csv(OBS)
    pool = tmp_path / "pool.csv"
    rng = np.random.default_rng(0)
    fractions = rng.dirichlet(np.ones(3), size=30) * 100
    pd.DataFrame(fractions, columns=["SiO2", "Na2O", "CaO"]).to_csv(pool, index=False)
    data = tmp_path / "obs.csv"
    obs[["SiO2", "Na2O", "CaO", "nd"]].to_csv(data, index=False)
    args = ["design", "suggest", "--data", str(data), "--candidates", str(pool)]
    args += ["--objective", "nd:max", "--model", "rf", "--out", str(tmp_path / "next.csv")]
    out, err, err_q = _both(capsys, args)
    assert "1 suggestion(s)" in out
    assert "fitting rf models of nd (6 rows)…" in err
    assert "scoring 30 candidates" in err
    assert err_q == ""


def test_design_inverse_stage_lines(tmp_path, capsys):
    model = tmp_path / "m.npz"
    fit = ["design", "fit", "--data", OBS, "-p", "nd", "--model", "rf", "--trees", "20"]
    assert main([*fit, "--out", str(model), "-q"]) == 0
    assert capsys.readouterr().err == ""  # -q: no bar over the members
    args = ["design", "inverse", "--model", str(model), "--space", SPACE, "--target", "nd=1.52"]
    out, err, err_q = _both(capsys, [*args, "--samples", "200", "--out", str(tmp_path / "i.csv")])
    assert "feasible compositions; best: nd" in out
    assert "sampling 200 feasible compositions…" in err and "predicting" in err
    assert err_q == ""


def test_data_push_and_pull_bars(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("matloop.utils.progress.BAR_DELAY_S", 0.0)  # the bars at once
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    labelled = []
    for i in range(5):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
        atoms.rattle(0.05, seed=i)
        atoms.calc = EMT()
        e, f = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = SinglePointCalculator(atoms, energy=e, forces=f)
        labelled.append(atoms)
    labels = tmp_path / "labels.xyz"
    write(labels, labelled)
    outs = []
    for sub, quiet in (("a", []), ("b", ["-q"])):  # a fresh store each, so stdout can match
        (tmp_path / sub).mkdir()
        monkeypatch.chdir(tmp_path / sub)
        assert main(["data", "push", str(labels), "--db", "s.db", "--code", "emt", *quiet]) == 0
        outs.append(capsys.readouterr())
    assert outs[0].out == outs[1].out and "pushed 5 new label(s)" in outs[0].out
    assert "pushing" in outs[0].err and outs[1].err == ""
    out, err, err_q = _both(capsys, ["data", "pull", "--db", "s.db", "--out", "pulled.xyz"])
    assert "wrote 5 structure(s)" in out
    assert "pulling" in err and err_q == ""


def test_validate_bar_over_physics_checks(tmp_path, capsys):
    """validate takes -q like every command (beside --no-progress); the physics checks have a
    bar."""
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    frames = []
    for i in range(3):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
        atoms.rattle(0.05, seed=i)
        atoms.calc = EMT()
        e, f, s = atoms.get_potential_energy(), atoms.get_forces(), atoms.get_stress()
        atoms.calc = SinglePointCalculator(atoms, energy=e, forces=f, stress=s)
        frames.append(atoms)
    test = tmp_path / "test.xyz"
    write(test, frames)
    args = ["validate", "emt", "--test", str(test), "--out", str(tmp_path / "rep"), "--nve-ps", "0"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert main([*args, "--force", "-q"]) == 0
    out_q, err_q = capsys.readouterr()
    assert out == out_q and "F = −∇E" in out
    assert "physics checks" in err and "physics checks" not in err_q


def test_property_duplicates_bar(tmp_path, capsys):
    frames = []
    for i, (proto, a) in enumerate([("fcc", 3.61), ("fcc", 3.61), ("bcc", 2.87), ("fcc", 3.7)]):
        atoms = bulk("Cu", proto, a=a, cubic=True)
        atoms.info["id"] = f"s{i}"
        frames.append(atoms)
    data = tmp_path / "cu.extxyz"
    write(data, frames, format="extxyz")
    out, err, err_q = _both(
        capsys, ["property", "duplicates", str(data), "--json", str(tmp_path / "d.json")]
    )
    assert "1 duplicate groups, 3 of 4 structures in them"  # scaled fcc matches in out
    assert "duplicates" in err and "structure" in err
    assert err_q == ""


def test_data_bad_input_found_while_streaming_stays_one_line(tmp_path, monkeypatch, capsys):
    """A bar that waits its delay never precedes an error found in the first steps."""
    monkeypatch.chdir(tmp_path)
    write("unlabelled.xyz", bulk("Cu", "fcc", a=3.61, cubic=True))
    assert main(["data", "push", "unlabelled.xyz", "--db", "s.db", "--code", "emt"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing energy" in err
    assert len(err.strip().splitlines()) == 1  # splitlines also splits a bar's \r
    assert main(["data", "pull", "--db", "s.db", "--select", "natoms>100", "--out", "x.xyz"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1


def test_evaluate_bar_can_be_silenced(tmp_path, emt_cu_dataset, emt_cu_test_dataset, capsys):
    """evaluate always showed its bar; -q now hides it."""
    import yaml
    from conftest import TINY_BPNN_PARAMS

    cfg = tmp_path / "tiny.yaml"
    model = {"family": "bpnn", "params": TINY_BPNN_PARAMS}
    cfg.write_text(yaml.safe_dump({"model": model, "training": {"max_epochs": 2}}))
    train = emt_cu_dataset.write(tmp_path / "train.xyz")
    test = emt_cu_test_dataset.write(tmp_path / "test.xyz")
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--train",
                str(train),
                "--out",
                str(run),
                "--config",
                str(cfg),
                "--no-progress",
            ]
        )
        == 0
    )
    capsys.readouterr()
    out, err, err_q = _both(
        capsys, ["evaluate", str(run), str(test), "--json", str(tmp_path / "m.json")]
    )
    assert "structures" in out and "predicting" in err and err_q == ""


def test_md_learn_bar_over_steps(tmp_path, monkeypatch, capsys):
    """md --learn was silent through its MD chunks and refits; it follows --progress now."""
    from ase.calculators.emt import EMT

    from matloop.data import Dataset, label_with
    from matloop.training import TrainConfig, train
    from matloop.training.config import parse_config

    labels = []
    for seed in range(2):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
        atoms.rattle(0.05, seed=seed)
        labels.append(label_with(atoms, EMT()))
    write(tmp_path / "labels.xyz", labels)
    params = {"correlation_order": 3, "max_degree": 10.0, "max_l": 3}
    cfg = parse_config({"model": {"family": "ace", "params": params}}, TrainConfig, "test")
    model = train(Dataset(labels), tmp_path / "ace", config=cfg, progress=False).model_path
    write(tmp_path / "cu.xyz", bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2))
    argv = ["md", str(model), str(tmp_path / "cu.xyz"), "-e", "nvt", "-T", "1200", "--learn"]
    argv += ["--reference", "emt", "--train-data", str(tmp_path / "labels.xyz"), "--steps", "20"]
    argv += ["--max-uncertainty", "0.002", "--uncertainty-interval", "10", "--timestep", "4"]
    outs = []
    for sub, flag in (("a", "--progress"), ("b", "--quiet")):
        (tmp_path / sub).mkdir()
        monkeypatch.chdir(tmp_path / sub)  # a --learn-dir each
        assert main([*argv, flag]) == 0
        outs.append(capsys.readouterr())
    same = outs[0].out == outs[1].out.replace(f"{tmp_path / 'b'}", f"{tmp_path / 'a'}")
    assert same and "on-the-fly: 20 steps" in outs[0].out
    assert "MD (on the fly)" in outs[0].err and "refitting" in outs[0].err
    assert "MD (on the fly)" not in outs[1].err
