"""The traffic simulator against the real API (uvicorn in a thread) and a private copy of the source."""

import datetime as dt
import json
import logging
import shutil
import subprocess
import sys

import duckdb
import numpy as np
import pandas as pd
import pytest

from recsys import ab, precompute
from recsys.cli import main
from recsys.config import load_settings
from recsys.simulate import AARefused, SimulationError, Traffic, append_rows, feed_rows, plan_day, play, simulate
from recsys.sources import open_source
from recsys.truth import GroundTruth
from tests.test_api import live_api


@pytest.fixture
def sim_settings(served_copy, tmp_path, monkeypatch):
    """Settings over a private copy of the served data dir and of the source DuckDB file."""
    source = tmp_path / "source.duckdb"
    shutil.copy(served_copy.source_url.removeprefix("duckdb:///"), source)
    monkeypatch.setenv("RECSYS_SOURCE_URL", f"duckdb:///{source}")
    return load_settings()


def feed_of(settings) -> pd.DataFrame:
    with duckdb.connect(settings.source_url.removeprefix("duckdb:///"), read_only=True) as con:
        return con.sql("SELECT * FROM feed_data").df()


def exposures_of(settings) -> pd.DataFrame:
    return duckdb.sql(f"SELECT * FROM read_parquet('{settings.exposures_dir}/*/*.parquet')").df()


def last_view_day(feed: pd.DataFrame) -> dt.date:
    return feed.loc[feed["action"] == "view", "timestamp"].max().date()


def test_plan_day_is_a_daily_profile_of_short_sessions():
    traffic = Traffic()
    users = np.arange(3_000)
    rates = np.full(len(users), traffic.sessions_per_day)
    plan = plan_day(np.random.default_rng(1), users, rates, dt.date(2021, 11, 2), traffic)
    again = plan_day(np.random.default_rng(1), users, rates, dt.date(2021, 11, 2), traffic)
    pd.testing.assert_frame_equal(plan, again)  # deterministic with the seed
    assert plan["time"].is_monotonic_increasing
    seconds = (plan["time"] - pd.Timestamp("2021-11-02")).dt.total_seconds()
    assert seconds.min() >= 6 * 3600 and seconds.max() <= 86_400 - 1 - 177  # a like row stays on the day
    per_user_day = len(plan) / len(users)
    assert 0.8 * 1.5 * 3 < per_user_day < 1.2 * 1.5 * 3  # 1.5 sessions x 3 requests a day on average
    hours = plan["time"].dt.hour
    assert (hours.between(19, 22)).mean() > 1.5 * (hours.between(7, 10)).mean()  # evening peak
    # Within a user's day, requests are at least gap_min_s apart (sessions may meet, never collide).
    gaps = plan.sort_values(["user_id", "time"]).groupby("user_id")["time"].diff().dt.total_seconds().dropna()
    assert (gaps > 0).all() and gaps.median() < 300
    # Each user's requests of the day page through the list: offsets 0, 5, 10, ... starting over at 50.
    offsets = plan.groupby("user_id")["offset"].agg(list)
    assert all(o == [k * 5 % 50 for k in range(len(o))] for o in offsets)


