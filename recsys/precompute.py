"""Precompute every user's top-K posts, each user ranked by what serves their A/B group: the group's
model, or the best baseline (``recsys.rankers``) when the gate found the model worse than it.

The nightly steps (the DAG maps ``run_shard`` over groups x shards):

1. ``stage(settings)``: a staging snapshot holding all a shard needs: users with their group and
   shard, posts, the pairs liked before the cutoff, the models that serve, and the history as of the
   cutoff in each group's text space; ``plan.json`` names the method serving each group's known users
   (``group_methods``) and fresh users (``fresh_methods``). Returns the staging folder.
2. ``run_shard(staging_dir, group, shard)``: one shard of one group writes its own Parquet file.
   Shards share nothing but the staging folder, so they can run on different machines.
3. ``recsys.snapshot.publish(staging_dir, settings)``.

Scoring is vectorised: a block of users x their candidate posts is one feature frame
(``ServingFeatures``, equal to the training features) and one CatBoost call (or one baseline, a
function of the same frame). Candidates are all posts; when there are more than
``RECSYS_CANDIDATES``, the top ones by the like-rate of the post among users of the user's cohort
(a cheap stage; its cost is measured in bench/serve_full.py). Posts the user liked before the
cutoff are never recommended. The day is cut into ``RECSYS_TIME_BUCKETS`` equal parts, each scored
at its middle hour on the day after the cutoff.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recsys import ab, models, rankers, snapshot, training
from recsys.features import ServingFeatures
from recsys.files import read_json, write_json

log = logging.getLogger(__name__)

BLOCK_ROWS = 400_000  # feature rows scored at once: bounds memory, whatever the number of posts
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def bucket_hours(buckets: int) -> list[float]:
    """The middle hour of each of `buckets` equal parts of the day."""
    width = 24 / buckets
    return [width * (b + 0.5) for b in range(buckets)]


def bucket_of(hour: int, buckets: int) -> int:
    return min(buckets - 1, int(hour * buckets // 24))


def group_models_of(settings) -> dict[str, str]:
    """The model kind of each A/B group: control gets control; test gets RECSYS_AB_TEST_MODEL
    (``test``, or ``control`` for an A/A experiment)."""
    return {"control": "control", "test": settings.ab_test_model}


def served_methods(group_models: dict[str, str], decisions: dict | None) -> tuple[dict[str, str], dict[str, str]]:
    """(group -> method serving its known users, group -> method serving its fresh users): the group's
    model kind, or the baseline the gate's decisions (``serving.json``) put in its place. Without
    decisions every kind serves itself."""
    if decisions is None:
        return dict(group_models), dict(group_models)
    kinds = decisions["kinds"]
    return ({group: kinds[kind]["served_by"] for group, kind in group_models.items()},
            {group: kinds[kind]["fresh_served_by"] for group, kind in group_models.items()})  # fmt: skip


def load_method(snapshot_dir: Path, method: str):
    """What ``method_scores`` needs to score a method: the snapshot's model of a kind; None for a baseline."""
    return None if method in rankers.BASELINES else models.load(snapshot_dir / "models" / f"{method}.cbm")


def method_scores(model, method: str, frame: pd.DataFrame) -> np.ndarray:
    """Scores of a feature frame's rows by a baseline (``model`` None) or by the model of a kind."""
    return rankers.score(method, frame) if model is None else models.ranking_scores(model, method, frame)


