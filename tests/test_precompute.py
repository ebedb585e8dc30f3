"""Precompute on the tiny preset: every user ranked by their group's model, shards independent."""

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest

from recsys import ab, models, precompute, snapshot
from recsys.config import load_settings
from recsys.files import read_json
from tests.conftest import serve_test_group_by


@pytest.fixture
def current(served, monkeypatch):
    env, data_dir = served
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return snapshot.current_dir(load_settings())


def recommendations(snapshot_dir):
    return pd.concat([pd.read_parquet(p) for p in sorted((snapshot_dir / "recommendations").glob("*.parquet"))])


def test_every_user_gets_top_k_of_their_group_without_liked_posts(current):
    users = pd.read_parquet(current / "users.parquet")
    plan = read_json(current / snapshot.PLAN)
    ranked = recommendations(current)
    assert set(ranked["user_id"]) == set(users["user_id"])
    per_user = ranked.groupby("user_id").size()
    liked = pd.read_parquet(current / "liked.parquet")
    assert per_user.max() == plan["top_k"] == 20 and per_user.min() >= 5
    assert (per_user[per_user < plan["top_k"]].index.isin(liked["user_id"])).all()  # only liked posts are missing
    assert ranked.merge(liked, on=["user_id", "post_id"]).empty
    assert (ranked.groupby("user_id")["rank"].apply(lambda r: list(r) == list(range(len(r))))).all()
    assert (ranked.groupby("user_id")["score"].apply(lambda s: s.is_monotonic_decreasing)).all()
    groups = ab.assign_groups(users["user_id"].to_numpy(), plan["ab"]["salt"], plan["ab"]["test_share"])
    assert (users["group"].to_numpy() == groups).all()
    # Models published without gate decisions (serving.json): each group's model serves it.
    assert plan["group_methods"] == plan["fresh_methods"] == plan["group_models"] == {"control": "control",
                                                                                     "test": "test"}  # fmt: skip


def test_shard_files_hold_their_group_and_shard(current):
    users = pd.read_parquet(current / "users.parquet").set_index("user_id")
    for group, shard in precompute.shards_of(current):
        part = pd.read_parquet(snapshot.shard_file(current, group, shard))
        assert len(part) and (users.loc[part["user_id"], "group"] == group).all()
        assert (users.loc[part["user_id"], "shard"] == shard).all()


def test_a_shard_rerun_gives_the_same_file(current, tmp_path):
    import shutil

    staging = tmp_path / "again"
    shutil.copytree(current, staging)
    before = pd.read_parquet(snapshot.shard_file(current, "test", 1))
    after = pd.read_parquet(precompute.run_shard(staging, "test", 1))
    pd.testing.assert_frame_equal(before, after)
    with pytest.raises(ValueError, match="no shard test/7"):
        precompute.run_shard(staging, "test", 7)


def test_ranking_is_the_models_own_ranking_over_all_candidates(current):
    """The precomputed top posts are the model's best among all posts when there is no candidate stage."""
    plan = read_json(current / snapshot.PLAN)
    serving = precompute.load_serving(current, "test")
    model = models.load(current / "models" / "test.cbm")
    users = pd.read_parquet(current / "users.parquet").head(3)
    no_likes = pd.DataFrame({"user_id": [], "post_id": []})
    ranked = precompute.rank_users(model, "test", serving, users, no_likes, pd.Timestamp(plan["as_of"]).date(),
                                   top_k=5, buckets=1, candidates=0)  # fmt: skip
    n_posts = len(serving.posts)
    frame = serving.features(users, np.broadcast_to(np.arange(n_posts), (len(users), n_posts)),
                             pd.Timestamp(plan["as_of"]) + pd.Timedelta(hours=12))  # fmt: skip
    scores = models.predict(model, "test", frame).reshape(len(users), n_posts)
    for row, user_id in enumerate(users["user_id"]):
        best = serving.posts["post_id"].to_numpy()[np.argsort(-scores[row], kind="stable")[:5]]
        assert list(ranked.loc[ranked["user_id"] == user_id, "post_id"]) == list(best)


