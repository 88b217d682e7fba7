"""Benchmark scripts never clobber an output: they refuse an existing one before any work
(unless --force), check paths first, write atomically, and resuming scripts say what they
resume from (benchmarks/_output.py)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from matloop.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
spec = importlib.util.spec_from_file_location("_bench_output", BENCH / "_output.py")
output = importlib.util.module_from_spec(spec)
spec.loader.exec_module(output)

OLD = '{"old": true}\n'


def _script(name: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    # a broken check would start the benchmark itself: the timeout keeps that failure short
    return subprocess.run(
        [sys.executable, str(BENCH / name), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_check_output_names_the_bad_path_and_the_way_out(tmp_path):
    old = tmp_path / "old.json"
    old.write_text(OLD)
    with pytest.raises(ConfigError, match=r"--json .*old\.json already exists; pass --force"):
        output.check_output(old, "--json")
    assert output.check_output(old, "--json", may_exist=True) == old
    with pytest.raises(ConfigError, match="is a folder"):
        output.check_output(tmp_path, "--json", may_exist=True)
    with pytest.raises(ConfigError, match=r"folder .*missing does not exist"):
        output.check_output(tmp_path / "missing" / "new.json", "--plot")
    assert output.check_output(tmp_path / "new.json", "--json") == tmp_path / "new.json"
    with pytest.raises(ConfigError, match=r"--plot .*figure\b.*\.png"):
        output.check_output(tmp_path / "figure", "--plot")  # matplotlib could not save it


def test_check_outputs_exits_with_one_line_and_skips_unasked_outputs(tmp_path, capsys):
    old = tmp_path / "old.png"
    old.write_text("png")
    output.check_outputs([("--json", None), ("--plot", old)], force=True)
    with pytest.raises(SystemExit) as stop:
        output.check_outputs([("--json", tmp_path / "new.json"), ("--plot", old)])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --plot ")


def test_resumes_from_an_existing_file_unless_forced(tmp_path):
    state = tmp_path / "state.json"
    assert not output.resumes_from(state, "--json")
    state.write_text(OLD)
    assert output.resumes_from(state, "--json")
    assert not output.resumes_from(state, "--json", force=True)
    assert output.read_json(state, "--json") == {"old": True}


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.json"
    target.write_text(OLD)
    with pytest.raises(RuntimeError), output.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("cut")
    assert target.read_text() == OLD
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
    output.atomic_write_text(target, "new\n")
    assert target.read_text() == "new\n" and len(list(tmp_path.iterdir())) == 1


@pytest.mark.parametrize(
    "script, args",
    [
        ("design_speed.py", ["--sizes", "10", "--json"]),
        ("pool_threads.py", ["--repeats", "1", "--json"]),
        ("eos.py", ["--json"]),
        ("trust_checks.py", ["--out"]),
        ("mlearn.py", ["--element", "Cu", "--json"]),
    ],
)
def test_scripts_refuse_an_existing_output_before_any_work(tmp_path, script, args):
    old = tmp_path / "old.json"
    old.write_text(OLD)
    proc = _script(script, *args, str(old))
    assert proc.returncode == 2, proc.stderr[-500:]
    assert proc.stderr.count("\n") == 1 and "already exists; pass --force" in proc.stderr
    assert proc.stdout == "" and old.read_text() == OLD


def test_scripts_check_output_folders_before_any_work(tmp_path):
    proc = _script("al_onthefly.py", "--json", str(tmp_path / "nowhere" / "out.json"))
    assert proc.returncode == 2 and "nowhere does not exist" in proc.stderr
    proc = _script("glass.py", "--json", str(tmp_path))
    assert proc.returncode == 2 and "is a folder" in proc.stderr
    # fold runs of glass.py also write <json>.oof.npz: that one is not overwritten either
    (tmp_path / "g.json.oof.npz").write_bytes(b"old")
    proc = _script("glass.py", "--json", str(tmp_path / "g.json"))
    assert proc.returncode == 2 and "g.json.oof.npz already exists" in proc.stderr


def test_force_overwrites_atomically(tmp_path):
    old = tmp_path / "old.json"
    old.write_text(OLD)
    args = ["--writers", "1", "--per-writer", "4", "--backends", "sqlite"]
    proc = _script("label_store.py", *args, "--data-dir", str(tmp_path / "in"), "--json", str(old))
    assert proc.returncode == 2 and old.read_text() == OLD
    proc = _script(
        "label_store.py", *args, "--data-dir", str(tmp_path / "in"), "--json", str(old), "--force"
    )
    assert proc.returncode == 0, proc.stderr[-500:]
    assert json.loads(old.read_text())["runs"]["sqlite"][0]["rows"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "old.json"]  # no temporaries


def test_a_resuming_script_says_what_it_resumes_from_and_keeps_it(tmp_path):
    data = tmp_path / "mlearn" / "Cu"
    data.mkdir(parents=True)
    for name in ("train.xyz", "test.xyz"):
        (data / name).write_text("")  # present; the kept row means nothing is fitted
    state = tmp_path / "peers.json"
    row = {
        "test": {"energy_mae_mev_per_atom": 1.0, "force_mae_ev_per_a": 0.1},
        "fit": {"wall_s": 1.0, "cpu_s": 1.0, "peak_rss_mb": 100.0},
        "marker": 7,
    }
    state.write_text(json.dumps({"elements": {"Cu": {"matloop": row}}}))
    proc = _script(
        "mlearn_peers.py",
        "--data-dir",
        str(tmp_path / "mlearn"),
        "--elements",
        "Cu",
        "--json",
        str(state),
    )
    first = proc.stdout.splitlines()[0] if proc.stdout else ""
    assert re.fullmatch(rf"resuming from {re.escape(str(state))}: .*Cu kept", first), proc.stderr
    assert json.loads(state.read_text())["elements"]["Cu"]["matloop"]["marker"] == 7


def test_every_script_with_an_output_uses_the_shared_rule():
    missing = []
    for path in sorted(BENCH.glob("*.py")):
        text = path.read_text()
        if path.name == "_output.py":
            continue
        if re.search(r'"--(json|out|plot)"', text) and not (
            "from _output import" in text and ("check_outputs" in text or "resumes_from" in text)
        ):
            missing.append(path.name)
    assert not missing, f"scripts writing outputs without benchmarks/_output.py: {missing}"
