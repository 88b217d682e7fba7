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

    @property
    def first_peak(self) -> float:
        """Position (Å) of the highest maximum of g(r) among the first shell."""
        return first_peak_position(self.r, self.g)

    def first_minimum(self) -> float:
        """Position (Å) of the first minimum after the first peak (a first-shell cutoff)."""
        return first_minimum_position(self.r, self.g)

    def running_coordination(self) -> np.ndarray:
        """n(r) = 4πρ ∫₀ʳ g(r') r'² dr' (average number of neighbours within r)."""
        dr = self.r[1] - self.r[0] if len(self.r) > 1 else 0.0
        return 4.0 * math.pi * self.density * np.cumsum(self.g * self.r**2) * dr

    def coordination_number(self, cutoff: float | None = None) -> float:
        """Mean coordination within `cutoff` Å (default: the first minimum of g)."""
        rc = self.first_minimum() if cutoff is None else cutoff
        n = self.running_coordination()
        idx = int(np.searchsorted(self.r, rc, side="right")) - 1
        return float(n[max(idx, 0)])

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
    images = [_big_enough(im, rmax) for im in images]
    if elements is not None:
        present = set(images[0].get_chemical_symbols())
        for e in elements:
            if e not in present:
                raise DataError(f"element {e!r} not in the structure (has {sorted(present)})")
    frames_bar = tqdm(images, desc="RDF", unit="frame", disable=not progress, leave=False)
    g, r = get_rdf(frames_bar, rmax, nbins, elements=elements)
    if elements is None:
        n_sel = np.mean([len(im) for im in images])
    else:
        n_sel = np.mean(
            [sum(1 for s in im.get_chemical_symbols() if s == elements[1]) for im in images]
        )
    density = float(n_sel / np.mean([im.get_volume() for im in images]))
    return RDF(
        r=np.asarray(r), g=np.asarray(g), density=density, elements=elements, n_frames=len(images)
    )


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


def first_minimum_position(r: np.ndarray, g: np.ndarray) -> float:
    """Position of the first minimum of g(r) after its first peak (Å)."""
    g = np.asarray(g)
    peak = first_peak_position(r, g)
    if not math.isfinite(peak):
        return float("nan")
    i = int(np.searchsorted(r, peak))
    # smooth lightly so that noise does not create spurious minima
    kernel = np.ones(3) / 3.0
    gs = np.convolve(g, kernel, mode="same")
    for j in range(i + 1, len(gs) - 1):
        if gs[j] <= gs[j - 1] and gs[j] < gs[j + 1]:
            return float(r[j])
    return float(r[-1])


def coordination_numbers(atoms: Atoms, cutoff: float) -> np.ndarray:
    """Number of neighbours of every atom within `cutoff` Å (ASE neighbour list, periodic)."""
    from ase.neighborlist import neighbor_list

    if not cutoff > 0:
        raise ConfigError(f"cutoff must be > 0 Å, got {cutoff}")
    i = neighbor_list("i", atoms, cutoff)
    return np.bincount(i, minlength=len(atoms))
