"""The validation report: renders offline (HTML parsed, plots embedded), JSON keys, thresholds,
CLI and bad input. EMT plays the "model" here (exact physics, fast); a trained matloop model is
in test_validation_report_model.py."""

from __future__ import annotations

import base64
import json
from html.parser import HTMLParser

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from matloop.cli import main
from matloop.data import Dataset, label_with
from matloop.validation import ReportSettings, Thresholds, build_report

FAST = {
    "nve_ps": 0.06,
    "nve_equilibration_ps": 0.02,
    "nve_timestep_fs": 2.0,
    "rdf_ps": 0.02,
    "n_physics_structures": 1,
    "fd_atoms": 2,
    "eos_points": 5,
    "progress": False,
}


def _cu_set(n: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n):
        a = bulk("Cu", "fcc", a=3.61 * (1 + rng.uniform(-0.02, 0.02)), cubic=True)
        a = a.repeat((2, 2, 1))
        a.positions += rng.normal(0, 0.06, a.positions.shape)
        frames.append(label_with(a, EMT(), config_type=("bulk", "strained")[k % 2]))
    return Dataset(frames, source=f"emt-cu-{seed}")


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images: list[dict] = []
        self.external: list[str] = []
        self.text = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        for key in ("src", "href"):
            if key in attrs and attrs[key].startswith(("http:", "https:", "//")):
                self.external.append(attrs[key])

    def handle_data(self, data):
        self.text.append(data)


def _parse(path):
    parser = _Images()
    parser.feed(path.read_text())
    return parser


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    report = build_report(
        EMT(),
        _cu_set(3, 1),
        train_ds=_cu_set(3, 2),
        reference="emt",
        out_dir=out,
        settings=FAST,
        model_name="EMT as model",
    )
    return out, report


def test_report_html_is_self_contained_with_plots(report_dir):
    out, _ = report_dir
    page = _parse(out / "report.html")
    titles = {img.get("title") for img in page.images}
    assert {"parity_test", "error_histogram_test", "nve", "eos", "rdf"} <= titles
    for img in page.images:
        src = img["src"]
        assert src.startswith("data:image/png;base64,")
        png = base64.b64decode(src.split(",", 1)[1])
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000
    assert page.external == []  # opens offline
    text = " ".join(page.text)
    assert "NVE energy drift" in text and "PASS" in text and "largest force" in text


def test_report_json_keys_and_checks(report_dir):
    out, report = report_dir
    data = json.loads((out / "report.json").read_text())
    for key in (
        "checks",
        "thresholds",
        "settings",
        "test_metrics",
        "train_metrics",
        "test_train_ratio",
        "physics",
        "nve",
        "reference_comparison",
        "passed",
        "largest_force_ev_per_a",
        "figures",
    ):
        assert key in data, key
    names = {c["name"] for c in data["checks"]}
    assert {
        "NVE energy drift",
        "largest force",
        "F = −∇E (finite differences)",
        "invariance: energy (translation/rotation/permutation)",
        "EOS: B0 vs reference",
        "RDF vs reference",
    } <= names
    # EMT against its own labels: exact, every judged check passes
    assert data["passed"] is True
    assert data["test_metrics"]["energy_mae_mev_per_atom"] < 1e-6
    assert set(data["test_metrics"]["per_config_type"]) == {"bulk", "strained"}
    nve = data["nve"]
    assert abs(nve["nve_drift_mev_per_atom_per_ps"]) < 1.0
    assert nve["duration_ps"] == pytest.approx(0.06)
    eos = data["reference_comparison"]["eos"]
    assert len(eos) == 2
    assert report["checks"] == data["checks"] or len(report["checks"]) == len(data["checks"])


def test_training_data_at_one_volume_gets_a_note(report_dir, tmp_path):
    """Strained training cells (the fixture): no note. Fixed-cell ones: a note in JSON, HTML and
    a warning, and the stress/EOS checks point to it."""
    assert report_dir[1]["notes"] == []
    fixed = []
    for seed in range(2):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
        atoms.rattle(0.05, seed=seed)
        fixed.append(label_with(atoms, EMT()))
    settings = {**FAST, "nve_ps": 0.0, "n_physics_structures": 0}
    with pytest.warns(UserWarning, match="one volume per atom"):
        report = build_report(
            EMT(), _cu_set(2, 5), train_ds=Dataset(fixed), reference="emt", out_dir=tmp_path,
            settings=settings,
        )  # fmt: skip
    assert len(report["notes"]) == 1 and "Cu 11.8 Å³/atom" in report["notes"][0]
    assert "one volume per atom" in "".join(_parse(tmp_path / "report.html").text)
    eos = next(c for c in report["checks"] if c["name"] == "EOS: B0 vs reference")
    assert "note on training data" in eos["detail"]


