"""Review of CLI edges (each test failed before its fix):

- `matloop export --spline-step` outside ML-PACE's useful range is refused before any work;
- no output may be one of the command's inputs, even with --force (a symlink, ./ or a
  ``FILE@SLICE`` / ``sqlite:///`` spelling included);
- a malformed `--select` of the label store is one line naming the problem and the syntax;
- `matloop demo` never overwrites a demo.yaml it did not write, nor runs on someone else's
  start.xyz.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from ase.build import bulk
from ase.io import read, write

from matloop.cli import main
from matloop.errors import ConfigError

DESIGN = Path(__file__).parent / "data" / "design"


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "internal error" not in err, err
    return err


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, str]:
    """Real inputs: EMT Cu data, a structure, an E(V) CSV, a trajectory, an ace model, a
    surrogate, a label store."""
    from helpers.reference_data import emt_cu_structures, write_emt_eos_csv

    d = tmp_path_factory.mktemp("edges")
    emt_cu_structures(4, seed=0, repeat=(1, 1, 1)).write(d / "data.xyz")
    cu = bulk("Cu", "fcc", 3.61, cubic=True)
    write(d / "cu.xyz", cu)
    write_emt_eos_csv(d / "eos.csv", cu)
    ace = {"model": {"family": "ace", "params": {"cutoff": 4.0, "max_degree": 6.0, "max_l": 2}}}
    (d / "ace.yaml").write_text(yaml.safe_dump(ace))
    db = str(d / "labels.db")
    setup = [
        ["md", "emt", str(d / "cu.xyz"), "-n", "10", "--no-progress", "--traj", str(d / "md.traj")],
        ["surrogate", "fit", str(d / "eos.csv"), "--x", "Volume", "--y", "Energy"]
        + ["--model", "poly", "--out", str(d / "s.npz")],
        ["train", "--train", str(d / "data.xyz"), "--out", str(d / "model")]
        + ["--config", str(d / "ace.yaml"), "--no-progress"],
        ["data", "push", str(d / "data.xyz"), "--db", db, "--code", "emt", "--tag", "cu", "-q"],
    ]
    for argv in setup:
        assert main(argv) == 0, argv
    shutil.copy(DESIGN / "glass_small.csv", d / "glass.csv")
    names = ("data.xyz", "cu.xyz", "eos.csv", "md.traj", "s.npz", "model", "glass.csv")
    return {"db": db} | {Path(n).stem: str(d / n) for n in names}


# ---------------------------------------------------------------- 1. export --spline-step


@pytest.mark.parametrize("step", ["0", "-0.001", "nan", "inf", "1e-9", "0.5", "100"])
def test_spline_step_outside_range_is_refused_before_loading(inputs, tmp_path, capsys, step):
    """Was: 1e-9 Å, 0.5 Å, 100 Å written into model.yace (LAMMPS would build billions of
    bins, or tables coarser than the radial functions); inf: 'yace: non-finite number'."""
    out = tmp_path / "lmp"
    assert main(["export", inputs["model"], "--out", str(out), "--spline-step", step]) == 1
    err = _one_line(capsys)
    assert "--spline-step" in err and "1e-05" in err and "0.05" in err, err
    assert not out.exists()
    # checked before the model is read: a missing model is not what is reported
    missing = str(tmp_path / "no-model")
    assert main(["export", missing, "--out", str(out), "--spline-step", step]) == 1
    assert "--spline-step" in _one_line(capsys)


@pytest.mark.parametrize("step", ["1e-5", "1e-3", "0.05"])
def test_spline_steps_in_range_are_written(inputs, tmp_path, capsys, step):
    from matloop.export import read_yace

    out = tmp_path / "lmp"
    assert main(["export", inputs["model"], "--out", str(out), "--spline-step", step]) == 0
    assert read_yace(out / "model.yace").spline_step == float(step)


def test_export_lammps_refuses_a_step_ml_pace_cannot_use(inputs, tmp_path):
    from matloop.export import export_lammps
    from matloop.models.io import load_model, resolve_model_path

    pot, _ = load_model(resolve_model_path(inputs["model"]))
    for step in (1e-9, 0.2):
        with pytest.raises(ConfigError, match="outside"):
            export_lammps(pot, tmp_path / "lmp", spline_step=step)
    assert not (tmp_path / "lmp").exists()


# ---------------------------------------------------------------- 2. output = input


def _link(target: str, tmp_path: Path) -> str:
    link = tmp_path / ("link" + Path(target).suffix)
    link.symlink_to(target)
    return str(link)


# (id, command line; {in} is the input whose bytes must survive, {out} the output naming it)
SAME_FILE = [
    ("data-pull-db", "data pull --db {db} --out {db}", "db", "same"),
    ("data-pull-sqlite-url", "data pull --db sqlite:///{db} --out {db}", "db", "same"),
    ("md-traj", "md emt {cu} -n 2 --no-progress --traj {out}", "cu", "dot"),
    ("md-traj-symlink", "md emt {cu} -n 2 --no-progress --traj {out}", "cu", "link"),
    ("md-json-at-slice", "md emt {cu}@0 -n 2 --no-progress --json {out}", "cu", "same"),
    ("eos-compute", "eos compute {cu} -c emt --points 5 --out {out}", "cu", "dot"),
    ("eos-fit-json", "eos fit {eos} --bootstrap 0 --json {out}", "eos", "same"),
    ("surrogate-fit", "surrogate fit {eos} --x Volume --y Energy --model poly --out {out}", "eos")
    + ("link",),
    ("surrogate-predict-data", "surrogate predict {s} {eos} --out {out}", "eos", "same"),
    ("surrogate-predict-model", "surrogate predict {s} {eos} --out {out}", "s", "dot"),
    ("evaluate-json-data", "evaluate {model} {data} --json {out}", "data", "same"),
    ("evaluate-json-model", "evaluate {model} {data} --json {model}/model.pt", "model", "same"),
    ("rdf-json", "analyze rdf {md} --json {out}", "md", "same"),
    ("design-fit", "design fit --data {glass} -p nd --model rf --trees 5 --out {out}", "glass")
    + ("same",),
    ("property-duplicates", "property duplicates {data} --json {out}", "data", "link"),
]


@pytest.mark.parametrize(
    "line, key, spelling", [c[1:] for c in SAME_FILE], ids=[c[0] for c in SAME_FILE]
)
def test_an_output_never_overwrites_an_input_even_with_force(
    inputs, tmp_path, capsys, line, key, spelling
):
    """Was: `data pull --db s.db --out s.db --force` replaced the label store by an extxyz
    file; `md emt start.xyz --traj ./start.xyz --force` its start structure; etc."""
    copies = tmp_path / "inputs"  # a refusal that fails must not spoil the other tests' inputs
    copies.mkdir()
    for name, path in inputs.items():
        copy = copies / Path(path).name
        (shutil.copytree if Path(path).is_dir() else shutil.copy)(path, copy)
        inputs = {**inputs, name: str(copy)}
    given = inputs[key]
    model_file = Path(inputs["model"]) / "model.pt"
    watched = model_file if key == "model" else Path(given)
    before = watched.read_bytes()
    out = {"same": given, "dot": str(Path(given).parent / "." / Path(given).name)}.get(spelling)
    if spelling == "link":
        out = _link(given, tmp_path)
    argv = [*line.format(out=out, **inputs).split(), "--force"]

    assert main(argv) == 1
    err = _one_line(capsys)
    assert "is the input" in err or "read as the input" in err, err
    assert "--force never overwrites an input" in err, err
    assert watched.read_bytes() == before


def test_distinct_outputs_beside_the_inputs_still_work(inputs, tmp_path, capsys):
    out = tmp_path / "pulled.xyz"
    assert main(["data", "pull", "--db", inputs["db"], "--out", str(out), "-q"]) == 0
    assert len(read(out, ":")) == 4
    copy = tmp_path / "cu.xyz"
    shutil.copy(inputs["cu"], copy)  # same name, another file
    argv = ["eos", "compute", inputs["cu"], "-c", "emt", "--points", "5", "--out"]
    assert main([*argv, str(tmp_path / "ev.csv")]) == 0
    assert main(["md", "emt", str(copy), "-n", "2", "--no-progress", "--traj", inputs["cu"]]) == 1
    assert "already exists" in _one_line(capsys)  # an existing output: --force may replace it


# ---------------------------------------------------------------- 3. --select


@pytest.mark.parametrize(
    "select, problem",
    [
        ("tag==ni", "single '='"),
        ("tag=cu==x", "single '='"),
        ("foo bar", "no key name"),
        ("(", "no key name"),
        ("id>", "needs a key and a value"),
        ("tag=a=b", "more than one comparison"),
        ("10>natoms>1", "more than one comparison"),
        ("a b=c", "not a key name"),
        ("natoms<x", "must be a number"),
        ("formula<Cu", "selected with '='"),
        ("formula=Xx", "unknown element"),
    ],
)
def test_a_bad_selection_is_one_line_with_the_syntax(inputs, tmp_path, capsys, select, problem):
    """Was: 'labels.db: ValueError: too many values to unpack (expected 2)' for tag==ni, and
    'foo bar' or '(' silently selected nothing (exit 0, '0')."""
    assert main(["data", "count", "--db", inputs["db"], "--select", select]) == 1
    err = _one_line(capsys)
    assert f"--select {select!r}" in err and problem in err, err
    assert "ASE db query syntax" in err and "tag=cu,natoms<20" in err, err
    assert "ValueError" not in err
    out = tmp_path / "pulled.xyz"
    assert main(["data", "pull", "--db", inputs["db"], "--select", select, "--out", str(out)]) == 1
    assert problem in _one_line(capsys)
    assert not out.exists()


@pytest.mark.parametrize(
    "select, n",
    [
        ("tag=cu", 4),
        ("tag=ni", 0),
        ("natoms<20,tag=cu", 4),
        ("1<natoms<10", 4),
        ("1<=natoms<=4", 4),
        ("Cu", 4),
        ("Cu4", 4),
        ("formula=Cu4", 4),
        ("ref_code=emt", 4),
        ("energy<1e6", 4),
        ("tag", 4),
    ],
)
def test_good_selections_still_count(inputs, capsys, select, n):
    assert main(["data", "count", "--db", inputs["db"], "--select", select]) == 0
    assert capsys.readouterr().out.strip() == str(n)


# ---------------------------------------------------------------- 4. demo


def test_demo_keeps_a_users_own_demo_yaml(tmp_path, capsys):
    """Was: any demo.yaml counted as a demo run: the demo rewrote it and ran in the folder."""
    mine = tmp_path / "demo.yaml"
    text = b"# my active-learning settings\nseed: 3\n"
    mine.write_bytes(text)
    assert main(["demo", "--dir", str(tmp_path), "--quiet"]) == 1
    err = _one_line(capsys)
    assert str(mine) in err and "--force" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.yaml"]
    assert mine.read_bytes() == text


def test_demo_inputs_are_its_own_and_kept_when_resuming(tmp_path):
    """Was: a start.xyz already in --dir (with --force) silently became the demo's start, and
    a resumed demo remade its test set on every rerun."""
    from matloop.active.demo import check_demo_dir, is_demo_run, write_demo_inputs

    write(tmp_path / "start.xyz", bulk("Si", "diamond", 5.43))  # someone else's file
    with pytest.raises(ConfigError, match="--force"):
        check_demo_dir(tmp_path)
    check_demo_dir(tmp_path, force=True)
    config = write_demo_inputs(tmp_path)
    assert set(read(tmp_path / "start.xyz").get_chemical_symbols()) == {"Cu"}
    assert is_demo_run(tmp_path)
    check_demo_dir(tmp_path)  # its own run: resumed without --force

    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    assert write_demo_inputs(tmp_path) == config
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == stamps

    config.write_text(config.read_text().replace("max_labels: 24", "max_labels: 240"))
    assert not is_demo_run(tmp_path)  # edited: no longer resumed (nor rewritten) silently
    with pytest.raises(ConfigError, match="not the demo's own config"):
        check_demo_dir(tmp_path)


def test_data_push_refuses_a_two_slash_sqlite_source(tmp_path, capsys):
    """A push source is read as text: Path would have collapsed sqlite://rel.db to sqlite:/rel.db
    (then read as an absolute path) before the database-location check could name the typo."""
    from matloop.cli import main

    db = tmp_path / "labels.db"
    assert main(["data", "push", "sqlite://rel.db", "--db", str(db), "--code", "emt"]) == 1
    err = capsys.readouterr().err
    assert "sqlite://rel.db: not a database URL" in err and len(err.strip().splitlines()) == 1
    assert not db.exists()
