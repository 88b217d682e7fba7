"""Composition features: component fractions + Magpie-like element-property statistics.

Statistics are atom-fraction weighted over the elements in the composition (from pymatgen's
element data): mean, standard deviation, minimum, maximum, and the same over cations only
(all elements except O, F, S, Cl), plus the oxygen atom fraction.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from matloop.compositions.core import element_fractions, parse_component

#: element properties used (pymatgen ``Element`` attribute → feature name; units in comments)
ELEMENT_PROPERTIES: dict[str, str] = {
    "Z": "Z",
    "atomic_mass": "mass",  # g/mol
    "X": "electroneg",  # Pauling
    "atomic_radius": "radius",  # Å
    "average_ionic_radius": "ionic_radius",  # Å
    "row": "row",
    "group": "group",
    "mendeleev_no": "mendeleev",
    "molar_volume": "molar_volume",  # cm³/mol
    "melting_point": "melting_point",  # K
}
_ANIONS = {"O", "F", "S", "Cl", "N", "Se", "Te_anion"}


@lru_cache(maxsize=256)
def _element_vector(symbol: str) -> tuple[float, ...]:
    from pymatgen.core import Element

    el = Element(symbol)
    out = []
    for attr in ELEMENT_PROPERTIES:
        try:
            v = getattr(el, attr)
            v = float(v) if v is not None else np.nan
        except (AttributeError, KeyError, TypeError, ValueError):  # pymatgen: missing data
            v = np.nan
        out.append(v)
    return tuple(out)


class CompositionFeaturizer:
    """scikit-learn style transformer: amounts (rows × components, any scale) → features.

    ``fit`` only records the component names (no data-dependent state), so it is safe inside
    cross-validation. ``stats=False`` gives fractions only.
    """

    def __init__(self, components: Sequence[str], stats: bool = True):
        self.components = list(components)
        self.stats = stats
        for c in self.components:
            parse_component(c)

    def fit(self, X, y=None) -> CompositionFeaturizer:  # noqa: ARG002 - sklearn API
        return self

    def get_feature_names_out(self) -> list[str]:
        names = [f"x_{c}" for c in self.components]
        if self.stats:
            names.append("frac_O")
            for scope in ("all", "cat"):
                for p in ELEMENT_PROPERTIES.values():
                    names += [f"{scope}_{p}_{s}" for s in ("mean", "std", "min", "max")]
        return names

    def transform(self, X) -> np.ndarray:
        x = np.asarray(X, dtype=float)
        if x.ndim == 1:
            x = x[None, :]
        if x.shape[1] != len(self.components):
            raise ValueError(f"expected {len(self.components)} component columns, got {x.shape[1]}")
        sums = x.sum(axis=1, keepdims=True)
        frac = np.divide(x, sums, out=np.zeros_like(x), where=sums > 0)
        if not self.stats:
            return frac
        elements, af = element_fractions(frac, self.components)
        props = np.array([_element_vector(e) for e in elements])  # elements × props
        # missing element data → mean of the others (keeps statistics finite)
        col_mean = np.nanmean(props, axis=0)
        props = np.where(np.isnan(props), col_mean[None, :], props)
        blocks = [frac]
        o_idx = elements.index("O") if "O" in elements else None
        blocks.append(af[:, [o_idx]] if o_idx is not None else np.zeros((len(x), 1)))
        cation = np.array([e not in _ANIONS for e in elements])
        for mask in (np.ones(len(elements), bool), cation):
            w = af[:, mask]
            ws = w.sum(axis=1, keepdims=True)
            w = np.divide(w, ws, out=np.zeros_like(w), where=ws > 0)
            p = props[mask]
            mean = w @ p
            var = w @ (p**2) - mean**2
            std = np.sqrt(np.clip(var, 0.0, None))
            present = w > 1e-12
            big = np.where(present[:, :, None], p[None, :, :], np.inf)
            mn = big.min(axis=1)
            mx = np.where(present[:, :, None], p[None, :, :], -np.inf).max(axis=1)
            mn = np.where(np.isfinite(mn), mn, 0.0)
            mx = np.where(np.isfinite(mx), mx, 0.0)
            stack = np.stack([mean, std, mn, mx], axis=2)  # rows × props × 4
            blocks.append(stack.reshape(len(x), -1))
        return np.hstack(blocks)

    def fit_transform(self, X, y=None) -> np.ndarray:
        return self.fit(X, y).transform(X)
