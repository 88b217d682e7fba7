"""Training loop: weighted energy/force/stress loss, Adam, plateau LR decay, early stopping on a
validation split, wall-clock budget, checkpoints and resume, a per-epoch log."""

from __future__ import annotations

import copy
import csv
import functools
import inspect
import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import numpy as np
import torch
import yaml
from ase.data import atomic_numbers

from matloop.data import Dataset, fit_reference_energies, random_split
from matloop.data.dataset import energy_of, forces_of, stress_of
from matloop.errors import ConfigError, DataError, FitError, ModelFileError
from matloop.models import Potential, get_family
from matloop.models.graph import AtomicGraph, collate
from matloop.models.io import MODEL_FILENAME, load_model, save_model
from matloop.training.config import TrainConfig
from matloop.utils.files import atomic_path, atomic_write_text
from matloop.utils.safe_io import torch_load_plain
from matloop.utils.threads import default_torch_threads, torch_threads

P = ParamSpec("P")
R = TypeVar("R")

CHECKPOINT_FILENAME = "checkpoint.pt"
CHECKPOINT_FORMAT = "matloop-checkpoint"
CHECKPOINT_VERSION = 2  # 2: tensors + plain data only (weights_only=True)
LOG_CSV = "train_log.csv"
LOG_JSON = "train_log.json"


@dataclass
class TrainResult:
    """What `train` produced."""

    model_path: Path
    log_path: Path
    best_metrics: dict[str, float]
    epochs: int
    seconds: float
    stopped_because: str
    history: list[dict[str, float]] = field(default_factory=list)
    #: what a closed-form fit reports (``metadata["fit"]`` of the model file; empty otherwise)
    fit: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Targets:
    energy: torch.Tensor  # (S,) interaction energy, eV
    forces: torch.Tensor | None  # (N, 3)
    stress: torch.Tensor  # (S, 6), NaN where unknown


@dataclass
class _Prepared:
    graphs: list[AtomicGraph]
    energy: list[float]  # interaction energies (eV)
    forces: list[np.ndarray | None]
    stress: list[np.ndarray | None]

    def batch(self, indices: list[int], dtype: torch.dtype) -> tuple[AtomicGraph, _Targets]:
        graph = collate([self.graphs[i] for i in indices])
        energy = torch.tensor([self.energy[i] for i in indices], dtype=dtype)
        forces = None
        if all(self.forces[i] is not None for i in indices):
            forces = torch.from_numpy(np.concatenate([self.forces[i] for i in indices])).to(dtype)
        stress = torch.full((len(indices), 6), float("nan"), dtype=dtype)
        for row, i in enumerate(indices):
            if self.stress[i] is not None:
                stress[row] = torch.from_numpy(self.stress[i])
        return graph, _Targets(energy, forces, stress)


def _prepare(
    model: Potential, dataset: Dataset, e0: dict[str, float], desc: str, progress: bool
) -> _Prepared:
    from tqdm.auto import tqdm

    graphs, energies, forces, stresses = [], [], [], []
    for atoms in tqdm(dataset, desc=desc, disable=not progress, leave=False):
        graphs.append(model.prepare(atoms))
        e_ref = sum(e0[s] for s in atoms.get_chemical_symbols())
        energies.append(energy_of(atoms) - e_ref)
        forces.append(forces_of(atoms))
        stresses.append(stress_of(atoms))
    return _Prepared(graphs, energies, forces, stresses)


