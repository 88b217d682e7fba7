"""ML-PACE's `.yace` potential file (``pair_style pace``): an in-memory model, writer and reader.

A `.yace` file is YAML describing one ``ACECTildeBasisSet`` of ICAMS' ML-PACE evaluator. The
fields and their meaning (as read by ML-PACE's loader; units eV and Å):

``elements``
    element symbols; their order defines the species index μ = 0, 1, ...
``E0``
    per-element constant energy added to every atom of that element (eV).
``deltaSplineBins``
    bin width (Å) of the cubic-Hermite tables ML-PACE builds for g_k, R_nl and the core
    repulsion. The only approximation ML-PACE makes: values are exact at the nodes; relative
    errors are ~1e-10 (energies) and ~1e-8 (forces) at 1e-4 Å for smooth bases.
``embeddings: {μ: {...}}``
    ``npoti: FinnisSinclairShiftedScaled`` with ``FS_parameters: [1, 1]`` and ``ndensity: 1`` is
    the linear embedding F(ρ) = ρ (exactly, ML-PACE short-circuits m = 1). ``rho_core_cutoff`` /
    ``drho_core_cutoff`` switch the energy off where the core-repulsion density exceeds them;
    a linear ACE with distance-type inner cutoff sets them out of reach.
``bonds: {[μ_i, μ_j]: {...}}``
    ``radbasename`` (``ChebExpCos``, ``ChebPow``, ``ChebLinear``, ``SBessel``), ``radparameters``
    ``[λ]``, ``nradbasemax`` K (number of g_k), ``nradmax`` and ``lmax`` (shape of
    ``radcoefficients`` crad[n][l][k], R_nl = Σ_k crad[n][l][k] g_k), ``rcut``/``dcut`` (outer
    cutoff and the width of its extra cosine taper), ``rcut_in``/``dcut_in`` with
    ``inner_cutoff_type: distance`` (g_k switched off smoothly below rcut_in, zero below
    rcut_in − dcut_in), ``prehc``/``lambdahc`` (core repulsion
    cr = |prehc| exp(−|lambdahc| r²)/r · ½(1 + cos πr/rcut) · f_in(r), summed over every
    neighbour of every atom).
``functions: {μ_0: [...]}``
    C-tilde functions of centre element μ_0: ``rank`` ν, ``mus``/``ns``/``ls`` (ns 1-based),
    ``ms_combs`` (num_ms_combs × ν m values, flattened), ``ctildes`` (num_ms_combs × ndensity).
    Atom energy contribution Σ_ms ctilde · Re Π_t A_{μ_t n_t l_t m_t} with
    A_{μnlm}(i) = Σ_{j of element μ} R_nl(r_ij) Y_lm(r̂_ij), r_ij = R_j − R_i, Y_lm the complex
    Condon–Shortley harmonics scaled so that Y_00 = 1 (√(4π) × orthonormal). Rank 1 is special:
    it uses g_k directly, A(μ, k) = Σ_j g_k(r_ij), with ``ns = [k + 1]``, ``ls = [0]``,
    ``ms_combs = [0]``.

The energy of atom i is E0[μ_i] + F(ρ_i) + Σ_j cr_{μ_i μ_j}(r_ij).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from matloop.errors import ModelFileError
from matloop.utils.files import atomic_write_text

RADIAL_BASES = ("ChebExpCos", "ChebPow", "ChebLinear", "SBessel")

# Keep the energy-based inner cutoff of ML-PACE out of reach (core-repulsion density, eV).
RHO_CORE_CUTOFF = 1.0e5
DRHO_CORE_CUTOFF = 250.0


@dataclass(frozen=True)
class YaceBond:
    """Radial basis, radial functions and core repulsion of one ordered element pair."""

    rcut: float  # Å
    crad: np.ndarray  # (nradmax, lmax + 1, nradbasemax)
    radbasename: str = "ChebExpCos"
    lam: float = 5.25
    dcut: float = 0.0  # Å
    rcut_in: float = 0.0  # Å
    dcut_in: float = 0.0  # Å
    prehc: float = 0.0  # eV Å
    lambdahc: float = 1.0  # 1/Å²
    inner_cutoff_type: str = "distance"

    @property
    def nradmax(self) -> int:
        return int(self.crad.shape[0])

    @property
    def lmax(self) -> int:
        return int(self.crad.shape[1]) - 1

    @property
    def nradbase(self) -> int:
        return int(self.crad.shape[2])


@dataclass(frozen=True)
class YaceFunction:
    """One C-tilde function: Σ_ms ctilde[ms] Re Π_t A_{mus[t], ns[t], ls[t], ms[t]} (ns 1-based)."""

    mu0: int
    mus: tuple[int, ...]
    ns: tuple[int, ...]
    ls: tuple[int, ...]
    ms_combs: tuple[tuple[int, ...], ...]
    ctildes: tuple[float, ...]

    @property
    def rank(self) -> int:
        return len(self.mus)


@dataclass
class YaceModel:
    """A linear ACE (linear embedding, distance-type inner cutoff) in ML-PACE's terms."""

    elements: list[str]
    e0: list[float]  # eV per atom of each element
    bonds: dict[tuple[int, int], YaceBond]
    functions: dict[int, list[YaceFunction]] = field(default_factory=dict)
    spline_step: float = 1.0e-3  # Å, yace `deltaSplineBins`

    def validate(self) -> None:
        """Raise `ModelFileError` if the model is not one ML-PACE can load."""
        n = len(self.elements)
        if n == 0 or len(self.e0) != n:
            raise ModelFileError("yace: need one E0 per element")
        if not self.spline_step > 0:
            raise ModelFileError("yace: deltaSplineBins must be positive")
        for i in range(n):
            for j in range(n):
                bond = self.bonds.get((i, j))
                if bond is None:
                    raise ModelFileError(
                        f"yace: missing bond {self.elements[i]}-{self.elements[j]}"
                    )
                if bond.radbasename not in RADIAL_BASES:
                    raise ModelFileError(f"yace: unknown radial basis {bond.radbasename!r}")
                if bond.inner_cutoff_type != "distance":
                    raise ModelFileError("yace: only inner_cutoff_type 'distance' is supported")
        for mu0, funcs in self.functions.items():
            for f in funcs:
                _check_function(f, mu0, n, self.bonds[(mu0, mu0)])


