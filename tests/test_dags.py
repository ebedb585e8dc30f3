"""The Airflow DAGs: they import cleanly and lightly, the nightly DAG has the designed shape, and
``dag.test()`` runs it end to end on the tiny preset, through a failure and a rerun, and through models
that fail the quality gate (served by the best baseline)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import pytest

from recsys.config import load_settings
from tests.conftest import REPO, TINY_MODEL_ENV

DAGS = REPO / "dags"
HEAVY_MODULES = ("pandas", "numpy", "pyarrow", "duckdb", "catboost", "sklearn", "torch", "sentence_transformers")
RUN_DATE = dt.datetime(2026, 11, 28, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def test_every_dag_file_imports_without_errors(dagbag):
    assert dagbag.import_errors == {}
    assert {"recsys_nightly", "recsys_ab_report"} <= set(dagbag.dags)


@pytest.mark.parametrize("dag_file", sorted(path.name for path in DAGS.glob("*.py")))
def test_importing_a_dag_file_does_no_heavy_work(dag_file):
    """What a DAG file adds on top of airflow.sdk: no data or ML libraries, and little time."""
    probe = f"""
import importlib.util, json, sys, time
import airflow.sdk
before = set(sys.modules)
started = time.perf_counter()
spec = importlib.util.spec_from_file_location("probe", {str(DAGS / dag_file)!r})
spec.loader.exec_module(importlib.util.module_from_spec(spec))
print(json.dumps({{"seconds": time.perf_counter() - started,
                  "added": sorted({{name.split('.')[0] for name in set(sys.modules) - before}})}}))
