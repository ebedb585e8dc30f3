"""Snapshots: what the API serves, published atomically and kept for rollback.

Layout of ``RECSYS_DATA_DIR/snapshots/``::

    CURRENT                      the id of the snapshot being served (replaced atomically)
    .staging-<id>/               a snapshot being built (never read by the API)
    <id>/plan.json               what precompute was asked to do (groups, shards, K, buckets, ...) and
                                 what serves each group: its model or a baseline (group_methods,
                                 fresh_methods for users the snapshot does not know)
    <id>/manifest.json           written last: model versions, what serves each group, split, row
                                 counts, sha256 of every file
    <id>/users.parquet           every user known at the cutoff, with A/B group and shard
    <id>/posts.parquet           post_id, text, topic: what a response shows
    <id>/liked.parquet           (user_id, post_id) pairs liked before the cutoff: never recommended
    <id>/models/<kind>.cbm       the models that serve a group (a snapshot is self-contained)
    <id>/state/<space>/*.parquet the history as of the cutoff, for scoring fresh users
    <id>/recommendations/<group>-<shard>.parquet   user_id, bucket, rank, post_id, score

Publishing renames the finished staging folder into place and then replaces ``CURRENT``: a reader
sees the old complete snapshot or the new complete one. The newest ``RECSYS_SNAPSHOTS_KEPT`` are
kept; ``rollback`` points ``CURRENT`` at an older one.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

from recsys.files import read_json, sha256, write_atomically, write_json

log = logging.getLogger(__name__)

CURRENT = "CURRENT"
MANIFEST = "manifest.json"
PLAN = "plan.json"
STAGING_PREFIX = ".staging-"
# What serving a snapshot reads from its manifest (a dot: a key inside a field); group_methods and
# fresh_methods are optional: a snapshot from before the quality gate chose baselines has neither.
SERVED_FIELDS = ("models_version", "time_buckets", "candidates", "group_models", "ab.salt", "ab.test_share")


class SnapshotError(RuntimeError):
    """A snapshot is incomplete, corrupt, or missing."""


def _cutoff_of(snapshot_id: str) -> str:
    return snapshot_id[:10]  # ids are <cutoff YYYY-MM-DD>-<UTC time>


def new_staging_dir(settings, cutoff: dt.date) -> Path:
    """A fresh staging folder; those of earlier failed attempts at the same cutoff are removed."""
    for abandoned in settings.snapshots_dir.glob(f"{STAGING_PREFIX}{cutoff}-*"):
        shutil.rmtree(abandoned)
        log.info("removed %s, an unfinished earlier attempt at this cutoff", abandoned.name)
    snapshot_id = f"{cutoff}-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%f}"
    path = settings.snapshots_dir / f"{STAGING_PREFIX}{snapshot_id}"
    path.mkdir(parents=True)
    return path


def snapshot_id_of(staging_dir: Path) -> str:
    return staging_dir.name.removeprefix(STAGING_PREFIX)


def _files(snapshot_dir: Path) -> list[Path]:
    return sorted(p for p in snapshot_dir.rglob("*") if p.is_file() and p.name != MANIFEST)


def publish(staging_dir: Path, settings) -> str:
    """Check that every shard is there, write the manifest last, move the snapshot into place and
    make it current. Returns the snapshot id."""
    import pyarrow.parquet as pq

    plan = read_json(staging_dir / PLAN)
    expected = {shard_file(staging_dir, group, shard) for group in plan["groups"] for shard in range(plan["shards"])}
    missing = sorted(p.name for p in expected if not p.exists())
    if missing:
        raise SnapshotError(f"snapshot {snapshot_id_of(staging_dir)} is missing {len(missing)} shard file(s): "
                            f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")  # fmt: skip
    rows = {p.name: pq.ParquetFile(p).metadata.num_rows for p in sorted(expected)}
    copied = ("snapshot", "models_version", "cutoff", "as_of", "ab", "top_k", "time_buckets", "candidates",
              "shards", "groups", "group_models", "group_methods", "fresh_methods")  # fmt: skip
    manifest = {
        **{key: plan[key] for key in copied},
        "recommendation_rows": rows,
        "users": pq.ParquetFile(staging_dir / "users.parquet").metadata.num_rows,
        "checksums": {str(p.relative_to(staging_dir)): sha256(p) for p in _files(staging_dir)},
        "published_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    write_json(staging_dir / MANIFEST, manifest)
    target = settings.snapshots_dir / plan["snapshot"]
    staging_dir.rename(target)
    replaced = current_id(settings)
    write_atomically(settings.snapshots_dir / CURRENT, target.name + "\n")
    log.info("published snapshot %s: %s recommendation rows for %s users", target.name,
             f"{sum(rows.values()):,}", f"{manifest['users']:,}")  # fmt: skip
    prune(settings, replaced)
    return target.name


def published(settings) -> list[str]:
    """Ids of the published snapshots, oldest first."""
    root = settings.snapshots_dir
    if not root.exists():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and (p / MANIFEST).exists()
                  and not p.name.startswith("."))  # fmt: skip


def current_id(settings) -> str | None:
    pointer = settings.snapshots_dir / CURRENT
    return pointer.read_text().strip() if pointer.exists() else None


def current_dir(settings) -> Path:
    snapshot = current_id(settings)
    if snapshot is None:
        raise SnapshotError(f"no snapshot published under {settings.snapshots_dir}: run `recsys pipeline` first")
    return settings.snapshots_dir / snapshot


def verify(snapshot_dir: Path, checksums: bool = True) -> dict:
    """The snapshot's manifest, after checking that its files are there and unchanged."""
    manifest_path = snapshot_dir / MANIFEST
    if not manifest_path.exists():
        raise SnapshotError(f"snapshot {snapshot_dir.name} has no {MANIFEST}: it was never completely published")
    try:
        manifest = read_json(manifest_path)
        listed = manifest["checksums"]
    except (ValueError, KeyError) as error:
        raise SnapshotError(f"snapshot {snapshot_dir.name}: unreadable {MANIFEST} ({error})") from None
    missing = [name for name in SERVED_FIELDS if not _has_field(manifest, name)]
    if missing:
        raise SnapshotError(f"snapshot {snapshot_dir.name}: {MANIFEST} lacks {', '.join(missing)}")
    for name, digest in listed.items():
        path = snapshot_dir / name
        if not path.exists():
            raise SnapshotError(f"snapshot {snapshot_dir.name}: {name} is missing")
        if checksums and sha256(path) != digest:
            raise SnapshotError(f"snapshot {snapshot_dir.name}: {name} does not match its checksum")
    return manifest