def _check_function(f: YaceFunction, mu0: int, n_el: int, bond: YaceBond) -> None:
    if f.mu0 != mu0 or not 0 <= mu0 < n_el:
        raise ModelFileError(f"yace: function with centre {f.mu0} filed under {mu0}")
    if not (len(f.mus) == len(f.ns) == len(f.ls) >= 1):
        raise ModelFileError("yace: mus, ns and ls must have the rank's length")
    if len(f.ms_combs) != len(f.ctildes) or any(len(ms) != f.rank for ms in f.ms_combs):
        raise ModelFileError("yace: one ctilde per m-combination of the rank's length")
    if any(not 0 <= m < n_el for m in f.mus) or min(f.ns) < 1:
        raise ModelFileError("yace: species or radial index out of range")
    if f.rank == 1 and (f.ls != (0,) or f.ns[0] > bond.nradbase):
        raise ModelFileError("yace: rank-1 functions use l = 0 and n ≤ nradbasemax")
    if f.rank > 1 and (max(f.ns) > bond.nradmax or max(f.ls) > bond.lmax):
        raise ModelFileError("yace: n or l beyond the bond's nradmax / lmax")


def _num(x: float) -> str:
    """A float as YAML text that round-trips exactly."""
    x = float(x)
    if not math.isfinite(x):
        raise ModelFileError("yace: non-finite number")
    text = repr(x)
    return text if ("." in text or "e" in text or "n" in text) else text + ".0"


def _flow(values) -> str:
    return "[" + ", ".join(values) + "]"