"""
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True)
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert not set(measured["added"]) & set(HEAVY_MODULES), measured["added"]
    assert measured["seconds"] < 1.0, measured


def test_nightly_dag_shape(dagbag):
    from recsys import models

    nightly = dagbag.dags["recsys_nightly"]
    tasks = nightly.task_dict
    upstream = {task_id: task.upstream_task_ids for task_id, task in tasks.items()}
    trains = {f"train_{kind}" for kind in models.MODEL_KINDS}
    assert upstream == {
        "extract": set(),
        "validate": {"extract"},
        "prepare": {"validate"},
        **{train: {"prepare"} for train in trains},  # the models train in parallel
        "evaluate": {"prepare", *trains},
        "quality_gate": {"evaluate"},
        "stage_snapshot": {"quality_gate"},
        "plan_shards": {"stage_snapshot"},
        "rank_shard": {"stage_snapshot", "plan_shards"},
        "publish": {"stage_snapshot", "rank_shard"},
        "confirm_served": {"publish"},
    }
    assert tasks["rank_shard"].is_mapped and not tasks["publish"].is_mapped
    assert [asset.name for asset in tasks["quality_gate"].outlets] == ["recsys_models"]
    assert [asset.name for asset in tasks["publish"].outlets] == ["recsys_snapshot"]
    assert tasks["quality_gate"].retries == 0  # its decision is final: a rerun decides the same
    assert tasks["extract"].retries >= 1 and tasks["extract"].retry_exponential_backoff > 1
    assert nightly.max_active_runs == 1


def test_ab_report_dag_runs_when_a_snapshot_is_published(dagbag):
    ab_dag = dagbag.dags["recsys_ab_report"]
    assert list(ab_dag.task_dict) == ["ab_report"]
    nightly_publish = dagbag.dags["recsys_nightly"].task_dict["publish"]
    assert [ref.name for ref in ab_dag.timetable.asset_condition.objects] == [nightly_publish.outlets[0].name]


@pytest.fixture(scope="module")
def airflow_run(tmp_path_factory):
    """A migrated Airflow metadata DB and a data dir with the tiny preset: run(dag) -> DagRun."""
    from recsys.generate import PRESETS, generate_into
    from recsys.sources import open_source

    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    data_dir = tmp_path_factory.mktemp("nightly-data")
    env = {**TINY_MODEL_ENV, "RECSYS_DATA_DIR": str(data_dir),
           "RECSYS_SOURCE_URL": f"duckdb:///{data_dir / 'source.duckdb'}"}  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        settings = load_settings()
        generate_into(open_source(settings.source_url), PRESETS["tiny"], 5, False, settings.ground_truth_dir)
        from dags.recsys_nightly import recsys_nightly

        nightly = recsys_nightly()
        for task in nightly.tasks:
            task.retries = 0  # dag.test() would sleep through the retry delays

        def run():
            return nightly.test(logical_date=RUN_DATE)

        yield run, settings


def _states(dag_run) -> dict[str, str]:
    return {f"{ti.task_id}[{ti.map_index}]" if ti.map_index >= 0 else ti.task_id: ti.state
            for ti in dag_run.get_task_instances()}  # fmt: skip


def _served(settings) -> tuple[str, str]:
    """Ask the API (started on the data dir) for a known user: (the snapshot it answered from, what ranked it)."""
    import pandas as pd
    from starlette.testclient import TestClient

    from api.app import create_app
    from recsys import snapshot

    user = int(pd.read_parquet(snapshot.current_dir(settings) / "users.parquet")["user_id"].iloc[0])
    with TestClient(create_app(settings)) as client:
        response = client.get("/post/recommendations/", params={"id": user, "time": "2026-11-28T12:00"})
    assert response.status_code == 200, response.text
    assert len(response.json()["recommendations"]) == 5
    return response.headers["x-snapshot"], response.headers["x-served-by"]


def _served_snapshot(settings) -> str:
    return _served(settings)[0]


def test_nightly_dag_end_to_end_through_a_failure_and_a_rerun(airflow_run, monkeypatch):
    from recsys import precompute, snapshot

    run, settings = airflow_run
    first = run()
    assert first.state == "success", _states(first)
    assert set(_states(first).values()) == {"success"}
    published = snapshot.current_id(settings)
    assert published is not None and _served_snapshot(settings) == published

    # A shard that fails after the models passed the gate: nothing new is published.
    real_run_shard = precompute.run_shard

    def failing_shard(staging_dir, group, shard, progress=None):
        if (group, shard) == ("test", 1):
            raise RuntimeError("planted shard failure")
        return real_run_shard(staging_dir, group, shard, progress)

    monkeypatch.setattr(precompute, "run_shard", failing_shard)
    failed = run()
    states = _states(failed)
    assert failed.state == "failed"
    assert states["rank_shard[3]"] == "failed" and states["publish"] == "upstream_failed", states
    assert snapshot.current_id(settings) == published and _served_snapshot(settings) == published
    assert len(list(settings.snapshots_dir.glob(".staging-*"))) == 1  # the failed attempt's leftovers

    monkeypatch.setattr(precompute, "run_shard", real_run_shard)
    rerun = run()
    assert rerun.state == "success", _states(rerun)
    republished = snapshot.current_id(settings)
    assert republished != published and _served_snapshot(settings) == republished
    # A rerun for the date replaced that date's artifacts instead of adding to them.
    assert [p.name for p in settings.extracts_dir.iterdir()] == [RUN_DATE.date().isoformat()]
    assert [p.name for p in settings.models_dir.iterdir() if p.is_dir()] == [
        (settings.models_dir / "CURRENT").read_text().strip()
    ]
    assert not list(settings.snapshots_dir.glob(".staging-*"))
    assert snapshot.published(settings) == sorted([published, republished])  # the replaced one, until the next


def test_models_failing_the_gate_publish_a_snapshot_served_by_the_best_baseline(airflow_run, monkeypatch):
    from recsys import snapshot, training

    run, settings = airflow_run
    before = snapshot.current_id(settings)
    monkeypatch.setenv("RECSYS_MIN_HITRATE", "0.99")
    gated = run()
    assert gated.state == "success", _states(gated)
    published = snapshot.current_id(settings)
    assert published != before
    decisions = training.read_serving(settings.models_dir / training.current_version(settings))
    baseline = decisions["best_baseline"]
    assert [d["served_by"] for d in decisions["kinds"].values()] == [baseline, baseline]
    manifest = snapshot.verify(settings.snapshots_dir / published)
    assert manifest["group_methods"] == {"control": baseline, "test": baseline}
    assert not list((settings.snapshots_dir / published / "models").iterdir())  # no model serves
    assert _served(settings) == (published, baseline)