def _has_field(manifest: dict, dotted: str) -> bool:
    value = manifest
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return False
        value = value[key]
    return True


def rollback(settings, snapshot: str | None = None) -> str:
    """Serve an older published snapshot: the given one, or the one before the current."""
    available = published(settings)
    current = current_id(settings)
    if snapshot is None:
        older = [s for s in available if current is None or s < current]
        if not older:
            raise SnapshotError(f"no snapshot older than {current} to roll back to (kept: {', '.join(available)})")
        snapshot = older[-1]
    if snapshot not in available:
        raise SnapshotError(f"snapshot {snapshot} is not published; kept: {', '.join(available) or 'none'}")
    verify(settings.snapshots_dir / snapshot)
    write_atomically(settings.snapshots_dir / CURRENT, snapshot + "\n")
    log.info("rolled back from %s to %s", current, snapshot)
    return snapshot


def prune(settings, replaced: str | None = None) -> list[str]:
    """Delete all but the newest RECSYS_SNAPSHOTS_KEPT snapshots (never the current one), and
    staging folders of runs that died more than a day ago.

    A rerun for a cutoff replaces the earlier snapshots of that cutoff; the one it just replaced
    (``replaced``) stays until the next publish, as the API may still be reading it.
    """
    current = current_id(settings)
    kept = published(settings)
    rerun = [s for s in kept if current and _cutoff_of(s) == _cutoff_of(current) and s not in (current, replaced)]
    removed = []
    for snapshot in sorted(set(kept[: -settings.snapshots_kept]) | set(rerun)):
        if snapshot not in (current, replaced):
            shutil.rmtree(settings.snapshots_dir / snapshot)
            removed.append(snapshot)
    stale = dt.datetime.now().timestamp() - 86_400
    for staging in settings.snapshots_dir.glob(f"{STAGING_PREFIX}*"):
        if staging.stat().st_mtime < stale:
            shutil.rmtree(staging)
            removed.append(staging.name)
    if removed:
        log.info("removed old snapshots: %s", ", ".join(removed))
    return removed


def served_timeout(settings) -> float:
    """How long the API may take to load a new snapshot: a few of its reload intervals, plus loading."""
    return 60 + 5 * settings.reload_seconds


def wait_until_served(api_url: str, snapshot_id: str, timeout: float) -> dict:
    """Poll the API's /ready until it serves ``snapshot_id``; returns its answer. Raises
    SnapshotError naming what the API last said when the time runs out."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        try:
            with urllib.request.urlopen(f"{api_url}/ready", timeout=5) as response:
                state = json.load(response)
        except urllib.error.HTTPError as error:  # 503 until a snapshot is loaded
            state, last = {}, f"HTTP {error.code} {error.read(500).decode(errors='replace')}"
        except (OSError, ValueError) as error:
            state, last = {}, f"unreachable ({error})"
        if state.get("snapshot") == snapshot_id:
            log.info("the API at %s serves snapshot %s", api_url, snapshot_id)
            return state
        if state:
            last = f"serving {state.get('snapshot')}, last error {state.get('last_error')}"
        if time.monotonic() >= deadline:
            raise SnapshotError(f"the API at {api_url} did not pick up snapshot {snapshot_id} within "
                                f"{timeout:.0f} s: {last}")  # fmt: skip
        time.sleep(1)


def shard_file(snapshot_dir: Path, group: str, shard: int) -> Path:
    return snapshot_dir / "recommendations" / f"{group}-{shard:04d}.parquet"
