"""Shared fixtures: a real PostgreSQL server started by the test session, and isolated settings."""

from __future__ import annotations

import os
import uuid

import pytest
from pytest_postgresql.janitor import DatabaseJanitor

from recsys.config import load_settings
from tests.pg_server import server_bindir, temporary_postgres


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL for the whole session (see tests/pg_server.py).

    Without server binaries the PostgreSQL tests skip, except on CI, where that is a failure.
    """
    bindir = server_bindir()
    if bindir is None:
        message = "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin (apt-get install postgresql)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    with temporary_postgres(bindir, "fsync=off") as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh, empty database for one test, as a RECSYS_SOURCE_URL."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    with DatabaseJanitor(dbname=name, user="postgres", host=postgres_server["host"], port=postgres_server["port"]):
        yield f"postgresql://{postgres_server['user']}@{postgres_server['host']}:{postgres_server['port']}/{name}"


@pytest.fixture
def settings_for(tmp_path, monkeypatch):
    """Settings with RECSYS_DATA_DIR in a temp dir and the given source URL (DuckDB by default)."""

    def make(source_url: str | None = None, **env):
        monkeypatch.setenv("RECSYS_DATA_DIR", str(tmp_path / "data"))
        monkeypatch.setenv("RECSYS_SOURCE_URL", source_url or f"duckdb:///{tmp_path / 'source.duckdb'}")
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return load_settings()

    return make


@pytest.fixture(scope="session")
def tiny_extract(tmp_path_factory):
    """The tiny preset generated into DuckDB and extracted: (extract path, ground truth dir)."""
    import datetime as dt

    from recsys.extract import extract
    from recsys.generate import PRESETS, generate_into
    from recsys.sources import open_source

    root = tmp_path_factory.mktemp("tiny-extract")
    url = f"duckdb:///{root / 'source.duckdb'}"
    generate_into(open_source(url), PRESETS["tiny"], seed=5, replace=False, truth_dir=root / "ground_truth")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RECSYS_DATA_DIR", str(root))
        env.setenv("RECSYS_SOURCE_URL", url)
        path = extract(load_settings(), dt.date(2021, 11, 1))
    return path, root / "ground_truth"
