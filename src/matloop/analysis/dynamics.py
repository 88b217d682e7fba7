"""Mean-squared displacement and the diffusion coefficient by the Einstein relation."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms

from matloop.errors import ConfigError, DataError

A2_PER_PS_TO_CM2_PER_S = 1e-4  # 1 Å²/ps = 1e-16 cm² / 1e-12 s


def unwrapped_positions(frames: Sequence[Atoms]) -> np.ndarray:
    """Positions (n_frames, n_atoms, 3) in Å with periodic jumps removed.

    Successive displacements are taken as minimum-image vectors, so an atom must move less than
    half a cell between frames (true for any sane MD output interval).
    """
    from ase.geometry import find_mic

    if len(frames) < 2:
        raise DataError(f"need at least 2 frames for an MSD, got {len(frames)}")
    n = len(frames[0])
    if any(len(f) != n for f in frames):
        raise DataError("frames have different numbers of atoms")
    pos = np.empty((len(frames), n, 3))
    pos[0] = frames[0].get_positions()
    largest = 0.0  # largest step between frames as a fraction of the cell's smallest height
    for k in range(1, len(frames)):
        d = frames[k].get_positions() - frames[k - 1].get_positions()
        if any(frames[k].pbc):
            d, lengths = find_mic(d, frames[k].cell, frames[k].pbc)
            largest = max(largest, float(lengths.max()) / _smallest_height(frames[k]))
        pos[k] = pos[k - 1] + d
    if largest > 0.3:
        warnings.warn(
            f"an atom moved {largest:.2f} of the cell's width between two frames; periodic "
            "jumps cannot be told apart from such steps, so the MSD may be too small: write "
            "frames more often",
            stacklevel=2,
        )
    return pos


def _smallest_height(atoms: Atoms) -> float:
    """Smallest distance (Å) between opposite faces of the cell along a periodic direction.

    A zero cell vector along a non-periodic direction (2-D slabs) is completed orthogonally.
    """
    cell = np.asarray(atoms.cell.complete())
    vol = abs(np.linalg.det(cell))
    heights = [
        vol / np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3]))
        for i in range(3)
        if atoms.pbc[i]
    ]
    return min(heights)


def msd_fft(positions: np.ndarray) -> np.ndarray:
    """Time-origin-averaged MSD(lag) in Å² for positions (n_frames, n_atoms, dim), O(F log F).

    MSD(m) = ⟨|x(k+m) − x(k)|²⟩ over origins k and atoms (Calandrini et al.'s FFT algorithm).
    """
    x = np.asarray(positions, dtype=float)
    n_frames = x.shape[0]
    d = np.sum(x**2, axis=2)  # (F, N)
    d = np.concatenate([d, np.zeros((1, d.shape[1]))])
    q = 2.0 * d.sum(axis=0)
    s1 = np.zeros((n_frames, x.shape[1]))
    for m in range(n_frames):
        q = q - d[m - 1] - d[n_frames - m]
        s1[m] = q / (n_frames - m)
    # S2: autocorrelation via zero-padded FFT along time
    size = 2 * n_frames
    f = np.fft.rfft(x, n=size, axis=0)
    ac = np.fft.irfft(f * np.conj(f), n=size, axis=0)[:n_frames].sum(axis=2)
    s2 = ac / (n_frames - np.arange(n_frames))[:, None]
    return np.mean(s1 - 2.0 * s2, axis=1)


@dataclass
class Diffusion:
    """Einstein-relation fit MSD = 2·dim·D·t + c over [fit_start_ps, fit_end_ps]."""

    time_ps: np.ndarray
    msd_a2: np.ndarray
    d_a2_per_ps: float
    intercept_a2: float
    fit_start_ps: float
    fit_end_ps: float
    r2: float
    dim: int

    @property
    def d_cm2_per_s(self) -> float:
        return self.d_a2_per_ps * A2_PER_PS_TO_CM2_PER_S

    def to_dict(self) -> dict:
        return {
            "diffusion_a2_per_ps": self.d_a2_per_ps,
            "diffusion_cm2_per_s": self.d_cm2_per_s,
            "fit_start_ps": self.fit_start_ps,
            "fit_end_ps": self.fit_end_ps,
            "fit_r2": self.r2,
            "dim": self.dim,
            "time_ps": self.time_ps.tolist(),
            "msd_a2": self.msd_a2.tolist(),
        }


def mean_squared_displacement(
    frames: Sequence[Atoms],
    element: str | None = None,
    remove_com: bool = True,
) -> np.ndarray:
    """MSD(lag) in Å² (lag in frames) from a trajectory, optionally of one element only."""
    pos = unwrapped_positions(frames)
    if remove_com and pos.shape[1] > 1:
        masses = frames[0].get_masses()
        com = np.einsum("fij,i->fj", pos, masses) / masses.sum()
        pos = pos - com[:, None, :]
    if element is not None:
        mask = np.array([s == element for s in frames[0].get_chemical_symbols()])
        if not mask.any():
            raise DataError(f"element {element!r} not in the trajectory")
        pos = pos[:, mask]
    return msd_fft(pos)


def diffusion_coefficient(
    time_ps: np.ndarray,
    msd_a2: np.ndarray,
    dim: int = 3,
    fit_window: tuple[float, float] = (0.1, 0.5),
    window_in_ps: bool = False,
) -> Diffusion:
    """D from the slope of MSD(t) = 2·dim·D·t (Einstein relation), D in Å²/ps.

    `fit_window` is a (start, end) pair of fractions of the longest lag (default 10 %–50 %:
    skip the ballistic start and the noisy long lags), or times in ps with `window_in_ps`.
    """
    t = np.asarray(time_ps, dtype=float)
    y = np.asarray(msd_a2, dtype=float)
    if t.shape != y.shape or t.size < 3:
        raise DataError("need matching time and MSD arrays with at least 3 points")
    if dim not in (1, 2, 3):
        raise ConfigError(f"dim must be 1, 2 or 3, got {dim}")
    lo, hi = fit_window
    if not window_in_ps:
        if not 0 <= lo < hi <= 1:
            raise ConfigError(
                f"fit window fractions must satisfy 0 ≤ start < end ≤ 1, got {lo}, {hi}"
            )
        lo, hi = t[0] + lo * (t[-1] - t[0]), t[0] + hi * (t[-1] - t[0])
    mask = (t >= lo - 1e-12) & (t <= hi + 1e-12)
    if mask.sum() < 2:
        raise ConfigError(f"fit window {lo:g}–{hi:g} ps holds fewer than 2 MSD points")
    slope, intercept = np.polyfit(t[mask], y[mask], 1)
    pred = slope * t[mask] + intercept
    ss_res = float(np.sum((y[mask] - pred) ** 2))
    ss_tot = float(np.sum((y[mask] - y[mask].mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    return Diffusion(
        time_ps=t,
        msd_a2=y,
        d_a2_per_ps=float(slope / (2.0 * dim)),
        intercept_a2=float(intercept),
        fit_start_ps=float(t[mask][0]),
        fit_end_ps=float(t[mask][-1]),
        r2=r2,
        dim=dim,
    )


def diffusion_from_trajectory(
    frames: Sequence[Atoms],
    time_ps: np.ndarray,
    element: str | None = None,
    fit_window: tuple[float, float] = (0.1, 0.5),
    window_in_ps: bool = False,
) -> Diffusion:
    """MSD of `frames` (times `time_ps`, evenly spaced) and its Einstein-relation fit."""
    t = np.asarray(time_ps, dtype=float)
    if len(t) != len(frames):
        raise DataError(f"{len(t)} times for {len(frames)} frames")
    dt = np.diff(t)
    if len(dt) and not np.allclose(dt, dt[0], rtol=1e-3):
        raise DataError("frames are not evenly spaced in time; the MSD needs a constant interval")
    msd = mean_squared_displacement(frames, element=element)
    lags = t - t[0]
    return diffusion_coefficient(lags, msd, dim=3, fit_window=fit_window, window_in_ps=window_in_ps)
