"""Active-learning strategy pieces: σ interface and calibration, batch selection, start
generators, MD observers (walker stops, temperature ramps) and `matloop md --max-uncertainty`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import read, write
from helpers.al_models import emt_lj_committee

from matloop.active.explorers import (
    FoundationMDStarts,
    InterstitialStarts,
    NEBStarts,
    RandomPackingStarts,
    StrainStarts,
    StrategyConfig,
    SurfaceStarts,
    VacancyStarts,
    initial_structures,
)
from matloop.active.select import dopt_greedy, sigma_fps, vopt_greedy
from matloop.calculators.uncertainty import (
    CalibrationData,
    calibration_data,
    calibration_metrics,
    fit_scale,
    predict_uncertainty,
    uncertainty_kind,
)
from matloop.cli import main
from matloop.data import label_with
from matloop.errors import ConfigError
from matloop.md import run_md

SMALL_ACE = {"correlation_order": 3, "max_degree": 10.0, "max_l": 3}


def _cu():
    return bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 2, 2)


def test_uncertainty_interface_and_calibration_on_a_committee():
    comm = emt_lj_committee()
    assert uncertainty_kind(comm) == "forces" and uncertainty_kind(EMT()) is None
    atoms = _cu()
    atoms.rattle(0.1, seed=1)
    unc = predict_uncertainty(comm, atoms, scale=2.0)
    assert unc.atoms.shape == (32,) and unc.structure == pytest.approx(unc.atoms.max())
    assert unc.structure == pytest.approx(2.0 * predict_uncertainty(comm, atoms).structure)
    labelled = []
    for seed in range(3):
        a = _cu()
        a.rattle(0.05 * (seed + 1), seed=seed)
        labelled.append(label_with(a, EMT()))
    data = calibration_data(comm, labelled)
    assert data.errors.shape == (3 * 32 * 3,) and data.rank_sigmas.shape == (3 * 32,)
    scale = fit_scale(data)
    assert scale > 0 and np.isfinite(scale)
    # the fitted scale makes the mean squared z exactly 1
    assert np.mean((data.errors / (scale * data.sigmas)) ** 2) == pytest.approx(1.0)


def test_fit_scale_coverage_and_rank_correlation_on_known_errors():
    rng = np.random.default_rng(0)
    sigma = rng.uniform(0.01, 1.0, 20000)
    errors = 2.0 * sigma * rng.normal(size=sigma.size)  # σ too small by a factor 2
    data = CalibrationData("energy", errors, sigma, np.abs(errors), sigma)
    assert fit_scale(data) == pytest.approx(2.0, rel=0.03)
    assert calibration_metrics(data, 1.0)["coverage_95"] == pytest.approx(0.68, abs=0.02)
    m = calibration_metrics(data, fit_scale(data))
    assert m["coverage_95"] == pytest.approx(0.95, abs=0.01)
    assert m["spearman"] > 0.5
    shuffled = CalibrationData("energy", errors, sigma, np.abs(errors), rng.permutation(sigma))
    assert abs(calibration_metrics(shuffled)["spearman"]) < 0.05


def test_dopt_picks_new_directions_not_repeats():
    eye = np.eye(4)
    known = [eye[[0, 1]]]  # environments along features 0 and 1 are in the training set
    candidates = [eye[[0]], eye[[2]], 1.01 * eye[[2]], eye[[3]], eye[[1]]]
    picks = dopt_greedy(candidates, known, 2)
    assert sorted(picks) in ([1, 3], [2, 3])
    # without the training set, the known directions are as good as any
    assert len(dopt_greedy(candidates, [], 5)) == 5


def test_vopt_picks_what_the_pool_needs_where_dopt_picks_the_outlier():
    eye = np.eye(4)
    known = [eye[[0, 1]]]
    pool = np.vstack([np.tile(eye[[2]], (20, 1)), eye[[3]]])  # the walkers mostly visit 2
    candidates = [eye[[0]], eye[[2]], 3.0 * eye[[3]]]  # 3: a rare, extreme environment
    assert dopt_greedy(candidates, known, 1) == [2]
    assert vopt_greedy(candidates, known, pool, 1) == [1]
    assert vopt_greedy(candidates, known, pool, 2) == [1, 2]  # then the rest of the pool


def test_vopt_on_a_model_and_the_trust_level(tiny_cu_model):
    import matloop
    from matloop.active.loop import _within
    from matloop.active.select import select_candidates

    model = matloop.load(tiny_cu_model)
    snaps = []
    for k in range(5):
        a = _cu()
        a.rattle(0.03 * (k + 1), seed=k)
        snaps.append(a)
    sigma = [0.1] * 5
    picks = select_candidates(snaps, sigma, threshold=0.0, max_n=2, calc=model, method="vopt")
    assert len(set(picks)) == 2 and all(0 <= i < 5 for i in picks)
    auto = select_candidates(snaps, sigma, threshold=0.0, max_n=2, calc=model, method="auto")
    assert auto == select_candidates(
        snaps, sigma, threshold=0.0, max_n=2, calc=model, method="sigma_fps"
    )  # a network's default: σ × diversity
    assert _within([0.1, 0.5, 0.2], 0.3) == [0, 2]
    assert _within([0.5, 0.4], 0.3) == [0, 1]  # none within: all stay candidates
    assert _within([0.5], None) == [0]


def test_auto_selection_is_d_optimal_for_a_linear_model(tmp_path):
    import matloop
    from matloop.active.select import select_candidates
    from matloop.data import Dataset
    from matloop.training import TrainConfig, train
    from matloop.training.config import parse_config

    labels = []
    for seed in range(2):
        a = _cu()
        a.rattle(0.05, seed=seed)
        labels.append(label_with(a, EMT()))
    cfg = parse_config({"model": {"family": "ace", "params": SMALL_ACE}}, TrainConfig, "test")
    model = matloop.load(train(Dataset(labels), tmp_path, config=cfg, progress=False).model_path)
    snaps = []
    for k in range(6):
        a = _cu()
        a.rattle(0.04 * (k + 1), seed=10 + k)
        snaps.append(a)
    sigma = [0.1] * 6
    kw = {"threshold": 0.0, "max_n": 2, "calc": model}
    dopt = select_candidates(snaps, sigma, method="dopt", **kw)
    assert select_candidates(snaps, sigma, method="auto", **kw) == dopt
    assert dopt != select_candidates(snaps, sigma, method="sigma_fps", **kw)


def test_interstitial_and_surface_starts():
    rng = np.random.default_rng(0)
    start = _cu()
    for a in InterstitialStarts(rattle=0.0).generate([start], 2, rng):
        assert len(a) == 33 and a[-1].symbol == "Cu"
        d = a.get_distances(32, list(range(32)), mic=True)
        assert d.min() > 1.6  # an open (octahedral: a/2 = 1.8 Å) site, not on top of an atom
    slab = SurfaceStarts(vacuum=8.0, rattle=0.0).generate([start], 1, rng)[0]
    assert len(slab) == 32 and slab.cell[2, 2] == pytest.approx(start.cell[2, 2] + 8.0)
    z = np.sort(slab.positions[:, 2])
    assert z.min() >= 3.9 and z.max() <= slab.cell[2, 2] - 3.9  # vacuum on both sides
    assert np.diff(z).max() < 2.0  # one slab, no gap inside


def test_neb_starts_follow_a_vacancy_hop(tmp_path):
    start = _cu()
    site = start.positions[0].copy()
    del start[0]
    hop = int(np.argmin(np.linalg.norm(start.positions - site, axis=1)))
    final = start.copy()
    final.positions[hop] = site
    write(tmp_path / "a.xyz", start)
    write(tmp_path / "b.xyz", final)
    gen = NEBStarts(
        initial=str(tmp_path / "a.xyz"),
        final=str(tmp_path / "b.xyz"),
        images=3,
        calculator="emt",
        steps=30,
    )
    images = gen.generate([], 3, np.random.default_rng(0))
    assert len(images) == 3 and all(a.calc is None for a in images)
    path = [start.positions[hop]] + [a.positions[hop] for a in images] + [site]
    assert np.all(np.diff([np.linalg.norm(p - start.positions[hop]) for p in path]) > 0)
    energies = []
    for a in [start, images[1], final]:
        a = a.copy()
        a.calc = EMT()
        energies.append(a.get_potential_energy())
    assert energies[1] > max(energies[0], energies[2]) + 0.1  # a barrier, eV
    write(tmp_path / "c.xyz", _cu())
    bad = NEBStarts(initial=str(tmp_path / "a.xyz"), final=str(tmp_path / "c.xyz"), images=1)
    with pytest.raises(ConfigError, match="same atoms"):
        bad.generate([], 1, np.random.default_rng(0))


def test_sigma_fps_prefers_uncertain_then_far():
    x = np.array([[0.0, 0.0], [0.01, 0.0], [5.0, 5.0], [-5.0, 5.0]])
    sigma = np.array([1.0, 0.99, 0.5, 0.2])
    picks = sigma_fps(x, sigma, 3)
    assert picks[0] == 0 and 1 not in picks[:2]  # the near-duplicate of the first waits
    assert set(picks) == {0, 2, 3}


def test_start_generators_make_what_they_say():
    rng = np.random.default_rng(0)
    start = _cu()
    strained = StrainStarts(max_strain=0.05).generate([start], 3, rng)
    assert all(not np.allclose(a.cell, start.cell) for a in strained)
    vac = VacancyStarts(n_vacancies=2).generate([start], 2, rng)
    assert [len(a) for a in vac] == [30, 30]
    packed = RandomPackingStarts(min_distance=1.8).generate([start], 2, rng)
    for a in packed:
        d = a.get_all_distances(mic=True)[np.triu_indices(len(a), 1)]
        assert d.min() >= 1.8 and len(a) == 32
    with pytest.raises(ConfigError, match="min_distance"):
        RandomPackingStarts(min_distance=3.0, max_tries=50).generate([start], 1, rng)
    md = FoundationMDStarts(
        model="emt", temperatures=[800.0], steps=30, timestep_fs=4.0, sample_interval=5
    )
    mixed = initial_structures([md, StrainStarts(weight=2.0)], [start], 6, rng)
    assert [a.info["explorer"] for a in mixed].count("foundation_md") == 2
    assert [a.info["explorer"] for a in mixed].count("strain") == 4
    assert all(a.calc is None and not a.constraints for a in mixed)
    with pytest.raises(ValueError, match="extra"):
        StrategyConfig.model_validate({"starts": [{"kind": "strain", "typo": 1}]})


def test_run_md_observer_stops_and_ramp_heats():
    seen = []

    def observe(step, atoms):
        seen.append(step)
        return "enough" if step >= 30 else None

    res = run_md(
        _cu(),
        EMT(),
        "nvt",
        temperature_k=300.0,
        timestep_fs=2.0,
        steps=100,
        progress=False,
        observe=observe,
        observe_interval=10,
    )
    assert seen == [10, 20, 30] and res.steps == 30 and res.extra["stopped"] == "enough"
    ramp = run_md(
        _cu(),
        EMT(),
        "nvt",
        temperature_k=100.0,
        temperature_end_k=1500.0,
        timestep_fs=4.0,
        steps=250,
        progress=False,
        friction_per_fs=0.05,
        log_interval=50,
    )
    assert ramp.extra["stopped"] == "steps"
    assert ramp.temperature_k[-1] > 3 * ramp.temperature_k[1]


def test_md_cli_max_uncertainty_stops_and_writes_the_frame(tmp_path, capsys):
    path = tmp_path / "cu.xyz"
    write(path, _cu())
    frame = tmp_path / "bad.xyz"
    args = [
        "md",
        "helpers.al_models:emt_lj_committee",
        str(path),
        "-e",
        "nvt",
        "-T",
        "600",
        "--steps",
        "60",
        "--timestep",
        "2",
        "--no-progress",
        "--max-uncertainty",
        "0.05",
        "--uncertainty-interval",
        "5",
        "--uncertain-frame",
        str(frame),
    ]
    rc = main(args)
    err = capsys.readouterr().err
    assert rc != 0 and "exceeds --max-uncertainty 0.05" in err and str(frame) in err
    assert len(err.strip().splitlines()) == 1
    bad = read(frame)
    assert bad.info["sigma"] > 0.05 and bad.info["md_step"] == 5
    assert bad.arrays["sigma"].shape == (32,)
    first = frame.read_bytes()
    rc = main(args)  # the frame of the first run is not overwritten, unless --force
    err = capsys.readouterr().err
    assert rc != 0 and "exists" in err and "--force" in err and frame.read_bytes() == first
    assert main([*args, "--force"]) != 0  # stopped again, the frame written anew
    assert (
        "exceeds --max-uncertainty" in capsys.readouterr().err and read(frame).info["sigma"] > 0.05
    )
    rc = main(["md", "emt", str(path), "--steps", "5", "--no-progress", "--max-uncertainty", "0.1"])
    assert rc != 0 and "needs a model with an uncertainty" in capsys.readouterr().err


@pytest.mark.slow
def test_loop_with_one_ace_model_calibrates_and_reports(tmp_path):
    """A single linear model with its posterior σ: D-optimal picks, calibration per iteration,
    the report shows it, and the final model is one calculator with σ."""
    import json

    import matloop
    from matloop.active.config import ActiveLearningConfig
    from matloop.active.loop import run_active_learning

    write(tmp_path / "start.xyz", _cu())
    test = []
    for seed in range(2):
        a = _cu()
        a.rattle(0.1, seed=100 + seed)
        test.append(label_with(a, EMT()))
    write(tmp_path / "test.xyz", test)
    cfg = {
        "reference": {"calculator": "emt"},
        "initial": {"structures": str(tmp_path / "start.xyz"), "n_label": 3},
        "explore": {
            "temperatures": [900.0],
            "steps": 10,
            "timestep_fs": 4.0,
            "walkers": 2,
            "sample_interval": 5,
        },
        "select": {"threshold": 0.0, "max_per_iteration": 2},
        "model": {"family": "ace", "committee": 1, "train": {"model": {"params": SMALL_ACE}}},
        "budget": {"max_labels": 20},
        "stop": {"max_iterations": 1},
        "test": {"data": str(tmp_path / "test.xyz")},
        "strategy": {
            "starts": [{"kind": "strain"}, {"kind": "vacancy"}],
            "walker_stop_factor": 20.0,
            "ramp_from_k": 300.0,
            "selection": "auto",
        },
    }
    report = run_active_learning(
        ActiveLearningConfig.model_validate(cfg), tmp_path / "run", progress=False
    )
    its = report["iterations"]
    assert [r["n_labels"] for r in its] == [3, 5]
    assert its[0]["selected_from"] == {"strain": 2, "vacancy": 1}
    assert all(k.startswith("md ") for k in its[1]["selected_from"])
    for r in its[1:]:
        assert r["new_labels_coverage_95"] is not None and r["sigma_kind"] == "forces"
        assert r["sigma_scale"] > 0 and r["walker_limit"] > 0
        assert 0 <= r["test_coverage_95"] <= 1 and -1 <= r["test_sigma_spearman"] <= 1
        assert r["explore_seconds"] > 0 and r["fit_seconds"] > 0
    html = (tmp_path / "run" / "report.html").read_text()
    assert "Calibration of σ" in html and "95 % coverage" in html
    assert json.loads((tmp_path / "run" / "report.json").read_text())["n_labels"] == 5
    calc = matloop.load(tmp_path / "run")  # the run directory gives its final model
    assert "forces_std" in calc.implemented_properties
    assert report["final_model"] == str(tmp_path / "run")
    assert calc.path.resolve() == Path(report["final_committee"][0]).resolve()


def test_run_directory_loads_a_committee_as_one_calculator(tmp_path, tiny_cu_model):
    import json
    import shutil

    import matloop
    from matloop.calculators.committee import CommitteeCalculator

    for k in range(2):
        shutil.copy(tiny_cu_model, tmp_path / f"m{k}.pt")
    record = {"models": ["m0.pt", "m1.pt"], "sigma_scale": 2.5, "sigma_kind": "forces"}
    (tmp_path / "final_model.json").write_text(json.dumps(record))
    calc = matloop.load(tmp_path)
    assert isinstance(calc, CommitteeCalculator) and len(calc) == 2
    assert calc.forces_scale == 2.5 and calc.energy_scale == 1.0


@pytest.mark.slow
def test_md_learn_labels_refits_and_resumes(tmp_path, capsys):
    """`matloop md --learn`: σ above the threshold → label, refit, continue; a rerun resumes."""
    import json

    from matloop.data import Dataset
    from matloop.training import TrainConfig, train
    from matloop.training.config import parse_config

    labels = []
    for seed in range(2):
        a = _cu()
        a.rattle(0.05, seed=seed)
        labels.append(label_with(a, EMT()))
    write(tmp_path / "labels.xyz", labels)
    cfg = parse_config({"model": {"family": "ace", "params": SMALL_ACE}}, TrainConfig, "test")
    model = train(Dataset(labels), tmp_path / "ace", config=cfg, progress=False).model_path
    write(tmp_path / "cu.xyz", _cu())
    otf = tmp_path / "otf"
    base = [
        "md",
        str(model),
        str(tmp_path / "cu.xyz"),
        "-e",
        "nvt",
        "-T",
        "1200",
        "--timestep",
        "4",
        "--no-progress",
        "--learn",
        "--reference",
        "emt",
        "--train-data",
        str(tmp_path / "labels.xyz"),
        "--learn-dir",
        str(otf),
        "--max-uncertainty",
        "0.002",
        "--uncertainty-interval",
        "10",
    ]
    assert main([*base, "--steps", "30"]) == 0
    first = json.loads((otf / "state.json").read_text())
    assert first["step"] == 30 and first["events"], "σ passed the threshold: labels added"
    n_first = len(read(otf / "labels.xyz", ":"))
    assert n_first == 2 + len(first["events"])
    assert main([*base, "--steps", "60"]) == 0  # the same command, longer: resumes at 30
    second = json.loads((otf / "state.json").read_text())
    assert second["step"] == 60 and second["events"][: len(first["events"])] == first["events"]
    assert len(second["log"]) == 6 and second["log"][3][0] > first["log"][-1][0]
    out = capsys.readouterr().out
    assert "on-the-fly: 60 steps" in out
    rc = main(["md", str(model), str(tmp_path / "cu.xyz"), "--learn", "--no-progress"])
    assert rc != 0 and "--reference" in capsys.readouterr().err
