"""Composition parsing, unit conversion (mol % ↔ wt %) and validation.

A composition table holds one row per sample and one column per component (an oxide such as
``SiO2`` or any chemical formula); values are percentages summing to ``total`` (100 by default).
Molar masses come from pymatgen (IUPAC atomic weights), in g/mol.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from matloop.errors import DataError, UnknownElementError

_FORMULA_RE = re.compile(r"^(\(?[A-Z][a-z]?\d*(\.\d+)?\)?\d*(\.\d+)?)+$")


# A count that starts with 0 ('Si02', 'Al2O03', 'Si0'), but not a fraction such as 'Na0.5':
# no formula writes one, and it is nearly always a digit zero typed for the letter O.
_ZERO_COUNT_RE = re.compile(r"(?<=[A-Za-z)])0(?!\.\d)")


def _zero_count_message(name: str) -> str:
    """One line for a name with a count starting with 0, suggesting the letter O if that fits."""
    fixed = _ZERO_COUNT_RE.sub("O", name)
    try:
        _composition(fixed)
        sensible = "OO" not in fixed
    except UnknownElementError:
        sensible = False
    if not sensible:
        return f"{name!r}: a count starts with 0 — write counts without a leading zero"
    return f"{name!r}: a count starts with 0 — did you mean {fixed!r} (letter O)?"


def _zero_for_o(name) -> str | None:
    """The formula a column name spells with a digit zero for the letter O ('Si02' → 'SiO2'),
    or None. Only a zero followed by a digit counts: a bare zero ('B0', 'V0', 'T0') is a
    common name of a property column, and it was never read as a component anyway."""
    s = str(name).strip()
    if not _FORMULA_RE.match(s) or not re.search(r"(?<=[A-Za-z)])0\d", s):
        return None
    fixed = _ZERO_COUNT_RE.sub("O", s)
    return fixed if "OO" not in fixed and _is_formula(fixed) else None


@lru_cache(maxsize=512)
def _composition(name: str):
    from pymatgen.core import Composition, Element

    if not _FORMULA_RE.match(name):
        raise UnknownElementError(
            f"component {name!r} is not a chemical formula (expected e.g. 'SiO2', 'Na2O')"
        )
    if _ZERO_COUNT_RE.search(name):
        raise UnknownElementError(_zero_count_message(name))
    for sym in re.findall(r"[A-Z][a-z]?", name):
        if sym in ("D", "T"):  # pymatgen reads these as H; in an oxide they are a mis-cased Ti …
            raise UnknownElementError(
                f"component {name!r}: {sym!r} (deuterium/tritium) is not accepted; write H, "
                "or check the case of the symbols (e.g. 'TiO2', not 'TIO2')"
            )
        if not Element.is_valid_symbol(sym):
            raise UnknownElementError(f"component {name!r}: {sym!r} is not a chemical element")
    try:
        comp = Composition(name)
    except Exception as exc:  # pymatgen raises ValueError/KeyError variants
        raise UnknownElementError(f"component {name!r} is not a chemical formula: {exc}") from exc
    if comp.num_atoms <= 0:
        raise UnknownElementError(f"component {name!r} contains no atoms")
    return comp


def parse_component(name: str) -> dict[str, float]:
    """Atoms per formula unit of a component, e.g. ``'Na2O'`` → ``{'Na': 2, 'O': 1}``."""
    comp = _composition(str(name).strip())
    return {str(el): float(n) for el, n in comp.get_el_amt_dict().items()}


def molar_mass(name: str) -> float:
    """Molar mass of a component formula in g/mol."""
    return float(_composition(str(name).strip()).weight)


_PAIR_NUM_FIRST = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*\*?\s*([A-Z][A-Za-z0-9().]*)")
_PAIR_NAME_FIRST = re.compile(r"([A-Z][A-Za-z0-9().]*)\s*[:=]\s*(\d+(?:\.\d*)?|\.\d+)")


def parse_formula_string(text: str) -> dict[str, float]:
    """Parse a composition string into ``{component: amount}`` (amounts as written).

    Accepted forms: ``"70SiO2-20Na2O-10CaO"``, ``"70 SiO2 + 20 Na2O + 10 CaO"``,
    ``"SiO2:70, Na2O:20, CaO:10"`` / ``"SiO2=70 Na2O=20"``; a bare formula such as
    ``"Na2Si2O5"`` is one component with amount 1.
    """
    s = str(text).strip()
    if not s:
        raise DataError("empty composition string")
    if _FORMULA_RE.match(s):
        parse_component(s)
        return {s: 1.0}
    pairs: list[tuple[str, float]]
    if ":" in s or "=" in s:
        pairs = [(n, float(v)) for n, v in _PAIR_NAME_FIRST.findall(s)]
        leftover = _PAIR_NAME_FIRST.sub("", s)
    else:
        pairs = [(n, float(v)) for v, n in _PAIR_NUM_FIRST.findall(s)]
        leftover = _PAIR_NUM_FIRST.sub("", s)
    if not pairs or re.sub(r"[\s,;+\-·*]", "", leftover):
        raise DataError(
            f"cannot parse composition {text!r}; write e.g. '70SiO2-20Na2O-10CaO' "
            "or 'SiO2:70, Na2O:20, CaO:10'"
        )
    out: dict[str, float] = {}
    for name, value in pairs:
        parse_component(name)
        out[name] = out.get(name, 0.0) + value
    return out


def _as_2d(values) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 1:
        arr = arr[None, :]
    return arr


def wt_to_mol(values, components: Sequence[str], total: float = 100.0) -> np.ndarray:
    """Convert weight percentages (rows × components) to mole percentages summing to `total`."""
    w = _as_2d(values)
    m = np.array([molar_mass(c) for c in components])
    return normalise(w / m, total)


def mol_to_wt(values, components: Sequence[str], total: float = 100.0) -> np.ndarray:
    """Convert mole percentages (rows × components) to weight percentages summing to `total`."""
    x = _as_2d(values)
    m = np.array([molar_mass(c) for c in components])
    return normalise(x * m, total)


def normalise(values, total: float = 100.0) -> np.ndarray:
    """Scale each row to sum to `total`; rows that sum to zero raise :class:`DataError`, and so
    do missing (NaN), infinite and negative amounts."""
    arr = _as_2d(values)
    _check_amounts(arr)
    sums = arr.sum(axis=1)
    bad = np.flatnonzero(~(sums > 0))
    if bad.size:
        raise DataError(f"row {int(bad[0])} has no positive amounts; cannot normalise")
    return arr * (total / sums)[:, None]


def _check_amounts(arr: np.ndarray, source: str = "composition table", row_labels=None) -> None:
    """Raise :class:`DataError` for a missing/infinite or a negative amount."""
    finite = np.isfinite(arr)
    if not finite.all():
        r = int(np.flatnonzero(~finite.all(axis=1))[0])
        label = row_labels[r] if row_labels is not None else r
        raise DataError(f"{source}: row {label} has a missing or non-numeric amount")
    neg = np.argwhere(arr < -1e-9)
    if neg.size:
        r = int(neg[0, 0])
        label = row_labels[r] if row_labels is not None else r
        raise DataError(f"{source}: row {label} has a negative amount ({arr[r, neg[0, 1]]:g})")


def validate_sums(
    values,
    total: float = 100.0,
    tol: float = 0.5,
    *,
    source: str = "composition table",
    row_labels: Sequence | None = None,
) -> None:
    """Raise :class:`DataError` if any row is negative or its sum is outside ``total ± tol``."""
    arr = _as_2d(values)
    _check_amounts(arr, source, row_labels)
    sums = arr.sum(axis=1)
    off = np.flatnonzero(np.abs(sums - total) > tol)
    if off.size:
        r = int(off[0])
        label = row_labels[r] if row_labels is not None else r
        raise DataError(
            f"{source}: row {label} sums to {sums[r]:.4g}, expected {total:g} ± {tol:g} "
            f"({off.size} of {len(sums)} rows are off; normalise=True / --normalise rescales)"
        )


def element_fractions(values, components: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Atom fractions of every element (rows × elements) from component amounts (mol basis)."""
    x = _as_2d(values)
    per = [parse_component(c) for c in components]
    elements = sorted({el for p in per for el in p}, key=_element_order)
    stoich = np.zeros((len(components), len(elements)))
    for i, p in enumerate(per):
        for el, n in p.items():
            stoich[i, elements.index(el)] = n
    atoms = x @ stoich
    sums = atoms.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(sums > 0, atoms / sums, 0.0)
    return elements, frac


