"""Every command refuses bad input with one line, before any work, and changes no file.

Each case runs ``matloop.cli.main`` in-process inside a copy of a small workspace and asserts:
exit code ≠ 0, exactly one ``error: ...`` line on stderr containing the expected words, no
traceback, every pre-existing file byte-identical and no file created.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import write

from matloop.cli import main

DATA = Path(__file__).parent / "data"
TINY_TRAIN = {
    "model": {
        "family": "bpnn",
        "params": {
            "hidden": [8],
            "descriptor": {"cutoff": 4.0, "n_radial": 4, "n_angular_eta": 1, "zetas": [1.0]},
        },
    },
    "training": {"max_epochs": 2, "batch_size": 4, "num_threads": 1},
}


def _labelled(symbols_swap: dict[int, str] | None = None, n: int = 4, seed: int = 0):
    frames = []
    for i in range(n):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
        for index, symbol in (symbols_swap or {}).items():
            atoms[index].symbol = symbol
        atoms.rattle(0.05, seed=seed + i)
        atoms.calc = EMT()
        atoms.get_forces()
        atoms.get_stress()
        frames.append(atoms)
    return frames


def _al_config(**over) -> dict:
    cfg = {
        "reference": {"calculator": "emt"},
        "initial": {"structures": "cu.xyz", "n_label": 4},
        "explore": {"temperatures": [300.0], "steps": 5, "walkers": 1},
        "model": {"family": "bpnn", "committee": 2, "train": TINY_TRAIN},
        "budget": {"max_labels": 10},
        "stop": {"max_iterations": 1},
    }
    for section, values in over.items():
        if isinstance(values, dict):
            cfg.setdefault(section, {}).update(values)
        else:
            cfg[section] = values
    return cfg


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """Valid inputs for every command, plus the bad ones the cases name."""
    from matloop.data import Dataset
    from matloop.training import TrainConfig, train

    ws = tmp_path_factory.mktemp("workspace")
    write(ws / "cu.xyz", _labelled())
    write(ws / "cuni.xyz", _labelled({0: "Ni"}, n=2, seed=10))
    zero = bulk("Cu", "fcc", a=3.61, cubic=True)
    zero.cell = np.zeros((3, 3))
    zero.pbc = True
    write(ws / "zero_cell.xyz", zero, format="extxyz")
    train(
        Dataset(_labelled(n=4)),
        ws / "model",
        TrainConfig.model_validate(TINY_TRAIN),
        progress=False,
    )
    (ws / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    (ws / "binary.csv").write_bytes(b"\xff\xfe\x00\x81" * 64)
    shutil.copy(DATA / "eos" / "si_qe_pbe.csv", ws / "eos.csv")
    volumes = np.linspace(30, 40, 9)
    mono = "Volume,Energy\n" + "".join(f"{v},{-v * 0.1}\n" for v in volumes)
    (ws / "eos_monotonic.csv").write_text(mono)
    shutil.copy(DATA / "design" / "glass_small.csv", ws / "glass.csv")
    (ws / "m.json").write_text('{"keep": "me"}\n')
    bad_train = {**TINY_TRAIN, "model": {"family": "bpnn", "params": {"hidden": [-4]}}}
    configs = {
        "train_negative_width.yaml": bad_train,
        "train_unknown_key.yaml": {"training": {"max_epoch": 3}},
        "train_bad_family.yaml": {"model": {"family": "no_such_family"}},
        "al_negative_temperature.yaml": _al_config(explore={"temperatures": [-300.0]}),
        "al_unknown_family.yaml": _al_config(model={"family": "no_such_family"}),
        "al_unknown_train_key.yaml": _al_config(model={"train": {"training": {"epochz": 3}}}),
        "al_negative_width.yaml": _al_config(model={"train": bad_train}),
        "al_calc_kwarg.yaml": _al_config(reference={"settings": {"asap_cutof": True}}),
        "al_unknown_calc.yaml": _al_config(reference={"calculator": "no_such_code"}),
        "al_negative_timestep.yaml": _al_config(explore={"timestep_fs": -1.0}),
        "al_zero_budget.yaml": _al_config(budget={"max_labels": 0}),
        "al_test_element.yaml": _al_config(test={"data": "cuni.xyz"}),
        "al_missing_start.yaml": _al_config(initial={"structures": "nowhere.xyz"}),
        "al_negative_timeout.yaml": _al_config(reference={"timeout_s": -5}),
        "al_scheduler.yaml": _al_config(
            execution={"scheduler": "tcp://127.0.0.1:9", "connect_timeout_s": 0.5}
        ),
    }
    for name, cfg in configs.items():
        (ws / name).write_text(yaml.safe_dump(cfg))
    (ws / "notarun").mkdir()
    (ws / "broken").mkdir()
    (ws / "broken" / "checkpoint.pt").write_bytes((ws / "model" / "model.pt").read_bytes()[:200])
    (ws / "empty.xyz").write_text("")
    shutil.copy(DATA / "design" / "space.yaml", ws / "space.yaml")
    shutil.copy(DATA / "design" / "observed.csv", ws / "observed.csv")
    (ws / "corrupt_run").mkdir()
    (ws / "corrupt_run" / "state.db").write_bytes(b"SQLite format 3\x00" + b"\x13" * 4000)
    return ws


# (id, argv, words the one error line must contain)
CASES: list[tuple[str, list[str], str]] = [
    # --- train
    ("train-missing-data", ["train", "--train", "nowhere.xyz", "--out", "new"], "not found"),
    (
        "train-misspelled-energy-key",
        ["train", "--train", "cu.xyz", "--out", "new", "--energy-key", "REF_energy"],
        "REF_energy",
    ),
    (
        "train-valid-element-not-in-train",
        ["train", "--train", "cu.xyz", "--valid", "cuni.xyz", "--out", "new"],
        "Ni",
    ),
    (
        "train-negative-max-time",
        ["train", "--train", "cu.xyz", "--out", "new", "--max-time", "-1"],
        "--max-time",
    ),
    ("train-clobber-model", ["train", "--train", "cu.xyz", "--out", "model"], "--force"),
    (
        "train-resume-nothing",
        ["train", "--train", "cu.xyz", "--out", "new", "--resume"],
        "nothing to resume",
    ),
    (
        "train-negative-width",
        ["train", "--train", "cu.xyz", "--out", "new", "--config", "train_negative_width.yaml"],
        "hidden",
    ),
    (
        "train-unknown-key",
        ["train", "--train", "cu.xyz", "--out", "new", "--config", "train_unknown_key.yaml"],
        "max_epoch",
    ),
    (
        "train-binary-yaml",
        ["train", "--train", "cu.xyz", "--out", "new", "--config", "binary.yaml"],
        "binary.yaml",
    ),
    (
        "train-unknown-family",
        ["train", "--train", "cu.xyz", "--out", "new", "--model", "nope"],
        "nope",
    ),
    (
        "train-negative-seed",
        ["train", "--train", "cu.xyz", "--out", "new", "--seed", "-3"],
        "--seed",
    ),
    ("train-out-is-a-file", ["train", "--train", "cu.xyz", "--out", "cu.xyz"], "not a directory"),
    (
        "train-config-is-a-dir",
        ["train", "--train", "cu.xyz", "--out", "new", "--config", "notarun"],
        "directory",
    ),
    (
        "train-missing-init-model",
        ["train", "--train", "cu.xyz", "--out", "new", "--init-model", "none.pt"],
        "none.pt",
    ),
    (
        "train-truncated-checkpoint",
        ["train", "--train", "cu.xyz", "--out", "broken", "--resume"],
        "checkpoint",
    ),
    (
        "train-delta-with-resume",
        ["train", "--train", "cu.xyz", "--out", "model", "--delta-base", "emt", "--resume"],
        "--delta-base",
    ),
    ("train-empty-data", ["train", "--train", "empty.xyz", "--out", "new"], "empty.xyz"),
    # --- evaluate
    ("evaluate-unseen-element", ["evaluate", "model", "cuni.xyz"], "Ni"),
    (
        "evaluate-bad-plot-keeps-json",
        ["evaluate", "model", "cu.xyz", "--json", "m.json", "--plot", "p.badext"],
        "badext",
    ),
    ("evaluate-missing-model", ["evaluate", "nomodel.pt", "cu.xyz"], "nomodel.pt"),
    (
        "evaluate-misspelled-forces-key",
        ["evaluate", "model", "cu.xyz", "--forces-key", "F_ref"],
        "F_ref",
    ),
    # --- md
    ("md-zero-cell", ["md", "emt", "zero_cell.xyz", "-n", "5"], "zero"),
    ("md-negative-temperature", ["md", "emt", "cu.xyz", "-e", "nvt", "-T", "-10"], "temperature"),
    ("md-zero-timestep", ["md", "emt", "cu.xyz", "--timestep", "0"], "timestep"),
    ("md-negative-steps", ["md", "emt", "cu.xyz", "-n", "-5"], "steps"),
    ("md-unknown-ensemble", ["md", "emt", "cu.xyz", "-e", "nvx"], "nvx"),
    ("md-unknown-calculator", ["md", "no_such_calc", "cu.xyz"], "no_such_calc"),
    ("md-binary-structure", ["md", "emt", "binary.csv"], "binary.csv"),
    ("md-bad-timestep-type", ["md", "emt", "cu.xyz", "--timestep", "fast"], "--timestep"),
    # --- validate / analyze
    (
        "validate-missing-test",
        ["validate", "emt", "--test", "none.xyz", "--out", "rep"],
        "none.xyz",
    ),
    (
        "validate-negative-nve",
        ["validate", "emt", "--test", "cu.xyz", "--out", "rep", "--nve-ps", "-1"],
        "nve_ps",
    ),
    (
        "validate-binary-config",
        ["validate", "emt", "--test", "cu.xyz", "--out", "rep", "--config", "binary.yaml"],
        "binary.yaml",
    ),
    ("analyze-rdf-skip-all", ["analyze", "rdf", "cu.xyz", "--skip", "100"], "--skip"),
    ("analyze-rdf-bad-pair", ["analyze", "rdf", "cu.xyz", "--elements", "Cu"], "--elements"),
    ("analyze-msd-missing", ["analyze", "msd", "none.traj"], "none.traj"),
    # --- eos
    ("eos-fit-monotonic-bootstrap", ["eos", "fit", "eos_monotonic.csv"], "minimum"),
    ("eos-fit-bad-plot", ["eos", "fit", "eos.csv", "--json", "m.json", "--plot", "f.nope"], "nope"),
    (
        "eos-compute-unknown-calculator",
        ["eos", "compute", "cu.xyz", "-c", "no_such_calc", "-o", "e.csv"],
        "no_such_calc",
    ),
    ("eos-fit-monotonic", ["eos", "fit", "eos_monotonic.csv", "--bootstrap", "0"], "minimum"),
    ("eos-fit-negative-bootstrap", ["eos", "fit", "eos.csv", "--bootstrap", "-1"], "--bootstrap"),
    ("eos-fit-binary", ["eos", "fit", "binary.csv"], "binary.csv"),
    ("eos-fit-unknown-form", ["eos", "fit", "eos.csv", "--eos", "bm9"], "bm9"),
    (
        "eos-compute-negative-strain",
        ["eos", "compute", "cu.xyz", "-c", "emt", "--strain", "-0.1", "-o", "e.csv"],
        "strain",
    ),
    (
        "eos-compute-one-point",
        ["eos", "compute", "cu.xyz", "-c", "emt", "--points", "1", "-o", "e.csv"],
        "points",
    ),
    # --- surrogate
    (
        "surrogate-fit-test-size",
        [
            "surrogate",
            "fit",
            "eos.csv",
            "--x",
            "Volume",
            "--y",
            "Energy",
            "--test-size",
            "2",
            "--out",
            "s.npz",
        ],
        "--test-size",
    ),
    (
        "surrogate-fit-degree-zero",
        [
            "surrogate",
            "fit",
            "eos.csv",
            "--x",
            "Volume",
            "--y",
            "Energy",
            "--model",
            "poly",
            "--degree",
            "0",
            "--out",
            "s.npz",
        ],
        "degree",
    ),
    (
        "surrogate-fit-missing-column",
        ["surrogate", "fit", "eos.csv", "--x", "Volum", "--y", "Energy", "--out", "s.npz"],
        "Volum",
    ),
    (
        "surrogate-predict-foreign-file",
        ["surrogate", "predict", "m.json", "eos.csv", "--out", "p.csv"],
        "not a matloop",
    ),
    (
        "surrogate-predict-missing-model",
        ["surrogate", "predict", "none.npz", "eos.csv", "--out", "p.csv"],
        "none.npz",
    ),
    (
        "surrogate-fit-binary",
        ["surrogate", "fit", "binary.csv", "--x", "Volume", "--y", "Energy", "--out", "s.npz"],
        "binary.csv",
    ),
    (
        "surrogate-fit-clobber",
        ["surrogate", "fit", "eos.csv", "--x", "Volume", "--y", "Energy", "--out", "m.json"],
        "--force",
    ),
    # --- design
    (
        "design-fit-clobber",
        ["design", "fit", "--data", "glass.csv", "-p", "nd", "--out", "m.json"],
        "--force",
    ),
    (
        "design-evaluate-zero-trees",
        ["design", "evaluate", "--data", "glass.csv", "-p", "nd", "--model", "rf", "--trees", "0"],
        "--trees",
    ),
    (
        "design-evaluate-unknown-split",
        ["design", "evaluate", "--data", "glass.csv", "-p", "nd", "--split", "weird"],
        "weird",
    ),
    (
        "design-suggest-bad-objective",
        [
            "design",
            "suggest",
            "--data",
            "observed.csv",
            "--space",
            "space.yaml",
            "--objective",
            "nd:biggest",
            "--out",
            "s.csv",
        ],
        "biggest",
    ),
    (
        "design-suggest-binary-space",
        [
            "design",
            "suggest",
            "--data",
            "glass.csv",
            "--space",
            "binary.yaml",
            "--objective",
            "nd:max",
            "--out",
            "s.csv",
        ],
        "binary.yaml",
    ),
    (
        "design-fit-unknown-kind",
        ["design", "fit", "--data", "glass.csv", "-p", "nd", "--model", "svm", "--out", "d.npz"],
        "svm",
    ),
    (
        "design-fit-zero-members",
        ["design", "fit", "--data", "glass.csv", "-p", "nd", "--members", "0", "--out", "d.npz"],
        "--members",
    ),
    (
        "design-fit-unknown-property",
        ["design", "fit", "--data", "glass.csv", "-p", "ndx", "--out", "d.npz"],
        "ndx",
    ),
    (
        "design-predict-foreign-file",
        ["design", "predict", "--model", "m.json", "--data", "glass.csv", "--out", "p.csv"],
        "not a matloop",
    ),
    # --- config validate
    (
        "config-al-negative-temperature",
        ["config", "validate", "al_negative_temperature.yaml"],
        "temperatures",
    ),
    (
        "config-al-unknown-family",
        ["config", "validate", "al_unknown_family.yaml"],
        "no_such_family",
    ),
    ("config-al-unknown-train-key", ["config", "validate", "al_unknown_train_key.yaml"], "epochz"),
    ("config-al-negative-width", ["config", "validate", "al_negative_width.yaml"], "hidden"),
    ("config-al-calculator-kwarg", ["config", "validate", "al_calc_kwarg.yaml"], "asap_cutof"),
    (
        "config-al-unknown-calculator",
        ["config", "validate", "al_unknown_calc.yaml"],
        "no_such_code",
    ),
    ("config-al-test-element", ["config", "validate", "al_test_element.yaml"], "Ni"),
    ("config-train-negative-width", ["config", "validate", "train_negative_width.yaml"], "hidden"),
    ("config-train-unknown-key", ["config", "validate", "train_unknown_key.yaml"], "max_epoch"),
    (
        "config-train-unknown-family",
        ["config", "validate", "train_bad_family.yaml"],
        "no_such_family",
    ),
    ("config-binary-yaml", ["config", "validate", "binary.yaml"], "binary.yaml"),
    # --- al run / status
    (
        "al-run-negative-temperature",
        ["al", "run", "al_negative_temperature.yaml", "--dir", "run"],
        "temperatures",
    ),
    ("al-run-calculator-kwarg", ["al", "run", "al_calc_kwarg.yaml", "--dir", "run"], "asap_cutof"),
    (
        "al-run-negative-timestep",
        ["al", "run", "al_negative_timestep.yaml", "--dir", "run"],
        "timestep_fs",
    ),
    ("al-run-zero-budget", ["al", "run", "al_zero_budget.yaml", "--dir", "run"], "max_labels"),
    ("al-run-test-element", ["al", "run", "al_test_element.yaml", "--dir", "run"], "Ni"),
    ("al-run-missing-start", ["al", "run", "al_missing_start.yaml", "--dir", "run"], "nowhere.xyz"),
    (
        "al-run-negative-timeout",
        ["al", "run", "al_negative_timeout.yaml", "--dir", "run"],
        "timeout_s",
    ),
    (
        "al-run-dir-is-file",
        ["al", "run", "al_unknown_family.yaml", "--dir", "cu.xyz"],
        "no_such_family",
    ),
    (
        "al-run-unreachable-scheduler-leaves-nothing",
        ["al", "run", "al_scheduler.yaml", "--dir", "run"],
        "Dask scheduler",
    ),
    ("al-status-not-a-run", ["al", "status", "notarun"], "notarun"),
    ("al-report-not-a-run", ["al", "report", "notarun"], "notarun"),
    ("config-template-unknown-kind", ["config", "template", "foo"], "foo"),
    ("config-template-unknown-family", ["config", "template", "train", "--model", "nope"], "nope"),
    ("analyze-msd-negative-dt", ["analyze", "msd", "cu.xyz", "--dt", "-1"], "> 0 ps"),
    (
        "design-predict-missing-model",
        ["design", "predict", "--model", "none.npz", "--data", "glass.csv", "--out", "p.csv"],
        "none.npz",
    ),
    ("evaluate-binary-data", ["evaluate", "model", "binary.csv"], "binary.csv"),
    ("al-status-corrupt-db", ["al", "status", "corrupt_run"], "state.db"),
]


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("case_id, argv, words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_refused_in_one_line(
    workspace, tmp_path, capsys, monkeypatch, case_id, argv, words
):
    ws = tmp_path / "ws"
    shutil.copytree(workspace, ws)
    monkeypatch.chdir(ws)
    before = _snapshot(ws)
    code = main(argv)
    err = capsys.readouterr().err
    assert code != 0, f"{case_id}: exit code 0"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and "internal error" not in err
    assert words in lines[0], f"{case_id}: {words!r} not in {lines[0]!r}"
    assert _snapshot(ws) == before, f"{case_id}: files changed"
    assert not (ws / "new").exists() and not (ws / "run").exists()
