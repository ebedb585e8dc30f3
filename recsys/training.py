"""The nightly model steps, each one function (the DAG runs one task per function):

1. ``prepare(settings, extract)``: post text vectors of both variants, the time split, the sampled
   training and validation views; a new version folder ``models/<version>/``.
2. ``train_model(version_dir, kind, settings)``: one CatBoost model (control, test, or the recipe
   baseline), saved as ``<kind>.cbm`` with ``<kind>.json`` (features, parameters, time, metrics).
3. ``evaluate_version(version_dir, settings)``: every method on the test days: ``evaluation.json``,
   ``evaluation.png``, and a copy under ``evaluations/<version>/``.
4. ``gate_and_publish(version_dir, settings)``: decide, for each served model kind, whether the model or
   the best baseline serves its groups (``serving.json``), then publish the version: ``models/CURRENT``
   names it and changes atomically. A model that fails is served by the baseline, never by nothing.
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

from recsys import abstats, evaluate, models, rankers
from recsys.features import FeatureStore, Split, evidence_split, sample_views
from recsys.files import read_json, write_atomically, write_json
from recsys.text_features import VARIANTS, post_text_vectors

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
SERVED_HITS = "served_hits.parquet"  # per method and evaluated user: the served hit, for paired comparisons
CURRENT = "CURRENT"
SERVED_KINDS = ("control", "test")
SERVING = "serving.json"  # the gate's decisions
FRESH_USERS_DECIDED_APART = 30  # fewer fresh users than this follow the decision over all users


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
                   taste_day_rows: int, version_dir: Path, collab_refit_days: int) -> FeatureStore:  # fmt: skip
    """The extract's feature store, its DuckDB bounded by RECSYS_DUCKDB_MEMORY_LIMIT (spilling to tmp/);
    the taste model's and the co-like factors' fits are kept in the version folder, made once for all
    of its tasks."""
    return FeatureStore(extract_path, post_ids, vectors, text_clusters, settings.duckdb_memory_limit,
                        settings.data_dir / "tmp" / "duckdb", taste_day_rows, version_dir / "taste",
                        cluster_vectors, version_dir / "collab", collab_refit_days)  # fmt: skip


def prepare(settings, extract_path: Path) -> Path:
    started = time.perf_counter()
    # A rerun for the same date replaces its earlier attempts rather than adding to them; the
    # published version stays until the new one is published (gate_and_publish removes it then).
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
                           settings.text_clusters, settings.taste_day_rows, version_dir,
                           settings.collab_refit_days)  # fmt: skip
    user_days = dict(store.con.execute("SELECT day, count(DISTINCT user_id) FROM views GROUP BY day").fetchall())
    split, split_rule = evidence_split(user_days, settings.valid_days, settings.test_days, settings.test_user_days)
    log.info("%s", split_rule)
    train = sample_views(store, *split.train, settings.train_rows, settings.seed)
    valid = sample_views(store, *split.valid, max(1_000, settings.train_rows // 4), settings.seed)
    train.to_parquet(version_dir / "train.parquet", index=False)
    valid.to_parquet(version_dir / "valid.parquet", index=False)
    write_json(version_dir / MANIFEST, {
        "version": version,
        "extract": str(extract_path),
        "split": split.as_dict(),
        "split_rule": split_rule,
        "train_views": len(train),
        "valid_views": len(valid),
        "text_dimensions": {variant: matrix.shape[1] for variant, matrix in vectors.items()},
        "cluster_dimensions": {variant: matrix.shape[1] for variant, matrix in cluster_vectors.items()},
        "text_clusters": settings.text_clusters,
        "taste_day_rows": settings.taste_day_rows,
        "collab_refit_days": settings.collab_refit_days,
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
                           manifest["text_clusters"], manifest["taste_day_rows"], version_dir,
                           manifest.get("collab_refit_days", 1))  # fmt: skip
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
    if kind in models.OFFSET_KINDS:  # the served models
        info["exposure_power"], info["exposure_tuning"] = tune_exposure(store, model, kind, version_dir, settings)
        model.get_metadata()[models.EXPOSURE_POWER_KEY] = str(info["exposure_power"])
    model.save_model(str(version_dir / f"{kind}.cbm"))
    write_json(version_dir / f"{kind}.json", info)
    return info


def tune_exposure(store: FeatureStore, model, kind: str, version_dir: Path, settings) -> tuple[float, dict]:
    """The exposure power of a model's served ranking (``models.ranking_scores``), chosen among
    RECSYS_EXPOSURE_POWERS on the validation days by served HitRate@5: the best power, if it beats
    the probability alone (power 0) beyond noise (a paired bootstrap over users); otherwise 0.
    Returns (power, served HitRate@5 and CI of each power's difference from 0)."""
    split = load_version_split(version_dir)
    methods = evaluate.power_rankers(model, kind, settings.exposure_powers)
    served = evaluate.evaluate_served(evaluate.Scorers(store, methods), *split.valid, settings.eval_users,
                                      settings.seed + 2)  # fmt: skip
    if served["per_user"].empty:
        log.info("model %s: no validation users to choose an exposure power with; 0", kind)
        return 0.0, {}
    hits = served["per_user"].pivot(index="user_id", columns="method", values="hit")
    tuning, best, best_rate = {}, 0.0, float(hits["0.0"].mean())
    for power in settings.exposure_powers:
        difference = hits[str(power)] - hits["0.0"]
        low, high = abstats.paired_bootstrap_ci(difference, settings.gate_bootstrap, settings.seed)
        rate = float(hits[str(power)].mean())
        tuning[str(power)] = {"served_hit_rate": round(rate, 4), "difference_ci95": [round(low, 4), round(high, 4)]}
        if low > 0 and rate > best_rate:
            best, best_rate = power, rate
    log.info("model %s: exposure power %s on the validation days (served HitRate@5 by power: %s)", kind, best,
             {power: values["served_hit_rate"] for power, values in tuning.items()})  # fmt: skip
    return best, tuning


def ground_truth(settings, store: FeatureStore):
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
    truth = ground_truth(settings, store)
    scorers = evaluate.Scorers(store, evaluate.standard_rankers(trained, truth, settings.seed))
    replay = evaluate.evaluate_replay(
        scorers, evaluate.replay_examples(store, *split.test, settings.train_rows, settings.seed)
    )
    served = evaluate.evaluate_served(scorers, *split.test, settings.eval_users, settings.seed, truth)
    served.pop("per_user").to_parquet(version_dir / SERVED_HITS, index=False)
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
    for name in ("evaluation.json", "evaluation.png", "evaluation.parquet", SERVED_HITS):
        shutil.copy2(version_dir / name, copy / name)
    log.info("evaluation of %s:\n%s", version_dir.name, evaluate.format_report(report))
    return report


def load_version_split(version_dir: Path) -> Split:
    days = read_manifest(version_dir)["split"]
    return Split(**{name: tuple(dt.date.fromisoformat(d) for d in pair) for name, pair in days.items()})


def _compare(hits: pd.DataFrame, kind: str, settings) -> dict:
    """The model of ``kind`` against the best baseline over the users of ``hits`` (one row per user,
    one 0/1 column per method): the baseline with the highest mean, and a paired bootstrap 95% CI of
    mean(model hit - baseline hit) over the users both were evaluated for."""
    means = hits[[method for method in rankers.BASELINES if method in hits]].mean()
    best = str(means.idxmax())  # a tie goes to the first in rankers.BASELINES
    comparison = {"baseline": best, "hit_rate": None, "baseline_hit_rate": round(float(means[best]), 4),
                  "difference": None, "ci95": None, "users": int(hits[best].notna().sum())}  # fmt: skip
    paired = hits[[kind, best]].dropna() if kind in hits else hits.iloc[:0]
    if paired.empty:
        return comparison
    difference = paired[kind] - paired[best]
    low, high = abstats.paired_bootstrap_ci(difference, settings.gate_bootstrap, settings.seed)
    return comparison | {"hit_rate": round(float(paired[kind].mean()), 4),
                         "difference": round(float(difference.mean()), 4), "ci95": [round(low, 4), round(high, 4)],
                         "users": len(paired)}  # fmt: skip


def _verdict(kind: str, comparison: dict, model_hit_rate: float | None, settings, fresh: bool) -> tuple[bool, str]:
    """(passed, the decision as a sentence) over all users or the fresh ones: the model fails when it
    is worse than the best baseline beyond noise (the CI's upper end below 0), or when its served
    HitRate@5 over all users (``model_hit_rate``) is below RECSYS_MIN_HITRATE, if that is set."""
    baseline, who = comparison["baseline"], "fresh users" if fresh else "group"
    if comparison["hit_rate"] is None:
        return False, f"model {kind} was not trained or not evaluated: {who} served by {baseline}"
    low, high = comparison["ci95"]
    worse = high < 0
    below_floor = settings.min_hit_rate is not None and model_hit_rate < settings.min_hit_rate
    passed = not (worse or below_floor)
    noise = "worse beyond noise" if worse else "better beyond noise" if low > 0 else "within noise"
    floor = (f", and its served HitRate@5 {model_hit_rate:.3f} is below RECSYS_MIN_HITRATE "
             f"{settings.min_hit_rate:g}" if below_floor else "")  # fmt: skip
    users = f" on {comparison['users']} fresh users" if fresh else ""
    return passed, (f"model {kind}{users}: served HitRate@5 {comparison['hit_rate']:.3f} vs {baseline} "
                    f"{comparison['baseline_hit_rate']:.3f}, difference {comparison['difference']:+.3f} "
                    f"[95% CI {low:+.3f}, {high:+.3f}]: {noise}{floor}, {who} served by "
                    f"{kind if passed else baseline}")  # fmt: skip


def decide_serving(served_hits: pd.DataFrame, trained: set[str], settings) -> dict:
    """What serves the groups of each served model kind: the model, or the best baseline when the
    model is worse than it beyond noise, below RECSYS_MIN_HITRATE, or not in ``trained``. Users
    without history (fresh) are decided apart when there are enough of them to tell.

    served_hits: the evaluation's served hits, one row per (method, user_id) with ``fresh`` and ``hit``.
    """
    hits = served_hits.pivot(index="user_id", columns="method", values="hit").astype(float)
    hits = hits.drop(columns=[kind for kind in SERVED_KINDS if kind in hits and kind not in trained])
    baselines = [method for method in rankers.BASELINES if method in hits]
    if not baselines:
        raise ValueError(f"the served hits name no baseline (expected some of {', '.join(rankers.BASELINES)})")
    fresh = served_hits.groupby("user_id")["fresh"].any().reindex(hits.index).to_numpy(dtype=bool)
    kinds = {}
    for kind in SERVED_KINDS:
        overall = _compare(hits, kind, settings)
        passed, reason = _verdict(kind, overall, overall["hit_rate"], settings, fresh=False)
        served_by = kind if passed else overall["baseline"]
        fresh_served_by, on_fresh = served_by, None
        if fresh.sum() >= FRESH_USERS_DECIDED_APART:
            on_fresh = _compare(hits[fresh], kind, settings)
            fresh_passed, fresh_reason = _verdict(kind, on_fresh, overall["hit_rate"], settings, fresh=True)
            fresh_served_by = kind if fresh_passed else on_fresh["baseline"]
            on_fresh |= {"passed": fresh_passed, "reason": fresh_reason}
        numbers = {key: value for key, value in overall.items() if key != "baseline"}  # the best one is named once
        kinds[kind] = {"passed": passed, "served_by": served_by, "fresh_served_by": fresh_served_by, **numbers,
                       "reason": reason, "fresh": on_fresh}  # fmt: skip
    return {"best_baseline": str(hits[baselines].mean().idxmax()), "min_hit_rate": settings.min_hit_rate,
            "bootstrap_resamples": settings.gate_bootstrap, "kinds": kinds}  # fmt: skip


def read_serving(version_dir: Path) -> dict | None:
    """The gate's decisions for a version (None for one published before the gate wrote them: each
    kind then serves itself)."""
    path = version_dir / SERVING
    return read_json(path) if path.exists() else None


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
    """Decide what serves each model kind's groups (``serving.json``) and make the version current.

    A model that fails is served by the best baseline: a decision recorded with its reason, not an
    error, so that what is served is always the best ranking proven on the evaluation."""
    trained = {kind for kind in SERVED_KINDS if (version_dir / f"{kind}.cbm").exists()}
    decisions = decide_serving(pd.read_parquet(version_dir / SERVED_HITS), trained, settings)
    write_json(version_dir / SERVING, decisions)
    for decision in decisions["kinds"].values():
        log.info("%s", decision["reason"])
        if decision["fresh"] is not None:
            log.info("%s", decision["fresh"]["reason"])
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
