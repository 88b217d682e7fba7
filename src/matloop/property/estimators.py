"""Structure → property estimators with one scikit-learn-like API.

``CrystalGraphModel`` (a CGCNN-like network, deep ensemble × MC dropout) and ``GBTBaseline``
(histogram gradient boosting on composition + structure descriptors) share:

- ``fit(dataset)``: the ``split`` chooses the validation part (model selection, σ calibration
  and the OOD threshold); ``fit(train, val=...)`` uses the given validation set instead.
- ``predict(dataset, return_std=True)``: values in the target's unit and a calibrated σ (the
  spread of the members/passes times one scale factor set on validation so that 95 % of
  validation errors lie within ±1.96σ); for classification the class labels and the spread of
  the predicted-class probability. ``predict_proba`` for classes.
- ``embed(dataset)``, ``nearest(query, reference, k)``, ``ood_score(dataset)``: the OOD score is
  the mean distance (standardised embedding space) to the ``ood_k`` nearest training structures;
  ``ood`` flags scores above the ``ood_quantile`` of the validation scores.
- ``save(dir)`` / :func:`load_model`: plain JSON + torch ``state_dict`` (``weights_only``) or
  ``.npz`` tree arrays; nothing is pickled.
"""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator

from matloop.errors import ConfigError, DataError, ModelFileError
from matloop.property.config import CGCNNConfig, GBTConfig
from matloop.property.data import PropertyDataset
from matloop.property.splits import split as make_split
from matloop.utils.safe_io import torch_load_plain
from matloop.utils.threads import with_default_torch_threads

FORMAT = "matloop-property"
FORMAT_VERSION = 1