def format_yace(model: YaceModel) -> str:
    """The `.yace` text of `model` (exact decimal round-trip of every number)."""
    model.validate()
    lines = [
        "elements: " + _flow(model.elements),
        "E0: " + _flow(_num(e) for e in model.e0),
        f"deltaSplineBins: {_num(model.spline_step)}",
        "embeddings:",
    ]
    for mu in range(len(model.elements)):
        lines.append(
            f"  {mu}: {{ndensity: 1, FS_parameters: [1.0, 1.0],"
            " npoti: FinnisSinclairShiftedScaled,"
            f" rho_core_cutoff: {_num(RHO_CORE_CUTOFF)},"
            f" drho_core_cutoff: {_num(DRHO_CORE_CUTOFF)}}}"
        )
    lines.append("bonds:")
    for (i, j), b in sorted(model.bonds.items()):
        crad = _flow(
            _flow(_flow(_num(c) for c in row_l) for row_l in row_n) for row_n in np.asarray(b.crad)
        )
        lines.append(
            f"  [{i}, {j}]: {{nradmax: {b.nradmax}, lmax: {b.lmax}, nradbasemax: {b.nradbase},"
            f" radbasename: {b.radbasename}, radparameters: [{_num(b.lam)}],"
            f" radcoefficients: {crad}, prehc: {_num(b.prehc)}, lambdahc: {_num(b.lambdahc)},"
            f" rcut: {_num(b.rcut)}, dcut: {_num(b.dcut)}, rcut_in: {_num(b.rcut_in)},"
            f" dcut_in: {_num(b.dcut_in)}, inner_cutoff_type: {b.inner_cutoff_type}}}"
        )
    lines.append("functions:")
    for mu0 in range(len(model.elements)):
        funcs = model.functions.get(mu0, [])
        if not funcs:
            lines.append(f"  {mu0}: []")
            continue
        lines.append(f"  {mu0}:")
        for f in funcs:
            ms = _flow(str(int(m)) for comb in f.ms_combs for m in comb)
            lines.append(
                f"    - {{mu0: {f.mu0}, rank: {f.rank}, ndensity: 1,"
                f" num_ms_combs: {len(f.ms_combs)}, mus: {_flow(map(str, f.mus))},"
                f" ns: {_flow(map(str, f.ns))}, ls: {_flow(map(str, f.ls))}, ms_combs: {ms},"
                f" ctildes: {_flow(_num(c) for c in f.ctildes)}}}"
            )
    return "\n".join(lines) + "\n"


def write_yace(model: YaceModel, path: str | os.PathLike) -> Path:
    """Write `model` to `path` atomically; returns the path."""
    text = format_yace(model)
    atomic_write_text(path, text)
    return Path(path)


class _YaceLoader(yaml.SafeLoader):
    """Safe YAML loader that accepts flow sequences as mapping keys (yace ``bonds``)."""

    def construct_mapping(self, node, deep=False):  # noqa: D102 - PyYAML hook
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.SequenceNode):
                key_node.tag = "tag:matloop:tuple"
        return super().construct_mapping(node, deep=True)


_YaceLoader.add_constructor(
    "tag:matloop:tuple", lambda loader, node: tuple(loader.construct_sequence(node, deep=True))
)


def read_yace(path: str | os.PathLike) -> YaceModel:
    """Read a linear-embedding `.yace` file (as written by `write_yace` or python-ace)."""
    try:
        doc = yaml.load(Path(path).read_text(), Loader=_YaceLoader)  # noqa: S506 - safe subclass
        model = _from_doc(doc)
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"cannot read yace file {path}: {exc}") from None
    model.validate()
    return model


def _from_doc(doc: dict) -> YaceModel:
    elements = [str(e) for e in doc["elements"]]
    for mu, emb in doc["embeddings"].items():
        if emb["npoti"] not in ("FinnisSinclairShiftedScaled", "FinnisSinclair"):
            raise ValueError(f"embedding {emb['npoti']}")
        if int(emb["ndensity"]) != 1 or [float(v) for v in emb["FS_parameters"]] != [1.0, 1.0]:
            raise ValueError(f"element {mu}: only the linear embedding (FS_parameters [1, 1])")
    bonds = {}
    for key, b in doc["bonds"].items():
        bonds[(int(key[0]), int(key[1]))] = YaceBond(
            rcut=float(b["rcut"]),
            crad=np.asarray(b["radcoefficients"], dtype=float),
            radbasename=str(b["radbasename"]),
            lam=float(b["radparameters"][0]),
            dcut=float(b["dcut"]),
            rcut_in=float(b.get("rcut_in", 0.0)),
            dcut_in=float(b.get("dcut_in", 0.0)),
            prehc=float(b["prehc"]),
            lambdahc=float(b["lambdahc"]),
            inner_cutoff_type=str(b.get("inner_cutoff_type", "density")),
        )
    functions: dict[int, list[YaceFunction]] = {}
    for mu0, funcs in doc["functions"].items():
        functions[int(mu0)] = [_function(f) for f in funcs or []]
    return YaceModel(
        elements=elements,
        e0=[float(e) for e in doc["E0"]],
        bonds=bonds,
        functions=functions,
        spline_step=float(doc["deltaSplineBins"]),
    )


def _function(f: dict) -> YaceFunction:
    rank = int(f["rank"])
    ms = [int(m) for m in f["ms_combs"]]
    return YaceFunction(
        mu0=int(f["mu0"]),
        mus=tuple(int(v) for v in f["mus"]),
        ns=tuple(int(v) for v in f["ns"]),
        ls=tuple(int(v) for v in f["ls"]),
        ms_combs=tuple(tuple(ms[k : k + rank]) for k in range(0, len(ms), rank)),
        ctildes=tuple(float(c) for c in f["ctildes"]),
    )
