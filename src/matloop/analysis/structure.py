"""Radial distribution functions and coordination numbers (ASE's RDF and neighbour lists)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms

from matloop.errors import ConfigError, DataError


@dataclass
class RDF:
    """g(r) averaged over frames; `density`: number density (1/Å³) of the `elements[1]` atoms."""

    r: np.ndarray
    g: np.ndarray
    density: float
    elements: tuple[str, str] | None
    n_frames: int
    n_centres: float = 0.0  # mean number of centre atoms per frame (cell as given); 0: unknown

    @property
    def first_peak(self) -> float:
        """Position (Å) of the highest maximum of g(r) among the first shell."""
        return first_peak_position(self.r, self.g)

    def first_minimum(self) -> float:
        """Position (Å) of the first minimum after the first peak (a first-shell cutoff)."""
        return first_minimum_position(self.r, self.g, pairs_per_g=self._pairs_per_g())

    def _pairs_per_g(self) -> np.ndarray | None:
        """Independent pair counts per unit of g in each bin (Poisson noise of g), if known."""
        if not self.n_centres > 0 or len(self.r) == 0:
            return None
        _, shells = self._edges_and_shells()
        return 0.5 * self.density * shells * self.n_centres * self.n_frames  # pairs seen twice

    def _edges_and_shells(self) -> tuple[np.ndarray, np.ndarray]:
        """Bin edges (Å) and the exact shell volumes (Å³) between them, as ASE normalises g."""
        dr = 2.0 * float(self.r[0]) if len(self.r) else 0.0  # r holds the bin mid-points
        edges = dr * np.arange(len(self.r) + 1)
        return edges, 4.0 / 3.0 * math.pi * np.diff(edges**3)

    def _edges_and_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """Bin edges (Å) and n(r), the mean number of neighbours within each edge."""
        edges, shells = self._edges_and_shells()
        counts = np.concatenate([[0.0], np.cumsum(self.density * self.g * shells)])
        return edges, counts

    def running_coordination(self) -> np.ndarray:
        """n(r) = 4πρ ∫₀ʳ g(r') r'² dr' at each `r` (neighbours within r Å; ρ in 1/Å³)."""
        edges, counts = self._edges_and_counts()
        return np.interp(self.r, edges, counts)

    def coordination_number(self, cutoff: float | None = None) -> float:
        """Mean coordination within `cutoff` Å (default: the first minimum of g).

        n(r) is exact at bin edges and linearly interpolated inside a bin, so it matches a
        neighbour count within `cutoff` (:func:`coordination_numbers`) to within the binning.
        """
        rc = self.first_minimum() if cutoff is None else cutoff
        edges, counts = self._edges_and_counts()
        return float(np.interp(rc, edges, counts))

    def to_dict(self) -> dict:
        return {
            "r_a": self.r.tolist(),
            "g": self.g.tolist(),
            "first_peak_a": self.first_peak,
            "first_minimum_a": self.first_minimum(),
            "coordination_number": self.coordination_number(),
            "n_frames": self.n_frames,
        }


def _heights(atoms: Atoms) -> np.ndarray:
    cell = np.asarray(atoms.cell)
    vol = abs(np.linalg.det(cell))
    return np.array(
        [vol / np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3])) for i in range(3)]
    )


def _big_enough(atoms: Atoms, rmax: float) -> Atoms:
    """Repeat a periodic cell so that it encloses a sphere of radius `rmax` (ASE's condition)."""
    if not all(atoms.pbc):
        return atoms
    reps = [max(1, math.ceil((2.0 * rmax + 1e-6) / h)) for h in _heights(atoms)]
    return atoms.repeat(reps) if any(r > 1 for r in reps) else atoms


