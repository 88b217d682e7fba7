"""matloop's linear ACE → ML-PACE C-tilde basis (`.yace`), exactly.

The mapping (conventions in ``matloop/models/ace/CONVENTIONS.md``):

* every ordered element pair (μ_i, μ_j) becomes a yace bond with ``radbasename: ChebExpCos``,
  ``radparameters: [λ]`` (the basis's radial scale), ``rcut`` (its cutoff), ``dcut`` (outer
  taper width), ``rcut_in``/``dcut_in`` (inner cutoff of that pair and its width,
  ``inner_cutoff_type: distance``), ``prehc``/``lambdahc`` (core repulsion), and
  ``radcoefficients`` crad[n][l][k] = δ_nk (matloop's R_nl = g_n, nradmax = nradbasemax = K);
* every coefficient p with description (μ_0, mus, ns, ls, coupling) adds c_p · C_p[ms] to the
  ``ctildes`` of the C-tilde function (μ_0, mus, ns + 1, ls); coefficients sharing that tuple
  share one function; m-combinations with a zero total are dropped;
* E0 per element is the model's reference energy; the embedding is linear
  (``FinnisSinclairShiftedScaled``, ``FS_parameters: [1, 1]``).

ML-PACE then evaluates E_i = E0[μ_i] + Σ_p c_p φ_p(i) + Σ_j cr(r_ij), matloop's energy; the only
difference left is ML-PACE's spline tabulation of the radial functions (`spline_step`, Å).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from matloop.errors import ModelFileError
from matloop.export.yace import YaceBond, YaceFunction, YaceModel


def yace_from_basis(
    basis,
    coefficients: np.ndarray,
    e0: dict[str, float],
    *,
    spline_step: float = 1.0e-3,
) -> YaceModel:
    """The yace model of `basis` (an ``AceBasis``) with linear `coefficients` (P,) and E0 (eV)."""
    c = np.asarray(coefficients, dtype=float).reshape(-1)
    if c.shape[0] != basis.n_coefficients:
        raise ModelFileError(
            f"ace export: {c.shape[0]} coefficients for a basis of {basis.n_coefficients}"
        )
    if not np.all(np.isfinite(c)):
        raise ModelFileError("ace export: the model has non-finite coefficients (is it fitted?)")
    if not np.any(c):
        raise ModelFileError("ace export: every coefficient is zero; fit the model first")
    elements = list(basis.elements)
    return YaceModel(
        elements=elements,
        e0=[float(e0.get(el, 0.0)) for el in elements],
        bonds=_bonds(basis),
        functions=_functions(basis.describe(), c, len(elements)),
        spline_step=float(spline_step),
    )


def _bonds(basis) -> dict[tuple[int, int], YaceBond]:
    radial = basis.radial
    n_el = len(basis.elements)
    k = int(radial.n_basis)
    lmax = int(basis.max_l)
    crad = np.zeros((k, lmax + 1, k))
    for n in range(k):
        crad[n, :, n] = 1.0
    r_in = radial.inner_cutoff.detach().cpu().double().numpy().reshape(n_el, n_el)
    return {
        (i, j): YaceBond(
            rcut=float(radial.cutoff),
            crad=crad,
            radbasename="ChebExpCos",
            lam=float(radial.scale),
            dcut=float(radial.outer_width),
            rcut_in=float(r_in[i, j]),
            dcut_in=float(radial.inner_width),
            prehc=float(radial.core_strength),
            lambdahc=float(radial.core_decay),
        )
        for i in range(n_el)
        for j in range(n_el)
    }


def _functions(descr: list[dict], c: np.ndarray, n_el: int) -> dict[int, list[YaceFunction]]:
    grouped: dict[tuple, dict[tuple[int, ...], float]] = defaultdict(lambda: defaultdict(float))
    for p, d in enumerate(descr):
        if c[p] == 0.0:
            continue
        key = (int(d["mu0"]), tuple(d["mus"]), tuple(int(n) + 1 for n in d["ns"]), tuple(d["ls"]))
        for ms, value in d["coupling"]:
            grouped[key][tuple(int(m) for m in ms)] += c[p] * float(value)
    out: dict[int, list[YaceFunction]] = {mu: [] for mu in range(n_el)}
    # rank-1 functions first, then by rank (ML-PACE keeps them in two lists anyway)
    for key in sorted(grouped, key=lambda k: (len(k[1]), k)):
        mu0, mus, ns, ls = key
        terms = [(ms, v) for ms, v in sorted(grouped[key].items()) if v != 0.0]
        if not terms:
            continue
        out[mu0].append(
            YaceFunction(
                mu0=mu0,
                mus=mus,
                ns=ns,
                ls=ls,
                ms_combs=tuple(ms for ms, _ in terms),
                ctildes=tuple(v for _, v in terms),
            )
        )
    return out