class StructurePropertyModel(BaseEstimator):
    """Shared fit/predict/calibration/OOD logic; subclasses supply the learner."""

    kind = ""

    def __init__(
        self,
        target: str | list[str] = "y",
        task: str = "regression",
        split: str = "random",
        split_column: str | None = None,
        val_fraction: float = 0.2,
        class_weight: str = "balanced",
        ood_k: int = 5,
        ood_quantile: float = 0.95,
        seed: int = 0,
        params: dict | None = None,
        progress: bool = False,
    ):
        self.target = target
        self.task = task
        self.split = split
        self.split_column = split_column
        self.val_fraction = val_fraction
        self.class_weight = class_weight
        self.ood_k = ood_k
        self.ood_quantile = ood_quantile
        self.seed = seed
        self.params = params
        self.progress = progress

    # --- targets ------------------------------------------------------------------------------

    @property
    def targets_(self) -> list[str]:
        return [self.target] if isinstance(self.target, str) else list(self.target)

    def _check(self) -> None:
        if self.task not in ("regression", "classification"):
            raise ConfigError(f"unknown task {self.task!r} (regression or classification)")
        if self.task == "classification" and len(self.targets_) != 1:
            raise ConfigError("classification takes exactly one target")
        if not self.targets_:
            raise ConfigError("no target given")

    def _labelled(self, dataset: PropertyDataset) -> PropertyDataset:
        mask = np.zeros(len(dataset), bool)
        for t in self.targets_:
            mask |= dataset.has_value(t)
        if not mask.any():
            raise DataError(f"{dataset.source or 'dataset'}: no structure has {self.targets_}")
        return dataset.subset(mask)

    def _encode(self, dataset: PropertyDataset) -> np.ndarray:
        """Regression: (n, T) floats (NaN missing); classification: (n,) class indices."""
        if self.task == "regression":
            return np.column_stack([dataset.target(t) for t in self.targets_])
        labels = dataset.labels(self.targets_[0])
        index = {c: i for i, c in enumerate(self.classes_)}
        unknown = sorted({lab for lab in labels if lab is not None and lab not in index})
        if unknown:
            raise DataError(
                f"class {unknown[0]!r} of {self.targets_[0]!r} was not seen in training"
            )
        return np.array([index[lab] if lab is not None else -1 for lab in labels])

    def _target_index(self, target: str | None) -> int:
        """Column of `target` in ``targets_`` (None: 0, the first target)."""
        if target is None:
            return 0
        if target not in self.targets_:
            raise ConfigError(f"{target!r} is not one of the model's targets {self.targets_}")
        return self.targets_.index(target)

    def _class_weights(self, y: np.ndarray) -> np.ndarray:
        k = len(self.classes_)
        counts = np.bincount(y[y >= 0], minlength=k).astype(float)
        if self.class_weight == "none":
            return np.ones(k)
        return len(y) / (k * np.maximum(counts, 1.0))

    # --- fitting ------------------------------------------------------------------------------

    def fit(
        self, dataset: PropertyDataset, val: PropertyDataset | None = None
    ) -> StructurePropertyModel:
        """Train on `dataset` (validation from ``split`` unless `val` is given); returns self."""
        self._check()
        self.selection_ = None  # fit_auto sets it after this fit
        data = self._labelled(dataset)
        if val is None:
            tr, va = make_split(data, self.split, self.val_fraction, self.seed, self.split_column)
            train, val = data.subset(tr), data.subset(va)
        else:
            train, val = data, self._labelled(val)
        self.units_ = {t: dataset.unit(t) for t in self.targets_}
        if self.task == "classification":
            self.classes_ = sorted({c for c in train.labels(self.targets_[0]) if c is not None})
            if len(self.classes_) < 2:
                raise DataError(f"{self.targets_[0]!r} has one class only in the training part")
            self._check_val_classes(val)
        else:
            self.classes_ = []
        t0 = time.perf_counter()
        self._fit(train, val)
        self.train_time_s_ = time.perf_counter() - t0
        self.n_train_, self.n_val_ = len(train), len(val)
        self.val_ids_ = list(val.ids)
        self.seen_ = {"training": _fingerprints(train), "validation": _fingerprints(val)}
        self._calibrate(val)
        self._fit_ood(train, val)
        return self

    def _check_val_classes(self, val: PropertyDataset) -> None:
        """Refuse a class that only the validation part holds (the model could never predict
        it, and its scores would not say why)."""
        only = sorted({c for c in val.labels(self.targets_[0]) if c not in (None, *self.classes_)})
        if only:
            raise DataError(
                f"class {only[0]!r} of {self.targets_[0]!r} occurs only in the validation part "
                f"({self.split} split, seed {self.seed}); add examples, merge rare classes or "
                "try another seed"
            )

    def _calibrate(self, val: PropertyDataset) -> None:
        self.std_scale_ = [1.0] * len(self.targets_)
        if self.task != "regression":
            return
        y = self._encode(val)
        mean, std = self._predict_raw(val)
        for t in range(y.shape[1]):
            ok = np.isfinite(y[:, t])
            if ok.sum() < 5:
                continue
            z = np.abs(y[ok, t] - mean[ok, t]) / np.maximum(std[ok, t], 1e-12)
            self.std_scale_[t] = float(max(np.quantile(z, 0.95) / 1.959964, 1e-6))

    def _fit_ood(self, train: PropertyDataset, val: PropertyDataset) -> None:
        emb = self._embed(train)
        self.ood_mean_ = emb.mean(0)
        self.ood_std_ = _embedding_scale(emb.std(0), self.ood_mean_)
        self.train_embeddings_ = ((emb - self.ood_mean_) / self.ood_std_).astype(np.float32)
        self.train_ids_ = list(train.ids)
        self.train_elements_ = sorted({int(z) for a in train.structures for z in a.numbers})
        scores = self.ood_score(val)
        self.ood_threshold_ = float(np.quantile(scores, self.ood_quantile))

    # --- prediction ---------------------------------------------------------------------------

    def predict(self, dataset: PropertyDataset, return_std: bool = False):
        """Values (regression; (n,) or (n, T)) or class labels, and optionally calibrated σ."""
        if self.task == "classification":
            proba, std = self._predict_raw(dataset)
            labels = np.array(self.classes_, dtype=object)[proba.argmax(1)]
            return (labels, std) if return_std else labels
        mean, std = self._predict_raw(dataset)
        std = std * np.asarray(self.std_scale_)[None, :]
        if len(self.targets_) == 1:
            mean, std = mean[:, 0], std[:, 0]
        return (mean, std) if return_std else mean

    def predict_proba(self, dataset: PropertyDataset) -> np.ndarray:
        """(n, n_classes) probabilities, columns in the order of ``classes_``."""
        if self.task != "classification":
            raise ConfigError("predict_proba is for classification models")
        return self._predict_raw(dataset)[0]

    def embed(self, dataset: PropertyDataset) -> np.ndarray:
        """(n, d) standardised embeddings (the space of the OOD score and `nearest`)."""
        return ((self._embed(dataset) - self.ood_mean_) / self.ood_std_).astype(np.float32)

    def nearest(
        self, query: PropertyDataset, reference: PropertyDataset | None = None, k: int = 5
    ) -> tuple[np.ndarray, np.ndarray]:
        """Indices into `reference` (default: the training set) and distances of the `k` nearest."""
        from sklearn.neighbors import NearestNeighbors

        ref = self.train_embeddings_ if reference is None else self.embed(reference)
        k = min(k, len(ref))
        nn = NearestNeighbors(n_neighbors=k).fit(ref)
        dist, idx = nn.kneighbors(self.embed(query))
        return idx, dist

    def ood_score(self, dataset: PropertyDataset) -> np.ndarray:
        """Mean embedding distance to the ``ood_k`` nearest training structures."""
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            _, dist = self.nearest(dataset, None, self.ood_k)
        return dist.mean(1)

    def unseen_elements(self, dataset: PropertyDataset) -> list[list[str]]:
        """Per structure, the chemical symbols absent from every training structure."""
        from ase.data import chemical_symbols

        seen = set(getattr(self, "train_elements_", None) or range(1, 119))
        return [
            [chemical_symbols[z] for z in sorted(set(a.numbers.tolist()) - seen)]
            for a in dataset.structures
        ]

    def ood(self, dataset: PropertyDataset, score: np.ndarray | None = None) -> np.ndarray:
        """Out-of-distribution flags: score above ``ood_threshold_``, or an element that no
        training structure contains (its prediction is an extrapolation whatever the score)."""
        score = self.ood_score(dataset) if score is None else score
        unseen = np.array([bool(u) for u in self.unseen_elements(dataset)], dtype=bool)
        return (score > self.ood_threshold_) | unseen

    def predict_table(self, dataset: PropertyDataset) -> dict[str, list]:
        """Columns for a CSV: id, prediction(s) and σ in the target's unit (classes: label, the
        spread of its probability, ``p_<class>``), ood_score, ood, unseen_elements."""
        out: dict[str, list] = {"id": list(dataset.ids)}
        if self.task == "classification":
            proba, std = self._predict_raw(dataset)
            out["prediction"] = [self.classes_[i] for i in proba.argmax(1)]
            out["std"] = std.tolist()
            for c, col in zip(self.classes_, proba.T, strict=True):
                out[f"p_{c}"] = col.tolist()
        else:
            mean, std = self.predict(dataset, return_std=True)
            mean, std = mean.reshape(len(dataset), -1), std.reshape(len(dataset), -1)
            single = len(self.targets_) == 1
            for t, name in enumerate(self.targets_):
                out["prediction" if single else name] = mean[:, t].tolist()
                out["std" if single else f"{name}_std"] = std[:, t].tolist()
        score = self.ood_score(dataset)
        out["ood_score"] = score.tolist()
        out["ood"] = self.ood(dataset, score).tolist()
        out["unseen_elements"] = [" ".join(u) for u in self.unseen_elements(dataset)]
        return out

    def evaluate(
        self, dataset: PropertyDataset, k: int | None = None, target: str | None = None
    ) -> dict:
        """Metrics on the labelled structures of `dataset`, in the target's unit.

        The top-level keys are those of `target` (default: the first of ``targets_``); a
        multi-target model also gives ``per_target``.
        """
        from matloop.property.metrics import classification_report, regression_report

        top = self._target_index(target)
        data = self._labelled(dataset)
        y = self._encode(data)
        if self.task == "classification":
            ok = y >= 0
            proba = self.predict_proba(data)
            out = classification_report(y[ok], proba[ok], self.classes_)
        else:
            mean, std = self.predict(data, return_std=True)
            mean, std = mean.reshape(len(data), -1), std.reshape(len(data), -1)
            per = {}
            for t, name in enumerate(self.targets_):
                ok = np.isfinite(y[:, t])
                per[name] = regression_report(y[ok, t], mean[ok, t], std[ok, t], k)
                per[name]["unit"] = self.units_.get(name, "")
            out = dict(per[self.targets_[top]])
            if len(self.targets_) > 1:
                out["per_target"] = per
        out["ood_flag_rate"] = float(np.mean(self.ood(data)))
        out.update(self.overlap(data))
        return out

    def overlap(self, dataset: PropertyDataset) -> dict[str, int]:
        """``n_in_training`` / ``n_in_validation``: structures of `dataset` identical to one the
        model was fitted (or early-stopped and σ-calibrated) on; metrics on them are optimistic.
        Empty for a model file without fingerprints."""
        seen = getattr(self, "seen_", None) or {}
        if not seen:
            return {}
        mine = _fingerprints(dataset)
        return {f"n_in_{part}": sum(f in set(fps) for f in mine) for part, fps in seen.items()}

    # --- persistence --------------------------------------------------------------------------

    def _meta(self) -> dict:
        params = self.get_params()
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "kind": self.kind,
            "params": {
                **{k: v for k, v in params.items() if k != "progress"},
                "params": self.cfg.model_dump(),
            },
            "targets": self.targets_,
            "units": self.units_,
            "classes": self.classes_,
            "std_scale": self.std_scale_,
            "ood_threshold": self.ood_threshold_,
            "train_ids": self.train_ids_,
            "train_elements": self.train_elements_,
            "val_ids": self.val_ids_,
            "fingerprints": self.seen_,
            "n_train": self.n_train_,
            "n_val": self.n_val_,
            "train_time_s": self.train_time_s_,
            "selection": getattr(self, "selection_", None),
            "state": self._state(),
        }

    def save(self, directory: str | os.PathLike) -> None:
        """Write ``model.json``, ``embeddings.npz`` and the learner's arrays into `directory`."""
        from matloop.utils.files import atomic_path, atomic_write_text

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        with atomic_path(d / "embeddings.npz") as tmp, open(tmp, "wb") as fh:
            np.savez(
                fh,
                train=self.train_embeddings_,
                mean=self.ood_mean_,
                std=self.ood_std_,
            )
        self._save_arrays(d)
        atomic_write_text(d / "model.json", json.dumps(self._meta(), indent=1))

    def _restore(self, meta: dict, directory: Path) -> None:
        self.units_ = meta["units"]
        self.classes_ = meta["classes"]
        self.std_scale_ = meta["std_scale"]
        self.ood_threshold_ = meta["ood_threshold"]
        self.train_ids_ = meta["train_ids"]
        self.train_elements_ = meta.get("train_elements")  # None: a file from before 2026-12
        self.val_ids_ = meta["val_ids"]
        self.seen_ = meta.get("fingerprints")
        self.n_train_, self.n_val_ = meta["n_train"], meta["n_val"]
        self.train_time_s_ = meta["train_time_s"]
        self.selection_ = meta.get("selection")  # set by fit_auto (model: auto)
        with np.load(directory / "embeddings.npz", allow_pickle=False) as z:
            self.train_embeddings_ = z["train"]
            self.ood_mean_ = z["mean"]
            self.ood_std_ = _stored_scale(z["std"])
        self._load_arrays(meta["state"], directory)

    # --- subclass hooks -----------------------------------------------------------------------

    def _fit(self, train: PropertyDataset, val: PropertyDataset) -> None:
        raise NotImplementedError

    def _predict_raw(self, dataset: PropertyDataset) -> tuple[np.ndarray, np.ndarray]:
        """Regression: (mean (n, T), uncalibrated std (n, T)); classes: (proba (n, K), std (n,))."""
        raise NotImplementedError

    def _embed(self, dataset: PropertyDataset) -> np.ndarray:
        raise NotImplementedError

    def _state(self) -> dict:
        raise NotImplementedError

    def _save_arrays(self, directory: Path) -> None:
        raise NotImplementedError

    def _load_arrays(self, state: dict, directory: Path) -> None:
        raise NotImplementedError