def compute_rdf(
    frames: Atoms | Sequence[Atoms],
    rmax: float = 6.0,
    nbins: int = 120,
    elements: tuple[str, str] | None = None,
    progress: bool = False,
) -> RDF:
    """g(r) up to `rmax` Å averaged over `frames` (periodic cells are repeated when too small).

    `elements=("Si", "Si")` gives a partial RDF. Uses :func:`ase.geometry.rdf.get_rdf`.
    ``progress=True`` shows a bar over the frames on stderr.
    """
    from ase.geometry.rdf import get_rdf
    from tqdm.auto import tqdm

    images = [frames] if isinstance(frames, Atoms) else list(frames)
    if not images:
        raise DataError("no frames to compute an RDF from")
    if not (rmax > 0 and nbins > 0):
        raise ConfigError(f"rmax and nbins must be positive, got rmax={rmax}, nbins={nbins}")
    if not all(all(im.pbc) for im in images):
        raise DataError("the RDF needs periodic cells (pbc in all three directions)")
    centre, other = (None, None) if elements is None else elements
    n_centres = float(np.mean([_n_of(im, centre) for im in images]))  # before any repetition
    images = [_big_enough(im, rmax) for im in images]
    if elements is not None:
        present = set(images[0].get_chemical_symbols())
        for e in elements:
            if e not in present:
                raise DataError(f"element {e!r} not in the structure (has {sorted(present)})")
    frames_bar = tqdm(images, desc="RDF", unit="frame", disable=not progress, leave=False)
    g, r = get_rdf(frames_bar, rmax, nbins, elements=elements)
    n_sel = np.mean([_n_of(im, other) for im in images])
    density = float(n_sel / np.mean([im.get_volume() for im in images]))
    return RDF(
        r=np.asarray(r),
        g=np.asarray(g),
        density=density,
        elements=elements,
        n_frames=len(images),
        n_centres=n_centres,
    )


def _n_of(atoms: Atoms, element: str | None) -> int:
    """Number of atoms of `element` (all atoms when None)."""
    if element is None:
        return len(atoms)
    return sum(1 for s in atoms.get_chemical_symbols() if s == element)


def first_peak_position(r: np.ndarray, g: np.ndarray) -> float:
    """Position of the first pronounced maximum of g(r) (≥ 50 % of the global maximum)."""
    g = np.asarray(g)
    if g.size == 0 or np.max(g) <= 0:
        return float("nan")
    threshold = 0.5 * np.max(g)
    above = np.nonzero(g >= threshold)[0]
    start = above[0]
    end = start  # the contiguous region above the threshold holds the first peak
    while end + 1 < len(g) and g[end + 1] >= threshold:
        end += 1
    idx = start + int(np.argmax(g[start : end + 1]))
    return float(r[idx])


def first_minimum_position(
    r: np.ndarray,
    g: np.ndarray,
    prominence: float = 0.02,
    pairs_per_g: np.ndarray | None = None,
) -> float:
    """Position (Å) of the first minimum of g(r) after its first peak.

    g is smoothed over 3 bins. After a minimum, g must climb again, before dropping below it,
    by at least `prominence` × the first-peak height and, when `pairs_per_g` (independent pair
    counts per unit of g in each bin) gives the counting noise, by 3 standard errors (but
    never more than 20 % of the first peak is asked). Noise on the flank of the first peak
    (small cells, few frames) is thus not taken for the minimum; shells closer than the noise
    resolves (e.g. bcc's 8 + 6 when hot) count as one.
    """
    g = np.asarray(g, dtype=float)
    peak = first_peak_position(r, g)
    if not math.isfinite(peak):
        return float("nan")
    i = int(np.searchsorted(r, peak))
    gs = np.convolve(g, np.ones(3) / 3.0, mode="same")
    gs[-1] = g[-1]  # no zero padding at the far end
    var = np.zeros_like(gs) if pairs_per_g is None else gs / (3.0 * np.asarray(pairs_per_g))
    for j in range(i + 1, len(gs) - 1):
        if not (gs[j] <= gs[j - 1] and gs[j] < gs[j + 1]):
            continue
        m = _next_maximum(gs, j)
        noise = min(3.0 * math.sqrt(var[j] + var[m]), 0.2 * gs[i])
        if gs[m] - gs[j] >= max(prominence * gs[i], noise):
            return float(r[j])
    return float(r[-1])


def _next_maximum(g: np.ndarray, j: int) -> int:
    """Index of the highest g after j before g first drops below g[j] again."""
    after = g[j + 1 :]
    below = np.nonzero(after < g[j])[0]
    stop = below[0] if below.size else after.size
    return j + 1 + int(np.argmax(after[:stop])) if stop else j


def coordination_numbers(atoms: Atoms, cutoff: float) -> np.ndarray:
    """Number of neighbours of every atom within `cutoff` Å (ASE neighbour list, periodic)."""
    from ase.neighborlist import neighbor_list

    if not cutoff > 0:
        raise ConfigError(f"cutoff must be > 0 Å, got {cutoff}")
    i = neighbor_list("i", atoms, cutoff)
    return np.bincount(i, minlength=len(atoms))