def _element_order(symbol: str) -> int:
    from pymatgen.core import Element

    return Element(symbol).Z


def composition_key(row: Iterable[float], components: Sequence[str], decimals: int = 2) -> str:
    """Stable key of a composition: sha1 of the non-zero amounts rounded to `decimals`."""
    parts = []
    for c, v in sorted(zip(components, row, strict=True)):
        r = round(float(v), decimals)
        if r != 0.0:
            parts.append(f"{c}={r:.{decimals}f}")
    return hashlib.sha1(";".join(parts).encode()).hexdigest()[:12]


def chemical_system(row: Iterable[float], components: Sequence[str], threshold: float = 0.0) -> str:
    """Family label: the sorted non-zero components joined by '-', e.g. 'CaO-Na2O-SiO2'."""
    present = sorted(c for c, v in zip(components, row, strict=True) if float(v) > threshold)
    return "-".join(present) if present else "<empty>"


@dataclass
class CompositionTable:
    """Compositions in mol % (rows × components) plus the component names."""

    components: list[str]
    values: np.ndarray  # mol %, each row sums to `total`
    total: float = 100.0

    @property
    def fractions(self) -> np.ndarray:
        return self.values / self.total

    def keys(self, decimals: int = 2) -> np.ndarray:
        return np.array([composition_key(r, self.components, decimals) for r in self.values])

    def families(self) -> np.ndarray:
        return np.array([chemical_system(r, self.components) for r in self.values])

    def to_wt(self) -> np.ndarray:
        return mol_to_wt(self.values, self.components, self.total)