def stage(settings, version: str | None = None) -> Path:
    """Write everything the shards need into a new staging snapshot, for the models of ``version``
    (default: the published ones)."""
    started = time.perf_counter()
    version = version or training.current_version(settings)
    if version is None:
        raise snapshot.SnapshotError(f"no published models under {settings.models_dir}: nothing to precompute")
    version_dir = settings.models_dir / version
    store, _ = training.load_version(version_dir, settings)
    cutoff = store.days()[1]
    as_of = cutoff + dt.timedelta(days=1)
    staging = snapshot.new_staging_dir(settings, cutoff)

    users, _ = store.entities("control")
    users["group"] = ab.assign_groups(users["user_id"].to_numpy(), settings.ab_salt, settings.ab_test_share)
    users["shard"] = (np.arange(len(users)) % settings.shards).astype(np.int32)  # round robin: even shards
    users.to_parquet(staging / "users.parquet", index=False)
    extract_path = Path(training.read_manifest(version_dir)["extract"])
    posts = pq.read_table(extract_path / "post_text_df.parquet", columns=["post_id", "text", "topic"])
    pq.write_table(posts, staging / "posts.parquet")
    liked = store.con.execute("SELECT DISTINCT user_id, post_id FROM views WHERE target = 1 ORDER BY ALL").df()
    liked.to_parquet(staging / "liked.parquet", index=False)

    (staging / "models").mkdir()
    group_models = group_models_of(settings)
    group_methods, fresh_methods = served_methods(group_models, training.read_serving(version_dir))
    for kind in {*group_methods.values(), *fresh_methods.values()} - set(rankers.BASELINES):
        for suffix in (".cbm", ".json"):
            shutil.copy2(version_dir / f"{kind}{suffix}", staging / "models" / f"{kind}{suffix}")
    history_keys = {}
    for kind in set(group_models.values()):  # a baseline serving a group is scored in its model's space
        space = models.TEXT_SPACE[kind]
        if space not in history_keys:
            history_keys[space] = _write_state(store, space, as_of, staging / "state" / space)
    write_json(staging / snapshot.PLAN, {
        "snapshot": snapshot.snapshot_id_of(staging),
        "models_version": version,
        "extract": str(extract_path),
        "cutoff": str(cutoff),
        "as_of": str(as_of),
        "ab": {"salt": settings.ab_salt, "test_share": settings.ab_test_share,
               "users": users["group"].value_counts().to_dict()},
        "top_k": settings.top_k,
        "time_buckets": settings.time_buckets,
        "candidates": settings.candidates,
        "shards": settings.shards,
        "groups": list(group_models),
        "group_models": group_models,
        "group_methods": group_methods,
        "fresh_methods": fresh_methods,
        "history_keys": history_keys,
    })  # fmt: skip
    log.info("staged snapshot %s: %s users, %s posts, %s liked pairs, cutoff %s, served by %s (fresh users: %s) "
             "(%.1f s)", staging.name, f"{len(users):,}", f"{len(posts):,}", f"{len(liked):,}", cutoff,
             group_methods, fresh_methods, time.perf_counter() - started)  # fmt: skip
    return staging


def _write_state(store, space: str, as_of: dt.date, folder: Path) -> dict[str, list[str]]:
    folder.mkdir(parents=True)
    keys = {}
    for table, (table_keys, frame) in store.history_as_of(space, as_of).items():
        frame.to_parquet(folder / f"{table}.parquet", index=False)
        keys[table] = list(table_keys)
    _, posts = store.entities(space)
    vectors = pd.DataFrame(
        store.post_vectors[space], columns=[f"v{j}" for j in range(store.post_vectors[space].shape[1])]
    )
    pd.concat([posts, vectors], axis=1).to_parquet(folder / "posts.parquet", index=False)
    return keys


def load_serving(snapshot_dir: Path, space: str, own_history: bool = True) -> ServingFeatures:
    """The serving features of a text space, from a (staging or published) snapshot.

    own_history=False leaves the tables of single users empty, unread: for users the snapshot does
    not know (fresh users) they hold nothing, and at full scale they are most of the state.
    """
    plan = read_json(snapshot_dir / snapshot.PLAN)
    folder = snapshot_dir / "state" / space

    def read(table, keys):
        path = folder / f"{table}.parquet"
        if "user_id" in keys and not own_history:
            return pq.read_schema(path).empty_table().to_pandas()  # the columns, none of the rows
        return pd.read_parquet(path)

    history = {table: (tuple(keys), read(table, keys)) for table, keys in plan["history_keys"][space].items()}
    posts = pd.read_parquet(folder / "posts.parquet")
    vector_columns = [c for c in posts.columns if c.startswith("v") and c[1:].isdigit()]
    return ServingFeatures(history, posts.drop(columns=vector_columns), posts[vector_columns].to_numpy(np.float32))


