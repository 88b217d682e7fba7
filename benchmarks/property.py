"""Benchmark matloop.property (crystal graph vs boosted trees) on real structure → property sets.

    python benchmarks/property.py --data-dir ../shared/data/crystals \
        --json benchmarks/results/property.json

Tasks (from the crystal data directory's three sets):
* Matbench v0.1 dielectric (n), phonons (last PhDOS peak, cm⁻¹), jdft2d (exfoliation energy,
  meV/atom): the official fold(s) (train on the other four folds, test on the fold), and a
  composition-grouped split of the same data.
* MP 2015 (FLLA) formation energy per atom (eV/atom) and on-hull classification: random and
  composition-grouped splits.
* Castelli perovskites (CDVAE val+test) metal/non-metal: random and composition-grouped splits.

Per run: test MAE/RMSE/R² (regression) or ROC-AUC/accuracy/F1 (classification), 95 % interval
coverage, OOD flag rate and precision (a flagged structure counts as a hit when its error is above
the 90th percentile of validation errors), training time, CPU time and the load average. The
machine is shared, so the graph network is trained under a wall-time cap (``--cgcnn-time``, per
ensemble member) and large training sets are subsampled (``--max-train``); both are recorded.
The JSON is rewritten after every run and runs already in it are skipped (resumable).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

#: Matbench v0.1 leaderboard: mean test MAE over the 5 official folds
#: (matbench.materialsproject.org, per-task leaderboards; quoted, not re-run here)
PUBLISHED = {
    "matbench_dielectric": {
        "CGCNN v2019": 0.5988,
        "ALIGNN": 0.3449,
        "MODNet v0.1.12": 0.2711,
        "Dummy (mean)": 0.8088,
    },
    "matbench_phonons": {
        "CGCNN v2019": 57.7635,
        "ALIGNN": 29.5385,
        "MODNet v0.1.12": 34.2751,
        "Dummy (mean)": 323.9822,
    },
    "matbench_jdft2d": {
        "CGCNN v2019": 49.2440,
        "ALIGNN": 43.4244,
        "MODNet v0.1.12": 33.1918,
        "Dummy (mean)": 67.2851,
    },
}

MATBENCH = {
    "matbench_dielectric": ("n", "1 (refractive index)"),
    "matbench_phonons": ("last_phdos_peak", "cm^-1"),
    "matbench_jdft2d": ("exfoliation_en", "meV/atom"),
}


TASKS = {
    **{k: (v[0], "regression") for k, v in MATBENCH.items()},
    "mp_flla_formation_energy": ("formation_energy_per_atom", "regression"),
    "mp_flla_is_on_hull": ("is_on_hull", "classification"),
    "castelli_is_metal": ("is_metal", "classification"),
}
FILES = {
    "matbench": "matbench_v0.1_dielectric_phonons_jdft2d/structures.extxyz.gz",
    "mp": "matminer041_mp2015_flla_elastic_dielectric/structures.jsonl.gz",
    "castelli": "castelli_perovskites_cdvae_perov5_val_test/structures.jsonl.gz",
}


@functools.cache
def _read(data_dir: Path, key: str):
    from matloop.property import read_dataset

    return read_dataset(data_dir / FILES[key])


def load_task(data_dir: Path, name: str) -> dict:
    """The dataset of task `name` (each file is read once and shared between tasks)."""
    target, task = TASKS[name]
    if name in MATBENCH:
        mb = _read(data_dir, "matbench")
        ds = mb.subset([i for i, t in enumerate(mb.properties["task"]) if t == name])
        ds.units[target] = MATBENCH[name][1]
    elif name.startswith("mp_flla"):
        mp = _read(data_dir, "mp")
        ds = mp.subset([i for i, s in enumerate(mp.properties["subset"]) if s == "flla_2015"])
    else:
        ds = _read(data_dir, "castelli")
    return {"data": ds, "target": target, "task": task}


def splits_of(name: str, ds, folds: list[int], seed: int = 0) -> dict[str, tuple]:
    from matloop.property import split

    out = {}
    if name.startswith("matbench"):
        fold = np.asarray(ds.properties["matbench_fold"], dtype=int)
        for f in folds:
            out[f"official_fold{f}"] = (np.flatnonzero(fold != f), np.flatnonzero(fold == f))
    else:
        out["random"] = split(ds, "random", 0.2, seed)
    out["composition"] = split(ds, "composition", 0.2, seed)
    return out


def _large_error(model, val, target):
    """Errors of `model` on `val` and the 90th percentile used to call an error large."""
    err = _errors(model, val, target)
    return float(np.quantile(err, 0.9))


def _errors(model, ds, target):
    if model.task == "classification":
        y = model._encode(ds)
        proba = model.predict_proba(ds)
        return 1.0 - proba[np.arange(len(y)), y]
    return np.abs(model.predict(ds) - ds.target(target))


def run_one(name, spec, split_name, idx, kind, args) -> dict:
    """One fit of `kind` (``gbt``, ``cgcnn`` or ``auto``: both, the better on validation)."""
    from matloop.property import fit_auto, make_model
    from matloop.property.metrics import ood_precision

    ds, target, task = spec["data"], spec["target"], spec["task"]
    tr, te = idx
    rng = np.random.default_rng(0)
    note = []
    if len(tr) > args.max_train:
        tr = np.sort(rng.choice(tr, args.max_train, replace=False))
        note.append(f"training set subsampled to {args.max_train}")
    train, test = ds.subset(tr), ds.subset(te)
    params: dict = {}
    if kind in ("cgcnn", "auto"):
        params = {
            "epochs": args.cgcnn_epochs,
            "max_time_s": args.cgcnn_time,
            "n_members": args.members,
            "mc_samples": args.mc_samples,
            "patience": 25,
            "batch_size": 64,
        }
        note.append(f"each of {args.members} members capped at {args.cgcnn_time:.0f} s")
    val_split = "composition" if split_name == "composition" else "random"
    shared = dict(target=target, task=task, split=val_split, seed=0)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    if kind == "auto":
        model = fit_auto(train, params={"cgcnn": params}, **shared)
    else:
        model = make_model(kind, params=params, **shared).fit(train)
    fit_wall = time.perf_counter() - wall0
    result = model.evaluate(test)
    val = train.subset([train.ids.index(i) for i in model.val_ids_])
    val = val.subset(val.has_value(target))
    test_l = test.subset(test.has_value(target))
    err = _errors(model, test_l, target)
    flags = model.ood_score(test_l) > model.ood_threshold_
    result["ood"] = ood_precision(flags, err, _large_error(model, val, target))
    result.update(
        task=name,
        target=target,
        unit=ds.unit(target),
        split=split_name,
        model=kind,
        n_train=model.n_train_,
        n_val=model.n_val_,
        n_test=len(test_l),
        train_time_s=model.train_time_s_,
        fit_wall_s=fit_wall,
        cpu_s=time.process_time() - cpu0,
        loadavg=os.getloadavg(),
        epochs=[len(h) for h in getattr(model, "history_", [])] or None,
        selection=getattr(model, "selection_", None),
        notes="; ".join(note),
    )
    if name in PUBLISHED:
        result["published_mae"] = PUBLISHED[name]
    return result


def table(results: dict) -> str:
    """Markdown table of the runs in `results` (the JSON this script writes)."""
    head = (
        "| task | split | model | n train/test | MAE or ROC-AUC | R² or acc. | 95 % cov. "
        "| OOD flagged / precision / base | train s | load | published (Matbench MAE) |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for r in results["runs"]:
        if "mae" in r:
            main_, second = f"{r['mae']:.4g} {r['unit']}", f"{r['r2']:.3f}"
            cov = f"{r['coverage_95']:.2f}"
        else:
            main_, second, cov = f"{r['roc_auc']:.3f}", f"{r['accuracy']:.3f}", "–"
        o = r["ood"]
        ood = f"{o['flag_rate']:.2f} / {o['precision']:.2f} / {o['base_rate']:.2f}"
        pub = ", ".join(f"{k} {v:g}" for k, v in r.get("published_mae", {}).items()) or "–"
        rows.append(
            f"| {r['task']} | {r['split']} | {r['model']} | {r['n_train']}/{r['n_test']} "
            f"| {main_} | {second} | {cov} | {ood} | {r['train_time_s']:.0f} "
            f"| {r['loadavg'][0]:.0f} | {pub} |"
        )
    return head + "\n".join(rows) + "\n"


def main(argv=None) -> None:
    from _output import add_force, announce_resume, read_json, resumes_from

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, help="the crystal data directory")
    p.add_argument("--json", type=Path, default=Path("benchmarks/results/property.json"))
    p.add_argument("--tasks", default="all", help="comma-separated task names or 'all'")
    p.add_argument("--models", default="gbt,cgcnn", help="comma-separated: gbt, cgcnn, auto")
    p.add_argument("--folds", default="0", help="official Matbench folds to run, e.g. 0,1,2,3,4")
    p.add_argument("--max-train", type=int, default=3000)
    p.add_argument("--cgcnn-time", type=float, default=60.0, help="s per ensemble member")
    p.add_argument("--cgcnn-epochs", type=int, default=200)
    p.add_argument("--members", type=int, default=2)
    p.add_argument("--mc-samples", type=int, default=4)
    p.add_argument("--no-grouped", action="store_true", help="skip the composition splits")
    p.add_argument("--table", action="store_true", help="print the JSON's markdown table, exit")
    add_force(p, help="start afresh instead of resuming the runs already in --json")
    args = p.parse_args(argv)
    if args.table:
        print(table(read_json(args.json, "--json")), end="")
        return
    if args.data_dir is None:
        p.error("--data-dir is required")
    # an existing --json is resumed: its finished (task, split, model) runs are kept
    resume = resumes_from(args.json, "--json", force=args.force)
    out = read_json(args.json, "--json") if resume else {"runs": []}
    if resume:
        announce_resume(args.json, f"{len(out.get('runs', []))} run(s) kept (--force: afresh)")

    import torch

    torch.set_num_threads(1)
    wanted = list(TASKS) if args.tasks == "all" else args.tasks.split(",")
    folds = [int(f) for f in args.folds.split(",")]
    done = {(r["task"], r["split"], r["model"]) for r in out["runs"]}
    out["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count()}
    out["settings"] = {k: str(v) for k, v in vars(args).items()}
    out["settings"]["data_dir"] = f"<data-dir>/{args.data_dir.name}"  # no machine paths
    # every task's primary split first, grouped splits after: a run cut short still covers all
    for grouped in (False,) if args.no_grouped else (False, True):
        for name in wanted:
            spec = load_task(args.data_dir, name)
            for split_name, idx in splits_of(name, spec["data"], folds).items():
                if (split_name == "composition") != grouped:
                    continue
                for kind in args.models.split(","):
                    if (name, split_name, kind) not in done:
                        out["runs"].append(run_one(name, spec, split_name, idx, kind, args))
                        _write(out, args.json)


def _write(out: dict, path: Path) -> None:
    r = out["runs"][-1]
    keys = ("mae", "r2", "coverage_95", "roc_auc", "accuracy", "balanced_accuracy", "train_time_s")
    print(
        r["task"], r["split"], r["model"], {k: round(r[k], 4) for k in keys if k in r}, flush=True
    )
    from _output import atomic_write_text

    atomic_write_text(path, json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