# --- crystal graph network ---------------------------------------------------------------------


class CrystalGraphModel(StructurePropertyModel):
    """CGCNN-like network; ``params`` is a :class:`CGCNNConfig` (or its dict)."""

    kind = "cgcnn"

    @property
    def cfg(self) -> CGCNNConfig:
        return CGCNNConfig.model_validate(self.params or {})

    def _n_out(self) -> int:
        return len(self.classes_) if self.task == "classification" else len(self.targets_)

    def _new_net(self, centre: bool = True):
        from matloop.property.graph import CrystalGraphNet

        c = self.cfg
        return CrystalGraphNet(
            self._n_out(),
            c.atom_dim,
            c.n_conv,
            c.hidden_dim,
            c.dropout,
            c.cutoff,
            c.gaussian_step,
            centre=centre,
        )

    def _graphs(self, dataset: PropertyDataset) -> list:
        from tqdm.auto import tqdm

        from matloop.property.graph import build_graph

        c = self.cfg
        return [
            build_graph(a, c.cutoff, c.max_neighbors)
            for a in tqdm(dataset.structures, desc="graphs", disable=not self.progress, leave=False)
        ]

    @with_default_torch_threads
    def _fit(self, train: PropertyDataset, val: PropertyDataset) -> None:
        g_tr, g_va = self._graphs(train), self._graphs(val)
        y_tr, y_va = self._encode(train), self._encode(val)
        if self.task == "regression":
            self.y_mean_ = np.nanmean(y_tr, axis=0)
            self.y_std_ = np.nanstd(y_tr, axis=0) + 1e-12
            self.weights_ = None
        else:
            self.y_mean_ = self.y_std_ = None
            self.weights_ = self._class_weights(y_tr)
        self.nets_ = []
        self.history_ = []
        for m in range(self.cfg.n_members):
            net, hist = self._train_member(m, g_tr, y_tr, g_va, y_va)
            self.nets_.append(net)
            self.history_.append(hist)

    def _loss(self, out, y):
        import torch

        if self.task == "classification":
            w = torch.tensor(self.weights_, dtype=out.dtype)
            return torch.nn.functional.cross_entropy(out, torch.from_numpy(y), weight=w)
        t = torch.from_numpy(((y - self.y_mean_) / self.y_std_).astype(np.float32))
        mask = torch.isfinite(t)
        return ((out - torch.nan_to_num(t)) ** 2)[mask].mean()

    def _val_loss(self, net, graphs, y) -> float:
        """Validation criterion: MAE of normalised targets, or weighted cross-entropy."""
        import torch

        out = self._forward(net, graphs, dropout=False)
        if self.task == "classification":
            return float(self._loss(torch.from_numpy(out), y))
        t = (y - self.y_mean_) / self.y_std_
        return float(np.nanmean(np.abs(out - t)))

    def _train_member(self, m: int, g_tr, y_tr, g_va, y_va):
        import torch

        from matloop.property.graph import collate

        c = self.cfg
        torch.manual_seed(self.seed + m)
        rng = np.random.default_rng(self.seed + m)
        net = self._new_net()
        opt = torch.optim.AdamW(net.parameters(), lr=c.learning_rate, weight_decay=c.weight_decay)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, factor=0.5, patience=max(3, c.patience // 3)
        )
        best, best_state, stale, t0, hist = np.inf, None, 0, time.perf_counter(), []
        from tqdm.auto import tqdm

        bar = tqdm(range(c.epochs), desc=f"member {m}", disable=not self.progress, leave=False)
        for _ in bar:
            net.train()
            order = rng.permutation(len(g_tr))
            for start in range(0, len(order), c.batch_size):
                idx = order[start : start + c.batch_size]
                loss = self._loss(net(collate([g_tr[i] for i in idx])), y_tr[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            v = self._val_loss(net, g_va, y_va)
            hist.append(v)
            sched.step(v)
            bar.set_postfix(val=f"{v:.4f}")
            if v < best - 1e-6:
                best, best_state, stale = v, copy.deepcopy(net.state_dict()), 0
            else:
                stale += 1
            if stale >= c.patience or (c.max_time_s and time.perf_counter() - t0 > c.max_time_s):
                break
        net.load_state_dict(best_state)
        net.eval()
        return net, hist

    def _forward(self, net, graphs, dropout: bool, embed: bool = False) -> np.ndarray:
        import torch

        from matloop.property.graph import collate

        net.eval()
        if dropout:
            for mod in net.modules():
                if isinstance(mod, torch.nn.Dropout):
                    mod.train()
        outs = []
        with torch.no_grad():
            for start in range(0, len(graphs), 256):
                batch = collate(graphs[start : start + 256])
                outs.append((net.embed(batch) if embed else net(batch)).numpy())
        net.eval()
        return np.concatenate(outs).astype(np.float64)

    @with_default_torch_threads
    def _samples(self, dataset: PropertyDataset) -> np.ndarray:
        """(S, n, n_out) outputs: every member, with MC-dropout passes when ``mc_samples`` > 0."""
        graphs = self._graphs(dataset)
        passes = self.cfg.mc_samples
        out = []
        for m, net in enumerate(self.nets_):
            import torch

            torch.manual_seed(self.seed + 1000 + m)
            if passes and self.cfg.dropout > 0:
                out += [self._forward(net, graphs, dropout=True) for _ in range(passes)]
            else:
                out.append(self._forward(net, graphs, dropout=False))
        return np.stack(out)

    def _predict_raw(self, dataset: PropertyDataset):
        s = self._samples(dataset)
        if self.task == "classification":
            e = np.exp(s - s.max(-1, keepdims=True))
            p = e / e.sum(-1, keepdims=True)
            proba = p.mean(0)
            top = proba.argmax(1)
            std = p[:, np.arange(len(top)), top].std(0)
            return proba, std
        values = s * self.y_std_ + self.y_mean_
        return values.mean(0), values.std(0) + 1e-12 * self.y_std_

    def _embed(self, dataset: PropertyDataset) -> np.ndarray:
        return self._forward(self.nets_[0], self._graphs(dataset), dropout=False, embed=True)

    def _state(self) -> dict:
        return {
            "y_mean": None if self.y_mean_ is None else np.asarray(self.y_mean_).tolist(),
            "y_std": None if self.y_std_ is None else np.asarray(self.y_std_).tolist(),
            "class_weights": None if self.weights_ is None else self.weights_.tolist(),
            "n_members": len(self.nets_),
            "history": self.history_,
        }

    def _save_arrays(self, directory: Path) -> None:
        import torch

        from matloop.utils.files import atomic_path

        with atomic_path(directory / "weights.pt") as tmp:
            torch.save({f"member_{m}": n.state_dict() for m, n in enumerate(self.nets_)}, tmp)

    def _load_arrays(self, state: dict, directory: Path) -> None:

        def arr(v):
            return None if v is None else np.asarray(v, dtype=float)

        self.y_mean_, self.y_std_ = arr(state["y_mean"]), arr(state["y_std"])
        self.weights_ = arr(state["class_weights"])
        self.history_ = state["history"]
        weights = torch_load_plain(directory / "weights.pt")
        self.nets_ = []
        for m in range(state["n_members"]):
            member = weights[f"member_{m}"]
            net = self._new_net(centre="pool_norm.running_mean" in member)  # older files: no
            net.load_state_dict(member)
            net.eval()
            self.nets_.append(net)


# --- gradient-boosting baseline ----------------------------------------------------------------

_NODE_FIELDS = ("value", "feature_idx", "num_threshold", "missing_go_to_left", "left", "right")


def export_forest(est) -> dict[str, np.ndarray]:
    """Plain arrays of a fitted HistGradientBoosting model (numerical splits only)."""
    trees = [p for it in est._predictors for p in it]
    sizes = np.array([len(t.nodes) for t in trees])
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    nodes = np.concatenate([t.nodes for t in trees])
    out = {f: np.ascontiguousarray(nodes[f]) for f in _NODE_FIELDS}
    out["is_leaf"] = nodes["is_leaf"].astype(bool)
    for f in ("left", "right"):
        out[f] = out[f].astype(np.int64) + np.repeat(offsets, sizes)
    out["roots"] = offsets.astype(np.int64)
    out["n_per_iter"] = np.array([len(est._predictors[0])])
    out["baseline"] = np.asarray(est._baseline_prediction, dtype=float).ravel()
    return out


def forest_raw(forest: dict[str, np.ndarray], X: np.ndarray) -> np.ndarray:
    """(n, K) raw scores of an exported forest (sum of leaf values + baseline)."""
    n = len(X)
    idx = np.broadcast_to(forest["roots"], (n, len(forest["roots"]))).copy()
    rows = np.arange(n)[:, None]
    while True:
        leaf = forest["is_leaf"][idx]
        if leaf.all():
            break
        x = X[rows, forest["feature_idx"][idx]]
        left = np.where(
            np.isnan(x), forest["missing_go_to_left"][idx] == 1, x <= forest["num_threshold"][idx]
        )
        nxt = np.where(left, forest["left"][idx], forest["right"][idx])
        idx = np.where(leaf, idx, nxt)
    values = forest["value"][idx]  # (n, n_trees)
    k = int(forest["n_per_iter"][0])
    return values.reshape(n, -1, k).sum(1) + forest["baseline"][None, :]


def _proba(raw: np.ndarray) -> np.ndarray:
    if raw.shape[1] == 1:
        p = 1.0 / (1.0 + np.exp(-raw[:, 0]))
        return np.column_stack([1.0 - p, p])
    e = np.exp(raw - raw.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


class GBTBaseline(StructurePropertyModel):
    """HistGradientBoosting on :func:`descriptor_matrix`; ``params`` is a :class:`GBTConfig`."""

    kind = "gbt"

    @property
    def cfg(self) -> GBTConfig:
        return GBTConfig.model_validate(self.params or {})

    def _features(self, dataset: PropertyDataset) -> np.ndarray:
        from matloop.property.features import descriptor_matrix

        return descriptor_matrix(dataset.structures, self.cfg.cutoff, progress=self.progress)

    def _estimator(self, loss: str, quantile: float | None, seed: int, n: int):
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        c = self.cfg
        kw = dict(
            max_iter=c.max_iter,
            learning_rate=c.learning_rate,
            max_leaf_nodes=c.max_leaf_nodes,
            min_samples_leaf=min(c.min_samples_leaf, max(1, n // 5)),
            l2_regularization=c.l2_regularization,
            early_stopping=n >= 200,
            n_iter_no_change=30,
            random_state=seed,
        )
        if self.task == "classification":
            return HistGradientBoostingClassifier(**kw)
        if loss == "quantile":
            return HistGradientBoostingRegressor(loss="quantile", quantile=quantile, **kw)
        return HistGradientBoostingRegressor(**kw)

    def _bootstrap(self, y: np.ndarray, rng) -> np.ndarray:
        if self.task == "classification":  # stratified, so every class stays present
            return np.concatenate(
                [rng.choice(np.flatnonzero(y == c), (y == c).sum()) for c in np.unique(y)]
            )
        return rng.choice(len(y), len(y))

    def _fit(self, train: PropertyDataset, val: PropertyDataset) -> None:  # noqa: ARG002
        from threadpoolctl import threadpool_limits

        # OpenMP threads fighting over 2 shared cores made one fit 17x slower (12 s vs 0.7 s)
        with threadpool_limits(1):
            self._fit_forests(train)

    def _fit_forests(self, train: PropertyDataset) -> None:
        X = self._features(train)
        y = self._encode(train)
        self.feature_mean_ = np.nan_to_num(np.nanmean(X, axis=0))
        self.feature_std_ = _embedding_scale(
            np.nan_to_num(np.nanstd(X, axis=0)), self.feature_mean_
        )
        self.forests_: dict[str, dict[str, np.ndarray]] = {}
        c = self.cfg
        rng = np.random.default_rng(self.seed)
        if self.task == "classification":
            w = self._class_weights(y)[y]
            for m in range(c.n_members):
                idx = self._bootstrap(y, rng) if c.n_members > 1 else np.arange(len(y))
                est = self._estimator("log_loss", None, self.seed + m, len(idx))
                est.fit(X[idx], y[idx], sample_weight=w[idx])
                self.forests_[f"m{m}"] = export_forest(est)
            return
        for t in range(y.shape[1]):
            ok = np.flatnonzero(np.isfinite(y[:, t]))
            if c.uncertainty == "quantile":
                for name, loss, q in (
                    ("mean", "squared_error", None),
                    ("q16", "quantile", 0.158655),
                    ("q84", "quantile", 0.841345),
                ):
                    est = self._estimator(loss, q, self.seed, len(ok)).fit(X[ok], y[ok, t])
                    self.forests_[f"t{t}_{name}"] = export_forest(est)
            else:
                for m in range(c.n_members):
                    idx = ok[self._bootstrap(ok, rng)]
                    est = self._estimator("squared_error", None, self.seed + m, len(idx))
                    self.forests_[f"t{t}_m{m}"] = export_forest(est.fit(X[idx], y[idx, t]))

    def _predict_raw(self, dataset: PropertyDataset):
        X = self._features(dataset)
        c = self.cfg
        if self.task == "classification":
            p = np.stack(
                [_proba(forest_raw(self.forests_[f"m{m}"], X)) for m in range(c.n_members)]
            )
            proba = p.mean(0)
            top = proba.argmax(1)
            return proba, p[:, np.arange(len(top)), top].std(0)
        means, stds = [], []
        for t in range(len(self.targets_)):
            if c.uncertainty == "quantile":
                mean = forest_raw(self.forests_[f"t{t}_mean"], X)[:, 0]
                lo = forest_raw(self.forests_[f"t{t}_q16"], X)[:, 0]
                hi = forest_raw(self.forests_[f"t{t}_q84"], X)[:, 0]
                std = np.abs(hi - lo) / 2
            else:
                r = np.stack(
                    [forest_raw(self.forests_[f"t{t}_m{m}"], X)[:, 0] for m in range(c.n_members)]
                )
                mean, std = r.mean(0), r.std(0)
            means.append(mean)
            stds.append(np.maximum(std, 1e-12))
        return np.column_stack(means), np.column_stack(stds)

    def _embed(self, dataset: PropertyDataset) -> np.ndarray:
        X = self._features(dataset)
        X = np.where(np.isnan(X), self.feature_mean_[None, :], X)
        return (X - self.feature_mean_) / self.feature_std_

    def _state(self) -> dict:
        return {"forests": sorted(self.forests_)}

    def _save_arrays(self, directory: Path) -> None:
        from matloop.utils.files import atomic_path

        flat = {f"{name}/{k}": v for name, f in self.forests_.items() for k, v in f.items()}
        flat["feature_mean"], flat["feature_std"] = self.feature_mean_, self.feature_std_
        with atomic_path(directory / "trees.npz") as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **flat)

    def _load_arrays(self, state: dict, directory: Path) -> None:
        with np.load(directory / "trees.npz", allow_pickle=False) as z:
            self.feature_mean_ = z["feature_mean"]
            self.feature_std_ = _stored_scale(z["feature_std"])
            self.forests_ = {}
            for name in state["forests"]:
                self.forests_[name] = {
                    k: z[f"{name}/{k}"]
                    for k in (*_NODE_FIELDS, "is_leaf", "roots", "n_per_iter", "baseline")
                }


MODELS: dict[str, type[StructurePropertyModel]] = {"cgcnn": CrystalGraphModel, "gbt": GBTBaseline}


def make_model(kind: str, **kwargs) -> StructurePropertyModel:
    """A model of family `kind` (``cgcnn`` or ``gbt``; ``auto`` is :func:`fit_auto`)."""
    if kind not in MODELS:
        hint = "; model 'auto' is fitted with fit_auto" if kind == "auto" else ""
        raise ConfigError(f"unknown model {kind!r} (choose from {', '.join(MODELS)}){hint}")
    return MODELS[kind](**kwargs)


#: families ``fit_auto`` tries, cheapest first (a tie keeps the cheaper one)
AUTO_CANDIDATES = ("gbt", "cgcnn")


def fit_auto(
    dataset: PropertyDataset,
    val: PropertyDataset | None = None,
    params: dict[str, dict | None] | None = None,
    candidates: tuple[str, ...] = AUTO_CANDIDATES,
    **kwargs,
) -> StructurePropertyModel:
    """Fit every family in `candidates` on the same training and validation parts and return
    the fitted model with the better validation score.

    The score is ROC-AUC for classification (balanced accuracy when the validation part holds
    one class) and the MAE of the first target for regression. `params` maps a family to its
    config (:class:`GBTConfig`, :class:`CGCNNConfig`); `kwargs` are the shared settings
    (``target``, ``task``, ``split``, ``seed``, ...). The winner's ``selection_`` (saved in
    ``model.json``) holds the metric, every candidate's score and training time, and the choice.
    Only the validation part is used: a test set stays untouched.
    """
    if not candidates:
        raise ConfigError("fit_auto needs at least one candidate model family")
    params = params or {}
    probe = make_model(candidates[0], **kwargs)
    probe._check()
    data = probe._labelled(dataset)
    if val is None:
        tr, va = make_split(data, probe.split, probe.val_fraction, probe.seed, probe.split_column)
        data, val = data.subset(tr), data.subset(va)
    fitted: dict[str, StructurePropertyModel] = {}
    scores: dict[str, float] = {}
    metric = ""
    for kind in candidates:
        model = make_model(kind, **kwargs, params=params.get(kind)).fit(data, val=val)
        metric, scores[kind] = validation_score(model, val)
        fitted[kind] = model
    if metric == "mae":
        chosen = min(candidates, key=lambda k: (scores[k], candidates.index(k)))
    else:
        chosen = max(candidates, key=lambda k: (scores[k], -candidates.index(k)))
    best = fitted[chosen]
    best.selection_ = {
        "chosen": chosen,
        "metric": metric,
        "target": best.targets_[0],
        "validation": scores,
        "train_time_s": {k: m.train_time_s_ for k, m in fitted.items()},
        "n_val": best.n_val_,
    }
    return best


def validation_score(model: StructurePropertyModel, val: PropertyDataset) -> tuple[str, float]:
    """(metric, value) of `model` on `val`: ``roc_auc`` (higher is better; ``balanced_accuracy``
    when `val` holds one class) or ``mae`` of the first target, in its unit (lower is better)."""
    from matloop.property.metrics import classification_report

    data = model._labelled(val)
    y = model._encode(data)
    if model.task == "classification":
        ok = y >= 0
        rep = classification_report(y[ok], model.predict_proba(data)[ok], model.classes_)
        if np.isfinite(rep["roc_auc"]):
            return "roc_auc", float(rep["roc_auc"])
        return "balanced_accuracy", float(rep["balanced_accuracy"])
    mean = np.asarray(model.predict(data)).reshape(len(data), -1)[:, 0]
    ok = np.isfinite(y[:, 0])
    return "mae", float(np.mean(np.abs(mean[ok] - y[ok, 0])))


def load_model(directory: str | os.PathLike) -> StructurePropertyModel:
    """Load a model written by :meth:`StructurePropertyModel.save` (no pickle anywhere)."""
    d = Path(directory)
    path = d / "model.json"
    if not path.exists():
        raise ModelFileError(f"{d}: no model.json (not a matloop property model directory)")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{path}: corrupted ({exc})") from None
    if not isinstance(meta, dict):
        raise ModelFileError(f"{path}: not a matloop property model (not a JSON object)")
    if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
        raise ModelFileError(f"{path}: not a matloop property model of version {FORMAT_VERSION}")
    if meta.get("kind") not in MODELS:
        raise ModelFileError(f"{path}: unknown model kind {meta.get('kind')!r}")
    try:
        model = MODELS[meta["kind"]](**meta["params"])
        model.cfg  # noqa: B018 - validates the stored hyper-parameters now, not at predict time
        model._restore(meta, d)
    except _BAD_FILE_ERRORS as exc:
        raise ModelFileError(f"{d}: cannot load the model ({_describe(exc)})") from None
    return model


def _describe(exc: Exception) -> str:
    """One short line for a load error (torch's advice to retry without weights_only is not
    repeated: that would run the code a file carries)."""
    import pickle

    if isinstance(exc, pickle.UnpicklingError):
        return "weights.pt holds objects other than tensors; refused, nothing was unpickled"
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


def _bad_file_errors() -> tuple[type[Exception], ...]:
    """What reading a damaged or foreign model directory raises (never a pickle load: torch
    refuses with UnpicklingError, numpy with ValueError)."""
    import pickle
    import zipfile

    from pydantic import ValidationError

    return (
        OSError,
        EOFError,
        KeyError,
        ValueError,
        TypeError,
        RuntimeError,
        AttributeError,
        zipfile.BadZipFile,
        pickle.UnpicklingError,
        ValidationError,
    )


_BAD_FILE_ERRORS = _bad_file_errors()


def _fingerprints(dataset: PropertyDataset) -> list[str]:
    from matloop.property.data import fingerprint

    return [fingerprint(a) for a in dataset.structures]


def _embedding_scale(sd: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Per-dimension scale of the embedding space: the training SD, or 1 where the training set
    does not vary (as scikit-learn's StandardScaler does). Dividing by a vanishing SD made one
    query unlike the training set in a constant feature 10¹⁵ away from everything."""
    return np.where(sd > 1e-6 * np.maximum(np.abs(mean), 1.0), sd, 1.0)


def _stored_scale(sd: np.ndarray) -> np.ndarray:
    """A scale read from a model file: files written before :func:`_embedding_scale` stored
    SD + 1e-8, so a dimension that did not vary reads as unit scale, as it would be fitted now."""
    return np.where(sd > 2e-8, sd, 1.0)
