"""The nightly model steps, each one function (the DAG runs one task per function):

1. ``prepare(settings, extract)``: post text vectors of both variants, the time split, the sampled
   training and validation views; a new version folder ``models/<version>/``.
2. ``train_model(version_dir, kind, settings)``: one CatBoost model (control, test, or the recipe
   baseline), saved as ``<kind>.cbm`` with ``<kind>.json`` (features, parameters, time, metrics).
3. ``evaluate_version(version_dir, settings)``: every method on the test days: ``evaluation.json``,
   ``evaluation.png``, and a copy under ``evaluations/<version>/``.
4. ``gate_and_publish(version_dir, settings)``: publish only models that pass the quality gate;
   ``models/CURRENT`` names the published version and changes atomically.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from recsys import evaluate, models
from recsys.features import FeatureStore, Split, sample_views, time_split
from recsys.files import read_json, write_atomically, write_json
from recsys.text_features import VARIANTS, post_text_vectors

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
CURRENT = "CURRENT"
SERVED_KINDS = ("control", "test")


class QualityGateError(RuntimeError):
    """A model did not reach the quality bar; nothing was published."""


def read_manifest(version_dir: Path) -> dict:
    return read_json(version_dir / MANIFEST)


def _attempts_of(settings, extract_name: str) -> list[Path]:
    """Version folders trained on the extract of this date (a version is named <extract>-<UTC time>)."""
    return sorted(settings.models_dir.glob(f"{extract_name}-*T*"))


def _remove_version(settings, version_dir: Path, reason: str) -> None:
    shutil.rmtree(version_dir)
    shutil.rmtree(settings.evaluations_dir / version_dir.name, ignore_errors=True)
    log.info("removed models %s: %s", version_dir.name, reason)


def _feature_store(settings, extract_path: Path, post_ids, vectors, cluster_vectors, text_clusters: int,
                   taste_day_rows: int, version_dir: Path) -> FeatureStore:  # fmt: skip
    """The extract's feature store, its DuckDB bounded by RECSYS_DUCKDB_MEMORY_LIMIT (spilling to tmp/);
    the taste model's fits are kept in the version folder, made once for all of its tasks."""
    return FeatureStore(extract_path, post_ids, vectors, text_clusters, settings.duckdb_memory_limit,
                        settings.data_dir / "tmp" / "duckdb", taste_day_rows, version_dir / "taste",
                        cluster_vectors)  # fmt: skip


def prepare(settings, extract_path: Path) -> Path:
    started = time.perf_counter()
    # A rerun for the same date replaces its earlier attempts rather than adding to them; the
    # published version stays until the new one passes the gate (gate_and_publish removes it then).
    published = current_version(settings)
    for earlier in _attempts_of(settings, extract_path.name):
        if earlier.name != published:
            _remove_version(settings, earlier, f"an earlier attempt for the extract of {extract_path.name}")
    version = f"{extract_path.name}-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}"
    version_dir = settings.models_dir / version
    version_dir.mkdir(parents=True)
    posts = pq.read_table(extract_path / "post_text_df.parquet").to_pandas()
    texts = posts["text"].fillna("").tolist()
    vectors, cluster_vectors = {}, {}
    for variant in VARIANTS:
        vectors[variant], cluster_vectors[variant] = post_text_vectors(variant, texts, settings)
    columns = {"post_id": posts["post_id"]}
    for variant in VARIANTS:
        columns.update({f"{variant}_{j}": column for j, column in enumerate(vectors[variant].T)})
        columns.update({f"{variant}_cluster_{j}": column for j, column in enumerate(cluster_vectors[variant].T)})
    pd.DataFrame(columns).to_parquet(version_dir / "post_vectors.parquet", index=False)

    store = _feature_store(settings, extract_path, posts["post_id"].to_numpy(), vectors, cluster_vectors,
                           settings.text_clusters, settings.taste_day_rows, version_dir)  # fmt: skip
    split = time_split(*store.days(), settings.valid_days, settings.test_days)
    train = sample_views(store, *split.train, settings.train_rows, settings.seed)
    valid = sample_views(store, *split.valid, max(1_000, settings.train_rows // 4), settings.seed)
    train.to_parquet(version_dir / "train.parquet", index=False)
    valid.to_parquet(version_dir / "valid.parquet", index=False)
    write_json(version_dir / MANIFEST, {
        "version": version,
        "extract": str(extract_path),
        "split": split.as_dict(),
        "train_views": len(train),
        "valid_views": len(valid),
        "text_dimensions": {variant: matrix.shape[1] for variant, matrix in vectors.items()},
        "cluster_dimensions": {variant: matrix.shape[1] for variant, matrix in cluster_vectors.items()},
        "text_clusters": settings.text_clusters,
        "taste_day_rows": settings.taste_day_rows,
        "embedding_model": settings.embedding_model,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "prepare_seconds": round(time.perf_counter() - started, 1),
    })  # fmt: skip
    log.info("prepared %s: %s training and %s validation views (split %s)", version, f"{len(train):,}",
             f"{len(valid):,}", split.as_dict())  # fmt: skip
    return version_dir


def version_post_vectors(version_dir: Path) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray] | None]:
    """(post ids, text components per variant, the vectors its text clusters are found in) as prepare
    saved them for a version (a version made before the cluster vectors has None: its clusters were
    found in the components)."""
    manifest = read_manifest(version_dir)
    table = pd.read_parquet(version_dir / "post_vectors.parquet")

    def matrices(dimensions: dict, infix: str) -> dict[str, np.ndarray]:
        return {variant: table[[f"{variant}{infix}_{j}" for j in range(dims)]].to_numpy(np.float32)
                for variant, dims in dimensions.items()}  # fmt: skip

    cluster_dimensions = manifest.get("cluster_dimensions")
    return (table["post_id"].to_numpy(), matrices(manifest["text_dimensions"], ""),
            matrices(cluster_dimensions, "_cluster") if cluster_dimensions else None)  # fmt: skip