def test_a_run_appends_views_and_likes_as_the_generator_does(sim_settings):
    before = feed_of(sim_settings)
    start = last_view_day(before) + dt.timedelta(days=1)
    with live_api(sim_settings) as (url, _):
        result = simulate(sim_settings, url, users=40, days=2, seed=7, concurrency=4)
    summary, requests = result.summary, result.requests
    after = feed_of(sim_settings)
    first_view = pd.Timestamp(start) + pd.Timedelta(hours=6)
    new = after[after["timestamp"] >= first_view].sort_values("timestamp", kind="stable")
    assert len(after) - len(before) == len(new) == summary["appended_rows"]
    assert summary["start"] == start.isoformat() and summary["days"] == 2
    assert set(new["timestamp"].dt.date) <= {start, start + dt.timedelta(days=1)}
    assert (new["timestamp"].dt.hour >= 6).all()  # and below 24:00 of the same day, by the date check

    views, likes = new[new["action"] == "view"], new[new["action"] == "like"]
    assert set(new["action"]) == {"view", "like"} and (likes["target"] == 0).all()
    ok = requests[requests["status"] == 200]
    assert len(ok) == len(requests) == summary["requests"] and summary["errors"]["unknown_user"] == 0
    assert len(views) == summary["views"] == summary["served_posts"] == ok["post_ids"].map(len).sum() > 400
    # The generator's convention: a liked view (target 1) and one like row of the same user and post,
    # 8..177 s later; a pair is liked once (not again, and not if it was liked before the run).
    liked_views = views[views["target"] == 1]
    assert len(likes) == len(liked_views) == summary["likes"] > 0
    assert not likes.duplicated(["user_id", "post_id"]).any()
    pairs = liked_views.merge(likes, on=["user_id", "post_id"], suffixes=("_view", "_like"))
    assert len(pairs) == len(likes)
    delay = (pairs["timestamp_like"] - pairs["timestamp_view"]).dt.total_seconds()
    assert delay.between(8, 177).all()
    assert likes.merge(before.loc[before["action"] == "like", ["user_id", "post_id"]]).empty

    # Groups come from the API's answers: the A/B assignment of each user.
    for row in ok.itertuples():
        assert row.exp_group == ab.assign_group(row.user_id, sim_settings.ab_salt, sim_settings.ab_test_share)
    groups = summary["groups"]
    assert set(groups) == {"control", "test"}
    assert sum(g["views"] for g in groups.values()) == len(views)
    assert sum(g["likes"] for g in groups.values()) == len(likes)
    assert summary["requests_per_second"] > 0

    # Every request is in the exposure log (the API has shut down), at the simulated time, and the
    # views are exactly the exposures' posts at their request times.
    log = exposures_of(sim_settings)
    assert len(log) == len(ok) and set(log["request_id"]) == set(ok["request_id"])
    joined = ok.merge(log, on="request_id", suffixes=("", "_logged"))
    assert (joined["user_id"] == joined["user_id_logged"]).all()
    assert (pd.to_datetime(joined["time"]) == pd.to_datetime(joined["time_logged"])).all()
    assert all(list(a) == list(b) for a, b in zip(joined["post_ids"], joined["post_ids_logged"], strict=True))
    # (pages past the end of a user's list, RECSYS_TOP_K = 20 here, are empty: no views)
    shown = log.explode("post_ids").dropna(subset=["post_ids"])
    shown = shown.rename(columns={"post_ids": "post_id", "time": "timestamp"})
    key = ["user_id", "post_id", "timestamp"]
    shown = shown[key].astype({"post_id": np.int64, "timestamp": "datetime64[us]"})
    viewed = views[key].astype({"post_id": np.int64, "timestamp": "datetime64[us]", "user_id": np.int64})
    pd.testing.assert_frame_equal(shown.sort_values(key).reset_index(drop=True),
                                  viewed.sort_values(key).reset_index(drop=True), check_dtype=False)  # fmt: skip

    # Likes follow the truth: given the history, a view not yet liked is liked with probability p.
    truth = GroundTruth.load(sim_settings.ground_truth_dir)
    p = truth.like_probability(views["user_id"].to_numpy(), views["post_id"].to_numpy(), views["timestamp"].to_numpy())
    earlier = before[before["action"] == "like"]
    liked = set(zip(earlier["user_id"], earlier["post_id"], strict=True))
    eligible = np.zeros(len(views), dtype=bool)
    for i, (user, post, target) in enumerate(zip(views["user_id"], views["post_id"], views["target"], strict=True)):
        eligible[i] = (user, post) not in liked
        if target:
            liked.add((user, post))
    expected, variance = (p * eligible).sum(), (p * (1 - p) * eligible).sum()
    assert abs(len(likes) - expected) < 4 * np.sqrt(variance), (len(likes), expected, variance)


def test_likes_are_exactly_the_truths_sure_posts(sim_settings):
    """A truth with p = 1 for even post ids and p = 0 for odd ones: the first view of each even post
    is liked, nothing else."""
    truth = GroundTruth.load(sim_settings.ground_truth_dir)
    sure = truth.post_ids % 2 == 0
    truth.post_quality = np.where(sure, 60.0, -60.0).astype(np.float32)
    before = feed_of(sim_settings)
    with live_api(sim_settings) as (url, _):
        result = simulate(sim_settings, url, users=25, days=1, seed=11, truth=truth)
    after = feed_of(sim_settings)
    views = after[(after["action"] == "view") & (after["timestamp"].dt.date > last_view_day(before))]
    views = views.sort_values("timestamp", kind="stable")
    assert len(views) == result.summary["views"] > 0
    earlier = before[before["action"] == "like"]
    already = set(zip(earlier["user_id"], earlier["post_id"], strict=True))
    first = ~views.duplicated(["user_id", "post_id"])
    fresh = np.array([pair not in already for pair in zip(views["user_id"], views["post_id"], strict=True)])
    expected = (views["post_id"] % 2 == 0).to_numpy() & first.to_numpy() & fresh
    assert 0 < expected.sum() < len(views)
    assert (views["target"].to_numpy() == expected).all()
    assert result.summary["likes"] == expected.sum()