def test_thresholds_change_the_verdict(tmp_path):
    # a 1e-9 eV/Å force limit must fail; the verdict and the check say so
    with pytest.warns(UserWarning, match="largest force"):
        report = build_report(
            EMT(),
            _cu_set(2, 3),
            out_dir=tmp_path,
            thresholds=Thresholds(max_force_ev_per_a=1e-9),
            settings={**FAST, "nve_ps": 0.0, "n_physics_structures": 0},
        )
    assert report["passed"] is False
    by_name = {c["name"]: c for c in report["checks"]}
    assert by_name["largest force"]["passed"] is False
    assert by_name["NVE energy drift"]["summary"] == "skipped"
    with pytest.raises(ValueError, match="max_ratio_typo"):
        Thresholds.model_validate({"max_ratio_typo": 1})
    with pytest.raises(ValueError):
        ReportSettings(nve_ps=-1)


def test_validate_cli(tmp_path, capsys):
    test_file = tmp_path / "test.xyz"
    _cu_set(3, 4).write(test_file)
    cfg = tmp_path / "report.yaml"
    cfg.write_text(
        "thresholds:\n  max_force_ev_per_a: 20\nsettings:\n"
        + "".join(
            f"  {k}: {str(v).lower() if isinstance(v, bool) else v}\n"
            for k, v in FAST.items()
            if k not in ("nve_ps", "rdf_ps")  # a key given twice is refused
        )
        + "  rdf_ps: 0\n"
    )
    rc = main(
        [
            "validate",
            "emt",
            "--test",
            str(test_file),
            "--out",
            str(tmp_path / "rep"),
            "--config",
            str(cfg),
            "--nve-ps",
            "0.04",
            "--no-progress",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "[PASS] NVE energy drift" in out and "report.html" in out
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert data["thresholds"]["max_force_ev_per_a"] == 20
    assert data["settings"]["nve_ps"] == 0.04


def test_validate_cli_bad_input(tmp_path, capsys):
    rc = main(
        ["validate", "emt", "--test", str(tmp_path / "missing.xyz"), "--out", str(tmp_path / "r")]
    )
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("error:") and "missing.xyz" in err
    si = Dataset([label_with(bulk("Si", "diamond", a=5.43, cubic=True), resolve_sw())])
    si.write(tmp_path / "si.xyz")
    rc = main(
        [
            "validate",
            "emt",
            "--test",
            str(tmp_path / "si.xyz"),
            "--out",
            str(tmp_path / "r"),
            "--nve-ps",
            "0",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1 and "Si" in err and "Traceback" not in err
    bad_cfg = tmp_path / "bad.yaml"
    bad_cfg.write_text("thresholds:\n  max_drift: 1\n")
    rc = main(
        [
            "validate",
            "emt",
            "--test",
            str(tmp_path / "si.xyz"),
            "--out",
            str(tmp_path / "r"),
            "--config",
            str(bad_cfg),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1 and "max_drift" in err


def resolve_sw():
    from matloop.calculators import resolve_calculator

    return resolve_calculator("sw")


def test_largest_force_limit_follows_the_reference_data(tmp_path):
    """Forces the reference data itself has are not absurd: the default 10 eV/Å limit rises to
    1.5 × the test set's largest reference |F|; a limit the user sets stands."""
    frames = []
    for seed in range(2):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
        atoms.rattle(0.2, seed=seed)  # EMT forces up to ~14 eV/Å
        frames.append(label_with(atoms, EMT()))
    test = Dataset(frames)
    settings = {**FAST, "nve_ps": 0.0, "n_physics_structures": 0}

    def largest(thresholds=None):
        report = build_report(
            EMT(), test, out_dir=tmp_path / ("set" if thresholds else "default"), settings=settings,
            thresholds=thresholds,
        )  # fmt: skip
        return next(c for c in report["checks"] if c["name"] == "largest force")

    check = largest()
    assert check["value"] > 10 and check["passed"] is True
    assert check["threshold"] == pytest.approx(1.5 * check["value"])  # the model is EMT itself
    with pytest.warns(UserWarning, match="largest force"):
        check = largest(Thresholds(max_force_ev_per_a=10.0))
    assert check["passed"] is False and check["threshold"] == 10.0


def test_validate_cli_raises_the_default_force_limit_but_keeps_max_force(tmp_path):
    """`matloop validate` without --max-force follows the reference data; --max-force stands."""
    from ase.io import write

    frames = []
    for seed in range(2):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
        atoms.rattle(0.2, seed=seed)  # EMT forces up to ~14 eV/Å
        frames.append(label_with(atoms, EMT()))
    write(tmp_path / "t.xyz", frames)

    def largest(name, *extra):
        argv = ["validate", "emt", "--test", str(tmp_path / "t.xyz"), "--out", str(tmp_path / name)]
        assert main([*argv, "--nve-ps", "0", "-q", *extra]) == 0
        report = json.loads((tmp_path / name / "report.json").read_text())
        return next(c for c in report["checks"] if c["name"] == "largest force")

    assert largest("default")["passed"] is True
    assert largest("set", "--max-force", "10")["passed"] is False
