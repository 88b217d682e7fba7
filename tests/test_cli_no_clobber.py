"""No command clobbers an existing output: one line, exit 1, the file untouched; --force writes.

Every output path is checked before any work, so a refusal costs nothing and leaves nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ase.build import bulk
from ase.io import write

from matloop.cli import main

SENTINEL = b"an earlier result that must survive\n"

TINY_TRAIN = {
    "model": {
        "family": "bpnn",
        "params": {
            "hidden": [4],
            "descriptor": {"cutoff": 4.0, "n_radial": 4, "n_angular_eta": 1, "zetas": [1.0]},
        },
    },
    "training": {"max_epochs": 2, "batch_size": 4},
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, str]:
    """Small real inputs: EMT Cu structures, an E(V) CSV, an MD trajectory, models, a store."""
    from helpers.reference_data import emt_cu_structures, write_emt_eos_csv

    d = tmp_path_factory.mktemp("no_clobber_inputs")
    emt_cu_structures(3, seed=0, repeat=(1, 1, 1)).write(d / "data.xyz")
    emt_cu_structures(2, seed=1, repeat=(1, 1, 1)).write(d / "valid.xyz")
    cu = bulk("Cu", "fcc", 3.61, cubic=True) * (2, 2, 2)
    write(d / "cu.xyz", cu)
    write_emt_eos_csv(d / "eos.csv", cu)
    (d / "train.yaml").write_text(yaml.safe_dump(TINY_TRAIN))
    db = f"{d / 'labels.db'}"
    setup = [
        ["md", "emt", f"{d / 'cu.xyz'}", "-n", "20", "--no-progress", "--traj", f"{d / 'md.traj'}"],
        ["surrogate", "fit", f"{d / 'eos.csv'}", "--x", "Volume", "--y", "Energy"]
        + ["--model", "poly", "--out", f"{d / 's.npz'}"],
        ["train", "--train", f"{d / 'data.xyz'}", "--out", f"{d / 'model'}"]
        + ["--config", f"{d / 'train.yaml'}", "--no-progress", "--valid", f"{d / 'valid.xyz'}"],
        ["data", "push", f"{d / 'data.xyz'}", "--db", db, "--code", "emt"],
    ]
    for argv in setup:
        assert main(argv) == 0, argv
    names = ("data.xyz", "cu.xyz", "eos.csv", "md.traj", "s.npz", "model")
    return {"db": db} | {Path(n).stem: str(d / n) for n in names}


# (id, command line with {out} for the output path, the output's file name)
CASES = [
    ("evaluate-json", "evaluate {model} {data} --json {out}", "metrics.json"),
    ("evaluate-plot", "evaluate {model} {data} --plot {out}", "parity.png"),
    ("md-json", "md emt {cu} -n 3 --no-progress --json {out}", "md.json"),
    ("md-traj", "md emt {cu} -n 3 --no-progress --traj {out}", "md.traj"),
    ("md-log", "md emt {cu} -n 3 --no-progress --log {out}", "md.log"),
    ("config-template", "config template al --out {out}", "al.yaml"),
    ("rdf-json", "analyze rdf {md} --json {out}", "rdf.json"),
    ("rdf-plot", "analyze rdf {md} --plot {out}", "rdf.png"),
    ("msd-json", "analyze msd {md} --json {out}", "msd.json"),
    ("msd-plot", "analyze msd {md} --plot {out}", "msd.png"),
    ("eos-fit-json", "eos fit {eos} --bootstrap 0 --json {out}", "fit.json"),
    ("eos-fit-plot", "eos fit {eos} --bootstrap 0 --plot {out}", "fit.png"),
    ("eos-compute", "eos compute {cu} -c emt --points 5 --out {out}", "ev.csv"),
    ("surrogate-predict", "surrogate predict {s} {eos} --out {out}", "pred.csv"),
    (
        "surrogate-fit-plot",
        "surrogate fit {eos} --x Volume --y Energy --model poly --out {dir}/new.npz --plot {out}",
        "band.png",
    ),
    ("data-pull", "data pull --db {db} --out {out}", "pulled.xyz"),
    ("property-duplicates", "property duplicates {data} --json {out}", "dup.json"),
    (
        "validate",
        "validate emt --test {data} --out {dir}/report --nve-ps 0 --no-progress",
        "report/report.json",
    ),
]


@pytest.mark.parametrize("line, name", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_existing_output_is_kept_unless_force(inputs, tmp_path, capsys, line, name):
    out = tmp_path / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(SENTINEL)
    argv = line.format(out=out, dir=tmp_path, **inputs).split()

    assert main(argv) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert str(out) in lines[0] and "--force" in lines[0], lines[0]
    assert out.read_bytes() == SENTINEL
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(Path(name).parts)

    assert main([*argv, "--force"]) == 0, capsys.readouterr().err
    assert out.read_bytes() != SENTINEL


def test_every_output_is_checked_before_any_is_written(inputs, tmp_path, capsys):
    (tmp_path / "fit.png").write_bytes(SENTINEL)
    argv = ["eos", "fit", inputs["eos"], "--bootstrap", "0"]
    argv += ["--json", str(tmp_path / "fit.json"), "--plot", str(tmp_path / "fit.png")]
    assert main(argv) == 1
    assert "--plot" in capsys.readouterr().err
    assert not (tmp_path / "fit.json").exists()


@pytest.mark.parametrize(
    "line",
    [
        "md emt {cu} -n 3 --no-progress --traj {dir}/run.xyz --log {dir}/./run.xyz",
        "eos fit {eos} --bootstrap 0 --json {dir}/fit.png --plot {dir}/fit.png --force",
    ],
    ids=["md-traj-log", "eos-json-plot-force"],
)
def test_two_options_naming_one_file_are_refused(inputs, tmp_path, capsys, line):
    """Even with --force: the second output would silently overwrite the first."""
    argv = line.format(dir=tmp_path, **inputs).split()
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "both name" in err, err
    assert list(tmp_path.iterdir()) == []


def test_validate_writes_into_a_folder_of_other_files(inputs, tmp_path):
    report = tmp_path / "report"
    report.mkdir()
    (report / "notes.txt").write_bytes(SENTINEL)
    argv = ["validate", "emt", "--test", inputs["data"], "--out", str(report), "--nve-ps", "0"]
    assert main([*argv, "--no-progress"]) == 0
    assert (report / "report.html").exists()
    assert (report / "notes.txt").read_bytes() == SENTINEL


def test_demo_refuses_a_folder_that_is_no_demo_run(tmp_path, capsys):
    (tmp_path / "report.html").write_bytes(SENTINEL)
    assert main(["demo", "--dir", str(tmp_path), "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(tmp_path) in err and "--force" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
    assert (tmp_path / "report.html").read_bytes() == SENTINEL


def _al_config(folder: Path, cu: str) -> Path:
    """The smallest real active-learning run: EMT labels, a committee of two tiny BPNNs."""
    cfg = {
        "seed": 1,
        "reference": {"calculator": "emt"},
        "initial": {"structures": cu, "n_label": 4, "rattle": 0.08},
        "explore": {"temperatures": [600.0], "steps": 4, "timestep_fs": 2.0, "walkers": 1},
        "select": {"threshold": 0.0, "max_per_iteration": 2},
        "model": {
            "family": "bpnn",
            "committee": 2,
            "train": {
                "model": {"params": TINY_TRAIN["model"]["params"]},
                "training": {"max_epochs": 2},
            },
        },
        "budget": {"max_labels": 6},
        "stop": {"max_iterations": 1},
    }
    path = folder / "al.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_al_run_keeps_another_commands_report_and_resumes_its_own_run(inputs, tmp_path, capsys):
    config = _al_config(tmp_path, inputs["cu"])
    run = tmp_path / "run"
    run.mkdir()
    (run / "report.html").write_bytes(SENTINEL)  # e.g. `matloop validate --out run`
    argv = ["al", "run", str(config), "--dir", str(run), "--quiet"]

    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(run / "report.html") in err and "--force" in err
    assert sorted(p.name for p in run.iterdir()) == ["report.html"]
    assert (run / "report.html").read_bytes() == SENTINEL

    assert main([*argv, "--force"]) == 0, capsys.readouterr().err
    assert (run / "report.html").read_bytes() != SENTINEL
    assert (run / "state.db").exists() and (run / "report.json").exists()
    labels = _labels(capsys.readouterr().out)
    assert main(argv) == 0, capsys.readouterr().err  # rerunning resumes, no --force needed
    assert _labels(capsys.readouterr().out) >= labels > 0  # it kept the first run's labels


def _labels(out: str) -> int:
    return int(out.split("labels: ", 1)[1].split()[0])


def test_al_run_keeps_a_users_config_named_like_the_runs_record(inputs, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    config = _al_config(tmp_path, inputs["cu"]).rename(run / "config.yaml")
    text = b"# my notes, which a rewrite would lose\n" + config.read_bytes()
    config.write_bytes(text)

    assert main(["al", "run", str(config), "--dir", str(run), "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(config) in err and "--force" in err
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml"]
    assert config.read_bytes() == text
