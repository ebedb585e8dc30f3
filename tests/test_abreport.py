"""The A/B report over real API exposures and likes planted in the source."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from starlette.testclient import TestClient

from api.app import create_app
from recsys import abstats, catalog, snapshot
from recsys.abreport import ABReportError, write_report
from recsys.cli import main
from recsys.config import load_settings
from recsys.files import read_json
from recsys.sources import arrow_schema, open_source

SHOWN_AT = dt.datetime(2026, 11, 2, 10, 0)


@pytest.fixture
def settings(served_copy, tmp_path, monkeypatch):
    """The served data dir with a private copy of the source (likes are appended to it)."""
    source = tmp_path / "source.duckdb"
    shutil.copy(Path(served_copy.source_url.removeprefix("duckdb:///")), source)
    monkeypatch.setenv("RECSYS_SOURCE_URL", f"duckdb:///{source}")
    return load_settings()


def like_rows(likes) -> pa.Table:
    """feed_data rows: a liked view and its like event, for each (user, post, like time)."""
    rows = []
    for user, post, at in likes:
        rows.append((at - dt.timedelta(seconds=30), user, post, "view", 1))
        rows.append((at, user, post, "like", 0))
    schema = arrow_schema("feed_data")
    return pa.table([pa.array(column, field.type) for field, column in zip(schema, zip(*rows, strict=True),
                                                                         strict=True)], schema=schema)  # fmt: skip


def test_report_attributes_planted_likes_and_writes_every_artifact(settings):
    users = pd.read_parquet(snapshot.current_dir(settings) / "users.parquet")["user_id"].head(60).tolist()
    served = {}
    with TestClient(create_app(settings)) as client:  # leaving it flushes the exposure log
        for user in users:
            answer = client.get("/post/recommendations/", params={"id": user, "time": SHOWN_AT.isoformat()}).json()
            served[user] = [post["id"] for post in answer["recommendations"]]
    in_window = [(user, served[user][0], SHOWN_AT + dt.timedelta(minutes=20)) for user in users[:15]]
    too_late = [(user, served[user][1], SHOWN_AT + dt.timedelta(minutes=61)) for user in users[15:20]]
    posts = pd.read_parquet(snapshot.current_dir(settings) / "posts.parquet")["post_id"].tolist()
    not_shown = [(user, next(p for p in posts if p not in served[user]), SHOWN_AT + dt.timedelta(minutes=20))
                 for user in users[20:25]]  # fmt: skip
    open_source(settings.source_url).append("feed_data", like_rows(in_window + too_late + not_shown))

    folder = write_report(settings)
    per_user = pd.read_parquet(folder / "per_user.parquet").set_index("user_id")
    assert per_user.loc[users[:15], "attributed_likes"].tolist() == [1] * 15
    assert per_user.loc[users[15:], "attributed_likes"].sum() == 0
    assert per_user.loc[users[15:20], "likes"].sum() == 0  # after the last exposure + window: outside the period
    assert per_user.loc[users[20:25], "likes"].tolist() == [1] * 5  # liked in the period, but not a shown post
    assert set(per_user.index) == set(users)

    analysis = read_json(folder / "analysis.json")
    assert analysis["verdict"] in abstats.VERDICTS and analysis["reasons"]
    assert sum(group["users"] for group in analysis["groups"].values()) == len(users)
    for name in ("likes_per_user.png", "difference_ci.png", "daily.png"):
        assert (folder / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (folder / "report.md").read_text()
    assert f"**Decision: {analysis['verdict']}**" in report and "![daily metrics per group](daily.png)" in report
    rows = catalog.connect(settings).execute("SELECT DISTINCT run, verdict FROM ab_results").fetchall()
    assert rows == [(folder.name, analysis["verdict"])]


def test_no_exposures_is_a_clear_error(settings, capsys):
    with pytest.raises(ABReportError, match="no exposures between 2030-01-01 00:00:00 and now"):
        write_report(settings, since=dt.datetime(2030, 1, 1))
    assert main(["ab-report", "--since", "2030-01-01"]) == 1


def test_exposures_logged_before_served_by_are_still_read(settings):
    """Files from an API that did not log served_by yet: read as NULL beside newer files, and alone."""
    from recsys.exposures import SCHEMA

    users = pd.read_parquet(snapshot.current_dir(settings) / "users.parquet")["user_id"].head(2).tolist()
    old_schema = pa.schema([field for field in SCHEMA if field.name != "served_by"])
    old = pa.table([pa.array(values, field.type) for field, values in zip(old_schema, [
        ["old-1"], [users[0]], ["control"], ["v0"], ["s0"], [False], [SHOWN_AT], [SHOWN_AT], [[1, 2]]],
        strict=True)], schema=old_schema)  # fmt: skip
    folder = settings.exposures_dir / f"day={SHOWN_AT.date()}"
    folder.mkdir(parents=True)
    pq.write_table(old, folder / "part-old.parquet")
    only_old = catalog.connect(settings).execute("SELECT request_id, served_by FROM exposures").fetchall()
    assert only_old == [("old-1", None)]

    with TestClient(create_app(settings)) as client:
        group = client.get("/post/recommendations/", params={"id": users[1], "time": SHOWN_AT.isoformat()}).json()[
            "exp_group"]  # fmt: skip
    rows = catalog.connect(settings).execute("SELECT user_id, served_by FROM exposures ORDER BY served_at").fetchall()
    assert rows == [(users[0], None), (users[1], group)]
    report = (write_report(settings) / "report.md").read_text()
    assert f"{group}: snapshot {snapshot.current_id(settings)}" in report and f"ranked by {group}" in report
