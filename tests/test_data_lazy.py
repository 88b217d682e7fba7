"""Lazy, chunked reading of labelled structures (extxyz and databases) for data larger than RAM."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.io import write

from matloop.data.io import iter_chunks, iter_structures, read_dataset
from matloop.errors import DataError


def _frames(n: int) -> list:
    out = []
    for i in range(n):
        atoms = bulk("Cu", cubic=True)
        atoms.rattle(0.05, seed=i)
        atoms.calc = EMT()
        atoms.get_forces()
        out.append(atoms)
    return out


def test_chunks_match_a_full_read(tmp_path):
    path = tmp_path / "d.xyz"
    write(path, _frames(11))
    chunks = list(iter_chunks(path, chunk_size=4))
    assert [len(c) for c in chunks] == [4, 4, 3]
    full = read_dataset(path)
    flat = [a for c in chunks for a in c]
    for a, b in zip(flat, full, strict=True):
        assert a.get_potential_energy() == b.get_potential_energy()
        np.testing.assert_array_equal(a.get_forces(), b.get_forces())
    assert len(list(iter_structures([path, path], chunk_size=5))) == 22


def test_reading_is_lazy_a_bad_frame_late_in_the_file_fails_only_when_reached(tmp_path):
    path = tmp_path / "d.xyz"
    write(path, _frames(6))
    with open(path, "a") as fh:
        fh.write("2\nProperties=species:S:1:pos:R:3 energy=oops\nCu 0 0 0\n")  # truncated frame
    gen = iter_chunks(path, chunk_size=3)
    assert len(next(gen)) == 3  # the first chunk arrives before the bad frame is read
    assert len(next(gen)) == 3
    with pytest.raises(DataError, match="d.xyz"):
        next(gen)


def test_custom_label_keys_and_validation_per_chunk(tmp_path):
    frames = _frames(4)
    for a in frames:
        a.info["REF_energy"] = a.get_potential_energy()
        a.arrays["REF_forces"] = a.get_forces()
        a.calc = None
    write(tmp_path / "r.xyz", frames)
    (chunk,) = list(
        iter_chunks(
            tmp_path / "r.xyz", chunk_size=10, energy_key="REF_energy", forces_key="REF_forces"
        )
    )
    assert chunk[0].get_potential_energy() == pytest.approx(frames[0].info["REF_energy"])
    with pytest.raises(DataError):
        list(iter_chunks(tmp_path / "r.xyz"))  # no labels under the default keys


def test_bad_arguments_are_one_line_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        list(iter_chunks(tmp_path / "missing.xyz"))
    with pytest.raises(DataError, match="chunk_size"):
        list(iter_chunks(tmp_path / "missing.xyz", chunk_size=0))
    with pytest.raises(DataError, match="not found"):
        list(iter_chunks(str(tmp_path / "missing.db") + "#tag=x"))
