"""Glass composition → Tg, nd, Abbe number: composition-grouped 5-fold CV (SciGlass-derived table).

Run from the repository root::

    nice -n 10 python benchmarks/glass.py --data-dir ../shared/data/glass \\
        --json benchmarks/results/glass_multitask.json

One set of grouped folds over every record (by ``comp_key``: replicates of a composition never
straddle train and test, and a composition tested for nd is not in training for Abbe or Tg
either). On identical folds, side by side:

* ``rf``: the anchor, random forest, 200 trees, the 24 mol % columns (as in the data README),
  one per property;
* ``hgb``: :class:`matloop.design.models.PropertyModel` (bagged gradient boosting on fractions +
  element statistics), one per property; hyper-parameters chosen and 95 % intervals calibrated
  (Gaussian) on an inner grouped validation split of each training fold;
* ``multitask``: ``PropertyModel(kind="multitask")``, one model for all properties (boosting
  beside shared-trunk multi-task MLPs, blend weights and Student-t intervals fitted on the inner
  grouped validation split);
* ``multitask-glass``: the same with the oxide-glass structure descriptors added to the features
  (``features="glass"``: former/modifier fractions, NBO/T, field strength …), bootstrap boosting
  members, no kNN member (the previous round's model);
* ``multitask-glass-knn``: ``PropertyModel(kind="multitask", features="glass")`` with its
  defaults: boosting members on every row with column subsampling and a nearest-composition
  (kNN) member in the blend; since round 4 also blend weights by mean absolute error and MLPs on
  normal-score (quantile) inputs (``results/glass_multitask_glass_knn.json`` is round 3's run,
  ``…_mae.json`` and ``…_quantile.json`` round 4's two steps).

The test folds are read only for the reported numbers. Reported per property and model: RMSE,
MAE, R², 95 % interval coverage, top-5 % recall; per fold: CPU seconds and load average. The
data README gives the replicate noise floor (23 K / 0.022 / 2.55). Results are written after
every fold, so a long run leaves partial numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PROPS = {"Tg": "Tg_K", "nd": "nd", "abbe": "abbe_vd"}
ANCHOR_README = {"Tg": 35.0, "nd": 0.0308, "abbe": 2.90}
GOAL = {"Tg": 30.0, "nd": 0.025, "abbe": 2.6}
NOISE = {"Tg": 23.1, "nd": 0.022, "abbe": 2.55}
MODELS = ("rf", "hgb", "multitask", "multitask-glass", "multitask-glass-knn")
SEARCH = [
    {"learning_rate": 0.1, "max_leaf_nodes": 63, "min_samples_leaf": 10, "max_iter": 300},
    {"learning_rate": 0.1, "max_leaf_nodes": 127, "min_samples_leaf": 5, "max_iter": 300},
]


def _args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data" / "glass"))
    ap.add_argument("--json", default=None, help="write results here")
    ap.add_argument("--props", nargs="+", default=list(PROPS), choices=list(PROPS))
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--members", type=int, default=3, help="bagged hgb members (uncertainty)")
    ap.add_argument("--mt-members", type=int, default=2, help="multitask: MLPs and hgb members")
    ap.add_argument("--mt-epochs", type=int, default=100, help="multitask: MLP epochs")
    ap.add_argument("--mt-hgb-iter", type=int, default=600, help="multitask: boosting rounds")
    ap.add_argument("--mt-hgb-lr", type=float, default=0.03, help="multitask: learning rate")
    ap.add_argument(
        "--mt-knn",
        default=None,
        help="multitask-glass-knn: kNN settings as JSON, e.g. '{\"k\": 10}' (default: the "
        "model's own defaults)",
    )
    ap.add_argument("--no-search", action="store_true", help="hgb: skip inner search")
    ap.add_argument("--anchor-trees", type=int, default=200, help="trees of the RF anchor")
    ap.add_argument("--max-groups", type=int, default=0, help="subsample compositions (dev)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--folds-to-run", type=int, default=0, help="evaluate only the first K folds; 0 = all"
    )
    ap.add_argument("--fold-ids", type=int, nargs="+", help="evaluate only these folds")
    ap.add_argument(
        "--select",
        nargs="?",
        const="budget",
        choices=(
            "budget",
            "knn",
            "hgb",
            "members",
            "hgb-ensemble",
            "inputs",
            "mlp-variants",
            "blend-variants",
        ),
        help="design selection on the inner grouped split of fold 0's training part only "
        "(writes --json): 'budget' = boosting validation curves (single member) per feature set "
        "and learning rate, one multi-task MLP per feature set and epoch count, best blends; "
        "'knn' = the multitask-glass members (fitted once, cached in --select-cache) blended "
        "with nearest-composition members of several k / spaces, weights and Student-t "
        "calibration cross-fitted between two grouped halves of the validation part; 'hgb' = "
        "boosting variants (single member) in the same blend; 'members' = twice the ensemble "
        "members (a second set with another seed) against the cached set, with the kNN member; "
        "'hgb-ensemble' = the boosting ensemble (--mt-members members, as PropertyModel fits "
        "them) with and without bootstrap rows and column subsampling, in the same blend; "
        "'inputs' = blend weights by squared vs absolute error and the MLPs on standardised vs "
        "quantile inputs (two seeds), cross-fitted on three grouped half splits; 'mlp-variants' "
        "= round 5's MLP variants (Huber loss, nd as Lorentz-Lorenz, width 512, replicate "
        "medians) against the default, two seeds, in the same blend; 'blend-variants' = round 6's "
        "distance-gated blend weights and boosting on ridge residuals",
    )
    ap.add_argument("--select-cache", default=None, help="npz of the fitted members' predictions")
    ap.add_argument("--select-k", type=int, nargs="+", default=[3, 5, 10, 20, 40])
    ap.add_argument("--select-lrs", type=float, nargs="+", default=[0.07, 0.03])
    ap.add_argument("--select-epochs", type=int, nargs="+", default=[60, 100, 200])
    ap.add_argument(
        "--merge",
        nargs="+",
        metavar="JSON",
        help="combine the results (and their .oof.npz predictions) of runs on disjoint folds "
        "into --json instead of fitting",
    )
    from _output import add_force, check_outputs

    add_force(ap)
    args = ap.parse_args(argv)
    if (args.select or args.merge) and not args.json:
        ap.error(f"--{'select' if args.select else 'merge'} needs --json")
    # fold runs also write the out-of-fold predictions beside --json
    oof = _oof_path(args.json) if args.json and not (args.select or args.merge) else None
    check_outputs([("--json", args.json), ("--json (.oof.npz)", oof)], force=args.force)
    return args


def _oof_path(path) -> Path:
    return Path(str(path) + ".oof.npz")


def _fit_predict(name, args, comps, props, X, Y, groups, tr, te, k):
    """Predictions (rows of `te` × props) and calibrated std (NaN for rf) of model `name`."""
    from sklearn.ensemble import RandomForestRegressor

    from matloop.design.models import PropertyModel

    mean = np.full((len(te), len(props)), np.nan)
    std = np.full_like(mean, np.nan)
    if name.startswith("multitask"):
        knn = json.loads(args.mt_knn) if args.mt_knn else None
        new = name == "multitask-glass-knn"
        model = PropertyModel(
            comps,
            props,
            kind="multitask",
            features="glass" if name.startswith("multitask-glass") else "stats",
            n_members=args.mt_members,
            nn_params={"epochs": args.mt_epochs},
            hgb_params={
                "max_iter": args.mt_hgb_iter,
                "learning_rate": args.mt_hgb_lr,
                # the earlier rows: bootstrap members on every column, no kNN member
                **({} if new else {"bootstrap": True, "max_features": 1.0}),
            },
            knn_params=knn if new else {"k": 0},
            seed=args.seed + k,
        )
        model.fit(X[tr], Y[tr], groups=groups[tr])
        mean, std = model.predict(X[te], return_std=True)
        info = {"blend_hgb_weight": model.blend_, "blend_knn_weight": model.blend_knn_}
        info["calibration"] = model.calibration_
        return mean, std, {**info, "student_t_df": model.tail_df_}
    info = {}
    for j, key in enumerate(props):
        trj = tr[np.isfinite(Y[tr, j])]
        if name == "rf":
            rf = RandomForestRegressor(args.anchor_trees, n_jobs=1, random_state=args.seed)
            mean[:, j] = rf.fit(X[trj], Y[trj, j]).predict(X[te])
            continue
        model = PropertyModel(
            comps,
            [key],
            kind="hgb",
            n_members=args.members,
            seed=args.seed + k,
            search=None if args.no_search else SEARCH,
        )
        model.fit(X[trj], Y[trj, j : j + 1], groups=groups[trj])
        m, s = model.predict(X[te], return_std=True)
        mean[:, j], std[:, j] = m[:, 0], s[:, 0]
        info[key] = {"selected": model.selected_, "calibration": model.calibration_}
    return mean, std, info


def _summary(args, props, models, Y, groups, suspicious, oof, folds_done):
    from matloop.design.metrics import regression_metrics, topk_recall

    in_folds = np.zeros(len(Y), bool)
    for te in folds_done:
        in_folds[te] = True
    out = {}
    for j, key in enumerate(props):
        has = np.isfinite(Y[:, j])
        entry = {
            "n_records": int(has.sum()),
            "n_compositions": int(len(np.unique(groups[has]))),
            "goal_rmse": GOAL[key],
            "noise_floor_rmse": NOISE[key],
            "anchor_readme_rmse": ANCHOR_README[key],
        }
        for name in models:
            mean, std = oof[name]
            done = has & in_folds & np.isfinite(mean[:, j])
            sd = None if name == "rf" else std[done, j]
            m = regression_metrics(Y[done, j], mean[done, j], sd)
            per_fold, recalls = [], []
            for te in folds_done:
                tj = te[has[te]]
                per_fold.append(regression_metrics(Y[tj, j], mean[tj, j])["rmse"])
                kk = max(1, int(round(0.05 * len(tj))))
                recalls.append(topk_recall(Y[tj, j], mean[tj, j], kk))
            m.update(
                folds_evaluated=len(folds_done),
                rmse_per_fold=per_fold,
                rmse_fold_sd=float(np.std(per_fold)),
                rmse_ci95_group_bootstrap=_rmse_ci(Y[done, j] - mean[done, j], groups[done]),
                top5pct_recall=float(np.mean(recalls)),
            )
            if name != "rf":
                m["goal_met"] = bool(m["rmse"] <= GOAL[key] and 0.93 <= m["coverage95"] <= 0.97)
            if key == "Tg" and suspicious.any():
                ok = done & ~suspicious
                m["without_Tg_below_150C"] = regression_metrics(
                    Y[ok, j], mean[ok, j], None if sd is None else std[ok, j]
                )
            entry[name] = m
        out[key] = entry
    return out


def _rmse_ci(residuals, groups, n_boot=2000, seed=0) -> list[float]:
    """95 % interval of the RMSE over compositions resampled with replacement (a composition's
    records stay together): how far the same model's RMSE would move on another draw of glasses."""
    _, inv = np.unique(groups, return_inverse=True)
    sse, n = np.bincount(inv, residuals**2), np.bincount(inv)
    draws = np.random.default_rng(seed).multinomial(len(n), np.full(len(n), 1 / len(n)), n_boot)
    rmse = np.sqrt((draws @ sse) / (draws @ n))
    return [float(v) for v in np.percentile(rmse, [2.5, 97.5])]


