"""The command line as a user runs it: `python -m recsys ...` from the repository root."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def recsys(*args, env):
    return subprocess.run([sys.executable, "-m", "recsys", *args], cwd=REPO, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_generate_then_extract_writes_a_dated_extract(tmp_path):
    relative = os.path.relpath(tmp_path / "source.duckdb", REPO)  # the duckdb:///relative.duckdb form
    env = {"RECSYS_DATA_DIR": str(tmp_path / "data"), "RECSYS_SOURCE_URL": f"duckdb:///{relative}"}
    generated = recsys("generate", "--preset", "tiny", "--seed", "3", env=env)
    assert generated.returncode == 0, generated.stderr
    summary = json.loads(generated.stdout)
    assert summary["users"] == 400 and summary["feed_rows"] > 10_000
    assert "generate tiny" in generated.stderr  # the progress bar
    assert (tmp_path / "data" / "ground_truth" / "truth.json").exists()

    again = recsys("generate", "--preset", "tiny", "--seed", "4", env=env)
    assert again.returncode == 2 and "pass --replace to overwrite it" in again.stderr
    kept = recsys("generate", "--preset", "tiny", "--seed", "4", "--keep-existing", env=env)
    assert kept.returncode == 0 and "keeping it" in kept.stderr

    extracted = recsys("extract", "--date", "2021-11-01", env=env)
    assert extracted.returncode == 0, extracted.stderr
    path = Path(extracted.stdout.strip())
    assert path == tmp_path / "data" / "extracts" / "2021-11-01"
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["tables"]["feed_data"]["rows"] == summary["feed_rows"]


def test_pipeline_serves_the_best_baseline_when_no_model_passes_the_gate(tmp_path, monkeypatch):
    """A floor no model reaches: the run still publishes the models and a snapshot, each group served
    by the best baseline, says so, and the API answers with it."""
    import pandas as pd
    from starlette.testclient import TestClient

    from api.app import create_app
    from recsys import snapshot
    from recsys.config import load_settings

    env = {"RECSYS_DATA_DIR": str(tmp_path / "data"), "RECSYS_SOURCE_URL": f"duckdb:///{tmp_path / 'source.duckdb'}",
           "RECSYS_CATBOOST_ITERATIONS": "30", "RECSYS_TRAIN_ROWS": "5000", "RECSYS_EVAL_USERS": "40",
           "RECSYS_SHARDS": "2", "RECSYS_MIN_HITRATE": "0.99"}  # fmt: skip
    assert recsys("generate", "--preset", "tiny", "--seed", "8", env=env).returncode == 0
    run = recsys("pipeline", "--date", "2021-11-01", env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "served HR@5" in run.stderr  # the evaluation table in the log
    version = (tmp_path / "data" / "models" / "CURRENT").read_text().strip()
    decisions = json.loads((tmp_path / "data" / "models" / version / "serving.json").read_text())
    baseline = decisions["best_baseline"]
    for group in ("control", "test"):
        decision = decisions["kinds"][group]
        assert not decision["passed"] and decision["served_by"] == baseline
        assert f"group {group} served by {baseline} (fresh users: {decision['fresh_served_by']}): " in run.stdout
        assert "is below RECSYS_MIN_HITRATE 0.99" in decision["reason"] and decision["reason"] in run.stdout
    assert "published snapshot" in run.stdout

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    users = pd.read_parquet(snapshot.current_dir(settings) / "users.parquet")
    with TestClient(create_app(settings)) as client:
        for group in ("control", "test"):
            user = int(users.loc[users["group"] == group, "user_id"].iloc[0])
            response = client.get("/post/recommendations/", params={"id": user})
            assert response.status_code == 200 and len(response.json()["recommendations"]) == 5
            assert response.headers["x-served-by"] == baseline and response.json()["exp_group"] == group

    evaluated = recsys("evaluate", env=env)
    assert evaluated.returncode == 0 and "oracle" in evaluated.stdout


def test_errors_are_one_clear_line_and_a_nonzero_exit(tmp_path):
    env = {"RECSYS_DATA_DIR": str(tmp_path), "RECSYS_SOURCE_URL": "mysql://u@h/db"}
    result = recsys("extract", env=env)
    assert result.returncode == 1
    assert "unsupported store 'mysql'" in result.stderr and "Traceback" not in result.stderr
    bad = recsys("extract", env={**env, "RECSYS_ORPHAN_ROWS": "maybe"})
    assert bad.returncode == 2 and "RECSYS_ORPHAN_ROWS='maybe'" in bad.stderr


def test_an_empty_feed_is_a_validation_message_and_exit_1(tmp_path):
    import pyarrow as pa

    from recsys.sources import arrow_schema, open_source

    url = f"duckdb:///{tmp_path / 'source.duckdb'}"
    source = open_source(url)
    source.create_schema()
    user = {"user_id": 1, "gender": 0, "age": 30, "country": "Russia", "city": "Moscow", "exp_group": 0,
            "os": "iOS", "source": "ads"}  # fmt: skip
    post = {"post_id": 1, "text": "a post", "topic": "movie"}
    source.append("user_data", pa.Table.from_pylist([user], arrow_schema("user_data")))
    source.append("post_text_df", pa.Table.from_pylist([post], arrow_schema("post_text_df")))
    result = recsys("extract", env={"RECSYS_DATA_DIR": str(tmp_path / "data"), "RECSYS_SOURCE_URL": url})
    assert result.returncode == 1
    assert "feed_data: the table holds no rows" in result.stderr and "Traceback" not in result.stderr


def test_query_snapshots_precompute_and_rollback(served_copy):
    """The analyst's and the operator's commands over a served data dir."""
    counted = recsys("query", "SELECT exp_group, count(DISTINCT user_id) AS users FROM recommendations "
                     "GROUP BY ALL ORDER BY 1", env={})  # fmt: skip
    assert counted.returncode == 0, counted.stderr
    assert "control" in counted.stdout and "test" in counted.stdout
    for view in ("users", "posts", "evaluations", "exposures"):
        result = recsys("query", f"SELECT count(*) FROM {view}", env={})
        assert result.returncode == 0, result.stderr
    bad = recsys("query", "SELECT * FROM nowhere", env={})
    assert bad.returncode == 2 and "nowhere" in bad.stderr and "views: recommendations" in bad.stderr

    before = recsys("snapshots", env={}).stdout.split()
    made = recsys("precompute", env={})
    assert made.returncode == 0, made.stderr
    assert "precompute" in made.stderr  # the progress bar
    new = made.stdout.split()[-1]
    assert recsys("snapshots", env={}).stdout.splitlines()[-1] == f"* {new}"
    rolled = recsys("rollback", env={})
    assert rolled.returncode == 0 and rolled.stdout.split()[-1] == before[-1]
    missing = recsys("rollback", "--to", "1999-01-01-x", env={})
    assert missing.returncode == 1 and "is not published" in missing.stderr


def test_the_installed_command_finds_the_api_outside_the_repository(tmp_path):
    """`recsys serve` from .venv/bin, run anywhere, imports the api package (it is installed)."""
    result = subprocess.run([sys.executable, "-c", "import api.app, recsys.cli"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
