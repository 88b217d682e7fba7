"""Dask for real: a LocalCluster that loses a worker mid-batch still yields every label exactly
once; the SLURM job script is one that sbatch and dask-worker accept; configs are validated."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
import uuid

import pytest
from ase.build import bulk
from pydantic import ValidationError

from matloop.active.state import RunState
from matloop.execution import ExecutionConfig, SlurmConfig, make_executor
from matloop.labelling.calculator import make_labeller


class _SlowEMT:
    """Label with real EMT, after `delay_s` of 'work'; leave one marker file per completion."""

    def __init__(self, marker_dir: str, delay_s: float) -> None:
        self.labeller = make_labeller("emt")
        self.marker_dir = marker_dir
        self.delay_s = delay_s

    def __call__(self, atoms):
        time.sleep(self.delay_s)
        result = self.labeller.label(atoms)
        key = atoms.info["matloop_key"]
        open(os.path.join(self.marker_dir, f"{key}.{uuid.uuid4().hex[:8]}"), "w").close()
        return result


def _candidates(n: int) -> list:
    out = []
    for i in range(n):
        atoms = bulk("Cu", cubic=True) * (2, 1, 1)
        atoms.rattle(0.05, seed=i)
        out.append((f"c{i:03d}", atoms, {"origin": "test"}))
    return out


@pytest.mark.slow
def test_killed_worker_mid_batch_every_label_exactly_once(tmp_path):
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    markers = tmp_path / "computed"
    markers.mkdir()
    state = RunState(tmp_path / "state.db")
    state.write_selection(0, _candidates(12), {})
    pending = state.pending(0)
    keys = [k for k, _ in pending]
    with make_executor("local:2") as ex:
        pids = ex.client.run(os.getpid)
        assert len(pids) == 2
        killed_tasks = None
        for n_done, (i, result) in enumerate(
            ex.map_unordered(_SlowEMT(str(markers), 0.5), [a for _, a in pending]), start=1
        ):
            state.record_label(keys[i], 0, result)
            if n_done == 2 and killed_tasks is None:
                processing = ex.client.processing()
                victim = max(processing, key=lambda a: len(processing[a]))
                held = ex.client.has_what().get(victim, ())
                killed_tasks = len(processing[victim]) + len(held)
                os.kill(pids[victim], signal.SIGKILL)
        assert killed_tasks is not None and killed_tasks >= 1
    labels = state.label_keys()
    assert sorted(labels) == sorted(keys)  # every label once: none lost, none doubled
    assert state.count(kind="quarantine") == 0
    assert state.pending(0) == []
    computed = [p.name.split(".")[0] for p in markers.iterdir()]
    assert set(computed) == set(keys)
    recomputed = len(computed) - len(keys)
    print(f"killed worker held {killed_tasks} task(s); {recomputed} computed again")
    assert 0 <= recomputed <= killed_tasks
    # a late duplicate delivery (e.g. a recomputed task) is refused by the database
    state.record_label(keys[0], 0, make_labeller("emt").label(pending[0][1]))
    assert state.count(kind="label") == len(keys)


def test_local_n_runs_real_labels_on_a_local_cluster():
    structures = [a for _, a, _ in _candidates(3)]
    with make_executor("local:1") as ex:
        assert ex.name == "dask" and ex.n_workers == 1
        results = dict(ex.map_unordered(make_labeller("emt").label, structures))
    assert sorted(results) == [0, 1, 2] and all(r.ok for r in results.values())


def test_execution_config_validation():
    assert ExecutionConfig(scheduler="local:4").scheduler == "local:4"
    assert ExecutionConfig(scheduler="tcp://10.0.0.1:8786").scheduler == "tcp://10.0.0.1:8786"
    for bad in (
        {"scheduler": "local:0"},
        {"scheduler": "local"},
        {"scheduler": "local:2", "cluster": "slurm"},
        {"cluster": "pbs"},
        {"slurm": {"walltime": "2 hours"}},
        {"slurm": {"memory": "lots"}},
        {"slurm": {"job_extra": ["qos=normal"]}},
        {"slurm": {"cores": 0}},
        {"slurm": {"partition": "x"}},
    ):
        with pytest.raises(ValidationError):
            ExecutionConfig.model_validate(bad)


# sbatch options dask-jobqueue may write, and the value each must have (None: a flag)
_SBATCH = {
    "-J": r"[\w.-]+",
    "-p": r"[\w,-]+",
    "-A": r"[\w-]+",
    "-n": r"\d+",
    "--cpus-per-task": r"\d+",
    "--mem": r"\d+[KMGT]?",
    "-t": r"(\d+-)?\d+:\d\d(:\d\d)?",
    "--qos": r"\w+",
    "--constraint": r"[\w&|]+",
    "-e": r"\S+",
    "-o": r"\S+",
}


def test_slurm_job_script_is_what_sbatch_and_dask_worker_accept(tmp_path):
    pytest.importorskip("dask_jobqueue")
    import re

    from distributed.cli.dask_worker import main as dask_worker

    from matloop.execution.slurm import slurm_job_script

    cfg = SlurmConfig(
        cores=8,
        processes=2,
        memory="16GB",
        walltime="1-02:00:00",
        queue="compute",
        account="proj-1",
        job_extra=["--qos=normal"],
        prologue=["module load vasp"],
        log_directory=str(tmp_path / "logs"),
    )
    script = slurm_job_script(cfg)
    path = tmp_path / "job.sh"
    path.write_text(script)
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0  # valid shell
    lines = script.splitlines()
    assert lines[0].startswith("#!")
    directives = [ln for ln in lines if ln.startswith("#SBATCH")]
    # sbatch stops reading directives at the first command: all must come before it
    first_cmd = next(i for i, ln in enumerate(lines[1:], 1) if ln and not ln.startswith("#"))
    assert all(lines.index(d) < first_cmd for d in directives)
    seen = {}
    for d in directives:
        opt = d.split(None, 1)[1]
        name, _, value = opt.partition("=") if opt.startswith("--") else opt.partition(" ")
        assert name in _SBATCH, f"unexpected sbatch option {name}"
        assert re.fullmatch(_SBATCH[name], value.strip()), d
        seen[name] = value.strip()
    assert seen["-p"] == "compute" and seen["-A"] == "proj-1" and seen["--qos"] == "normal"
    assert seen["--cpus-per-task"] == "8" and seen["-t"] == "1-02:00:00"
    assert int(seen["--mem"].rstrip("G")) in (14, 15, 16)
    assert "module load vasp" in script and "export OMP_NUM_THREADS=4" in script
    # the worker command line parses with dask-worker's own CLI
    cmd = shlex.split(next(ln for ln in lines if "dask_worker" in ln))
    args = cmd[cmd.index("distributed.cli.dask_worker") + 1 :]
    ctx = dask_worker.make_context("dask-worker", args)
    assert ctx.params["nthreads"] == 1 and ctx.params["n_workers"] == "2"
    assert ctx.params["nanny"] is True


def test_unreachable_scheduler_fails_in_one_line():
    from matloop.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot reach"):
        make_executor("tcp://127.0.0.1:9", timeout_s=1.0)


@pytest.fixture
def slurm_conf(monkeypatch):
    conf = os.environ.get("MATLOOP_TEST_SLURM_CONF")
    if not conf:
        pytest.skip(
            "no SLURM cluster: set MATLOOP_TEST_SLURM_CONF (CI starts one with .ci/slurm.sh)"
        )
    pytest.importorskip("dask_jobqueue")
    monkeypatch.setenv("SLURM_CONF", conf)
    return conf


@pytest.mark.slow
def test_labels_on_a_real_slurm_cluster(slurm_conf, tmp_path):
    cfg = ExecutionConfig(
        cluster="slurm",
        slurm=SlurmConfig(
            cores=1,
            processes=1,
            memory="1GB",
            walltime="00:10:00",
            queue="compute",
            jobs=1,
            log_directory=str(tmp_path / "logs"),
        ),
    )
    structures = [a for _, a, _ in _candidates(4)]
    with make_executor(config=cfg) as ex:
        ex.client.wait_for_workers(1, timeout=180)
        jobs = subprocess.run(["squeue", "-h", "-o", "%j %T"], capture_output=True, text=True)
        assert "dask-worker RUNNING" in jobs.stdout
        results = dict(ex.map_unordered(make_labeller("emt").label, structures))
        hosts = ex.client.run(lambda: os.environ.get("SLURM_JOB_ID"))
    assert sorted(results) == [0, 1, 2, 3] and all(r.ok for r in results.values())
    assert all(job_id for job_id in hosts.values())  # the workers ran inside SLURM jobs
    for _ in range(30):  # the job is cancelled when the executor closes
        out = subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout
        if "dask-wor" not in out:
            break
        time.sleep(1)
    assert "dask-wor" not in out