def cohort_candidates(serving: ServingFeatures, users: pd.DataFrame, count: int) -> np.ndarray:
    """Candidate post indices per user (rows): the `count` posts with the highest like-rate among
    the user's cohort, or every post when there are no more than `count`."""
    n_posts = len(serving.posts)
    if count <= 0 or n_posts <= count:
        return np.broadcast_to(np.arange(n_posts), (len(users), n_posts))
    cohorts, first_user, user_cohort = np.unique(users["cohort"].to_numpy(dtype=str), return_index=True,
                                                 return_inverse=True)  # fmt: skip
    every_post = np.broadcast_to(np.arange(n_posts), (len(cohorts), n_posts))
    rates = serving.features(users.iloc[first_user], every_post, pd.Timestamp(0))
    rates = rates["cohort_post_like_rate"].to_numpy().reshape(len(cohorts), n_posts)
    best = np.argpartition(-rates, count - 1, axis=1)[:, :count]
    return best[user_cohort]


def rank_users(model, method: str, serving: ServingFeatures, users: pd.DataFrame, liked: pd.DataFrame,
               as_of: dt.date, top_k: int, buckets: int, candidates: int, progress=None) -> pd.DataFrame:  # fmt: skip
    """The top_k posts per user and time bucket by a method (a model kind with its model, or a
    baseline with None): user_id, bucket, rank, post_id, score."""
    users = users.reset_index(drop=True)
    candidate_index = cohort_candidates(serving, users, candidates)
    per_user = candidate_index.shape[1]
    top_k = min(top_k, per_user)
    post_ids = serving.posts["post_id"].to_numpy()
    liked_codes = _pair_codes(users["user_id"].to_numpy(), liked, post_ids)
    hours = bucket_hours(buckets)
    block_users = max(1, BLOCK_ROWS // per_user)
    parts = []
    started = time.perf_counter()
    for start in range(0, len(users), block_users):
        rows = np.arange(start, min(start + block_users, len(users)))
        block_candidates = candidate_index[rows]
        frame = serving.features(users.iloc[rows], block_candidates, pd.Timestamp(as_of) + pd.Timedelta(hours=hours[0]))
        already_liked = np.isin(rows[:, None] * len(post_ids) + block_candidates, liked_codes)
        for bucket, hour in enumerate(hours):
            frame["hour"] = float(int(hour))
            scores = method_scores(model, method, frame).reshape(len(rows), per_user)
            scores[already_liked] = -np.inf
            top = np.argpartition(-scores, top_k - 1, axis=1)[:, :top_k]
            top_scores = np.take_along_axis(scores, top, axis=1)
            order = np.argsort(-top_scores, axis=1, kind="stable")
            top, top_scores = np.take_along_axis(top, order, axis=1), np.take_along_axis(top_scores, order, axis=1)
            keep = np.isfinite(top_scores)
            parts.append(pd.DataFrame({
                "user_id": np.repeat(users["user_id"].to_numpy()[rows], top_k)[keep.ravel()],
                "bucket": np.int8(bucket),
                "rank": np.tile(np.arange(top_k, dtype=np.int16), len(rows))[keep.ravel()],
                "post_id": post_ids[np.take_along_axis(block_candidates, top, axis=1)].ravel()[keep.ravel()],
                "score": top_scores.ravel()[keep.ravel()].astype(np.float32),
            }))  # fmt: skip
        done = rows[-1] + 1
        rate = done / max(time.perf_counter() - started, 1e-9)
        log.info("ranked %s/%s users with %s (%.0f users/s, %s candidates each)", f"{done:,}", f"{len(users):,}",
                 method, rate, f"{per_user:,}")  # fmt: skip
        if progress is not None:
            progress(len(rows))
    if not parts:
        return pd.DataFrame({"user_id": pd.Series(dtype=np.int64), "bucket": pd.Series(dtype=np.int8),
                             "rank": pd.Series(dtype=np.int16), "post_id": pd.Series(dtype=np.int64),
                             "score": pd.Series(dtype=np.float32)})  # fmt: skip
    return pd.concat(parts, ignore_index=True).sort_values(["user_id", "bucket", "rank"], ignore_index=True)


def _pair_codes(user_ids: np.ndarray, pairs: pd.DataFrame, post_ids: np.ndarray) -> np.ndarray:
    """(user row, post index) of each pair as one integer, for pairs of these users and posts."""
    user_rows = pd.Index(user_ids).get_indexer(pairs["user_id"])
    post_rows = pd.Index(post_ids).get_indexer(pairs["post_id"])
    known = (user_rows >= 0) & (post_rows >= 0)
    return user_rows[known].astype(np.int64) * len(post_ids) + post_rows[known]


def run_shard(staging_dir: Path, group: str, shard: int, progress=None) -> Path:
    """Rank the users of one group and shard; writes recommendations/<group>-<shard>.parquet."""
    plan = read_json(staging_dir / snapshot.PLAN)
    if group not in plan["groups"] or not 0 <= shard < plan["shards"]:
        raise ValueError(f"no shard {group}/{shard} in snapshot {plan['snapshot']} "
                         f"(groups {plan['groups']}, shards 0..{plan['shards'] - 1})")  # fmt: skip
    method, space = plan["group_methods"][group], models.TEXT_SPACE[plan["group_models"][group]]
    users = pd.read_parquet(staging_dir / "users.parquet", filters=[("group", "==", group), ("shard", "==", shard)])
    liked = pd.read_parquet(staging_dir / "liked.parquet", filters=[("user_id", "in", users["user_id"].tolist())])
    ranked = rank_users(load_method(staging_dir, method), method, load_serving(staging_dir, space), users, liked,
                        dt.date.fromisoformat(plan["as_of"]), plan["top_k"], plan["time_buckets"],
                        plan["candidates"], progress)  # fmt: skip
    target = snapshot.shard_file(staging_dir, group, shard)
    target.parent.mkdir(exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    pq.write_table(pa.Table.from_pandas(ranked, preserve_index=False), partial)
    partial.replace(target)  # a rerun of a shard replaces its file, never adds to it
    log.info("shard %s/%d: %s rows for %s users by %s", group, shard, f"{len(ranked):,}", f"{len(users):,}", method)
    return target


def shards_of(staging_dir: Path) -> list[tuple[str, int]]:
    plan = read_json(staging_dir / snapshot.PLAN)
    return [(group, shard) for group in plan["groups"] for shard in range(plan["shards"])]


def run(settings, progress=None) -> str:
    """Stage, rank every shard on this machine, publish (what `recsys pipeline` runs).

    Shards run in RECSYS_PRECOMPUTE_WORKERS processes (feature building is single-threaded, so two
    processes keep two cores busy); across machines the DAG maps them over Airflow workers instead.
    """
    staging = stage(settings)
    units = shards_of(staging)
    workers = min(settings.precompute_workers, len(units))
    if workers <= 1:
        for group, shard in units:
            run_shard(staging, group, shard, progress)
        return snapshot.publish(staging, settings)
    sizes = pd.read_parquet(staging / "users.parquet", columns=["group", "shard"]).value_counts()
    with _shard_pool(workers) as pool:
        running = {pool.submit(run_shard, staging, group, shard): (group, shard) for group, shard in units}
        for done in as_completed(running):
            done.result()  # a failed shard fails the run; nothing is published
            if progress is not None:
                progress(int(sizes.get(running[done], 0)))
    return snapshot.publish(staging, settings)


def _shard_pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes that die with this process, however it ends."""
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_die_with_parent, initargs=(os.getpid(),))  # fmt: skip


def _die_with_parent(parent_pid: int) -> None:
    """Pool worker initializer: ask the kernel to SIGKILL this worker when its parent dies.

    A parent killed by SIGKILL runs no cleanup: its workers would finish their shard, then wait on
    the task queue forever (keeping multiprocessing's resource tracker alive too). The signal
    follows the parent *thread* that started the worker: the pool starts workers from the thread
    that submits, which waits for them.
    """
    if sys.platform != "linux":
        return  # prctl is Linux only; elsewhere the workers are not tied to their parent
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGKILL)