def load_version(version_dir: Path, settings) -> tuple[FeatureStore, Split]:
    manifest = read_manifest(version_dir)
    store = _feature_store(settings, Path(manifest["extract"]), *version_post_vectors(version_dir),
                           manifest["text_clusters"], manifest["taste_day_rows"], version_dir)  # fmt: skip
    return store, load_version_split(version_dir)


def _training_frame(store: FeatureStore, path: Path, space: str) -> pd.DataFrame:
    """Features of sampled views with their target and user-day group, each user's day together."""
    views = pd.read_parquet(path).sort_values(["user_id", "timestamp"], ignore_index=True)
    user_days = views.groupby(["user_id", views["timestamp"].dt.floor("D")], sort=False).ngroup()
    frame = store.features(views, space)
    frame["target"], frame["user_day"] = views["target"].to_numpy(), user_days.to_numpy()
    return frame


def train_model(version_dir: Path, kind: str, settings, store: FeatureStore | None = None) -> dict:
    store = store or load_version(version_dir, settings)[0]
    space = models.TEXT_SPACE[kind]
    model, info = models.train(kind, _training_frame(store, version_dir / "train.parquet", space),
                               _training_frame(store, version_dir / "valid.parquet", space), settings)  # fmt: skip
    model.save_model(str(version_dir / f"{kind}.cbm"))
    write_json(version_dir / f"{kind}.json", info)
    return info


def _ground_truth(settings, store: FeatureStore):
    """The generator's ground truth, if it exists and covers this extract's users and posts."""
    from recsys.truth import GroundTruth

    try:
        truth = GroundTruth.load(settings.ground_truth_dir)
    except FileNotFoundError:
        log.info("no ground truth in %s: expected and oracle HitRate are skipped", settings.ground_truth_dir)
        return None
    users = store.con.execute("SELECT user_id FROM users").fetchnumpy()["user_id"]
    if not (np.isin(users, truth.user_ids).all() and np.isin(store.post_ids, truth.post_ids).all()):
        log.warning("the ground truth in %s does not cover this extract; oracle skipped", settings.ground_truth_dir)
        return None
    return truth