def read_composition_table(
    frame,
    components: Sequence[str] | None = None,
    *,
    basis: str = "mol",
    total: float = 100.0,
    tol: float = 0.5,
    normalise_rows: bool = False,
    formula_column: str | None = None,
    source: str = "data",
    ignore: Sequence[str] = (),
) -> CompositionTable:
    """Read compositions from a pandas DataFrame.

    Either `formula_column` names a column of composition strings (see
    :func:`parse_formula_string`), or `components` lists the component columns; when neither is
    given, every column whose name is a chemical formula is a component (other columns, e.g.
    properties named ``nd`` or ``Tg``, are left alone, and so is a lone symbol of an element
    heavier than Pu, such as a row-number column ``No``, which would read as nobelium).
    `basis` is ``"mol"`` or ``"wt"``; weight percentages are converted to mol %. Rows must sum
    to ``total ± tol`` unless `normalise_rows` is true.
    """
    if basis not in ("mol", "wt"):
        raise DataError(f"basis must be 'mol' or 'wt', got {basis!r}")
    if formula_column is not None:
        if formula_column not in frame.columns:
            raise DataError(f"{source}: no column {formula_column!r}")
        parsed = [parse_formula_string(s) for s in frame[formula_column].astype(str)]
        comps = list(components) if components else sorted({c for p in parsed for c in p})
        unknown = sorted({c for p in parsed for c in p} - set(comps))
        if unknown:
            raise DataError(f"{source}: component(s) {unknown} not among {comps}")
        values = np.array([[p.get(c, 0.0) for c in comps] for p in parsed], dtype=float)
        if not normalise_rows:
            # single-formula strings ('Na2Si2O5') or fractions: scale rows to the total
            normalise_rows = bool(np.all(np.abs(values.sum(axis=1) - total) > tol))
    else:
        if components is None:
            comps = [c for c in frame.columns if c not in ignore and _is_component_column(c)]
            for c in frame.columns:
                typo = None if c in ignore else _zero_for_o(c)
                if typo is not None:
                    raise DataError(
                        f"{source}: column {_zero_count_message(str(c).strip())} Rename it "
                        "(or choose the components with components= / --components)"
                    )
                fixed = None if c in ignore else _recased_oxide(c)
                if fixed is not None:
                    raise DataError(
                        f"{source}: column {c!r} looks like the oxide {fixed!r} with its letters "
                        f"in the wrong case; rename it to {fixed!r} (or pass it in ignore)"
                    )
            if not comps:
                raise DataError(f"{source}: no component columns (chemical formulas) found")
            _check_zero_for_o_in_oxides(comps, source)
        else:
            comps = list(components)
            for c in comps:
                parse_component(c)
                fixed = _recased_oxide(c)
                if fixed is not None:
                    raise DataError(
                        f"{source}: component {c!r} looks like the oxide {fixed!r} with its "
                        f"letters in the wrong case; write {fixed!r}"
                    )
            missing = [c for c in comps if c not in frame.columns]
            if missing:
                raise DataError(
                    f"{source}: missing component column(s) {missing}; "
                    f"columns are {list(frame.columns)}"
                )
        repeated = sorted({str(c) for c in comps if list(frame.columns).count(c) > 1})
        if repeated:
            raise DataError(
                f"{source}: column(s) {repeated} appear more than once; rename or drop them"
            )
        try:
            values = frame[comps].to_numpy(dtype=float)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{source}: non-numeric value in component columns: {exc}") from exc
        values = np.where(np.isnan(values), 0.0, values) if normalise_rows else values
    _check_distinct(comps, source)
    rows = list(range(1, len(values) + 1))  # data rows counted from 1, as elsewhere
    if components is None and formula_column is None:
        names = ", ".join(map(str, comps))
        source = f"{source} (components taken from the column names: {names}; choose them with "
        source += "components= / --components)"
    if basis == "wt":
        validate_sums(
            values, total, tol if not normalise_rows else np.inf, source=source, row_labels=rows
        )
        values = wt_to_mol(values, comps, total)
    elif normalise_rows:
        validate_sums(values, total, np.inf, source=source, row_labels=rows)
        values = normalise(values, total)
    else:
        validate_sums(values, total, tol, source=source, row_labels=rows)
    return CompositionTable(components=list(comps), values=values, total=total)


