"""One-file model format: architecture, hyper-parameters, elements, E0, normalisation, weights.

The file is a ``torch.save`` archive holding only plain data (dicts, lists, numbers, strings and
tensors), so it loads with ``weights_only=True``: no code is unpickled.
"""

from __future__ import annotations

import math
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from matloop.errors import ModelFileError
from matloop.models.base import Potential
from matloop.utils.safe_io import torch_load_plain

FORMAT_NAME = "matloop-potential"
FORMAT_VERSION = 1
MODEL_FILENAME = "model.pt"
# the dtypes a model file may name (never looked up on the torch module by the file's string)
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def save_model(
    model: Potential, path: str | os.PathLike, metadata: dict[str, Any] | None = None
) -> Path:
    """Write `model` to `path` atomically."""
    from matloop._version import __version__
    from matloop.utils.files import atomic_path

    payload = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "matloop_version": __version__,
        "family": model.family,
        "elements": list(model.elements),
        "e0": dict(model.e0),
        "hyperparameters": model.hyperparameters(),
        "dtype": str(model.dtype).replace("torch.", ""),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metadata": metadata or {},
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def resolve_model_path(path: str | os.PathLike) -> Path:
    """Accept the model file or the directory `matloop train` wrote."""
    path = Path(path)
    if path.is_dir():
        candidate = path / MODEL_FILENAME
        if not candidate.exists():
            raise ModelFileError(f"{path} is a directory without {MODEL_FILENAME}")
        return candidate
    if not path.exists():
        raise ModelFileError(f"model file not found: {path}")
    return path


def read_payload(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check the raw payload of a model file."""
    path = resolve_model_path(path)
    try:
        payload = torch_load_plain(path)
    except Exception as exc:  # noqa: BLE001 - torch's unpickler raises many kinds on bad files
        raise ModelFileError(
            f"{path} is not a readable matloop model (truncated or corrupted?): "
            f"{_load_failure_reason(path, exc)}"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
        raise ModelFileError(f"{path} is not a matloop model file")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise ModelFileError(
            f"{path} uses model format {version!r} (written by matloop "
            f"{payload.get('matloop_version', '?')}); this matloop reads format {FORMAT_VERSION}. "
            "Upgrade matloop or retrain the model."
        )
    return payload


def _load_failure_reason(path: Path, exc: BaseException) -> str:
    """One line saying why `path` could not be read as a model file.

    Not a torch archive at all (e.g. an extxyz or CSV file given as the model): say so rather
    than repeat torch's advice to turn its weights-only safety off, which matloop never does.
    """
    try:
        is_archive = zipfile.is_zipfile(path)
    except OSError:
        is_archive = False
    if not is_archive:
        return "not a torch archive (matloop writes model files with torch.save)"
    if isinstance(exc, pickle.UnpicklingError) and "weights only" in str(exc).lower():
        return "it holds objects other than tensors and plain data (refused: no code is unpickled)"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _one_line(exc: BaseException, limit: int = 300) -> str:
    """`exc` as one short line (pydantic and torch's state_dict errors span many lines)."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        errors = exc.errors()
        parts = [f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in errors[:3]]
        more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
        text = f"hyperparameters: {'; '.join(parts)}{more}"
    else:
        text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_model(path: str | os.PathLike) -> tuple[Potential, dict[str, Any]]:
    """Rebuild the potential stored in `path`; returns ``(model, metadata)``."""
    from matloop.models import get_family

    payload = read_payload(path)
    try:
        dtype_name = payload.get("dtype", "float32")
        if dtype_name not in _DTYPES:
            raise ModelFileError(f"{path}: unknown dtype {dtype_name!r} (expected float32/64)")
        e0 = payload["e0"]
        if not isinstance(e0, dict) or not all(math.isfinite(float(v)) for v in e0.values()):
            raise ModelFileError(f"{path}: reference energies E0 are not finite numbers")
        if not isinstance(payload.get("metadata", {}), dict):
            raise ModelFileError(f"{path}: metadata is not a mapping (corrupted file?)")
        cls = get_family(payload["family"])
        model = cls.from_hyperparameters(payload["elements"], payload["hyperparameters"])
        model.to(_DTYPES[dtype_name])
        model.load_state_dict(payload["state_dict"])
        model.set_reference_energies(e0)
    except ModelFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - any mismatch means the file is unusable
        raise ModelFileError(
            f"{path}: stored {payload.get('family')!r} model does not match its architecture: "
            f"{_one_line(exc)}"
        ) from exc
    model.eval()
    return model, dict(payload.get("metadata", {}))
