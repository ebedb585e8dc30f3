"""The API loads a snapshot whole or refuses it: whatever fails while loading, at run time or at
start-up, and what it reports (/ready, 503 bodies) names no server path or source credentials."""

import dataclasses
import logging
import shutil

import pandas as pd
import pytest
from starlette.testclient import TestClient

import api.snapshots
from api.app import create_app
from recsys import snapshot
from recsys.files import read_json, sha256, write_atomically, write_json


def truncate_posts(folder):
    _truncate(folder / "posts.parquet")
    return "reading posts.parquet failed (InvalidInputException)"


def drop_a_manifest_field(folder):
    manifest = read_json(folder / snapshot.MANIFEST)
    del manifest["time_buckets"]
    write_json(folder / snapshot.MANIFEST, manifest)
    return "manifest.json lacks time_buckets"


def truncate_a_model(folder):
    _truncate(folder / "models" / "control.cbm")
    return "loading models/control.cbm failed (CatBoostError)"


def _truncate(path):
    """Cut the file in half and list its new checksum: only loading can tell it is broken."""
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    folder = next(p for p in path.parents if (p / snapshot.MANIFEST).exists())
    manifest = read_json(folder / snapshot.MANIFEST)
    manifest["checksums"][str(path.relative_to(folder))] = sha256(path)
    write_json(folder / snapshot.MANIFEST, manifest)


DAMAGES = [truncate_posts, drop_a_manifest_field, truncate_a_model]


@pytest.fixture
def settings(served_copy):
    """The served copy, with a watcher thread that never polls by itself: each test calls check()."""
    return dataclasses.replace(served_copy, reload_seconds=3600)


def copy_snapshot(settings, source: str, stamp: str) -> str:
    """A copy of a published snapshot under a newer id (same cutoff, a later publishing time)."""
    copy = f"{source[:10]}-{stamp}"
    shutil.copytree(settings.snapshots_dir / source, settings.snapshots_dir / copy)
    return copy


def point_current_at(settings, snapshot_id: str) -> None:
    write_atomically(settings.snapshots_dir / snapshot.CURRENT, snapshot_id + "\n")


def count_loads(monkeypatch) -> list[str]:
    loads = []
    load = api.snapshots.load_snapshot
    monkeypatch.setattr(api.snapshots, "load_snapshot", lambda folder: loads.append(folder.name) or load(folder))
    return loads


def assert_names_no_server_path(body: str, settings) -> None:
    assert str(settings.data_dir) not in body and str(settings.data_dir.resolve()) not in body


def a_known_user(settings) -> int:
    return int(pd.read_parquet(snapshot.current_dir(settings) / "users.parquet")["user_id"].iloc[0])


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_snapshot_that_fails_to_load_is_refused_once_and_the_served_one_keeps_serving(settings, damage, monkeypatch):
    served = snapshot.current_id(settings)
    user_id = a_known_user(settings)
    app = create_app(settings)
    with TestClient(app) as client:
        broken = copy_snapshot(settings, served, "99990101T000000000000")
        reason = damage(settings.snapshots_dir / broken)
        point_current_at(settings, broken)
        loads = count_loads(monkeypatch)
        for _ in range(3):  # reload cycles: CURRENT still names the refused snapshot
            app.state.watcher.check()
        response = client.get("/ready")
        ready = response.json()
        assert loads == [broken]
        assert ready["snapshot"] == served
        assert ready["last_error"].startswith(f"snapshot {broken} refused: {reason}")
        assert_names_no_server_path(response.text, settings)
        assert client.get("/post/recommendations/", params={"id": user_id}).status_code == 200

        fixed = copy_snapshot(settings, served, "99990102T000000000000")
        point_current_at(settings, fixed)  # CURRENT changed: the new one is tried, and serves
        app.state.watcher.check()
        ready = client.get("/ready").json()
        assert loads == [broken, fixed] and ready["snapshot"] == fixed and ready["last_error"] is None


@pytest.mark.parametrize("damage", DAMAGES)
def test_at_start_up_a_broken_current_snapshot_gives_way_to_the_newest_valid_older_one(settings, damage, caplog):
    oldest = snapshot.current_id(settings)
    valid = copy_snapshot(settings, oldest, "99990101T000000000000")
    broken_older = copy_snapshot(settings, oldest, "99990102T000000000000")
    truncate_posts(settings.snapshots_dir / broken_older)
    broken = copy_snapshot(settings, oldest, "99990103T000000000000")
    reason = damage(settings.snapshots_dir / broken)
    point_current_at(settings, broken)
    with caplog.at_level(logging.WARNING), TestClient(create_app(settings)) as client:
        response = client.get("/ready")
        ready = response.json()
        assert response.status_code == 200 and ready["snapshot"] == valid
        assert ready["last_error"].startswith(f"snapshot {broken} refused: {reason}")
        assert ready["last_error"].endswith(f"serving {valid} instead, the newest valid older snapshot")
        assert_names_no_server_path(response.text, settings)
        assert client.get("/post/recommendations/", params={"id": a_known_user(settings)}).status_code == 200
    assert any(f"serving {valid} instead" in record.getMessage() for record in caplog.records)
    assert snapshot.current_id(settings) == broken  # the API serves a fallback; it does not publish one


@pytest.mark.parametrize("damage", DAMAGES)
def test_at_start_up_without_a_valid_snapshot_the_api_answers_503_with_the_reason(settings, damage):
    broken = snapshot.current_id(settings)
    reason = damage(settings.snapshots_dir / broken)
    with TestClient(create_app(settings)) as client:
        for response in (client.get("/ready"), client.get("/post/recommendations/", params={"id": 1})):
            assert response.status_code == 503
            assert f"snapshot {broken} refused: {reason}" in response.text
            assert "no valid older snapshot to fall back to" in response.text
            assert_names_no_server_path(response.text, settings)


def test_without_a_published_snapshot_the_503_bodies_name_no_server_path(settings):
    (settings.snapshots_dir / snapshot.CURRENT).unlink()
    with TestClient(create_app(settings)) as client:
        for response in (client.get("/ready"), client.get("/post/recommendations/", params={"id": 1})):
            assert response.status_code == 503 and "no snapshot published" in response.text
            assert_names_no_server_path(response.text, settings)


def test_an_unreachable_source_is_reported_without_its_url(settings):
    url = "postgresql://recsys_reader:hunter2@127.0.0.1:9/recsys_feed"  # nothing listens on port 9
    with TestClient(create_app(dataclasses.replace(settings, source_url=url))) as client:
        response = client.get("/ready")
    source_error = response.json()["source_error"]
    assert source_error == "fresh users not refreshed: the source database is unreachable (OperationalError)"
    for secret in ("recsys_reader", "hunter2", "127.0.0.1", "recsys_feed", "postgresql://"):
        assert secret not in response.text
    assert_names_no_server_path(response.text, settings)
