"""PropertyDataset reading/writing, splits and duplicate detection on ASE-generated crystals."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT

from matloop.errors import ConfigError, DataError
from matloop.property import (
    find_duplicates,
    from_structures,
    group_labels,
    prototype_key,
    read_dataset,
    split,
    write_extxyz,
)

METALS = ("Cu", "Ag", "Au", "Ni", "Pd", "Pt", "Al")
_FCC_A = {"Cu": 3.61, "Ag": 4.09, "Au": 4.08, "Ni": 3.52, "Pd": 3.89, "Pt": 3.92, "Al": 4.05}


def _cell(symbols: str, proto: str, a_fcc: float, strain: float):
    s = 1.0 + strain
    if proto == "fcc":
        return bulk(symbols, "fcc", a=a_fcc * s)
    if proto == "bcc":
        return bulk(symbols, "bcc", a=a_fcc * 0.5 ** (1 / 3) * s)
    if proto == "sc":
        return bulk(symbols, "sc", a=a_fcc * 0.25 ** (1 / 3) * s)
    if proto == "hcp":
        return bulk(symbols, "hcp", a=a_fcc / np.sqrt(2) * s, c=a_fcc / np.sqrt(2) * 1.633 * s)
    if proto == "B2":
        return bulk(symbols, "cesiumchloride", a=a_fcc * 0.5 ** (1 / 3) * s)
    raise ValueError(proto)


def make_crystals(n_strain: int = 3, seed: int = 0, metals=METALS, alloys: bool = True):
    """Elemental fcc/bcc/sc/hcp and B2 alloy crystals with EMT energy (eV/atom) and volume.

    Properties: ``energy_per_atom`` (eV/atom), ``volume_per_atom`` (Å³/atom), ``structure``
    (prototype label), ``year`` (a fake time column for the column split).
    """
    rng = np.random.default_rng(seed)
    frames, props = [], {"energy_per_atom": [], "volume_per_atom": [], "structure": [], "year": []}
    specs = [(m, p, _FCC_A[m]) for m in metals for p in ("fcc", "bcc", "sc", "hcp")]
    if alloys:
        pairs = [(a, b) for i, a in enumerate(metals) for b in metals[i + 1 :]]
        specs += [(a + b, "B2", 0.5 * (_FCC_A[a] + _FCC_A[b])) for a, b in pairs]
    for symbols, proto, a in specs:
        for strain in rng.uniform(-0.04, 0.04, n_strain):
            atoms = _cell(symbols, proto, a, strain).repeat((2, 1, 1))
            atoms.rattle(0.03, seed=int(rng.integers(1 << 30)))
            atoms.calc = EMT()
            props["energy_per_atom"].append(atoms.get_potential_energy() / len(atoms))
            props["volume_per_atom"].append(atoms.get_volume() / len(atoms))
            props["structure"].append(proto)
            props["year"].append(int(rng.integers(2000, 2020)))
            atoms.calc = None
            frames.append(atoms)
    ids = [f"x{i:04d}" for i in range(len(frames))]
    units = {"energy_per_atom": "eV/atom", "volume_per_atom": "Å^3/atom"}
    return from_structures(frames, props, ids, units)


def test_extxyz_round_trip_and_targets(tmp_path):
    ds = make_crystals(n_strain=1, alloys=False)
    path = tmp_path / "set.extxyz"
    write_extxyz(ds, path)
    gz = tmp_path / "set.extxyz.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    back = read_dataset(gz)
    assert back.ids == ds.ids
    np.testing.assert_allclose(back.target("energy_per_atom"), ds.target("energy_per_atom"))
    assert back.labels("structure") == ds.labels("structure")
    assert back.unit("energy_per_atom") == "eV/atom"  # well-known name
    with pytest.raises(DataError, match="no property 'band_gap'"):
        back.target("band_gap")
    with pytest.raises(DataError, match="not a number"):
        back.target("structure")


def test_jsonl_and_csv_join(tmp_path):
    ds = make_crystals(n_strain=1, alloys=False)
    lines = []
    for i, a in enumerate(ds.structures):
        lines.append(
            json.dumps(
                {
                    "id": ds.ids[i],
                    "cell": a.cell.array.tolist(),
                    "numbers": a.numbers.tolist(),
                    "positions": a.positions.tolist(),
                    "is_fcc": ds.properties["structure"][i] == "fcc",
                }
            )
        )
    (tmp_path / "structures.jsonl").write_text("\n".join(lines) + "\n")
    js = read_dataset(tmp_path / "structures.jsonl")
    assert js.labels("is_fcc").count("True") == len(METALS)
    rows = ["id,volume_per_atom"] + [
        f"{i},{v}" for i, v in zip(ds.ids, ds.target("volume_per_atom"), strict=True)
    ]
    (tmp_path / "targets.csv").write_text("\n".join(rows) + "\n")
    csv_ds = read_dataset(tmp_path / "targets.csv")
    np.testing.assert_allclose(csv_ds.target("volume_per_atom"), ds.target("volume_per_atom"))
    assert np.allclose(csv_ds.structures[3].positions, ds.structures[3].positions)


def test_grouped_splits_never_share_a_group():
    ds = make_crystals(n_strain=2)
    for kind in ("composition", "prototype"):
        groups = np.array(group_labels(ds, kind), dtype=object)
        tr, te = split(ds, kind, 0.25, seed=3)
        assert len(tr) + len(te) == len(ds) and len(te) > 0
        assert not set(groups[tr]) & set(groups[te])
    tr, te = split(ds, "column", 0.25, column="year")
    years = ds.target("year")
    assert years[tr].max() <= years[te].min()
    with pytest.raises(ConfigError, match="unknown split"):
        split(ds, "spacegroup")


def test_prototype_key_tells_structure_types_apart():
    fcc = bulk("Cu", "fcc", a=3.6)
    assert prototype_key(fcc) == prototype_key(bulk("Au", "fcc", a=4.08).repeat(2))
    assert prototype_key(fcc) != prototype_key(bulk("Cu", "bcc", a=2.9))
    assert prototype_key(bulk("CuAu", "cesiumchloride", a=3.1)).startswith("221:")


def test_duplicates_find_rotated_translated_copy():
    ds = make_crystals(n_strain=1, alloys=False)
    copy = ds.structures[5].copy()  # rotate the whole crystal and shift the origin
    copy.rotate(37, "z", rotate_cell=True)
    copy.rotate(11, "x", rotate_cell=True)
    copy.translate([0.3, -0.2, 0.5])
    copy.wrap()
    structures = [*ds.structures, copy]
    dup = from_structures(structures, ids=[*ds.ids, "copy"])
    groups = find_duplicates(dup)
    assert [len(ds.structures) in g for g in groups].count(True) == 1
    (group,) = [g for g in groups if len(ds.structures) in g]
    assert 5 in group


def test_ase_db_properties_from_key_value_pairs(tmp_path):
    from ase.db import connect

    ds = make_crystals(n_strain=1, alloys=False, metals=("Cu", "Al"))
    with connect(tmp_path / "set.db") as db:
        for i, a in enumerate(ds.structures):
            db.write(a, id_name=ds.ids[i], e=float(ds.target("energy_per_atom")[i]))
    back = read_dataset(tmp_path / "set.db", id_key="id_name", units={"e": "eV/atom"})
    assert back.ids == ds.ids and back.unit("e") == "eV/atom"
    np.testing.assert_allclose(back.target("e"), ds.target("energy_per_atom"))
