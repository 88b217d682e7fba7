"""Composition features: component fractions + Magpie-like element-property statistics, and
optional oxide-glass structure descriptors.

Statistics are atom-fraction weighted over the elements in the composition (from pymatgen's
element data): mean, standard deviation, minimum, maximum, and the same over cations only
(all elements except O, F, S, Cl), plus the oxygen atom fraction.

Glass descriptors (``glass=True``, :data:`GLASS_FEATURES`) are derived from each component's
formula with pymatgen (cation element, oxidation state, Shannon radius, molar mass) and the
cation's structural role (Zachariasen–Sun: network former, intermediate, modifier): fractions of
formers / intermediates / modifiers, mixed-alkali measures, mean field strength Z/r², non-bridging
oxygens per tetrahedron (NBO/T) with charge compensation of Al and B by the modifiers, the
borate-anomaly ratios R and K, and molar-mass / ionic-volume proxies. Boosted trees and MLPs
fed only mole fractions would have to learn these ratios of sums from data.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from matloop.compositions.core import (
    _check_amounts,
    element_fractions,
    molar_mass,
    parse_component,
)
from matloop.errors import DataError

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
#: formal charge of anions, used to count oxygen equivalents (F⁻ = ½ O²⁻)
_ANION_CHARGE = {"O": -2.0, "F": -1.0, "S": -2.0, "Cl": -1.0, "N": -3.0, "Se": -2.0}
#: classical network-forming cations (Zachariasen); alkali, alkaline-earth and rare-earth cations
#: are modifiers (pymatgen's element classes); every other cation is an intermediate
_FORMERS = {"Si", "B", "P", "Ge", "As"}

#: glass descriptor name → meaning and unit ("cation fraction": per cation, 0–1)
GLASS_FEATURES: dict[str, str] = {
    "gl_former": "network-former cations (Si, B, P, Ge, As), cation fraction",
    "gl_intermediate": "intermediate cations (neither former nor modifier), cation fraction",
    "gl_modifier": "modifier cations (alkali, alkaline earth, rare earth), cation fraction",
    "gl_alkali": "alkali cations, cation fraction",
    "gl_alkaline_earth": "alkaline-earth cations, cation fraction",
    "gl_alkali_share": "alkali share of the alkali + alkaline-earth charge, 0–1",
    "gl_mixed_alkali": "1 − Σ (share of each alkali)², 0 for a single alkali",
    "gl_mixed_alkaline_earth": "1 − Σ (share of each alkaline earth)²",
    "gl_fs_mean": "mean cation field strength Z/r², Å⁻² (Shannon radii)",
    "gl_fs_modifier": "mean modifier field strength Z/r², Å⁻² (0 without modifiers)",
    "gl_fs_former": "mean former + intermediate field strength Z/r², Å⁻²",
    "gl_valence_mean": "mean cation oxidation state",
    "gl_O_per_cation": "oxygen equivalents per cation",
    "gl_T_per_O": "tetrahedral network cations (formers, charge-compensated Al and B) per O",
    "gl_nbo_t": "non-bridging O per tetrahedral cation left by modifier charge, capped at 4",
    "gl_nbo_t_int": "as gl_nbo_t, non-Al intermediates of charge ≤ 3 (Pb, Zn, Bi) as modifiers",
    "gl_n4": "fraction of B four-coordinated (modifier charge after Al, Dell–Bray first stage)",
    "gl_al_uncompensated": "Al without modifier charge compensation (peraluminous), cation frac.",
    "gl_borate_R": "R/(1+R), R = modifier oxide / B2O3 (charge equivalents); without B: 1, "
    "or 0 with no modifier either",
    "gl_borate_K": "K/(1+K), K = SiO2/B2O3 (molar); 1 without B, 0 without Si",
    "gl_lone_pair": "ns² lone-pair cations (Pb²⁺, Bi³⁺, Sb³⁺, Te⁴⁺ …), cation fraction",
    "gl_d0": "d⁰ transition-metal cations (Ti⁴⁺, Zr⁴⁺, Nb⁵⁺, W⁶⁺ …), cation fraction",
    "gl_mass_per_O": "molar mass per mole of oxygen equivalents, g/mol",
    "gl_vion_per_O": "ionic volume (cations + anions, Shannon radii) per oxygen, Å³",
    "gl_ionic_density": "molar mass / ionic volume, g/cm³ (upper bound of the density)",
}
#: per-component extensive quantities that the descriptors are ratios of
_EXTENSIVE = (
    "cat", "former", "inter", "mod", "alk", "ae", "q_alk", "q_ae", "q_mod", "q_inter",
    "al", "b", "si", "fs", "fs_mod", "fs_net", "val", "O", "lone", "d0", "mass", "vion",
)  # fmt: skip


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


def _radius(symbol: str, charge: float) -> float:
    """Shannon (crystal) radius of the ion in Å; average ionic or atomic radius as fallbacks."""
    from pymatgen.core import Element, Species

    r = None
    if abs(charge - round(charge)) < 1e-6 and round(charge) != 0:
        try:
            r = Species(symbol, int(round(charge))).ionic_radius
        except (ValueError, KeyError):  # pymatgen: no radius for this state
            r = None
    el = Element(symbol)
    for cand in (r, el.average_ionic_radius, el.atomic_radius):
        if cand is not None and float(cand) > 0:
            return float(cand)
    return 1.0


#: elements that are cations beside oxygen: S⁶⁺ in SO3 / Na2SO4, Se⁴⁺ in SeO2, N⁵⁺ in NaNO3
_CATION_WITH_O = {"S", "Se", "N"}


def _anions(atoms: dict[str, float]) -> set[str]:
    """The anion elements of a component: those of :data:`_ANION_CHARGE`, except S, Se and N
    beside oxygen (sulfates, selenites, nitrates), where they are cations."""
    out = {e for e in atoms if e in _ANION_CHARGE}
    return out - _CATION_WITH_O if "O" in atoms else out


def _cation_charges(component: str) -> dict[str, float]:
    """Oxidation state of each cation element of a component formula (anions: formal)."""
    from pymatgen.core import Composition, Element

    atoms = parse_component(component)
    anions = _anions(atoms)
    cations = [e for e in atoms if e not in anions]
    anion_charge = -sum(_ANION_CHARGE[e] * n for e, n in atoms.items() if e in anions)
    if len(cations) == 1:
        return {cations[0]: anion_charge / atoms[cations[0]]}
    guesses = Composition(component).oxi_state_guesses(max_sites=-1) if cations else ()
    if guesses:
        return {e: float(guesses[0][e]) for e in cations}
    return {e: float((Element(e).common_oxidation_states or (0,))[0]) for e in cations}


@lru_cache(maxsize=64)
def _glass_table(components: tuple[str, ...]) -> np.ndarray:
    """Components × :data:`_EXTENSIVE`: amounts per formula unit of each component."""
    from pymatgen.core import Element

    table = np.zeros((len(components), len(_EXTENSIVE)))
    col = {k: i for i, k in enumerate(_EXTENSIVE)}
    for i, comp in enumerate(components):
        atoms = parse_component(comp)
        row = table[i]
        row[col["mass"]] = molar_mass(comp)
        anions = _anions(atoms)
        for e, n in atoms.items():
            if e in anions:
                row[col["O"]] += n * -_ANION_CHARGE[e] / 2
                row[col["vion"]] += n * 4 / 3 * np.pi * _radius(e, _ANION_CHARGE[e]) ** 3
        for e, z in _cation_charges(comp).items():
            n, el = atoms[e], Element(e)
            r = _radius(e, z)
            role = (
                "former"
                if e in _FORMERS
                else "mod"
                if el.is_alkali or el.is_alkaline or el.is_rare_earth
                else "inter"
            )
            row[col["cat"]] += n
            row[col[role]] += n
            if role == "mod":
                row[col["q_mod"]] += n * z
            elif (
                role == "inter" and e != "Al" and z <= 3
            ):  # Pb²⁺, Zn²⁺, Bi³⁺ …: modifier-like at low field strength
                row[col["q_inter"]] += n * z
            row[col["val"]] += n * z
            row[col["vion"]] += n * 4 / 3 * np.pi * r**3
            row[col["fs"]] += n * z / r**2
            row[col["fs_mod" if role == "mod" else "fs_net"]] += n * z / r**2
            if el.is_alkali or el.is_alkaline:
                kind = "alk" if el.is_alkali else "ae"
                row[col[kind]] += n
                row[col["q_" + kind]] += n * z
            for name in ("al", "b", "si"):
                if e == name.capitalize():
                    row[col[name]] += n
            group = el.group
            if 13 <= group <= 16 and abs(z - (group - 12)) < 1e-6:
                row[col["lone"]] += n  # two below the group valence: ns² pair left
            if 4 <= group <= 7 and abs(z - group) < 1e-6:
                row[col["d0"]] += n
    return table


def _div(a: np.ndarray, b: np.ndarray, empty: float = 0.0) -> np.ndarray:
    return np.divide(a, b, out=np.full_like(a, empty, dtype=float), where=b > 1e-12)


def glass_descriptors(frac: np.ndarray, components: Sequence[str]) -> np.ndarray:
    """Rows × :data:`GLASS_FEATURES` for mole fractions `frac` (rows × components)."""
    ext = np.asarray(frac, float) @ _glass_table(tuple(components))
    q = {k: ext[:, i] for i, k in enumerate(_EXTENSIVE)}
    cat, oxy = q["cat"], q["O"]
    # charge budget of the modifiers: first AlO4⁻, then BO4⁻ (up to half the B), then NBOs
    al4 = np.minimum(q["al"], q["q_mod"])
    left = q["q_mod"] - al4
    b4 = np.minimum(q["b"] * 0.5, left)
    nbo = left - b4
    tet = q["former"] - q["b"] + b4 + al4
    nbo_int = nbo + q["q_inter"]

    def per_t(n):
        return np.minimum(_div(np.clip(n, 0, None), tet, empty=4.0), 4.0) * (n > 1e-12)

    mix = {}
    for kind, el_of in (("alk", "is_alkali"), ("ae", "is_alkaline")):
        mix[kind] = _mixing(frac, components, el_of, q[kind])
    q_alk_ae = q["q_alk"] + q["q_ae"]
    out = [
        _div(q["former"], cat),
        _div(q["inter"], cat),
        _div(q["mod"], cat),
        _div(q["alk"], cat),
        _div(q["ae"], cat),
        _div(q["q_alk"], q_alk_ae),
        mix["alk"],
        mix["ae"],
        _div(q["fs"], cat),
        _div(q["fs_mod"], q["mod"]),
        _div(q["fs_net"], q["former"] + q["inter"]),
        _div(q["val"], cat),
        _div(oxy, cat),
        _div(tet, oxy),
        per_t(nbo),
        per_t(nbo_int),
        _div(b4, q["b"]),
        _div(q["al"] - al4, cat),
        _div(q["q_mod"], q["q_mod"] + q["b"]),
        _div(q["si"], q["si"] + q["b"] / 2),
        _div(q["lone"], cat),
        _div(q["d0"], cat),
        _div(q["mass"], oxy),
        _div(q["vion"], oxy),
        _div(q["mass"], q["vion"]) / 0.602214076,  # g/mol per Å³ → g/cm³
    ]
    return np.column_stack(out)


def _mixing(frac, components, predicate: str, total: np.ndarray) -> np.ndarray:
    """1 − Σ share² over the cation elements that satisfy Element.`predicate`."""
    from pymatgen.core import Element

    per_el: dict[str, np.ndarray] = {}
    for j, comp in enumerate(components):
        for e, n in parse_component(comp).items():
            if e not in _ANION_CHARGE and getattr(Element(e), predicate):
                per_el[e] = per_el.get(e, 0.0) + frac[:, j] * n
    if not per_el:
        return np.zeros(len(frac))
    share2 = sum(_div(v, total) ** 2 for v in per_el.values())
    return np.where(total > 1e-12, 1.0 - share2, 0.0)


class CompositionFeaturizer:
    """scikit-learn style transformer: amounts (rows × components, any scale) → features.

    ``fit`` only records the component names (no data-dependent state), so it is safe inside
    cross-validation. ``stats=False`` gives fractions only; ``glass=True`` appends the oxide-glass
    descriptors of :data:`GLASS_FEATURES`.
    """

    glass: bool = False  # models saved before the option existed restore without it

    def __init__(self, components: Sequence[str], stats: bool = True, glass: bool = False):
        self.components = list(components)
        self.stats = stats
        self.glass = glass
        for c in self.components:
            parse_component(c)
        if glass:
            _glass_table(tuple(self.components))  # bad formulas fail here, not mid-fit

    def fit(self, X, y=None) -> CompositionFeaturizer:  # noqa: ARG002 - sklearn API
        return self

    def get_feature_names_out(self) -> list[str]:
        names = [f"x_{c}" for c in self.components]
        if self.stats:
            names.append("frac_O")
            for scope in ("all", "cat"):
                for p in ELEMENT_PROPERTIES.values():
                    names += [f"{scope}_{p}_{s}" for s in ("mean", "std", "min", "max")]
        if self.glass:
            names += list(GLASS_FEATURES)
        return names

    def transform(self, X) -> np.ndarray:
        x = np.asarray(X, dtype=float)
        if x.ndim == 1:
            x = x[None, :]
        if x.shape[1] != len(self.components):
            raise ValueError(f"expected {len(self.components)} component columns, got {x.shape[1]}")
        _check_amounts(x, "compositions to featurize")
        sums = x.sum(axis=1, keepdims=True)
        if not (sums > 0).all():
            r = int(np.flatnonzero(~(sums[:, 0] > 0))[0])
            raise DataError(f"compositions to featurize: row {r} has no positive amounts")
        frac = np.divide(x, sums, out=np.zeros_like(x), where=sums > 0)
        extra = [glass_descriptors(frac, self.components)] if self.glass else []
        if not self.stats:
            return np.hstack([frac, *extra])
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
        return np.hstack(blocks + extra)

    def fit_transform(self, X, y=None) -> np.ndarray:
        return self.fit(X, y).transform(X)