def _errors(
    model: Potential,
    data: _Prepared,
    indices: list[int],
    dtype: torch.dtype,
    weights,
    create_graph: bool = False,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted loss and squared/absolute error sums of a batch."""
    graph, target = data.batch(indices, dtype)
    # while training, only differentiate what the loss uses; when evaluating, report everything
    want_forces = target.forces is not None and (weights.forces > 0 or not create_graph)
    want_stress = bool(torch.isfinite(target.stress).any()) and (
        weights.stress > 0 or not create_graph
    )
    out = model.predict(graph, forces=want_forces, stress=want_stress, create_graph=create_graph)
    n_atoms = graph.n_atoms.to(dtype)
    e_err = (out["energy"] - target.energy) / n_atoms
    loss = weights.energy * (e_err**2).mean()
    stats = {"e_abs": e_err.abs().sum(), "e_sq": (e_err**2).sum(), "n_e": torch.tensor(len(e_err))}
    if "forces" in out:
        f_err = out["forces"] - target.forces
        loss = loss + weights.forces * (f_err**2).mean()
        stats.update(
            f_abs=f_err.abs().sum(), f_sq=(f_err**2).sum(), n_f=torch.tensor(f_err.numel())
        )
    if "virial" in out:
        from matloop.models.outputs import stress_from_virial

        pred = stress_from_virial(out["virial"], graph.volumes)
        mask = torch.isfinite(target.stress).all(1) & torch.isfinite(pred).all(1)
        if mask.any():
            s_err = pred[mask] - target.stress[mask]
            loss = loss + weights.stress * (s_err**2).mean()
            stats.update(
                s_abs=s_err.abs().sum(), s_sq=(s_err**2).sum(), n_s=torch.tensor(s_err.numel())
            )
    return loss, stats


def _summarise(stats: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for s in stats:
        for k, v in s.items():
            total[k] = total.get(k, 0.0) + float(v.detach())
    out = {
        "structures": int(total.get("n_e", 0)),  # fewer than the set: an epoch cut by max_time
        "energy_mae_mev_per_atom": 1000 * total["e_abs"] / max(total["n_e"], 1),
        "energy_rmse_mev_per_atom": 1000 * math.sqrt(total["e_sq"] / max(total["n_e"], 1)),
    }
    if "n_f" in total:
        out["force_mae_ev_per_a"] = total["f_abs"] / max(total["n_f"], 1)
        out["force_rmse_ev_per_a"] = math.sqrt(total["f_sq"] / max(total["n_f"], 1))
    if "n_s" in total:
        from matloop.units import EV_PER_A3_TO_GPA

        out["stress_mae_gpa"] = EV_PER_A3_TO_GPA * total["s_abs"] / max(total["n_s"], 1)
        out["stress_rmse_gpa"] = EV_PER_A3_TO_GPA * math.sqrt(total["s_sq"] / max(total["n_s"], 1))
    return out


def _weighted_score(metrics: dict[str, float], weights) -> float:
    """The validation loss used for model selection: the training loss's terms and weights.

    Energy per atom (eV/atom), forces (eV/Å) and stress (eV/Å³), each a mean squared error.
    """
    from matloop.units import EV_PER_A3_TO_GPA

    score = weights.energy * (metrics["energy_rmse_mev_per_atom"] / 1000) ** 2
    if "force_rmse_ev_per_a" in metrics:
        score += weights.forces * metrics["force_rmse_ev_per_a"] ** 2
    if "stress_rmse_gpa" in metrics:
        score += weights.stress * (metrics["stress_rmse_gpa"] / EV_PER_A3_TO_GPA) ** 2
    return score


def _evaluate(
    model: Potential, data: _Prepared, dtype, weights, batch_size: int = 16
) -> dict[str, float]:
    stats = []
    for start in range(0, len(data.graphs), batch_size):
        idx = list(range(start, min(start + batch_size, len(data.graphs))))
        _, s = _errors(model, data, idx, dtype, weights, create_graph=False)
        stats.append(s)
    return _summarise(stats)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _in_config_threads(func: Callable[P, R]) -> Callable[P, R]:
    """Run `func` with its `config`'s ``training.num_threads`` torch threads (default:
    ``MATLOOP_NUM_THREADS`` or 1); the caller's torch setting is restored afterwards."""
    signature = inspect.signature(func)

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        config = signature.bind(*args, **kwargs).arguments.get("config")
        threads = config.training.num_threads if config is not None else None
        with torch_threads(threads or default_torch_threads()):
            return func(*args, **kwargs)

    return wrapper


