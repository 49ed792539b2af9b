"""Opening databases: URL resolution, and one-line DatabaseErrors (exit 2 in the CLI) for bad ones."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import opsearch.db
from opsearch.cli.main import cli
from opsearch.db import DatabaseError
from opsearch.db import engine as eng


def test_url_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("OPSEARCH_DB", raising=False)
    monkeypatch.setattr("platformdirs.user_data_dir", lambda app: str(tmp_path / app))
    assert eng.resolve_url() == f"sqlite:///{tmp_path / 'opsearch' / 'opsearch.db'}"
    monkeypatch.setenv("OPSEARCH_DB", "postgresql://u@h/db")
    assert eng.resolve_url() == "postgresql+psycopg://u@h/db"
    assert eng.resolve_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert eng.resolve_url("sqlite:///x.db") == "sqlite:///x.db"


def test_default_database_is_created(monkeypatch, tmp_path):
    monkeypatch.delenv("OPSEARCH_DB", raising=False)
    monkeypatch.setattr("platformdirs.user_data_dir", lambda app: str(tmp_path / "data" / app))
    db = opsearch.db.connect()
    assert db.backend == "sqlite" and (tmp_path / "data" / "opsearch" / "opsearch.db").is_file()
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == eng.BUSY_TIMEOUT_MS


def _bad_urls(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not an sqlite database at all" * 100)
    return [
        ("postgresql://postgres@127.0.0.1:1/opsearch", "cannot reach database postgresql+psycopg://postgres@127.0.0.1:1/opsearch: connection refused"),
        (f"sqlite:///{junk}", "is not a database file"),
        ("mysql://u@h/db", "unsupported database 'mysql'"),
        ("postgresql+nodriver://u@h/db", "cannot open database postgresql+nodriver://u@h/db"),
        (str(tmp_path / "plain-path.db"), "malformed database URL"),
        ("postgresql://u@h:notaport/db", "malformed database URL"),
        (f"sqlite:///{junk}/sub/x.db", "cannot open database file"),
        (f"sqlite:///{tmp_path}", "cannot open database file"),
    ]


def test_bad_urls_raise_one_line(tmp_path):
    for url, msg in _bad_urls(tmp_path):
        with pytest.raises(DatabaseError) as e:
            opsearch.db.connect(url)
        assert msg in str(e.value) and "\n" not in str(e.value), url


def test_bad_urls_exit_2_in_cli(tmp_path):
    runner = CliRunner()
    for url, msg in _bad_urls(tmp_path):
        res = runner.invoke(cli, ["db", "info", "--db", url])
        assert res.exit_code == 2, (url, res.output)
        assert res.stderr.count("\n") == 1 and msg in res.stderr and "Traceback" not in res.output


def test_password_is_masked(tmp_path):
    with pytest.raises(DatabaseError) as e:
        opsearch.db.connect("postgresql://user:s3cret@127.0.0.1:1/db")
    assert "s3cret" not in str(e.value) and "***" in str(e.value)
