"""Defects found by using the label store, `matloop config` and the executors as a new user
would: each test failed before its fix."""

from __future__ import annotations

import pytest
import yaml
from helpers.reference_data import write_rattled_cu

from matloop.cli import main
from matloop.errors import ConfigError
from matloop.execution import LocalExecutor, make_executor
from matloop.store import LabelStore, redact


def _labelled(path, n: int = 3) -> None:
    write_rattled_cu(path, n)


@pytest.mark.parametrize("password", ["pa#ss-wd", "pa?ss-wd", "pa/ss-wd"])
def test_redact_hides_a_password_with_url_special_characters(password):
    url = f"postgresql://someone:{password}@127.0.0.1:5432/labels"
    shown = redact(url)
    assert password not in shown and "ss-wd" not in shown
    assert shown == "postgresql://someone:***@127.0.0.1:5432/labels"


def test_redact_keeps_an_sqlite_url_as_given():
    assert redact("sqlite:///tmp/labels.db") == "sqlite:///tmp/labels.db"
    assert redact("postgresql://u@h/db?password=x&sslmode=require") == (
        "postgresql://u@h/db?password=***&sslmode=require"
    )


def test_cli_error_never_shows_a_password_with_a_hash(capsys):
    pytest.importorskip("psycopg2")
    url = "postgresql://someone:pa#ss-wd@127.0.0.1:1/nodb"  # libpq reads 'pa#ss-wd' as password
    assert main(["data", "count", "--db", url]) == 1
    err = capsys.readouterr().err
    assert "ss-wd" not in err and "***" in err and err.count("\n") == 1


@pytest.mark.parametrize("url", ["sqlite://labels.db", "http://host/labels.db"])
def test_a_mistyped_store_url_is_refused_and_creates_nothing(tmp_path, monkeypatch, capsys, url):
    monkeypatch.chdir(tmp_path)
    _labelled(tmp_path / "in.xyz")
    assert main(["data", "push", "in.xyz", "--db", url, "--code", "emt", "-q"]) == 1
    err = capsys.readouterr().err
    assert "not a label store URL" in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.xyz"]  # no 'sqlite:' folder
    with pytest.raises(ConfigError):
        LabelStore(url)


def test_sqlite_url_with_three_slashes_still_works(tmp_path):
    url = f"sqlite:///{tmp_path / 'labels.db'}"
    assert LabelStore(url).count() == 0


def test_push_of_an_empty_slice_is_an_error_and_creates_no_database(tmp_path, capsys):
    _labelled(tmp_path / "in.xyz")
    db = tmp_path / "labels.db"
    argv = ["data", "push", f"{tmp_path / 'in.xyz'}@5:2", "--db", str(db), "--code", "emt"]
    assert main([*argv, "-q"]) == 1
    err = capsys.readouterr().err
    assert "no structures" in err and "nothing pushed" in err and err.count("\n") == 1
    assert not db.exists()
    argv[2] = f"{tmp_path / 'in.xyz'}@0:2"
    assert main([*argv, "-q"]) == 0
    assert LabelStore(db).count() == 2


def test_validate_auto_recognises_a_property_config(tmp_path, capsys):
    out = tmp_path / "property.yaml"
    assert main(["config", "template", "property", "--out", str(out)]) == 0
    assert "targets" in yaml.safe_load(out.read_text())
    capsys.readouterr()
    assert main(["config", "validate", str(out)]) == 0
    assert "valid property config" in capsys.readouterr().out


@pytest.mark.parametrize("n", [0, -1])
def test_local_executor_refuses_fewer_than_one_worker(n):
    with pytest.raises(ConfigError, match="1 or more"):
        LocalExecutor(n)
    with pytest.raises(ConfigError, match="1 or more"):
        make_executor(None, n_workers=n)