@_in_config_threads
def train(
    train_data: Dataset,
    out_dir: str | os.PathLike,
    config: TrainConfig | None = None,
    *,
    valid_data: Dataset | None = None,
    seed: int | None = None,
    max_time: float | None = None,
    resume: bool = False,
    init_model: str | os.PathLike | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train a potential on `train_data` and write ``model.pt`` and the log into `out_dir`.

    Model selection uses `valid_data`, or a random ``training.valid_fraction`` of `train_data`.
    `max_time` (s) bounds the wall-clock time of the optimisation; `resume` continues from
    ``out_dir/checkpoint.pt``; `init_model` warm-starts from a saved model of the same family.
    """
    from tqdm.auto import tqdm

    config = copy.deepcopy(config) if config is not None else TrainConfig()
    if seed is not None:
        config.training.seed = seed
    if max_time is not None:
        config.training.max_time = max_time
    # attribute assignments (and the overrides above) bypass the config's checks: redo them,
    # so that e.g. max_time=0 is one clear error, not a single epoch stopped for "max_time"
    config = config.revalidated()
    tp = config.training
    weights = tp.loss
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = out_dir / CHECKPOINT_FILENAME
    if resume and checkpoint_path.exists():
        check_resumable(checkpoint_path, config.model.family)
    _seed_everything(tp.seed)
    dtype = getattr(torch, tp.dtype)
    start_time = time.perf_counter()

    if len(train_data) == 0:
        raise DataError("the training set is empty")
    check_labels(train_data, "training data")
    if valid_data is not None:
        check_labels(valid_data, "validation data")
    split = valid_data is None
    if valid_data is None:
        if len(train_data) < 2:
            raise DataError("need at least 2 training structures to take a validation split")
        train_data, valid_data = random_split(train_data, tp.valid_fraction, seed=tp.seed)
    elif len(valid_data) == 0:
        raise DataError("the validation set is empty")
    only_valid = sorted(set(valid_data.elements) - set(train_data.elements))
    if only_valid and init_model is None:
        # the model would list them with an E0 of 0 eV and untrained weights
        raise DataError(
            f"element(s) {', '.join(only_valid)} occur only in the validation set, so the model "
            "cannot learn them; add structures with them to the training set"
            + (" (the random validation split took all of them)" if split else "")
        )
    if weights.forces > 0 and not train_data.has_forces:
        raise DataError("training data lacks forces; set training.loss.forces: 0 for energy-only")

    # --- model ---------------------------------------------------------------------------
    elements = sorted(
        set(train_data.elements) | set(valid_data.elements),
        key=lambda symbol: atomic_numbers[symbol],
    )
    if init_model is not None:
        model, _ = load_model(init_model)
        missing = set(elements) - set(model.elements)
        if missing:
            raise ConfigError(f"cannot warm-start from {init_model}: it lacks {sorted(missing)}")
        if model.family != config.model.family:
            raise ConfigError(f"cannot warm-start a {config.model.family} from {model.family}")
        e0 = dict(model.e0)
        model.to(dtype)
    else:
        family = get_family(config.model.family)
        model = family(elements, config.model.family_params()).to(dtype)
        if config.reference_energies == "fit":
            e0 = fit_reference_energies(train_data, elements)
        else:
            missing = set(elements) - set(config.reference_energies)
            if missing:
                raise ConfigError(f"reference_energies lacks {sorted(missing)}")
            e0 = {s: float(config.reference_energies[s]) for s in elements}
        model.set_reference_energies(e0)
    # a closed-form fit (ace) refits E0 jointly, whatever reference_energies says
    fitted_e0 = init_model is None and (model.custom_fit or config.reference_energies == "fit")
    check_training_data(train_data, model, fitted_e0=fitted_e0)

    if model.custom_fit:
        return _train_custom(
            model, train_data, valid_data, config, out_dir, e0, start_time, progress
        )

    train_set = _prepare(model, train_data, e0, "featurising train", progress)
    valid_set = _prepare(model, valid_data, e0, "featurising valid", progress)
    if init_model is None:
        per_atom = torch.tensor(
            [e / g.n_total_atoms for e, g in zip(train_set.energy, train_set.graphs, strict=True)]
        )
        model.fit_normalization(train_set.graphs, per_atom)
    fit_info = (
        model.before_training(train_set.graphs, train_set.energy) if init_model is None else {}
    )
    trainable = model.trainable_parameters()
    frozen = _freeze_all_but(model, trainable)
    fit_info["valid_score_start"] = _weighted_score(
        _evaluate(model, valid_set, dtype, weights), weights
    )

    optimizer = torch.optim.Adam(trainable, lr=tp.learning_rate, weight_decay=tp.weight_decay)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, factor=tp.lr_factor, patience=tp.lr_patience, min_lr=tp.min_learning_rate
    )
    if resume and checkpoint_path.exists():
        state = _Progress.restore(checkpoint_path, model, optimizer, scheduler)
    else:
        state = _Progress(best_state=copy.deepcopy(model.state_dict()))

    setup = state.elapsed_at_start + time.perf_counter() - start_time  # s spent before epoch 1
    n_train = len(train_set.graphs)
    stopped = "max_epochs"
    bar = tqdm(total=tp.max_epochs, initial=state.next_epoch, desc="training", disable=not progress)
    for epoch in range(state.next_epoch, tp.max_epochs):
        model.train()
        # one generator per (seed, epoch): a resumed run shuffles like an uninterrupted one
        order = np.random.default_rng([tp.seed, epoch]).permutation(n_train)
        stats = []
        for start in range(0, n_train, tp.batch_size):
            idx = order[start : start + tp.batch_size].tolist()
            optimizer.zero_grad(set_to_none=True)
            loss, s = _errors(model, train_set, idx, dtype, weights, create_graph=True)
            loss.backward()
            optimizer.step()
            stats.append(s)
            spent = state.elapsed_at_start + time.perf_counter() - start_time
            if tp.max_time is not None and spent >= tp.max_time:
                break  # an epoch longer than the budget (large models, big sets) ends with it
        model.eval()
        train_metrics = _summarise(stats)
        valid_metrics = _evaluate(model, valid_set, dtype, weights)
        score = _weighted_score(valid_metrics, weights)
        state.elapsed = state.elapsed_at_start + time.perf_counter() - start_time
        if tp.lr_schedule == "budget" and tp.max_time:
            # decay over the part of the budget left after featurisation
            fraction = (state.elapsed - setup) / max(tp.max_time - setup, 1e-9)
            fraction = min(max(fraction, 0.0), 1.0)
            ratio = tp.min_learning_rate / tp.learning_rate
            for group in optimizer.param_groups:
                group["lr"] = tp.learning_rate * ratio**fraction
        else:
            scheduler.step(score)
        lr = optimizer.param_groups[0]["lr"]
        row = {"epoch": epoch, "lr": lr, "seconds": round(state.elapsed, 3)}
        row.update({f"train_{k}": v for k, v in train_metrics.items()})
        row.update({f"valid_{k}": v for k, v in valid_metrics.items()})
        state.record(row, score, model)
        bar.update(1)
        bar.set_postfix(
            E=f"{valid_metrics['energy_mae_mev_per_atom']:.2f}meV",
            F=f"{valid_metrics.get('force_mae_ev_per_a', float('nan')):.3f}",
            lr=f"{lr:.1e}",
        )
        if not math.isfinite(score):  # NaN/inf weights never recover: stop, keep the best
            _write_logs(out_dir, state.history)
            if not math.isfinite(state.best_score):
                raise FitError(
                    f"training diverged in epoch {epoch} (validation loss {score}) before any "
                    f"usable epoch; lower training.learning_rate (now {tp.learning_rate:g})"
                )
            stopped = "diverged"
            break
        if (epoch + 1) % tp.checkpoint_every == 0:
            state.save(checkpoint_path, model, optimizer, scheduler)
            _write_logs(out_dir, state.history)
        if state.epochs_since_best >= tp.early_stopping_patience:
            stopped = "early_stopping"
            break
        at_min_lr = lr <= tp.min_learning_rate * 1.0001
        if tp.lr_schedule == "plateau" and at_min_lr and state.epochs_since_best >= tp.lr_patience:
            stopped = "min_learning_rate"
            break
        if tp.max_time is not None and state.elapsed >= tp.max_time:
            stopped = "max_time"
            break
    bar.close()
    # the checkpoint holds the last weights, which match the optimiser's state: a --resume
    # continues from where training stopped, not from the best epoch's weights (diverged
    # weights are not saved: the last checkpoint written before them stays)
    if stopped != "diverged":
        state.save(checkpoint_path, model, optimizer, scheduler)

    model.load_state_dict(state.best_state)
    model.eval()
    for p in frozen:
        p.requires_grad_(True)
    best = state.best_metrics
    metadata = _metadata(train_data, valid_data, config, best, state.elapsed, stopped)
    metadata["fit"] = {**fit_info, "valid_score_best": state.best_score}
    model_path = save_model(model, out_dir / MODEL_FILENAME, metadata)
    log_path = _write_logs(out_dir, state.history)
    _write_config(out_dir, config)
    return TrainResult(
        model_path, log_path, best, len(state.history), state.elapsed, stopped, state.history
    )


def check_training_data(data: Dataset, model: Potential, *, fitted_e0: bool = True) -> None:
    """Data-wide checks before any work (per-structure ones run when the data are read).

    Refuses a model cutoff (Å) shorter than every interatomic distance (ConfigError); warns,
    one line each, about stresses that look like GPa or kbar, forces that contradict the
    energies along the data's own MD frames (sign or units) and, with `fitted_e0`, about
    compositions that do not determine the per-element reference energies.
    """
    import warnings

    from matloop.data.dataset import check_cutoff
    from matloop.data.reference import undetermined_reference_warning

    check_cutoff(data, model.cutoff, f"the {model.family}")
    composition = undetermined_reference_warning(data) if fitted_e0 else None
    notes = [data.stress_units_warning(), data.force_sign_warning(), composition]
    for note in notes:
        if note is not None:
            # no source prefix: a committee's members (per-seed sources) give one text, which
            # the CLI then shows once per run
            warnings.warn(note, stacklevel=3)


def check_labels(structures, what: str) -> None:
    """One clear error for a structure whose energy is missing or whose energy, forces or stress
    is NaN or inf: such a label makes every loss and validation score NaN, so training would
    keep the untrained weights. (Datasets built with ``validate=False`` were never checked.)"""
    from matloop.data.dataset import check_finite_labels

    source = getattr(structures, "source", None) or what
    for index, atoms in enumerate(structures):
        where = f"{source}, frame {index}"
        results = dict(getattr(atoms.calc, "results", None) or {})
        if results.get("energy") is None:
            raise DataError(f"{where}: missing energy")
        check_finite_labels(results, where)


def _freeze_all_but(model: Potential, trainable: list[torch.nn.Parameter]) -> list:
    """Turn off gradients of the parameters not in `trainable`; returns them (to thaw later)."""
    keep = {id(p) for p in trainable}
    frozen = [p for p in model.parameters() if id(p) not in keep and p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    return frozen


def _train_custom(
    model: Potential,
    train_data: Dataset,
    valid_data: Dataset,
    config: TrainConfig,
    out_dir: Path,
    e0: dict[str, float],
    start_time: float,
    progress: bool,
) -> TrainResult:
    """Families with their own fit (closed form, external trainer): fit, validate once, save."""
    fit_info = model.fit(train_data, valid_data, config, out_dir=out_dir, progress=progress)
    model.eval()
    dtype = getattr(torch, config.training.dtype)
    # the fit may refine E0 (linear families fit it jointly): validate with the fitted one
    valid_set = _prepare(model, valid_data, model.e0, "validating", progress)
    valid_metrics = _evaluate(model, valid_set, dtype, config.training.loss)
    elapsed = time.perf_counter() - start_time
    row: dict[str, Any] = {"epoch": 0, "seconds": round(elapsed, 3)}
    row.update({f"valid_{k}": v for k, v in valid_metrics.items()})
    metadata = _metadata(train_data, valid_data, config, row, elapsed, "fitted")
    metadata["fit"] = fit_info or {}
    model_path = save_model(model, out_dir / MODEL_FILENAME, metadata)
    log_path = _write_logs(out_dir, [row])
    _write_config(out_dir, config)
    return TrainResult(model_path, log_path, row, 1, elapsed, "fitted", [row], metadata["fit"])


def _metadata(
    train_data: Dataset,
    valid_data: Dataset,
    config: TrainConfig,
    best: dict[str, Any],
    elapsed: float,
    stopped: str,
) -> dict[str, Any]:
    return {
        "trained_on": {
            "n_structures": len(train_data),
            "n_atoms": train_data.n_atoms,
            "source": train_data.source,
        },
        "validation": {"n_structures": len(valid_data)},
        "best_epoch": best.get("epoch"),
        "best_valid": {k: v for k, v in best.items() if k.startswith("valid_")},
        "train_seconds": round(elapsed, 2),
        "stopped_because": stopped,
        "config": config.model_dump(mode="json"),
    }


def _write_config(out_dir: Path, config: TrainConfig) -> None:
    atomic_write_text(
        out_dir / "config.yaml", yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    )


@dataclass
class _Progress:
    """Everything besides the model/optimiser that a checkpoint must restore."""

    best_state: dict[str, torch.Tensor]
    best_score: float = math.inf
    best_metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    epochs_since_best: int = 0
    elapsed: float = 0.0
    elapsed_at_start: float = 0.0

    @property
    def next_epoch(self) -> int:
        return len(self.history)

    def record(self, row: dict[str, float], score: float, model: Potential) -> None:
        """Append an epoch's log row; keep the weights if the validation score improved."""
        self.history.append(row)
        if score < self.best_score:
            self.best_score, self.best_metrics = score, dict(row)
            self.best_state = copy.deepcopy(model.state_dict())
            self.epochs_since_best = 0
        else:
            self.epochs_since_best += 1

    def save(self, path: Path, model, optimizer, scheduler) -> None:
        """Write a checkpoint of tensors and plain data only (loads with ``weights_only=True``)."""
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        payload = {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_VERSION,
            "family": model.family,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "progress": {k: v for k, v in vars(self).items() if k != "elapsed_at_start"},
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": [
                str(kind),
                torch.from_numpy(keys.astype(np.int64)),
                int(pos),
                int(has_gauss),
                float(cached),
            ],
        }
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)

    @classmethod
    def restore(cls, path: Path, model, optimizer, scheduler) -> _Progress:
        payload = load_checkpoint(path)
        try:
            model.load_state_dict(payload["model"])
            optimizer.load_state_dict(payload["optimizer"])
            scheduler.load_state_dict(payload["scheduler"])
            torch.set_rng_state(payload["torch_rng"])
            kind, keys, pos, has_gauss, cached = payload["numpy_rng"]
            np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
            progress = cls(**payload["progress"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise ModelFileError(
                f"{path}: checkpoint does not match this model and configuration "
                f"({type(exc).__name__}); train without --resume or into a new --out"
            ) from None
        progress.elapsed_at_start = progress.elapsed
        return progress


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a trainer checkpoint with ``torch.load(weights_only=True)``: tensors and plain data.

    A file carrying anything else (pickled objects that could run code) is refused.
    """
    import pickle
    import warnings
    import zipfile

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about foreign pickle protocols
            payload = torch_load_plain(path)
    except pickle.UnpicklingError:
        raise ModelFileError(
            f"{path}: refusing to load a checkpoint that holds objects other than tensors "
            "and plain data (loading it could run code)"
        ) from None
    except (zipfile.BadZipFile, EOFError, RuntimeError, OSError, ValueError) as exc:
        raise ModelFileError(
            f"{path}: unreadable checkpoint (truncated or corrupted?): {type(exc).__name__}"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ModelFileError(f"{path}: not a matloop training checkpoint")
    if payload.get("format_version") != CHECKPOINT_VERSION:
        raise ModelFileError(
            f"{path}: checkpoint format version {payload.get('format_version')} is not "
            f"supported (expects {CHECKPOINT_VERSION}); train without --resume"
        )
    return payload


def check_resumable(path: str | os.PathLike, family: str) -> None:
    """Refuse to `--resume` checkpoint `path` as a `family` run it cannot continue.

    A closed-form family (``ace``, ``kernel``, ...) never writes a checkpoint, so resuming one
    would silently refit from scratch and overwrite the model of the run that wrote it; a
    checkpoint of another family cannot be continued either. Checkpoints name their family
    (files from before that only get the closed-form check).
    """
    payload = load_checkpoint(path)
    written_by = payload.get("family")
    if written_by is not None and written_by != family:
        raise ConfigError(
            f"{path} continues a {written_by!r} run, not {family!r}; resume with the original "
            "run's --model/--config, or train into another --out"
        )
    if get_family(family).custom_fit:
        raise ConfigError(
            f"--resume continues gradient training, but {family!r} is fitted in one step and "
            f"{path} belongs to another run; resume with the original run's --model/--config, "
            "or train into another --out"
        )


def _write_logs(out_dir: Path, history: list[dict[str, Any]]) -> Path:
    csv_path = out_dir / LOG_CSV
    if history:
        keys = list(dict.fromkeys(k for row in history for k in row))
        with atomic_path(csv_path) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=keys)
            writer.writeheader()
            writer.writerows(history)
    atomic_write_text(out_dir / LOG_JSON, json.dumps(history, indent=1))
    return csv_path