def test_cohort_candidates_are_every_post_when_few(current):
    serving = precompute.load_serving(current, "control")
    users = pd.read_parquet(current / "users.parquet").head(4)
    assert precompute.cohort_candidates(serving, users, 0).shape == (4, len(serving.posts))
    few = precompute.cohort_candidates(serving, users, 10)
    assert few.shape == (4, 10) and all(len(set(row)) == 10 for row in few)


def test_time_buckets_cover_the_day():
    assert precompute.bucket_hours(1) == [12.0]
    assert precompute.bucket_hours(4) == [3.0, 9.0, 15.0, 21.0]
    assert [precompute.bucket_of(h, 4) for h in (0, 5, 6, 23)] == [0, 0, 1, 3]


def test_a_group_served_by_a_baseline_is_ranked_in_the_baselines_order(served_copy):
    from recsys import rankers

    serve_test_group_by(served_copy, "popular")
    staging = precompute.stage(served_copy)
    plan = read_json(staging / snapshot.PLAN)
    assert plan["group_methods"] == plan["fresh_methods"] == {"control": "control", "test": "popular"}
    assert sorted(p.name for p in (staging / "models").iterdir()) == ["control.cbm", "control.json"]

    ranked = pd.read_parquet(precompute.run_shard(staging, "test", 0))
    users = pd.read_parquet(staging / "users.parquet", filters=[("group", "==", "test"), ("shard", "==", 0)])
    liked = pd.read_parquet(staging / "liked.parquet")
    serving = precompute.load_serving(staging, "test")
    post_ids = serving.posts["post_id"].to_numpy()
    candidates = precompute.cohort_candidates(serving, users.reset_index(drop=True), plan["candidates"])
    frame = serving.features(users, candidates, pd.Timestamp(plan["as_of"]) + pd.Timedelta(hours=12))
    scores = rankers.score("popular", frame).reshape(candidates.shape)
    checked = 0
    for row, user_id in enumerate(users["user_id"].head(20)):
        seen = set(liked.loc[liked["user_id"] == user_id, "post_id"])
        allowed = [(score, post) for score, post in zip(scores[row], post_ids[candidates[row]], strict=True)
                   if post not in seen]  # fmt: skip
        best = sorted(allowed, key=lambda pair: -pair[0])[: plan["top_k"]]
        mine = ranked[ranked["user_id"] == user_id].sort_values("rank")
        assert mine["score"].tolist() == pytest.approx([score for score, _ in best], rel=1e-6)
        assert not set(mine["post_id"]) & seen
        checked += 1
    assert checked == 20


def running_workers(parent: psutil.Process, count: int, timeout: float = 180) -> list[psutil.Process]:
    """Every process under parent once `count` pool workers run there (the resource tracker too)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        helpers = parent.children(recursive=True)
        if sum("spawn_main" in " ".join(process_cmdline(p)) for p in helpers) >= count:
            return helpers
        time.sleep(0.05)
    pytest.fail(f"no {count} precompute workers within {timeout:.0f} s")


def process_cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Those still running; a zombie is dead, only not reaped yet."""
    living = []
    for process in processes:
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                living.append(process)
        except psutil.NoSuchProcess:
            pass
    return living


def test_a_killed_precompute_leaves_no_worker_and_the_next_run_removes_its_staging(served_copy):
    """kill -9 of `recsys precompute` while its shards run: its pool workers and multiprocessing's
    resource tracker die with it, and the next precompute removes the staging snapshot it left."""
    command = subprocess.Popen([sys.executable, "-m", "recsys", "precompute"], cwd=Path(__file__).parents[1],
                               env={**os.environ, "RECSYS_PRECOMPUTE_WORKERS": "2"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    helpers = []
    try:
        helpers = running_workers(psutil.Process(command.pid), count=2)
        command.kill()
        command.wait()
        deadline = time.monotonic() + 20
        while alive(helpers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [" ".join(process_cmdline(p))[:120] for p in alive(helpers)] == []
    finally:
        command.kill()
        for process in alive(helpers):
            process.kill()
    assert list(served_copy.snapshots_dir.glob(f"{snapshot.STAGING_PREFIX}*"))  # what the killed run left
    precompute.run(dataclasses.replace(served_copy, precompute_workers=1))
    assert list(served_copy.snapshots_dir.glob(f"{snapshot.STAGING_PREFIX}*")) == []
