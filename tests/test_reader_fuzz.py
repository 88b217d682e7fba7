"""Property-based tests of every reader: whatever the file holds, the result is either valid
data or a matloop error (one line in the CLI), never another exception.

Readers: extended XYZ (reference data), YAML configs (training, active learning, design space,
validation report), CSV tables (EOS, surrogate, design).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import yaml
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import write
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from matloop.cli import main
from matloop.errors import MatloopError

# deterministic in CI (no flaky failures); MATLOOP_FUZZ_EXAMPLES=500 explores further
FUZZ = settings(
    max_examples=int(os.environ.get("MATLOOP_FUZZ_EXAMPLES", "40")),
    derandomize="MATLOOP_FUZZ_EXAMPLES" not in os.environ,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_DIR = Path(tempfile.mkdtemp(prefix="matloop-fuzz-"))


def _file(name: str, content: str | bytes) -> Path:
    path = _DIR / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
    return path


def _valid_xyz() -> str:
    frames = []
    for i in range(2):
        atoms = bulk("Cu", "fcc", a=3.61) * (2, 1, 1)
        atoms.rattle(0.05, seed=i)
        atoms.calc = EMT()
        atoms.get_forces()
        frames.append(atoms)
    path = _DIR / "valid.xyz"
    write(path, frames, format="extxyz")
    return path.read_text()


VALID_XYZ = _valid_xyz()
_junk = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["nan", "inf", "-1e400", "", "0", "-5", "Xx", '"', "=", "Lattice=", "1 2"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)


@st.composite
def mutated_xyz(draw) -> str:
    tokens = VALID_XYZ.split(" ")
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["replace", "drop_line", "truncate"]))
        if action == "replace":
            i = draw(st.integers(0, len(tokens) - 1))
            tokens[i] = draw(_junk)
        elif action == "drop_line":
            lines = " ".join(tokens).splitlines()
            if lines:
                del lines[draw(st.integers(0, len(lines) - 1))]
            tokens = "\n".join(lines).split(" ")
        else:
            text = " ".join(tokens)
            tokens = text[: draw(st.integers(0, len(text)))].split(" ")
    return " ".join(tokens)


def _refused_or_valid(call) -> None:
    try:
        call()
    except MatloopError as exc:
        assert str(exc).strip()


@FUZZ
@given(text=st.one_of(mutated_xyz(), st.text(max_size=300)))
def test_extxyz_reader(text):
    from matloop.data import read_dataset

    path = _file("fuzz.xyz", text)
    _refused_or_valid(lambda: read_dataset(path))
    _refused_or_valid(lambda: read_dataset(path, energy_key="REF_energy", require_forces=False))


@FUZZ
@given(data=st.binary(max_size=400))
def test_extxyz_reader_binary(data):
    from matloop.data import read_dataset

    _refused_or_valid(lambda: read_dataset(_file("fuzz_bin.xyz", data)))


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=10),
)
_KEYS = [
    "model", "family", "params", "hidden", "training", "max_epochs", "loss", "forces",
    "reference", "calculator", "settings", "timeout_s", "initial", "structures", "explore",
    "temperatures", "steps", "timestep_fs", "budget", "max_labels", "components", "total",
    "thresholds", "nve_ps", "bpnn", "emt", "select", "stop", "committee",
]  # fmt: skip
_yaml_values = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(_KEYS), st.text(max_size=6)), children, max_size=4
        ),
    ),
    max_leaves=12,
)


@FUZZ
@given(
    content=st.one_of(
        st.dictionaries(st.sampled_from(_KEYS), _yaml_values, max_size=5).map(yaml.safe_dump),
        st.text(max_size=200),
        st.binary(max_size=200),
    )
)
def test_yaml_config_readers(content):
    from matloop.active.config import load_config
    from matloop.design.space import load_space
    from matloop.training.config import load_train_config
    from matloop.validation.config import load_report_config

    path = _file("fuzz.yaml", content)
    for reader in (load_train_config, load_config, load_space, load_report_config):
        _refused_or_valid(lambda reader=reader: reader(path))


_cells = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32).map(repr),
    st.integers(-1000, 1000).map(str),
    st.sampled_from(["", "x", "1e999", "-", " 3 ", '"1,2"', "nan"]),
)


@st.composite
def csv_tables(draw, header: list[str]) -> str:
    cols = draw(st.lists(st.sampled_from([*header, "Other", ""]), min_size=1, max_size=4))
    rows = draw(st.lists(st.lists(_cells, min_size=0, max_size=len(cols) + 1), max_size=8))
    lines = [",".join(cols)] + [",".join(r) for r in rows]
    return "\n".join(lines) + "\n"


def _cli_one_line(argv: list[str], capsys) -> None:
    code = main(argv)
    err = capsys.readouterr().err
    assert code in (0, 1), (code, err)
    if code:
        lines = err.strip().splitlines()
        assert lines[-1].startswith("error: ") and "internal error" not in lines[-1], err
        assert "Traceback" not in err


@FUZZ
@given(content=st.one_of(csv_tables(["Volume", "Energy"]), st.text(max_size=200)))
def test_eos_csv_reader_and_fit(content, capsys):
    from matloop.eos import read_eos_csv

    path = _file("eos.csv", content)
    _refused_or_valid(lambda: read_eos_csv(path))
    _cli_one_line(["eos", "fit", str(path), "--bootstrap", "0"], capsys)


@FUZZ
@given(content=st.one_of(csv_tables(["x", "y"]), st.binary(max_size=100)))
def test_surrogate_csv_reader_and_fit(content, capsys):
    from matloop.surrogate import read_columns

    path = _file("sur.csv", content)
    _refused_or_valid(lambda: read_columns(path, ["x", "y"]))
    out = _DIR / "s.npz"
    _cli_one_line(
        ["surrogate", "fit", str(path), "--x", "x", "--y", "y", "--model", "poly", "--degree",
         "1", "--out", str(out)],
        capsys,
    )  # fmt: skip


@FUZZ
@given(content=st.one_of(csv_tables(["SiO2", "Na2O", "CaO", "nd"]), st.text(max_size=200)))
def test_design_csv_reader(content):
    from matloop.cli.design import _load_table

    path = _file("glass.csv", content)

    def read():
        _, table, y = _load_table(path, ["nd"], None, "mol", False)
        assert np.asarray(table.values).shape[0] == len(y)

    _refused_or_valid(read)