def evaluate_version(version_dir: Path, settings, store: FeatureStore | None = None) -> dict:
    started = time.perf_counter()
    store = store or load_version(version_dir, settings)[0]
    split = load_version_split(version_dir)
    trained = {kind: models.load(version_dir / f"{kind}.cbm") for kind in models.MODEL_KINDS
               if (version_dir / f"{kind}.cbm").exists()}  # fmt: skip
    truth = _ground_truth(settings, store)
    scorers = evaluate.Scorers(store, evaluate.standard_rankers(trained, truth, settings.seed))
    replay = evaluate.evaluate_replay(
        scorers, evaluate.replay_examples(store, *split.test, settings.train_rows, settings.seed)
    )
    served = evaluate.evaluate_served(scorers, *split.test, settings.eval_users, settings.seed, truth)
    report = {
        "version": version_dir.name,
        "split": split.as_dict(),
        "k": evaluate.K,
        "replay": {key: value for key, value in replay.items() if key != "methods"},
        "served": {key: value for key, value in served.items() if key != "methods"},
        "methods": {
            method: {**replay["methods"][method], **served["methods"].get(method, {})} for method in replay["methods"]
        },  # fmt: skip
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json(version_dir / "evaluation.json", report)
    evaluate.plot_report(report, version_dir / "evaluation.png")
    evaluate.report_rows(report).to_parquet(version_dir / "evaluation.parquet", index=False)
    copy = settings.evaluations_dir / version_dir.name
    copy.mkdir(parents=True, exist_ok=True)
    for name in ("evaluation.json", "evaluation.png", "evaluation.parquet"):
        shutil.copy2(version_dir / name, copy / name)
    log.info("evaluation of %s:\n%s", version_dir.name, evaluate.format_report(report))
    return report


def load_version_split(version_dir: Path) -> Split:
    days = read_manifest(version_dir)["split"]
    return Split(**{name: tuple(dt.date.fromisoformat(d) for d in pair) for name, pair in days.items()})


def check_quality(report: dict, settings) -> list[str]:
    """Reasons why the served models may not be published (empty when they pass)."""
    methods = report["methods"]
    popular = methods["popular"]["replay_hit_rate"]["mean"]
    failures = []
    for kind in SERVED_KINDS:
        if kind not in methods:
            failures.append(f"model {kind} was not trained")
            continue
        hit_rate = methods[kind]["replay_hit_rate"]["mean"]
        if hit_rate < settings.min_hit_rate:
            failures.append(f"model {kind}: replay HitRate@5 {hit_rate:.4f} is below RECSYS_MIN_HITRATE "
                            f"{settings.min_hit_rate:.2f}")  # fmt: skip
        if hit_rate < popular:
            failures.append(f"model {kind}: replay HitRate@5 {hit_rate:.4f} is below most-popular's {popular:.4f}")
    return failures


def latest_version_dir(settings) -> Path:
    """The newest version folder with trained models."""
    versions = sorted(path.parent for path in settings.models_dir.glob("*/control.cbm"))
    if not versions:
        raise FileNotFoundError(f"no trained models under {settings.models_dir}: run `recsys pipeline` first")
    return versions[-1]


def current_version(settings) -> str | None:
    pointer = settings.models_dir / CURRENT
    return pointer.read_text().strip() if pointer.exists() else None


def gate_and_publish(version_dir: Path, settings) -> str:
    """Make the version current if its models pass the gate; otherwise raise, leaving CURRENT as it was."""
    report = read_json(version_dir / "evaluation.json")
    failures = check_quality(report, settings)
    if failures:
        kept = current_version(settings)
        raise QualityGateError(
            f"version {version_dir.name} not published ({'; '.join(failures)}); "
            f"still serving {kept or 'nothing (no version was ever published)'}"
        )
    write_atomically(settings.models_dir / CURRENT, version_dir.name + "\n")
    log.info("published models %s", version_dir.name)
    # Snapshots carry copies of their models, so the replaced version of the same date can go.
    for replaced in _attempts_of(settings, Path(read_manifest(version_dir)["extract"]).name):
        if replaced != version_dir:
            _remove_version(settings, replaced, f"replaced by {version_dir.name}")
    return version_dir.name


def run(settings, extract_path: Path) -> str:
    """All model steps in this process (what `recsys pipeline` runs after the extract)."""
    version_dir = prepare(settings, extract_path)
    store, _ = load_version(version_dir, settings)
    for kind in models.MODEL_KINDS:
        train_model(version_dir, kind, settings, store)
    evaluate_version(version_dir, settings, store)
    return gate_and_publish(version_dir, settings)