def _check_distinct(comps: Sequence[str], source: str) -> None:
    """Refuse two components that are the same formula written differently ('SiO2', 'SiO2 ',
    'O2Si'): each would be a separate column of the table and of every feature."""
    seen: dict[tuple, str] = {}
    for c in comps:
        key = tuple(sorted(parse_component(c).items()))
        if key in seen:
            raise DataError(
                f"{source}: components {seen[key]!r} and {c!r} are the same formula; "
                "merge them into one column"
            )
        seen[key] = c


def _recased_oxide(name) -> str | None:
    """The oxide formula `name` spells with its letters in the wrong case, or None.

    Either `name` is no formula as written ('sio2', 'NA2O', 'TIO2' → 'TiO2', 'Na2O', 'TiO2'),
    or it is written in capitals only and reads as a formula of more elements than the oxide
    it spells ('SIO2' reads as S·I·O2, 'PBO' as P·B·O: 'SiO2', 'PbO'). Only names of three
    or more characters that read as a compound of oxygen count, so property columns such as
    'nd' or 'Tg' and formulas such as 'CO2', 'SO3' or 'B2O3' are not taken.
    """
    from pymatgen.core import Element

    s = str(name).strip()
    if len(s) < 3 or not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", s):
        return None
    limit = None  # a formula as written: only an oxide of fewer elements replaces it
    if _is_formula(s):
        if any(ch.islower() for ch in s):
            return None
        limit = sum(ch.isupper() for ch in s)
    found: list[str] = []

    def walk(i: int, out: str, symbols: list[str]) -> None:
        if i == len(s):
            if (
                len(symbols) >= 2
                and symbols[-1] == "O"
                and (limit is None or len(symbols) < limit)
                and _is_formula(out)
            ):
                found.append(out)
            return
        if s[i].isdigit():
            walk(i + 1, out + s[i], symbols)
            return
        for size in (1, 2):
            part = s[i : i + size]
            if len(part) == size and part.isalpha():
                sym = part.capitalize()
                if Element.is_valid_symbol(sym):
                    walk(i + size, out + sym, [*symbols, sym])

    walk(0, "", [])
    return min(found, key=lambda f: (len(re.findall("[A-Z]", f)), f)) if found else None


def _check_zero_for_o_in_oxides(comps: Sequence[str], source: str) -> None:
    """DataError for a column such as 'Al203' or 'Na20' among oxide columns: it reads as a
    formula without oxygen (Al₂₀₃), but with the letter O for each digit 0 it is an oxide.
    Only tables with at least two oxide columns are checked; `components` given by the user
    skip this guess."""

    def has_oxygen(name: str) -> bool:
        return "O" in re.findall(r"[A-Z][a-z]?", name)

    names = [str(c).strip() for c in comps]
    if sum(has_oxygen(n) for n in names) < 2:
        return
    for name in names:
        fixed = name.replace("0", "O")
        if not has_oxygen(name) and fixed != name and _is_formula(fixed):
            raise DataError(
                f"{source}: column {name!r} reads as a formula without oxygen among oxide "
                f"columns; did you mean {fixed!r} (letter O for the digit 0)? Rename it (or "
                "choose the components with components= / --components)"
            )


def _is_component_column(name) -> bool:
    """Whether a column name is taken as a component when none are given: a formula, but not
    a lone synthetic element (Z > 94: 'No', 'Md', 'Es' are row numbers and initials in data
    tables, never glass or alloy components)."""
    from pymatgen.core import Element

    if not _is_formula(name):
        return False
    symbols = re.findall(r"[A-Z][a-z]?", str(name).strip())
    return not (len(symbols) == 1 and Element(symbols[0]).Z > 94)


def _is_formula(name) -> bool:
    try:
        parse_component(str(name))
    except UnknownElementError:
        return False
    return True


def to_amounts(mapping: Mapping[str, float], components: Sequence[str]) -> np.ndarray:
    """Vector of amounts in `components` order from a mapping (missing → 0)."""
    unknown = sorted(set(mapping) - set(components))
    if unknown:
        raise DataError(f"unknown component(s) {unknown}; known: {list(components)}")
    return np.array([float(mapping.get(c, 0.0)) for c in components])
