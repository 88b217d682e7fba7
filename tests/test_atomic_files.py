"""Outputs are written whole or not at all (matloop.utils.files)."""

from __future__ import annotations

import pytest

from matloop.utils.files import atomic_dir, atomic_write_text


def test_atomic_write_text_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "out.json"
    atomic_write_text(path, "old")
    with pytest.raises(TypeError):
        atomic_write_text(path, None)  # fails while writing
    assert path.read_text() == "old" and [f.name for f in tmp_path.iterdir()] == ["out.json"]


def test_atomic_dir_replaces_the_whole_directory(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "stale.png").write_text("from an earlier run")
    with atomic_dir(out) as tmp:
        assert tmp != out and tmp.parent == tmp_path
        (tmp / "model.json").write_text("{}")
    assert sorted(f.name for f in out.iterdir()) == ["model.json"]
    assert [f.name for f in tmp_path.iterdir()] == ["model"]


def test_atomic_dir_leaves_the_old_directory_on_failure(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "model.json").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "model.json").write_text("half")
        raise RuntimeError("fit failed")
    assert (out / "model.json").read_text() == "old"
    assert [f.name for f in tmp_path.iterdir()] == ["model"]


def test_atomic_dir_creates_a_new_directory(tmp_path):
    with atomic_dir(tmp_path / "a" / "new") as tmp:
        (tmp / "x.txt").write_text("x")
    assert (tmp_path / "a" / "new" / "x.txt").read_text() == "x"