def _rmse(y, pred) -> float:
    return float(np.sqrt(np.mean((y - pred) ** 2)))


def _select(args, comps, X, Y, groups, tr):
    """Validation RMSE of design variants on the inner grouped split of `tr` (never a test fold).

    Boosting: one unbagged member per property, 127 leaves, RMSE every 100 rounds up to 1,500
    (staged predictions); MLP: one multi-task member per epoch count; blends: the best boosting
    weight (grid 0.05) of each boosting curve's best-round predictions with each MLP."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    from matloop.compositions.features import CompositionFeaturizer
    from matloop.design.multitask import MultiTaskNet
    from matloop.design.splits import inner_split

    itr, iva = inner_split(len(tr), groups[tr], 0.2, args.seed)
    a, b = tr[itr], tr[iva]
    out = {"n_inner_train": int(len(a)), "n_inner_val": int(len(b)), "hgb": {}, "mlp": {}}
    best_pred = {}
    for feats in ("stats", "glass"):
        F = CompositionFeaturizer(comps, glass=feats == "glass").transform(X)
        for lr in args.select_lrs:
            for j, key in enumerate(args.props):
                ok, okb = np.isfinite(Y[a, j]), np.isfinite(Y[b, j])
                c0 = time.process_time()
                est = HistGradientBoostingRegressor(
                    max_iter=1500, learning_rate=lr, max_leaf_nodes=127, min_samples_leaf=5,
                    l2_regularization=1.0, early_stopping=False, random_state=args.seed,
                )  # fmt: skip
                est.fit(F[a][ok], Y[a][ok, j])
                curve, preds = {}, {}
                for i, pred in enumerate(est.staged_predict(F[b]), 1):
                    if i % 100 == 0:
                        curve[i] = _rmse(Y[b][okb, j], pred[okb])
                        preds[i] = pred
                n_best = min(curve, key=curve.get)
                best_pred[(feats, lr, j)] = preds[n_best]
                out["hgb"][f"{feats}.lr{lr}.{key}"] = {
                    "rmse_every_100": curve,
                    "best_rounds": n_best,
                    "cpu_s": time.process_time() - c0,
                }
                print(f"select hgb {feats} lr {lr} {key}: best {n_best} rounds", flush=True)
        for epochs in args.select_epochs:
            c0 = time.process_time()
            mlp, _ = MultiTaskNet(1, args.seed, epochs=epochs).fit(F[a], Y[a]).predict(F[b])
            rm = np.sqrt(np.nanmean((Y[b] - mlp) ** 2, axis=0))
            entry = {"rmse": dict(zip(args.props, rm.tolist(), strict=True)), "blend": {}}
            entry["cpu_s"] = time.process_time() - c0
            for lr in args.select_lrs:
                for j, key in enumerate(args.props):
                    okb = np.isfinite(Y[b, j])
                    ws = np.linspace(0.0, 1.0, 21)
                    h = best_pred[(feats, lr, j)][okb]
                    y = Y[b][okb, j]
                    err = [_rmse(y, w * h + (1 - w) * mlp[okb, j]) for w in ws]
                    k = int(np.argmin(err))
                    entry["blend"][f"hgb_lr{lr}.{key}"] = {"w_hgb": float(ws[k]), "rmse": err[k]}
            out["mlp"][f"{feats}.epochs{epochs}"] = entry
            print(f"select mlp {feats} {epochs} epochs: {entry['rmse']}", flush=True)
    return out


def _inner_parts(args, comps, X, Y, tr, seed_offset=0, cache=None):
    """Inner split of `tr` and the multitask-glass members' predictions on its validation part
    (boosting and MLP ensembles as in the benchmark, fitted once on the inner training part;
    cached in ``--select-cache``)."""
    from matloop.design.models import PropertyModel
    from matloop.design.splits import inner_split
    from matloop.utils.files import atomic_path

    groups = args.groups_
    itr, iva = inner_split(len(tr), groups[tr], 0.2, args.seed)
    a, b = tr[itr], tr[iva]
    cache = cache or (Path(args.select_cache) if args.select_cache else None)
    if cache is not None and cache.exists():
        with np.load(cache, allow_pickle=False) as npz:
            if np.array_equal(npz["b"], b):
                return a, b, {k: npz[k] for k in npz.files}, 0.0
    c0 = time.process_time()
    model = PropertyModel(
        comps,
        args.props,
        kind="multitask",
        features="glass",
        calibrate=False,
        n_members=args.mt_members,
        nn_params={"epochs": args.mt_epochs},
        hgb_params={"max_iter": args.mt_hgb_iter, "learning_rate": args.mt_hgb_lr},
        knn_params={"k": 0},
        seed=args.seed + seed_offset,
    ).fit(X[a], Y[a])
    (mh, sh), (mn, sn) = model.models_.predict_parts(model._features(X[b]))
    parts = {"b": b, "mh": mh, "sh": sh, "mn": mn, "sn": sn}
    cpu = time.process_time() - c0
    if cache is not None:  # written whole or not at all: a later run reuses it
        with atomic_path(cache) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **parts)
    return a, b, parts, cpu


def _halves(groups_b, seed):
    """Two grouped halves of the validation rows (boolean mask of the first)."""
    uniq = np.unique(groups_b)
    first = set(np.random.default_rng(seed).permutation(uniq)[: len(uniq) // 2])
    return np.array([g in first for g in groups_b])


def _crossfit_blend(parts, y, half, step=0.05, criterion="mae"):
    """Blend weights (by `criterion`) and Student-t calibration fitted on one grouped half of the
    validation rows and applied to the other, both ways: pooled (RMSE, 95 % coverage, weights per
    half)."""

    from matloop.design.multitask import MultiTaskBlend

    ok = np.isfinite(y)
    pred, cover, weights = np.full(len(y), np.nan), np.zeros(len(y), bool), []
    for fit_on in (half, ~half):
        blend = MultiTaskBlend([None], None, knn=object() if len(parts) == 3 else None)
        sub = [(m[fit_on & ok, None], s[fit_on & ok, None]) for m, s in parts]
        blend.choose_weights(sub, y[fit_on & ok, None], step, criterion)
        wk = None if blend.knn_weights is None else blend.knn_weights
        mean, spread = MultiTaskBlend.combine(
            [(m[:, None], s[:, None]) for m, s in parts], blend.weights, wk
        )
        nu = _apply_to_other_half(
            y, mean[:, 0], spread[:, 0], fit_on & ok, ~fit_on & ok, pred, cover
        )
        weights.append([float(blend.weights[0]), 0.0 if wk is None else float(wk[0]), nu])
    return _rmse(y[ok], pred[ok]), float(cover[ok].mean()), weights


def _apply_to_other_half(y, mean, spread, fit_rows, other, pred, cover) -> float:
    """Student-t calibration fitted on `fit_rows`; the `other` rows' predictions and 95 % coverage
    written into `pred` and `cover`. Returns ν."""
    from scipy.stats import t as student_t

    from matloop.design.multitask import fit_student_t_calibration

    a, b, nu = fit_student_t_calibration(y[fit_rows] - mean[fit_rows], spread[fit_rows])
    half_w = np.sqrt((a * spread[other]) ** 2 + b**2) * student_t.ppf(0.975, nu)
    pred[other] = mean[other]
    cover[other] = np.abs(y[other] - mean[other]) <= half_w
    return nu


def _select_knn(args, comps, X, Y, groups, tr):
    """Nearest-composition member variants (k, space, eps) in the multitask-glass blend, on the
    inner grouped split of `tr` (fold 0's training part): kNN alone, and the three-member blend
    against the two-member one, both cross-fitted between grouped halves of the validation rows."""
    from matloop.compositions.features import CompositionFeaturizer
    from matloop.design.multitask import NearestCompositions

    args.groups_ = groups
    a, b, P, cpu_members = _inner_parts(args, comps, X, Y, tr)
    F = CompositionFeaturizer(comps, glass=True).transform(X)
    half = _halves(groups[b], args.seed)
    out = {"n_inner_train": int(len(a)), "n_inner_val": int(len(b)), "cpu_members_s": cpu_members}
    two = [(P["mh"], P["sh"]), (P["mn"], P["sn"])]
    out["two_member"] = {}
    for j, key in enumerate(args.props):
        r, c, w = _crossfit_blend([(m[:, j], s[:, j]) for m, s in two], Y[b, j], half)
        out["two_member"][key] = {"rmse": r, "coverage95": c, "w_hgb_w_knn_nu": w}
    print("two-member", {k: round(v["rmse"], 4) for k, v in out["two_member"].items()})
    variants = [("fractions", k, e) for k in args.select_k for e in (1e-4, 1e-3, 1e-2)]
    variants += [("scaled", k, 1e-2) for k in args.select_k]
    out["knn"] = {}
    for space, k, eps in variants:
        c0 = time.process_time()
        knn = NearestCompositions(len(comps), k=k, space=space, eps=eps).fit(F[a], Y[a])
        mk, sk = knn.predict(F[b])
        entry = {"cpu_s": time.process_time() - c0}
        for j, key in enumerate(args.props):
            ok = np.isfinite(Y[b, j])
            three = [(m[:, j], s[:, j]) for m, s in (*two, (mk, sk))]
            r, c, w = _crossfit_blend(three, Y[b, j], half)
            entry[key] = {
                "knn_alone_rmse": _rmse(Y[b][ok, j], mk[ok, j]),
                "rmse": r,
                "coverage95": c,
                "w_hgb_w_knn_nu": w,
                "vs_two_member": r / out["two_member"][key]["rmse"] - 1.0,
            }
        entry["mean_change"] = float(np.mean([entry[key]["vs_two_member"] for key in args.props]))
        out["knn"][f"{space}.k{k}.eps{eps:g}"] = entry
        print(
            f"knn {space} k {k} eps {eps:g}: "
            + " ".join(f"{key} {entry[key]['rmse']:.4g}" for key in args.props)
            + f" mean change {entry['mean_change']:+.4f}",
            flush=True,
        )
    out["best"] = min(out["knn"], key=lambda n: out["knn"][n]["mean_change"])
    return out


def _select_hgb(args, comps, X, Y, groups, tr):
    """Boosting variants (one unbagged member each, glass features, the multitask-glass budget)
    in the blend with the cached MLP ensemble (and a kNN member if ``--mt-knn`` is given),
    cross-fitted as in :func:`_select_knn`."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    from matloop.compositions.features import CompositionFeaturizer
    from matloop.design.multitask import HGB_DEFAULTS, NearestCompositions

    args.groups_ = groups
    a, b, P, _ = _inner_parts(args, comps, X, Y, tr)
    F = CompositionFeaturizer(comps, glass=True).transform(X)
    half = _halves(groups[b], args.seed)
    knn = None
    if args.mt_knn:
        knn = NearestCompositions(len(comps), **json.loads(args.mt_knn)).fit(F[a], Y[a])
        knn = knn.predict(F[b])
    base = {**HGB_DEFAULTS, "max_iter": args.mt_hgb_iter, "learning_rate": args.mt_hgb_lr}
    variants = {
        "baseline": {},
        "max_features0.5": {"max_features": 0.5},
        "max_features0.3": {"max_features": 0.3},
        "min_samples_leaf20": {"min_samples_leaf": 20},
        "l2_5": {"l2_regularization": 5.0},
        "leaves255": {"max_leaf_nodes": 255},
    }
    out = {"n_inner_train": int(len(a)), "n_inner_val": int(len(b)), "base": base, "hgb": {}}
    for name, change in variants.items():
        entry = {}
        for j, key in enumerate(args.props):
            ok, okb = np.isfinite(Y[a, j]), np.isfinite(Y[b, j])
            c0 = time.process_time()
            est = HistGradientBoostingRegressor(**{**base, **change}, random_state=args.seed)
            mh = est.fit(F[a][ok], Y[a][ok, j]).predict(F[b])
            members = [(mh, np.zeros_like(mh)), (P["mn"][:, j], P["sn"][:, j])]
            if knn is not None:
                members.append((knn[0][:, j], knn[1][:, j]))
            r, c, w = _crossfit_blend(members, Y[b, j], half)
            entry[key] = {
                "hgb_alone_rmse": _rmse(Y[b][okb, j], mh[okb]),
                "blend_rmse": r,
                "coverage95_single_member": c,
                "w_hgb_w_knn_nu": w,
                "cpu_s": time.process_time() - c0,
            }
        out["hgb"][name] = entry
        print(
            f"hgb {name}: "
            + " ".join(
                f"{k} {entry[k]['hgb_alone_rmse']:.4g}/{entry[k]['blend_rmse']:.4g}"
                for k in args.props
            ),
            flush=True,
        )
    return out


def _select_members(args, comps, X, Y, groups, tr):
    """2 × ``--mt-members`` boosting and MLP members (the cached set and a second one with other
    seeds) against the cached set alone, each blended with the ``--mt-knn`` member, cross-fitted
    as in :func:`_select_knn`."""
    from matloop.compositions.features import CompositionFeaturizer
    from matloop.design.multitask import NearestCompositions

    args.groups_ = groups
    a, b, P, _ = _inner_parts(args, comps, X, Y, tr)
    cache2 = Path(args.select_cache).with_suffix(".more.npz")
    _, _, Q, cpu = _inner_parts(args, comps, X, Y, tr, seed_offset=1000, cache=cache2)
    F = CompositionFeaturizer(comps, glass=True).transform(X)
    knn = NearestCompositions(len(comps), **json.loads(args.mt_knn or "{}")).fit(F[a], Y[a])
    mk, sk = knn.predict(F[b])
    half = _halves(groups[b], args.seed)

    def pooled(m1, s1, m2, s2):  # two equal-size ensembles as one
        return (m1 + m2) / 2, np.sqrt((s1**2 + s2**2) / 2 + ((m1 - m2) / 2) ** 2)

    sets = {
        "cached": [(P["mh"], P["sh"]), (P["mn"], P["sn"])],
        "second": [(Q["mh"], Q["sh"]), (Q["mn"], Q["sn"])],
        "both": [
            pooled(P["mh"], P["sh"], Q["mh"], Q["sh"]),
            pooled(P["mn"], P["sn"], Q["mn"], Q["sn"]),
        ],
    }
    out = {"n_inner_train": int(len(a)), "n_inner_val": int(len(b)), "cpu_second_set_s": cpu}
    for name, members in sets.items():
        entry = {}
        for j, key in enumerate(args.props):
            okb = np.isfinite(Y[b, j])
            three = [(m[:, j], s[:, j]) for m, s in (*members, (mk, sk))]
            r, c, w = _crossfit_blend(three, Y[b, j], half)
            entry[key] = {
                "hgb_alone_rmse": _rmse(Y[b][okb, j], members[0][0][okb, j]),
                "mlp_alone_rmse": _rmse(Y[b][okb, j], members[1][0][okb, j]),
                "blend_rmse": r,
                "coverage95": c,
                "w_hgb_w_knn_nu": w,
            }
        out[name] = entry
        print(
            f"members {name}: " + " ".join(f"{k} {entry[k]['blend_rmse']:.4g}" for k in args.props),
            flush=True,
        )
    return out


def _select_hgb_ensemble(args, comps, X, Y, groups, tr):
    """Boosting ensembles of ``--mt-members`` members built as ``PropertyModel`` builds them
    (seeds, bootstrap or not, ``max_features``) beside the cached bagged ensemble, each blended
    with the cached MLP ensemble and the ``--mt-knn`` member, cross-fitted as in
    :func:`_select_knn`."""
    from matloop.compositions.features import CompositionFeaturizer
    from matloop.design.models import _SingleProperty
    from matloop.design.multitask import HGB_DEFAULTS, NearestCompositions

    args.groups_ = groups
    a, b, P, _ = _inner_parts(args, comps, X, Y, tr)
    F = CompositionFeaturizer(comps, glass=True).transform(X)
    knn = NearestCompositions(len(comps), **json.loads(args.mt_knn or "{}")).fit(F[a], Y[a])
    mk, sk = knn.predict(F[b])
    half = _halves(groups[b], args.seed)
    base = {**HGB_DEFAULTS, "max_iter": args.mt_hgb_iter, "learning_rate": args.mt_hgb_lr}
    variants = {
        "bagged (cached)": None,
        "no bootstrap, max_features 0.5": {"bootstrap": False, "max_features": 0.5},
        "no bootstrap, max_features 0.3": {"bootstrap": False, "max_features": 0.3},
    }
    out = {"n_inner_train": int(len(a)), "n_inner_val": int(len(b)), "base": base, "hgb": {}}
    for name, change in variants.items():
        entry, c0 = {}, time.process_time()
        for j, key in enumerate(args.props):
            ok, okb = np.isfinite(Y[a, j]), np.isfinite(Y[b, j])
            if change is None:
                mh, sh = P["mh"][:, j], P["sh"][:, j]
            else:
                params = {**base, **change}
                sp = _SingleProperty("hgb", args.seed + 17 * j, args.mt_members, 0, 0, params)
                mh, sh = sp.fit(F[a][ok], Y[a][ok, j]).predict(F[b])
            members = [(mh, sh), (P["mn"][:, j], P["sn"][:, j]), (mk[:, j], sk[:, j])]
            r, c, w = _crossfit_blend(members, Y[b, j], half)
            entry[key] = {
                "hgb_alone_rmse": _rmse(Y[b][okb, j], mh[okb]),
                "blend_rmse": r,
                "coverage95": c,
                "w_hgb_w_knn_nu": w,
            }
        entry["cpu_s"] = time.process_time() - c0
        out["hgb"][name] = entry
        print(
            f"hgb ensemble {name}: "
            + " ".join(
                f"{k} {entry[k]['hgb_alone_rmse']:.4g}/{entry[k]['blend_rmse']:.4g}"
                f" cov {entry[k]['coverage95']:.3f}"
                for k in args.props
            ),
            flush=True,
        )
    return out


def _blend_entry(args, P, mlp, knn, y_val, groups_val, criteria=("mse", "mae")):
    """Per property: the MLP alone and its blend with the cached boosting members and the kNN
    member, cross-fitted on three grouped half splits of the validation rows, per criterion."""
    (mn, sn), (mk, sk) = mlp, knn
    entry = {}
    for j, key in enumerate(args.props):
        okb = np.isfinite(y_val[:, j])
        three = [(P["mh"][:, j], P["sh"][:, j]), (mn[:, j], sn[:, j]), (mk[:, j], sk[:, j])]
        entry[key] = {"mlp_alone_rmse": _rmse(y_val[okb, j], mn[okb, j])}
        for criterion in criteria:
            halves = [_halves(groups_val, h) for h in range(3)]
            rmse = [_crossfit_blend(three, y_val[:, j], h, criterion=criterion)[0] for h in halves]
            entry[key][f"blend_rmse_{criterion}_weights"] = rmse
    return entry


def _select_inputs(args, comps, X, Y, groups, tr):
    """Round 4 on the inner grouped split of `tr`: blend weights by squared vs absolute error,
    and the MLP ensemble on standardised vs normal-score (quantile) inputs (two seeds each),
    blended with the boosting members and the kNN member; each cross-fitted on three grouped
    half splits of the validation rows."""
    from matloop.compositions.features import CompositionFeaturizer
    from matloop.design.multitask import MultiTaskNet, NearestCompositions

    args.groups_ = groups
    a, b, P, cpu_members = _inner_parts(args, comps, X, Y, tr)
    F = CompositionFeaturizer(comps, glass=True).transform(X)
    knn = NearestCompositions(len(comps)).fit(F[a], Y[a]).predict(F[b])
    out = {"n_inner_train": int(len(a)), "n_inner_val": int(len(b)), "mlp": {}}
    for inputs in ("standard", "quantile"):
        for seed in (args.seed, args.seed + 7):
            c0 = time.process_time()
            net = MultiTaskNet(args.mt_members, seed, epochs=args.mt_epochs, inputs=inputs)
            mlp = net.fit(F[a], Y[a]).predict(F[b])
            entry = {"cpu_s": time.process_time() - c0}
            entry.update(_blend_entry(args, P, mlp, knn, Y[b], groups[b]))
            out["mlp"][f"{inputs}.seed{seed}"] = entry
            print(
                f"inputs {inputs} seed {seed}: "
                + " ".join(
                    f"{k} {np.mean(entry[k]['blend_rmse_mse_weights']):.4g}"
                    f"/{np.mean(entry[k]['blend_rmse_mae_weights']):.4g}"
                    for k in args.props
                ),
                flush=True,
            )
    return out


def _mlp_variants():
    """Round 5's MLP variants (name -> (MultiTaskNet subclass, nn_params, nd as Lorentz–Lorenz))."""
    import torch

    from matloop.design.multitask import MultiTaskNet

    class Huber(MultiTaskNet):
        def _loss(self, residual):  # squared within 3 SD, linear beyond
            return 2.0 * torch.nn.functional.huber_loss(
                residual, torch.zeros_like(residual), reduction="none", delta=3.0
            )

    class MedianReplicates(MultiTaskNet):
        def _aggregate(self, F, Y):
            return _median_replicates(F, Y)

    return {
        "V0 default": (MultiTaskNet, {}, False),
        "V1 Huber delta 3 SD": (Huber, {}, False),
        "V2 nd as Lorentz-Lorenz": (MultiTaskNet, {}, True),
        "V3 hidden 512": (MultiTaskNet, {"hidden": 512}, False),
        "V4 replicate medians": (MedianReplicates, {}, False),
    }


def _median_replicates(F, Y):
    """As :func:`matloop.design.multitask.aggregate_replicates`, with per-property medians."""
    import pandas as pd

    from matloop.design.multitask import aggregate_replicates

    Fu, means, counts = aggregate_replicates(F, Y)
    _, inv = np.unique(np.round(F, 10), axis=0, return_inverse=True)  # the same row order
    medians = pd.DataFrame(Y).groupby(inv.ravel()).median()  # NaN-skipping, per property
    means[medians.index.to_numpy()] = medians.to_numpy()
    return Fu, means, counts


def _select_mlp_variants(args, comps, X, Y, groups, tr):
    """Round 5 on the inner grouped split of `tr` (rule written before the run): the MLP member
    with a Huber loss, nd learnt as (n²−1)/(n²+2), width 512, or replicate medians, against
    today's default, two seeds each, blended (absolute-error weights) with the cached boosting
    members and the kNN member, cross-fitted on three grouped half splits."""
    from matloop.compositions.features import CompositionFeaturizer
    from matloop.design.multitask import NearestCompositions

    args.groups_ = groups
    a, b, P, _ = _inner_parts(args, comps, X, Y, tr)
    F = CompositionFeaturizer(comps, glass=True).transform(X)
    knn = NearestCompositions(len(comps)).fit(F[a], Y[a]).predict(F[b])
    nd = args.props.index("nd") if "nd" in args.props else None
    out = {"n_inner_train": int(len(a)), "n_inner_val": int(len(b)), "mlp": {}}
    for name, (cls, params, lorentz_lorenz) in _mlp_variants().items():
        for seed in (args.seed, args.seed + 7):
            c0 = time.process_time()
            Ya = Y[a].copy()
            if lorentz_lorenz and nd is not None:
                Ya[:, nd] = (Ya[:, nd] ** 2 - 1) / (Ya[:, nd] ** 2 + 2)
            net = cls(args.mt_members, seed, epochs=args.mt_epochs, **params).fit(F[a], Ya)
            mn, sn = net.predict(F[b])
            if lorentz_lorenz and nd is not None:
                n_of = lambda r: np.sqrt((1 + 2 * r) / (1 - r))  # noqa: E731
                lo, hi = n_of(mn[:, nd] - sn[:, nd]), n_of(mn[:, nd] + sn[:, nd])
                mn[:, nd], sn[:, nd] = n_of(mn[:, nd]), (hi - lo) / 2
            entry = {"cpu_s": time.process_time() - c0}
            entry.update(_blend_entry(args, P, (mn, sn), knn, Y[b], groups[b], ("mae",)))
            out["mlp"][f"{name}.seed{seed}"] = entry
            print(
                f"{name} seed {seed}: "
                + " ".join(
                    f"{k} {np.mean(entry[k]['blend_rmse_mae_weights']):.4g}" for k in args.props
                ),
                flush=True,
            )
    return out


def _write(path, results, oof=None):
    """JSON results (and the out-of-fold predictions as `path`.oof.npz), atomically."""
    from matloop.utils.files import atomic_path, atomic_write_text

    if oof is not None:
        arrays = {f"{n}.{w}": a for n, (m, s) in oof.items() for w, a in (("mean", m), ("std", s))}
        with atomic_path(_oof_path(path)) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    atomic_write_text(path, json.dumps(results, indent=2, default=float))


def _merge(args, Y, groups, suspicious, fold_test):
    """Results of runs on disjoint folds (same data, props, seed) combined into one."""
    parts = [json.loads(Path(p).read_text()) for p in args.merge]
    models = list(dict.fromkeys(n for part in parts for n in part["args"]["models"]))
    oof = {n: (np.full(Y.shape, np.nan), np.full(Y.shape, np.nan)) for n in models}
    folds = {}
    for path, part in zip(args.merge, parts, strict=True):
        with np.load(path + ".oof.npz", allow_pickle=False) as npz:
            for n in part["args"]["models"]:
                for i, w in enumerate(("mean", "std")):
                    a = npz[f"{n}.{w}"]
                    oof[n][i][np.isfinite(a)] = a[np.isfinite(a)]
        for f in part["folds"]:
            folds.setdefault(f["fold"], {**f, "models": {}})["models"].update(f["models"])
    folds = [folds[k] for k in sorted(folds)]
    done = [fold_test[f["fold"]] for f in folds if set(models) <= set(f["models"])]
    return {
        "benchmark": parts[0]["benchmark"],
        "data": parts[0]["data"],
        "merged_from": [Path(p).name for p in args.merge],
        "parts": [{"args": p["args"], "wall_s": p["wall_s"], "cpu_s": p["cpu_s"]} for p in parts],
        "cpu_s": sum(p["cpu_s"] for p in parts),
        "folds": folds,
        "properties": _summary(args, args.props, models, Y, groups, suspicious, oof, done),
    }


def _nearest_distance(knn, F) -> np.ndarray:
    """Rows × properties: distance (fraction space) to the nearest distinct training composition
    measured for the property."""
    Zq = knn._space(np.asarray(F, float))
    return np.column_stack([nn.kneighbors(Zq, n_neighbors=1)[0][:, 0] for _, nn in knn._nn])


def _crossfit_gated(parts, y, half, dist, n_bins=3, step=0.05):
    """As :func:`_crossfit_blend` (absolute-error weights), with separate blend weights per bin of
    the distance to the nearest training composition; bin edges are the distance quantiles of the
    fitting half."""

    from matloop.design.multitask import MultiTaskBlend

    ok = np.isfinite(y)
    pred, cover, weights = np.full(len(y), np.nan), np.zeros(len(y), bool), []
    for fit_on in (half, ~half):
        edges = np.quantile(dist[fit_on & ok], np.linspace(0, 1, n_bins + 1)[1:-1])
        bins = np.searchsorted(edges, dist, side="right")
        mean, spread = np.full(len(y), np.nan), np.full(len(y), np.nan)
        for k in range(n_bins):
            blend = MultiTaskBlend([None], None, knn=object())
            sel = fit_on & ok & (bins == k)
            blend.choose_weights(
                [(m[sel, None], s[sel, None]) for m, s in parts], y[sel, None], step
            )
            rows = bins == k
            m, s = MultiTaskBlend.combine(
                [(m[rows, None], s[rows, None]) for m, s in parts], blend.weights, blend.knn_weights
            )
            mean[rows], spread[rows] = m[:, 0], s[:, 0]
            weights.append([float(blend.weights[0]), float(blend.knn_weights[0])])
        _apply_to_other_half(y, mean, spread, fit_on & ok, ~fit_on & ok, pred, cover)
    return _rmse(y[ok], pred[ok]), float(cover[ok].mean()), weights


def _residual_boosting(args, F, Y, a, b):
    """Boosting members (the multitask defaults) fitted to what a ridge regression on the
    standardised features leaves, per property: (mean, spread) on rows `b`."""
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from matloop.design.models import _SingleProperty
    from matloop.design.multitask import HGB_DEFAULTS

    params = {**HGB_DEFAULTS, "max_iter": args.mt_hgb_iter, "learning_rate": args.mt_hgb_lr}
    mh, sh = np.full((len(b), Y.shape[1]), np.nan), np.full((len(b), Y.shape[1]), np.nan)
    for j in range(Y.shape[1]):
        ok = np.isfinite(Y[a, j])
        ridge = make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(F[a][ok], Y[a][ok, j])
        resid = Y[a][ok, j] - ridge.predict(F[a][ok])
        sp = _SingleProperty("hgb", args.seed + 17 * j, args.mt_members, 0, 0, params)
        m, s = sp.fit(F[a][ok], resid).predict(F[b])
        mh[:, j], sh[:, j] = ridge.predict(F[b]) + m, s
    return mh, sh


def _select_blend_variants(args, comps, X, Y, groups, tr):
    """Round 6 on the inner grouped split of `tr` (rule written before the run): blend weights
    gated by the distance to the nearest training composition (three bins), boosting on what a
    ridge regression leaves, and both, against today's blend; MLP seeds 0 and 7, absolute-error
    weights, cross-fitted on three grouped half splits of the validation rows."""
    from matloop.compositions.features import CompositionFeaturizer
    from matloop.design.multitask import MultiTaskNet, NearestCompositions

    args.groups_ = groups
    a, b, P, _ = _inner_parts(args, comps, X, Y, tr)
    F = CompositionFeaturizer(comps, glass=True).transform(X)
    knn = NearestCompositions(len(comps)).fit(F[a], Y[a])
    mk, sk = knn.predict(F[b])
    dist = _nearest_distance(knn, F[b])
    c0 = time.process_time()
    residual = _residual_boosting(args, F, Y, a, b)
    out = {"n_inner_train": int(len(a)), "n_inner_val": int(len(b)), "variants": {}}
    out["cpu_residual_boosting_s"] = time.process_time() - c0
    halves = [_halves(groups[b], h) for h in range(3)]
    for seed in (args.seed, args.seed + 7):
        mn, sn = (
            MultiTaskNet(args.mt_members, seed, epochs=args.mt_epochs).fit(F[a], Y[a]).predict(F[b])
        )
        for name, boost, gated in (
            ("B0 today's blend", (P["mh"], P["sh"]), False),
            ("B1 distance-gated weights", (P["mh"], P["sh"]), True),
            ("B2 boosting on ridge residuals", residual, False),
            ("B3 both", residual, True),
        ):
            entry = {}
            for j, key in enumerate(args.props):
                three = [(boost[0][:, j], boost[1][:, j]), (mn[:, j], sn[:, j])]
                three.append((mk[:, j], sk[:, j]))
                runs = [
                    _crossfit_gated(three, Y[b, j], h, dist[:, j])
                    if gated
                    else _crossfit_blend(three, Y[b, j], h)
                    for h in halves
                ]
                entry[key] = {
                    "boosting_alone_rmse": _rmse(
                        Y[b][np.isfinite(Y[b, j]), j], boost[0][np.isfinite(Y[b, j]), j]
                    ),
                    "blend_rmse": [r[0] for r in runs],
                    "coverage95": [r[1] for r in runs],
                }
            out["variants"][f"{name}.seed{seed}"] = entry
            print(
                f"{name} seed {seed}: "
                + " ".join(f"{k} {np.mean(entry[k]['blend_rmse']):.4g}" for k in args.props),
                flush=True,
            )
    return out


def main(argv=None) -> int:
    args = _args(argv)
    import pandas as pd
    import torch
    from threadpoolctl import threadpool_limits

    from matloop.design.splits import _shuffled_group_kfold

    threadpool_limits(1)
    torch.set_num_threads(1)
    path = Path(args.data_dir) / "glass_properties.csv.gz"
    df = pd.read_csv(path)
    comps = list(df.columns[df.columns.get_loc("SiO2") : df.columns.get_loc("WO3") + 1])
    cols = [PROPS[p] for p in args.props]
    d = df[df[cols].notna().any(axis=1)].reset_index(drop=True)
    if args.max_groups:
        keep = np.random.default_rng(args.seed).permutation(d["comp_key"].unique())
        d = d[d["comp_key"].isin(keep[: args.max_groups])].reset_index(drop=True)
    X = d[comps].to_numpy(float)
    Y = d[cols].to_numpy(float)
    groups = d["comp_key"].to_numpy()
    suspicious = (d["Tg_C"] < 150).to_numpy()
    results = {
        "benchmark": "glass composition-grouped CV, joint folds over all properties",
        "data": f"<data-dir>/{path.name}",  # no machine paths in committed results
        "args": {
            k: Path(v).name if k == "select_cache" and v else v
            for k, v in vars(args).items()
            if k not in ("json", "data_dir")
        },
        "search": None if args.no_search else SEARCH,
        "host": {
            "python": sys.version.split()[0],
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
        },
        "folds": [],
    }
    splits = list(_shuffled_group_kfold(groups, args.folds, args.seed))
    if args.select:
        c0 = time.process_time()
        select = {
            "budget": _select,
            "knn": _select_knn,
            "hgb": _select_hgb,
            "members": _select_members,
            "hgb-ensemble": _select_hgb_ensemble,
            "inputs": _select_inputs,
            "mlp-variants": _select_mlp_variants,
            "blend-variants": _select_blend_variants,
        }[args.select]
        results["selection"] = select(args, comps, X, Y, groups, splits[0][0])
        results.update(cpu_s=time.process_time() - c0, loadavg_end=os.getloadavg())
        _write(args.json, results)
        print(f"wrote {args.json}")
        return 0
    if args.merge:
        results = _merge(args, Y, groups, suspicious, [te for _, te in splits])
        _write(args.json, results)
        print(f"wrote {args.json}")
        return 0
    oof = {name: (np.full(Y.shape, np.nan), np.full(Y.shape, np.nan)) for name in args.models}
    folds_done = []
    t_all, cpu_all = time.time(), time.process_time()
    for k, (tr, te) in enumerate(splits):
        if (args.folds_to_run and k >= args.folds_to_run) or (
            args.fold_ids is not None and k not in args.fold_ids
        ):
            continue
        assert not set(groups[tr]) & set(groups[te])
        fold = {"fold": k, "n_train": int(len(tr)), "n_test": int(len(te)), "models": {}}
        for name in args.models:
            t0, c0, load0 = time.time(), time.process_time(), os.getloadavg()
            mean, std, info = _fit_predict(name, args, comps, args.props, X, Y, groups, tr, te, k)
            oof[name][0][te], oof[name][1][te] = mean, std
            rmse = [
                float(np.sqrt(np.nanmean((Y[te, j] - mean[:, j]) ** 2))) for j in range(Y.shape[1])
            ]
            fold["models"][name] = {
                "rmse": dict(zip(args.props, rmse, strict=True)),
                "wall_s": time.time() - t0,
                "cpu_s": time.process_time() - c0,
                "loadavg_start": load0,
                "loadavg_end": os.getloadavg(),
                **info,
            }
            print(
                f"fold {k} {name}: RMSE "
                + " ".join(f"{p} {r:.4g}" for p, r in zip(args.props, rmse, strict=True))
                + f" (cpu {time.process_time() - c0:.0f} s, wall {time.time() - t0:.0f} s, "
                f"load {os.getloadavg()[0]:.1f})",
                flush=True,
            )
        folds_done.append(te)
        results["folds"].append(fold)
        results["properties"] = _summary(
            args, args.props, args.models, Y, groups, suspicious, oof, folds_done
        )
        results.update(wall_s=time.time() - t_all, cpu_s=time.process_time() - cpu_all)
        results["loadavg_end"] = os.getloadavg()
        if args.json:
            _write(args.json, results, oof)
            print(f"wrote {args.json}", flush=True)
    for key, entry in results["properties"].items():
        print(
            f"[{key}] "
            + " | ".join(
                f"{n} RMSE {entry[n]['rmse']:.4g}"
                + (f" cov95 {entry[n]['coverage95']:.3f}" if "coverage95" in entry[n] else "")
                for n in args.models
            )
            + f" | goal {GOAL[key]}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
