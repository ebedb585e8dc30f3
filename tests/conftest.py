"""Shared fixtures: a real PostgreSQL server started by the test session, and isolated settings."""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

import pytest
from pytest_postgresql.janitor import DatabaseJanitor

from recsys.config import load_settings
from tests.pg_server import server_bindir, temporary_postgres

# Airflow reads its configuration once, at its first import: point it at a throwaway home (SQLite
# metadata) and at this repository's DAGs before any test imports it.
REPO = Path(__file__).resolve().parents[1]
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="recsys-airflow-home-")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(REPO / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"


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


TINY_MODEL_ENV = {
    "RECSYS_CATBOOST_ITERATIONS": "40", "RECSYS_TRAIN_ROWS": "6000", "RECSYS_EVAL_USERS": "60",
    "RECSYS_EMBEDDING_COMPONENTS": "8", "RECSYS_SHARDS": "2", "RECSYS_TOP_K": "20", "RECSYS_CANDIDATES": "100",
    "RECSYS_TEST_DAYS": "5", "RECSYS_TEST_USER_DAYS": "100",  # the last 5 of the tiny preset's 14 days
}  # fmt: skip


def train_tiny(tiny_extract, data_dir, kinds):
    """Models of the given kinds trained on the tiny extract into data_dir: (env, settings, version dir,
    feature store, training infos)."""
    import shutil

    from recsys import training

    extract, truth_dir = tiny_extract
    shutil.copytree(truth_dir, data_dir / "ground_truth")
    env = {**TINY_MODEL_ENV, "RECSYS_DATA_DIR": str(data_dir),
           "RECSYS_SOURCE_URL": f"duckdb:///{extract.parents[1] / 'source.duckdb'}"}  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        settings = load_settings()
    version_dir = training.prepare(settings, extract)
    store, _ = training.load_version(version_dir, settings)
    infos = {kind: training.train_model(version_dir, kind, settings, store) for kind in kinds}
    return env, settings, version_dir, store, infos


@pytest.fixture(scope="session")
def served(tiny_extract, tmp_path_factory):
    """A data dir with tiny models published and a snapshot precomputed from them: (env, data dir).

    Tests that change it work on a copy (``served_copy``).
    """
    from recsys import precompute, training
    from recsys.files import write_atomically

    data_dir = tmp_path_factory.mktemp("served-data")
    env, settings, version_dir, _, _ = train_tiny(tiny_extract, data_dir, ("control", "test"))
    # Published without the quality gate, which has its own tests: these tests are about serving.
    write_atomically(settings.models_dir / training.CURRENT, version_dir.name)
    precompute.run(settings)
    return env, data_dir


def serve_test_group_by(settings, baseline: str) -> None:
    """Gate decisions for the published version: control keeps its model, the test model's groups
    (known and fresh users) get a baseline. The next precompute serves them so."""
    from recsys import training
    from recsys.files import write_json

    kinds = {"control": {"served_by": "control", "fresh_served_by": "control"},
             "test": {"served_by": baseline, "fresh_served_by": baseline}}  # fmt: skip
    version_dir = settings.models_dir / training.current_version(settings)
    write_json(version_dir / training.SERVING, {"best_baseline": baseline, "kinds": kinds})


@pytest.fixture
def served_copy(served, tmp_path, monkeypatch):
    """Settings over a private copy of the served data dir."""
    import shutil

    env, data_dir = served
    copy = tmp_path / "data"
    shutil.copytree(data_dir, copy, symlinks=True)
    for name, value in {**env, "RECSYS_DATA_DIR": str(copy)}.items():
        monkeypatch.setenv(name, value)
    return load_settings()
