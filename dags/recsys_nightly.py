"""The nightly batch of the recsys product.

extract → validate → prepare → train control ∥ train test ∥ train recipe → evaluate → quality gate
→ stage snapshot → rank shard (mapped over groups × shards) → publish snapshot → confirm served

Each task calls one function of ``recsys`` (the same ones ``recsys pipeline`` runs in one process)
and hands the next task a path, never data. Everything a run writes is named by its logical date, so
a rerun replaces that date's extract, models and snapshot instead of adding to them. A failure
anywhere before "publish snapshot" leaves the published snapshot serving.

The quality gate decides, per group, whether its model or the best baseline serves it (a model worse
than the baseline beyond noise, or below RECSYS_MIN_HITRATE when set, is replaced by the baseline) and
always publishes: a failed model is a decision in the version's serving.json and the task's log, not
a failed run, so the snapshot that follows serves the best proven ranking.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from airflow.sdk import Asset, dag, get_current_context, task

from recsys.config import data_dir_from_env, load_settings

log = logging.getLogger(__name__)

# Assets point at the pointer files that change when something is published.
DATA_DIR = data_dir_from_env()
MODELS = Asset(name="recsys_models", uri=f"file://{DATA_DIR}/models/CURRENT")
SNAPSHOT = Asset(name="recsys_snapshot", uri=f"file://{DATA_DIR}/snapshots/CURRENT")

MODEL_KINDS = ("control", "test", "recipe")  # recipe: the original's recipe, a baseline for the gate


def _run_date() -> dt.date:
    """The date that names this run's extract: its logical date (for manual runs: when triggered)."""
    context = get_current_context()
    return (context.get("logical_date") or context["dag_run"].run_after).date()


@dag(
    schedule="@daily",
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    tags=["recsys"],
    doc_md=__doc__,
    default_args={
        "owner": "recsys",
        "retries": 2,
        "retry_delay": dt.timedelta(minutes=2),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": dt.timedelta(minutes=30),
    },
)
def recsys_nightly():
    @task
    def extract() -> str:
        """Copy the source tables into extracts/<date>/ (validated while streaming)."""
        from recsys.extract import extract

        return str(extract(load_settings(), date=_run_date()))

    @task
    def validate(extract_path: str) -> str:
        """Re-check the extract against its manifest and that it covers enough days to split."""
        from recsys.extract import verify_extract

        verify_extract(Path(extract_path), load_settings())
        return extract_path

    @task
    def prepare(extract_path: str) -> str:
        """Post text vectors, the time split and the sampled examples: a new models/<version>/."""
        from recsys import training

        return str(training.prepare(load_settings(), Path(extract_path)))

    @task
    def train(version_dir: str, kind: str) -> str:
        """One CatBoost model of the version."""
        from recsys import training

        training.train_model(Path(version_dir), kind, load_settings())
        return version_dir

    @task
    def evaluate(version_dir: str) -> str:
        """Every model and baseline on the test days: evaluation.json, .png, .parquet."""
        from recsys import training

        training.evaluate_version(Path(version_dir), load_settings())
        return version_dir

    @task(outlets=[MODELS], retries=0)
    def quality_gate(version_dir: str) -> str:
        """Decide what serves each group (its model or the best baseline) and publish the version."""
        from recsys import training

        return training.gate_and_publish(Path(version_dir), load_settings())

    @task
    def stage_snapshot(models_version: str) -> str:
        """Users with group and shard, posts, liked pairs, models and history into a staging snapshot."""
        from recsys import precompute

        return str(precompute.stage(load_settings(), models_version))

    @task
    def plan_shards(staging_dir: str) -> list[dict]:
        from recsys import precompute

        return [{"group": group, "shard": shard} for group, shard in precompute.shards_of(Path(staging_dir))]

    @task(map_index_template="{{ shard_label }}")
    def rank_shard(staging_dir: str, group: str, shard: int) -> str:
        """Rank one group × shard of users into recommendations/<group>-<shard>.parquet."""
        from recsys import precompute

        get_current_context()["shard_label"] = f"{group}-{shard}"
        return str(precompute.run_shard(Path(staging_dir), group, shard))

    @task(outlets=[SNAPSHOT])
    def publish(staging_dir: str, shard_files: list[str]) -> str:
        """Check every shard is there, write the manifest last, make the snapshot current."""
        from recsys import snapshot

        return snapshot.publish(Path(staging_dir), load_settings())

    @task
    def confirm_served(snapshot_id: str) -> str:
        """Wait until the API (RECSYS_API_URL) serves the new snapshot; without one, it notices by itself."""
        from recsys import snapshot

        settings = load_settings()
        if not settings.api_url:
            log.info("RECSYS_API_URL is not set: a running API picks %s up within RECSYS_RELOAD_SECONDS=%s",
                     snapshot_id, settings.reload_seconds)  # fmt: skip
            return snapshot_id
        snapshot.wait_until_served(settings.api_url, snapshot_id, snapshot.served_timeout(settings))
        return snapshot_id

    version_dir = prepare(validate(extract()))
    trained = [train.override(task_id=f"train_{kind}")(version_dir, kind) for kind in MODEL_KINDS]
    evaluated = evaluate(version_dir)
    trained >> evaluated
    staging_dir = stage_snapshot(quality_gate(evaluated))
    shard_files = rank_shard.partial(staging_dir=staging_dir).expand_kwargs(plan_shards(staging_dir))
    confirm_served(publish(staging_dir, shard_files))


recsys_nightly()
