"""Model files that are plain data: JSON metadata and numpy arrays in one ``.npz`` archive.

Nothing in a file is ever unpickled or executed. Arrays load with ``allow_pickle=False``; fitted
scikit-learn objects are stored with skops, whose loader rebuilds only the types named in an
explicit trusted list (any other type in a file is refused before anything is built). A file
that is not such an archive (a pickle, a joblib dump, a torch file) is refused with one line.
"""

from __future__ import annotations

import json
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from matloop.errors import ConfigError, ModelFileError

META_KEY = "__meta__"
ESTIMATOR_KEY = "__estimator__"

# Every non-builtin type matloop's surrogate and design models contain once fitted. A file that
# names any other type is refused; extend this list only with classes whose state is plain data.
_KERNELS = "sklearn.gaussian_process.kernels."
TRUSTED_TYPES: tuple[str, ...] = (
    "matloop.surrogate.models.PolynomialSurrogate",
    "matloop.surrogate.models.GPSurrogate",
    "matloop.surrogate.models.BootstrapEnsemble",
    "matloop.surrogate.models.DeltaModel",
    "matloop.design.models._Scaler",
    "matloop.design.models._SingleProperty",
    "matloop.compositions.features.CompositionFeaturizer",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.preprocessing._polynomial.PolynomialFeatures",
    "sklearn.gaussian_process._gpr.GaussianProcessRegressor",
    "sklearn.ensemble._forest.RandomForestRegressor",
    "sklearn.ensemble._forest.ExtraTreesRegressor",
    "sklearn.tree._classes.DecisionTreeRegressor",
    "sklearn.tree._classes.ExtraTreeRegressor",
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn._loss.loss.HalfSquaredError",
    "sklearn._loss.link.IdentityLink",
    "sklearn._loss.link.Interval",
    *(
        _KERNELS + name
        for name in (
            "RBF",
            "Matern",
            "RationalQuadratic",
            "ConstantKernel",
            "WhiteKernel",
            "DotProduct",
            "Sum",
            "Product",
            "Exponentiation",
            "Hyperparameter",
        )
    ),
)


def _untrusted(blob: bytes) -> list[str]:
    import skops.io as sio

    return sorted(set(sio.get_untrusted_types(data=blob)) - set(TRUSTED_TYPES))


def estimator_to_array(obj: Any) -> np.ndarray:
    """`obj` (a fitted estimator) as skops bytes in a uint8 array; refuses untrusted types."""
    import skops.io as sio

    try:
        blob = sio.dumps(obj)
    except (TypeError, NotImplementedError) as exc:
        raise ConfigError(f"cannot store {type(obj).__name__} as plain data: {exc}") from None
    bad = _untrusted(blob)
    if bad:
        raise ConfigError(
            f"cannot store {type(obj).__name__}: it contains {', '.join(bad)}, which matloop "
            "does not load from files"
        )
    return np.frombuffer(blob, dtype=np.uint8)


def estimator_from_array(array: np.ndarray, source: str) -> Any:
    """Rebuild an estimator from :func:`estimator_to_array`'s bytes (trusted types only)."""
    import skops.io as sio

    blob = np.asarray(array, dtype=np.uint8).tobytes()
    try:
        bad = _untrusted(blob)
    except Exception as exc:  # noqa: BLE001 - any parse failure means a corrupted file
        raise ModelFileError(f"{source}: corrupted model data ({type(exc).__name__})") from None
    if bad:
        raise ModelFileError(
            f"{source}: refusing to load types that are not plain model data: {', '.join(bad)}"
        )
    try:
        return sio.loads(blob, trusted=list(TRUSTED_TYPES))
    except Exception as exc:  # noqa: BLE001 - the file is refused, whatever the cause
        raise ModelFileError(f"{source}: corrupted model data ({type(exc).__name__})") from None


def save_bundle(
    path: str | os.PathLike,
    fmt: str,
    version: int,
    meta: dict[str, Any],
    arrays: dict[str, np.ndarray],
) -> None:
    """Write JSON `meta` (tagged with `fmt`/`version`) and `arrays` to `path` atomically (.npz)."""
    from matloop.utils.files import atomic_path

    header = {"format": fmt, "format_version": version, **meta}
    try:
        text = json.dumps(header, allow_nan=True)
    except TypeError as exc:
        raise ConfigError(f"model metadata is not plain data: {exc}") from None
    payload = {META_KEY: np.frombuffer(text.encode(), dtype=np.uint8), **arrays}
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **payload)


def load_bundle(
    path: str | os.PathLike, fmt: str, version: int, what: str
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a :func:`save_bundle` file; :class:`ModelFileError` for anything else.

    `what` names the kind of file in messages (e.g. "surrogate model").
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{what} file {path} does not exist")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(
            f"{path}: not a matloop {what} file: truncated or corrupted, or another format "
            "(pickle, joblib and other formats that can carry code are refused)"
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise ModelFileError(f"{path}: unreadable {what} file ({exc})") from None
    if META_KEY not in arrays:
        raise ModelFileError(f"{path}: not a matloop {what} file (no metadata)")
    try:
        meta = json.loads(arrays.pop(META_KEY).astype(np.uint8).tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError) as exc:
        raise ModelFileError(f"{path}: corrupted {what} metadata ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        raise ModelFileError(f"{path}: not a matloop {what} file (no '{fmt}' tag)")
    if meta.get("format_version") != version:
        raise ModelFileError(
            f"{path}: {what} file format version {meta.get('format_version')} is not supported "
            f"by this matloop (expects {version})"
        )
    return meta, arrays


def torch_load_plain(path, **kwargs):
    """``torch.load(path, map_location="cpu", weights_only=True)``: tensors and plain data only.

    torch warns about the pickle protocol of a file it is about to refuse; matloop reports the
    refusal itself in one line, so that warning is not shown.
    """
    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"(?s).*Detected pickle protocol")
        return torch.load(path, map_location="cpu", weights_only=True, **kwargs)


def nets_to_arrays(nets: list, prefix: str) -> dict[str, np.ndarray]:
    """The weights of an ensemble of torch modules as plain arrays, ``PREFIX.MEMBER.NAME``."""
    return {
        f"{prefix}.{m}.{key}": value.detach().cpu().numpy()
        for m, net in enumerate(nets)
        for key, value in net.state_dict().items()
    }


def nets_from_arrays(arrays: dict, prefix: str, n_members: int, make_net) -> list:
    """The ensemble :func:`nets_to_arrays` wrote: `n_members` fresh ``make_net()`` modules with
    their weights loaded, in eval mode."""
    import torch

    nets = []
    for m in range(n_members):
        head = f"{prefix}.{m}."
        net = make_net()
        net.load_state_dict(
            {
                k[len(head) :]: torch.from_numpy(np.array(v))
                for k, v in arrays.items()
                if k.startswith(head)
            }
        )
        net.eval()
        nets.append(net)
    return nets
