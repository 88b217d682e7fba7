"""NPT on cells padded with vacuum (a slab in a cell periodic along a, b and c): active-learning
walkers run NVT there (was: NPT squeezed the vacuum out), ``matloop md`` warns in one line, and
the loop's progress line counts NPT and NVT walkers.

Real EMT copper; no physics is mocked.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from ase.build import bulk, fcc111
from ase.calculators.emt import EMT
from ase.io import write
from helpers.al_configs import tiny_al_config

from matloop.active.config import ExploreConfig, load_config
from matloop.active.explore import explore
from matloop.active.explorers import SurfaceStarts
from matloop.active.loop import ActiveLearner
from matloop.active.state import RunState
from matloop.calculators.committee import CommitteeCalculator
from matloop.cli import main
from matloop.md import run_md
from matloop.md.runner import VACUUM_GAP_A, vacuum_axes


def _bulk():
    return bulk("Cu", "fcc", a=3.61, cubic=True) * (2, 1, 1)


def _padded_slab():
    """What the 'surface' start generator makes: 8 Å of vacuum along c, pbc all True."""
    (slab,) = SurfaceStarts(vacuum=8.0, rattle=0.0).generate([_bulk()], 1, np.random.default_rng(0))
    assert slab.pbc.all()
    return slab


def test_vacuum_axes_finds_the_gap_of_padded_cells_only():
    assert vacuum_axes(_padded_slab()) == [2]
    assert vacuum_axes(_bulk()) == []
    rattled = _bulk() * (2, 2, 2)
    rattled.rattle(0.1, seed=0)  # atoms across the cell faces wrap: still no gap
    assert vacuum_axes(rattled) == []
    # a tilted cell (fcc111: a and b at 60°), padded along c; gap measured normal to the planes
    slab = fcc111("Cu", size=(2, 2, 3), a=3.61, vacuum=3.5)  # 7 Å of vacuum in total
    slab.pbc = True
    assert vacuum_axes(slab) == [2]
    assert vacuum_axes(slab, width=7.5) == []  # 7 Å + ½ interlayer spacing is not wider
    shifted = slab.copy()
    shifted.translate([0, 0, 6.0])  # the gap now wraps round the cell face
    assert vacuum_axes(shifted) == [2]
    assert VACUUM_GAP_A > 2.1  # wider than Cu's (111) plane spacing: bulk never counts


def test_walkers_from_a_padded_slab_run_nvt_and_keep_their_vacuum():
    cfg = ExploreConfig(
        temperatures=[300.0], steps=6, walkers=4, sample_interval=3, pressures_gpa=[5.0]
    )
    slab = _padded_slab()
    with pytest.warns(UserWarning) as caught:
        res = explore(
            [slab, _bulk()], CommitteeCalculator([EMT(), EMT()]), cfg, seed=0, iteration=0
        )
    said = [str(w.message) for w in caught if "padded with vacuum" in str(w.message)]
    assert len(said) == 1, said
    ensembles = set()
    for info in res.walkers:
        snaps = [s for s in res.snapshots if s.info["walker"] == info["walker"]]
        padded = len(snaps[0]) == len(slab) and bool(vacuum_axes(snaps[0]))
        ran = (info["ensemble"], info["pressure_gpa"], info["vacuum_axes"])
        if padded:
            assert ran == ("nvt", None, [2])
            for s in snaps:  # was: the barostat shrank c at 5 GPa
                np.testing.assert_allclose(s.cell.array, slab.cell.array)
        else:
            assert ran == ("npt", 5.0, [])
        ensembles.add(info["ensemble"])
    assert ensembles == {"npt", "nvt"}  # both kinds of start were drawn


def test_run_md_npt_on_a_padded_cell_warns_in_one_line(tmp_path, capsys):
    with pytest.warns(UserWarning, match=r"empty gap wider than 6 Å along c .* use NVT"):
        run_md(_padded_slab(), EMT(), "npt", 300.0, steps=2, progress=False, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a bulk cell: nothing to say
        run_md(_bulk(), EMT(), "npt", 300.0, steps=2, progress=False, seed=0)
    path = tmp_path / "slab.xyz"
    write(path, _padded_slab())
    args = ["md", "emt", str(path), "--ensemble", "npt", "--steps", "2", "--no-progress"]
    assert main(args) == 0  # warned, not refused
    lines = [x for x in capsys.readouterr().err.splitlines() if "empty gap" in x]
    assert len(lines) == 1 and lines[0].startswith("warning: NPT on Cu8"), lines


def test_progress_line_counts_npt_and_nvt_walkers(tmp_path, capsys):
    explore_keys = {"pressures_gpa": [0.0], "walkers": 4}
    path = tiny_al_config(
        tmp_path, atoms=[_bulk(), _padded_slab()], explore=explore_keys, stop={"max_iterations": 1}
    )
    with pytest.warns(UserWarning, match="padded with vacuum"):
        report = ActiveLearner(load_config(path), tmp_path / "run", progress=True).run()
    out = capsys.readouterr().out
    assert [r["iteration"] for r in report["iterations"]] == [0, 1]
    walkers = RunState(tmp_path / "run" / "state.db").selection_info(1)["walkers"]
    npt = sum(1 for w in walkers if w["ensemble"] == "npt")
    assert 0 < npt < 4  # both kinds ran
    line = next(x for x in out.splitlines() if "snapshots, max" in x)
    assert f"iteration 1: 4 walkers ({npt} NPT, {4 - npt} NVT), " in line, line