def test_aa_refuses_an_ab_snapshot_and_runs_on_an_aa_one(sim_settings, monkeypatch, caplog):
    with live_api(sim_settings) as (url, app):
        rows = len(feed_of(sim_settings))
        with pytest.raises(AARefused, match="RECSYS_AB_TEST_MODEL=control recsys precompute"):
            simulate(sim_settings, url, users=5, days=1, aa=True)
        assert len(feed_of(sim_settings)) == rows  # nothing appended

        monkeypatch.setenv("RECSYS_AB_TEST_MODEL", "control")
        aa_settings = load_settings()
        precompute.run(aa_settings)
        app.state.watcher.check()  # what the watcher thread does every RECSYS_RELOAD_SECONDS
        result = simulate(aa_settings, url, users=30, days=1, aa=True, seed=4)
        assert result.summary["aa"] and result.summary["group_models"] == {"control": "control", "test": "control"}
        assert set(result.summary["groups"]) == {"control", "test"}
        assert len(feed_of(sim_settings)) == rows + result.summary["appended_rows"]

        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="recsys.simulate"):
            simulate(aa_settings, url, users=2, days=1, seed=5)  # without --aa: a warning, and it runs
        assert "pass --aa if meant" in caplog.text


def test_cli_runs_and_refuses(sim_settings, capsys, caplog):
    with live_api(sim_settings) as (url, _):
        argv = ["simulate", "--api", url, "--users", "6", "--days", "1", "--seed", "1", "--start", "2021-11-03",
                "--concurrency", "2", "--limit", "3"]  # fmt: skip
        assert main(argv) == 0
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert summary["start"] == summary["end"] == "2021-11-03" and summary["users"] == 6
        assert summary["views"] <= 3 * summary["requests"]
        assert main([*argv, "--aa"]) == 2
        assert "RECSYS_AB_TEST_MODEL=control recsys precompute" in caplog.text
    new = feed_of(sim_settings)
    assert len(new[new["timestamp"] >= pd.Timestamp("2021-11-03")]) == summary["appended_rows"] > 0


def test_unknown_users_are_counted_and_other_errors_stop_the_run(sim_settings):
    with live_api(sim_settings) as (url, _):
        known = int(pd.read_parquet(next(sim_settings.snapshots_dir.glob("*/users.parquet")))["user_id"].iloc[0])
        times = [dt.datetime(2021, 11, 1, 10)] * 3
        responses = play(url, [known, 10**12, known], times, limit=4, concurrency=2)
        assert responses.status.tolist() == [200, 404, 200]
        assert len(responses.post_ids[0]) == 4 and responses.post_ids[1] == [] and responses.group[1] is None
        with pytest.raises(SimulationError, match="answered 422 .*limit"):
            play(url, [known], times[:1], limit=101)
        rows = len(feed_of(sim_settings))
        with pytest.raises(SimulationError, match=r"answered 422 .*not appended; nothing appended"):
            simulate(sim_settings, url, users=3, days=2, traffic=Traffic(limit=101))
        assert len(feed_of(sim_settings)) == rows
    with pytest.raises(SimulationError, match="cannot reach the API"):
        simulate(sim_settings, url, users=1, days=1)  # the API has stopped


def test_append_retries_while_another_process_holds_the_duckdb_file(sim_settings):
    source = open_source(sim_settings.source_url)
    views = pd.DataFrame({"user_id": [200], "post_id": [1], "time": [pd.Timestamp("2021-12-01 10:00")]})
    rows = feed_rows(views, np.array([True]), np.array([9]))
    hold = ("import duckdb, sys, time; c = duckdb.connect(sys.argv[1], read_only=True); print('held', flush=True); "
            "time.sleep(2)")  # fmt: skip
    count = source.row_count("feed_data")
    with subprocess.Popen([sys.executable, "-c", hold, str(source.path)], stdout=subprocess.PIPE, text=True) as holder:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(SimulationError, match="stayed locked"):
            append_rows(source, rows, lock_timeout=0.3)
        append_rows(source, rows, lock_timeout=20)  # succeeds once the holder lets go
    assert source.row_count("feed_data") == count + 2


def test_a_postgresql_source_gets_the_rows(sim_settings, postgres_url, monkeypatch):
    duck = sim_settings.source_url.removeprefix("duckdb:///")
    target = open_source(postgres_url)
    target.create_schema()
    with duckdb.connect(duck, read_only=True) as con:
        for table in ("user_data", "post_text_df", "feed_data"):
            target.append(table, con.sql(f"SELECT * FROM {table}").to_arrow_table())
    rows = target.row_count("feed_data")
    monkeypatch.setenv("RECSYS_SOURCE_URL", postgres_url)
    settings = load_settings()
    with live_api(settings) as (url, _):
        result = simulate(settings, url, users=8, days=1, seed=3)
    assert result.summary["appended_rows"] > 0
    assert target.row_count("feed_data") == rows + result.summary["appended_rows"]
    views = target._fetchall(f"SELECT count(*) FROM feed_data WHERE action = 'view' "
                             f"AND timestamp >= '{result.summary['start']} 06:00'")[0][0]  # fmt: skip
    assert views == result.summary["views"]
