"""Train a committee of potentials (different seeds and bootstrap subsets) for uncertainty."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from matloop.utils.files import atomic_write_text

# torch's forward-mode AD (used by the descriptors) is not thread-safe: members that land on
# threads of the same process (e.g. a Dask worker with several threads) train one at a time.
_TRAIN_LOCK = threading.Lock()


def _train_member(
    structures: list[Any],
    member_dir: str,
    config: Any,
    seed: int,
    bootstrap: bool,
    init_model: str | None,
    max_time: float | None,
    valid_structures: list[Any] | None,
    fingerprint: str | None = None,
) -> dict[str, Any]:
    """Train one member (top-level so that process pools and Dask can pickle it)."""
    from matloop.data import Dataset
    from matloop.training import train

    n = len(structures)
    rng = np.random.default_rng(seed)
    if bootstrap and n >= 4:
        idx = rng.integers(0, n, size=n)
        oob = sorted(set(range(n)) - set(idx.tolist()))
        train_atoms = [structures[i] for i in idx]
    else:
        idx = np.arange(n)
        oob = []
        train_atoms = list(structures)
    valid = None
    if valid_structures:
        valid = Dataset(valid_structures, source="validation", validate=False)
    elif oob:
        valid = Dataset([structures[i] for i in oob], source="out-of-bag", validate=False)
    ds = Dataset(train_atoms, source=f"committee member seed {seed}", validate=False)
    with _TRAIN_LOCK:
        result = train(
            ds,
            member_dir,
            config=config,
            valid_data=valid,
            seed=seed,
            max_time=max_time,
            init_model=init_model,
            progress=False,
        )
    record = {
        "model_path": str(result.model_path),
        "seed": int(seed),
        "bootstrap": bool(bootstrap),
        "n_train": len(train_atoms),
        "n_unique": len(set(idx.tolist())),
        "n_valid": 0 if valid is None else len(valid),
        "best_metrics": {
            k: v for k, v in (result.best_metrics or {}).items() if isinstance(v, int | float | str)
        },
        "seconds": float(result.seconds),
        "fingerprint": fingerprint,
    }
    atomic_write_text(Path(member_dir) / "member.json", json.dumps(record, indent=2))
    return record


def _fingerprint(
    structures: list[Any], valid: list[Any] | None, config: Any, max_time: float | None
) -> str:
    """A hash of what the members are trained from: structures and their labels, the
    validation set, the configuration (threads aside) and the time budget."""
    import hashlib

    from matloop.data.dataset import config_type_of

    h = hashlib.sha256()

    def add_structures(tag: bytes, frames: list[Any]) -> None:
        h.update(tag + str(len(frames)).encode())
        for atoms in frames:
            h.update(np.asarray(atoms.numbers, dtype=np.int64).tobytes())
            h.update(np.asarray(atoms.get_positions(), dtype=np.float64).tobytes())
            h.update(np.asarray(atoms.cell.array, dtype=np.float64).tobytes())
            h.update(np.asarray(atoms.pbc, dtype=bool).tobytes())
            results = getattr(atoms.calc, "results", None) or {}
            for key in ("energy", "forces", "stress"):
                value = results.get(key)
                h.update(key.encode())
                if value is not None:
                    h.update(np.asarray(value, dtype=np.float64).tobytes())
            h.update(config_type_of(atoms).encode())

    add_structures(b"train", structures)
    add_structures(b"valid", valid or [])
    settings = config.model_dump(mode="json")
    settings.get("training", {}).pop("num_threads", None)
    h.update(json.dumps([settings, max_time], sort_keys=True).encode())
    return h.hexdigest()


def train_committee(
    dataset: Sequence[Any],
    out_dir: str | Path,
    config: Any = None,
    n_members: int = 4,
    seeds: Sequence[int] | None = None,
    bootstrap: bool = True,
    executor: Any = None,
    *,
    valid_data: Sequence[Any] | None = None,
    init_models: Sequence[str | Path | None] | None = None,
    max_time: float | None = None,
    skip_existing: bool = True,
) -> list[Path]:
    """Train `n_members` potentials with :func:`matloop.training.train`; return model paths.

    Member k uses seed ``seeds[k]`` (default 0..n-1) and, with `bootstrap`, a sample of the
    dataset drawn with replacement (its out-of-bag structures are the validation set unless
    `valid_data` is given). `init_models[k]` warm-starts member k. Members already finished in
    `out_dir` (``member_k/member.json``) are reused when `skip_existing` and they were trained
    with the same seed, bootstrap, data, labels and configuration (else they are retrained).
    With an `executor` (see :mod:`matloop.execution`) members train in parallel.
    """
    if config is None:
        from matloop.training import TrainConfig

        config = TrainConfig()
    seeds = list(seeds) if seeds is not None else list(range(n_members))
    if len(seeds) != n_members:
        raise ValueError(f"{len(seeds)} seeds for {n_members} members")
    init_models = list(init_models) if init_models is not None else [None] * n_members
    out_dir = Path(out_dir)
    structures = list(dataset)
    valid = list(valid_data) if valid_data is not None else None
    paths: dict[int, Path] = {}
    todo = []

    common = _fingerprint(structures, valid, config, max_time)

    def fingerprint(init_model: str | Path | None) -> str:  # the warm start differs per member
        return f"{common}:{init_model}"

    for k in range(n_members):
        member_dir = out_dir / f"member_{k}"
        marker = member_dir / "member.json"
        if skip_existing and marker.exists():
            try:
                rec = json.loads(marker.read_text())
                # the fingerprint covers the data (their number too) and the config (family)
                wanted = {
                    "seed": int(seeds[k]),
                    "bootstrap": bool(bootstrap),
                    "fingerprint": fingerprint(init_models[k]),
                }
                # a member without a fingerprint (older matloop) cannot show it used these data
                same = all(rec.get(key) == value for key, value in wanted.items())
                if same and Path(rec["model_path"]).exists():
                    paths[k] = Path(rec["model_path"])
                    continue
                if not same:
                    marker.unlink()  # a stale member: never reused, even if retraining fails
            except (ValueError, KeyError):
                pass
        init = None if init_models[k] is None else str(init_models[k])
        todo.append(
            (
                k,
                (
                    structures,
                    str(member_dir),
                    config,
                    int(seeds[k]),
                    bootstrap,
                    init,
                    max_time,
                    valid,
                    fingerprint(init),
                ),
            )
        )
    if executor is None or executor.n_workers <= 1:
        for k, args in todo:
            paths[k] = Path(_train_member(*args)["model_path"])
    else:
        futures = {executor.submit(_train_member, *args): k for k, args in todo}
        for fut in executor.as_completed(list(futures)):
            paths[futures[fut]] = Path(fut.result()["model_path"])
    return [paths[k] for k in range(n_members)]


def load_committee(paths: Sequence[str | Path], **kwargs: Any):
    """A :class:`~matloop.calculators.committee.CommitteeCalculator` of saved models."""
    from matloop.calculators import load_calculator
    from matloop.calculators.committee import CommitteeCalculator

    return CommitteeCalculator([load_calculator(p) for p in paths], **kwargs)
