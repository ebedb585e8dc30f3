"""Snapshots: published whole or not at all, verified, kept, rolled back."""

import json

import pytest

from recsys import precompute, snapshot
from recsys.files import read_json


def test_manifest_lists_every_file_with_its_checksum(served_copy):
    current = snapshot.current_dir(served_copy)
    manifest = snapshot.verify(current)
    assert manifest["models_version"] and manifest["ab"]["salt"] == served_copy.ab_salt
    files = {str(p.relative_to(current)) for p in current.rglob("*") if p.is_file()} - {snapshot.MANIFEST}
    assert set(manifest["checksums"]) == files
    assert sum(manifest["recommendation_rows"].values()) > 0


def test_a_changed_or_missing_file_is_refused(served_copy):
    current = snapshot.current_dir(served_copy)
    shard = snapshot.shard_file(current, "control", 0)
    shard.write_bytes(shard.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(snapshot.SnapshotError, match="control-0000.parquet does not match its checksum"):
        snapshot.verify(current)
    shard.unlink()
    with pytest.raises(snapshot.SnapshotError, match="control-0000.parquet is missing"):
        snapshot.verify(current)


def test_publish_refuses_a_snapshot_with_a_missing_shard(served_copy):
    before = snapshot.current_id(served_copy)
    staging = precompute.stage(served_copy)
    precompute.run_shard(staging, "control", 0)
    with pytest.raises(snapshot.SnapshotError, match="missing 3 shard file"):
        snapshot.publish(staging, served_copy)
    assert snapshot.current_id(served_copy) == before and not (staging / snapshot.MANIFEST).exists()


def test_new_snapshot_becomes_current_reruns_replace_and_rollback_works(served_copy):
    first = snapshot.current_id(served_copy)
    made = [precompute.run(served_copy) for _ in range(3)]
    assert snapshot.current_id(served_copy) == made[-1]
    # Same data, same cutoff: each rerun replaces the earlier snapshots of that cutoff, except the
    # one it just replaced (the API may still read it; it is also what a rollback goes back to).
    assert snapshot.published(served_copy) == made[-2:] and first not in made
    assert snapshot.rollback(served_copy) == made[-2] == snapshot.current_id(served_copy)
    assert snapshot.rollback(served_copy, made[-1]) == made[-1]
    with pytest.raises(snapshot.SnapshotError, match="is not published"):
        snapshot.rollback(served_copy, first)
    assert read_json(served_copy.snapshots_dir / made[-1] / snapshot.MANIFEST)["snapshot"] == made[-1]


def published_folders(settings, days: int) -> list[str]:
    """Snapshot folders of consecutive cutoffs (a manifest each, nothing else), oldest first."""
    ids = [f"2021-10-0{day}-20261101T00000{day}" for day in range(1, days + 1)]
    for snapshot_id in ids:
        (settings.snapshots_dir / snapshot_id).mkdir(parents=True)
        (settings.snapshots_dir / snapshot_id / snapshot.MANIFEST).write_text("{}")
    return ids


def test_prune_keeps_the_newest_snapshots_across_cutoffs(settings_for):
    settings = settings_for(RECSYS_SNAPSHOTS_KEPT="2")
    ids = published_folders(settings, 4)
    (settings.snapshots_dir / snapshot.CURRENT).write_text(ids[1])  # rolled back to an older one
    assert snapshot.prune(settings) == [ids[0]]  # the newest two, and never the current one
    assert snapshot.published(settings) == ids[1:]


def test_prune_keeps_the_snapshot_a_publish_just_replaced_even_beyond_the_newest_kept(settings_for):
    settings = settings_for(RECSYS_SNAPSHOTS_KEPT="2")
    ids = published_folders(settings, 3)
    # The API served the oldest (a rollback) when the newest was published: it may still read it.
    (settings.snapshots_dir / snapshot.CURRENT).write_text(ids[2])
    assert snapshot.prune(settings, replaced=ids[0]) == []
    assert snapshot.prune(settings) == [ids[0]]  # the next publish removes it


def test_a_manifest_without_a_field_serving_needs_is_refused(served_copy):
    current = snapshot.current_dir(served_copy)
    manifest = read_json(current / snapshot.MANIFEST)
    del manifest["time_buckets"], manifest["ab"]["salt"]
    (current / snapshot.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(snapshot.SnapshotError, match="manifest.json lacks time_buckets, ab.salt"):
        snapshot.verify(current)
