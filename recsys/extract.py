"""Extract: copy the three source tables into a dated, validated Parquet snapshot.

Layout under ``RECSYS_DATA_DIR/extracts/<date>/``::

    user_data.parquet
    post_text_df.parquet
    feed_data/day=YYYY-MM-DD/*.parquet    (hive-partitioned by the day of `timestamp`)
    manifest.json                         (row counts, checksums, time range; written last)

The feed is streamed batch by batch (COPY from PostgreSQL, Arrow batches from DuckDB) and
validated on the way; problems are collected over the whole table, so the error names every table,
column and row count at once. Everything is written into a staging folder that becomes the dated
snapshot with a rename only when all checks passed: a failed extract leaves nothing behind, and
the folders of a killed one are removed by the next extract that runs alone (``_extract_lock``).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from recsys.config import Settings
from recsys.sources import PRIMARY_KEYS, TABLES, Source, arrow_schema, logical_type, open_source, quiet_duckdb

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
ACTIONS = ("view", "like")
STAGING_PREFIX = ".staging-"
RETIRED_PREFIX = ".retired-"
FEED_KEYS = ("timestamp", "user_id", "post_id", "action", "target")


class DataValidationError(ValueError):
    """The source data breaks the schema's rules; ``problems`` has one line per rule broken."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("source data is not valid:\n  - " + "\n  - ".join(problems))


def check_schema(source: Source) -> dict[str, dict[str, str]]:
    """Every table and column present with a usable type; returns the store's column types."""
    found = source.columns()
    if not found:
        raise DataValidationError(
            [f"{source.url.display} holds none of the tables {', '.join(TABLES)}: "
             "run `recsys generate` or point RECSYS_SOURCE_URL at your data"]  # fmt: skip
        )
    problems = []
    for table, columns in TABLES.items():
        if table not in found:
            problems.append(f"table {table} is missing from {source.url.display}")
            continue
        for name, kind in columns:
            if name not in found[table]:
                have = ", ".join(found[table])
                problems.append(f"{table}.{name}: column is missing (the table has: {have})")
            elif logical_type(found[table][name]) != kind:
                problems.append(f"{table}.{name}: type {found[table][name]} where {kind} is expected")
    if problems:
        raise DataValidationError(problems)
    return found


def _null_problems(table: str, data: pa.Table | pa.RecordBatch, columns) -> Counter:
    counts = Counter()
    for name in columns:
        nulls = data.column(name).null_count
        if nulls:
            counts[f"{table}.{name}: {{n}} rows are null"] += nulls
    return counts


def _check_entity_table(table: str, data: pa.Table) -> list[str]:
    if data.num_rows == 0:
        return [f"{table}: the table holds no rows"]
    key = PRIMARY_KEYS[table]
    problems = [message.format(n=f"{n:,}") for message, n in _null_problems(table, data, [key]).items()]
    ids = data.column(key).drop_null().to_numpy()
    duplicated = len(ids) - len(np.unique(ids))
    if duplicated:
        problems.append(f"{table}.{key}: {duplicated:,} rows repeat an id that is already taken")
    return problems


class FeedValidator:
    """Checks feed batches against the users and posts; counts every problem over all batches."""

    def __init__(self, user_ids: np.ndarray, post_ids: np.ndarray, orphan_rows: str):
        self.user_ids = np.unique(user_ids)
        self.post_ids = np.unique(post_ids)
        self.orphan_rows = orphan_rows
        self.problems: Counter = Counter()
        self.unknown_actions: Counter = Counter()
        self.dropped: Counter = Counter()
        self.rows_in = 0
        self.rows_kept = 0

    @staticmethod
    def _unknown(sorted_ids: np.ndarray, values: pa.Array) -> np.ndarray:
        """Rows whose id is not in sorted_ids (null ids are reported as nulls, not here)."""
        ids = values.fill_null(0).to_numpy()
        if len(sorted_ids) == 0:
            known = np.zeros(len(ids), dtype=bool)
        else:
            known = sorted_ids[np.searchsorted(sorted_ids, ids).clip(max=len(sorted_ids) - 1)] == ids
        return ~known & values.is_valid().to_numpy(zero_copy_only=False)

    def check(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """Count the batch's problems; return the rows to keep."""
        self.rows_in += batch.num_rows
        self.problems.update(_null_problems("feed_data", batch, FEED_KEYS))
        action = batch.column("action")
        bad_action = pc.invert(pc.is_in(action, pa.array(ACTIONS))).fill_null(False)
        if pc.any(bad_action).as_py():
            bad = pc.filter(action, bad_action)
            self.problems["feed_data.action: {n} rows have a value other than 'view' or 'like'"] += len(bad)
            for item in pc.value_counts(bad).to_pylist():
                self.unknown_actions[item["values"]] += item["counts"]
        bad_target = pc.invert(pc.is_in(batch.column("target"), pa.array([0, 1], pa.int32()))).fill_null(False)
        n_bad_target = pc.sum(bad_target).as_py() or 0
        if n_bad_target:
            self.problems["feed_data.target: {n} rows are not 0 or 1"] += n_bad_target
        unknown_user = self._unknown(self.user_ids, batch.column("user_id"))
        unknown_post = self._unknown(self.post_ids, batch.column("post_id"))
        if self.orphan_rows == "drop":
            self.dropped["unknown user_id"] += int(unknown_user.sum())
            self.dropped["unknown post_id"] += int(unknown_post.sum())
            orphan = unknown_user | unknown_post
            self.rows_kept += batch.num_rows - int(orphan.sum())
            return batch.filter(pa.array(~orphan)) if orphan.any() else batch
        self.rows_kept += batch.num_rows
        if unknown_user.any():
            self.problems[
                "feed_data.user_id: {n} rows reference users missing from user_data "
                "(RECSYS_ORPHAN_ROWS=drop drops them)"
            ] += int(unknown_user.sum())
        if unknown_post.any():
            self.problems[
                "feed_data.post_id: {n} rows reference posts missing from post_text_df "
                "(RECSYS_ORPHAN_ROWS=drop drops them)"
            ] += int(unknown_post.sum())
        return batch

    def report(self) -> list[str]:
        lines = []
        for message, n in self.problems.items():
            line = message.format(n=f"{n:,}")
            if message.startswith("feed_data.action"):
                seen = ", ".join(f"{value!r} ×{count:,}" for value, count in self.unknown_actions.most_common(5))
                line += f" (found {seen})"
            lines.append(line)
        if not self.rows_in:
            lines.append("feed_data: the table holds no rows")
        elif not self.rows_kept:
            reasons = ", ".join(f"{n:,} with {reason}" for reason, n in self.dropped.items() if n)
            lines.append(f"feed_data: all {self.rows_in:,} rows were dropped ({reasons}; RECSYS_ORPHAN_ROWS=drop): "
                         "none is left to extract")  # fmt: skip
        return lines


def _read_table(source: Source, table: str, store_types) -> pa.Table:
    return pa.Table.from_batches(list(source.stream(table, store_types[table])), schema=arrow_schema(table))


def _checksum(con, parquet_glob: str, columns) -> tuple[int, str]:
    """Row count and an order-independent content checksum (sum of row hashes)."""
    cols = ", ".join(f'"{c}"' for c in columns)
    rows, digest = con.execute(
        f"SELECT count(*), coalesce(sum(hash({cols})::HUGEINT), 0)::VARCHAR FROM read_parquet('{parquet_glob}')"
    ).fetchone()
    return int(rows), f"{int(digest):032x}"


def _with_day(batch: pa.RecordBatch) -> pa.RecordBatch:
    day = pc.cast(batch.column("timestamp"), pa.date32())
    return pa.RecordBatch.from_arrays([*batch.columns, day], names=[*batch.schema.names, "day"])


def extract(settings: Settings, date: dt.date | None = None, progress=None) -> Path:
    """Extract the source into ``extracts/<date>``; returns the snapshot's path.

    progress, if given, is called with (feed rows so far, feed rows in the source).
    """
    date = date or dt.datetime.now(dt.UTC).date()
    source = open_source(settings.source_url)
    started = time.perf_counter()
    store_types = check_schema(source)
    final = settings.extracts_dir / date.isoformat()
    with _extract_lock(settings.extracts_dir):
        staging = settings.extracts_dir / f"{STAGING_PREFIX}{date.isoformat()}-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            manifest = _extract_into(staging, source, store_types, settings, progress)
            manifest.update(date=date.isoformat(), seconds=round(time.perf_counter() - started, 1))
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
            _swap_into_place(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    _prune(settings.extracts_dir, settings.extracts_kept)
    rows = manifest["tables"]["feed_data"]["rows"]
    log.info("extracted %s feed rows into %s in %.1f s (%.0f rows/s)", f"{rows:,}", final,
             manifest["seconds"], rows / max(manifest["seconds"], 1e-9))  # fmt: skip
    return final


@contextmanager
def _extract_lock(extracts_dir: Path) -> Iterator[None]:
    """Held, shared, for the whole extract: a flock on the extracts folder itself, which the kernel
    releases however the process ends (SIGKILL included) and which leaves no file behind.

    An extract that gets it exclusively knows no other extract is running, so every staging or
    retired folder there was left by a killed one: it removes them. With another extract running
    they stay, for the next extract that runs alone.
    """
    extracts_dir.mkdir(parents=True, exist_ok=True)
    folder = os.open(extracts_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(folder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pass  # another extract runs: the folders may be its own
        else:
            _remove_leftovers(extracts_dir)
        fcntl.flock(folder, fcntl.LOCK_SH)
        yield
    finally:
        os.close(folder)


def _remove_leftovers(extracts_dir: Path) -> None:
    for leftover in sorted(extracts_dir.glob(f"{STAGING_PREFIX}*")) + sorted(extracts_dir.glob(f"{RETIRED_PREFIX}*")):
        shutil.rmtree(leftover, ignore_errors=True)
        log.info("removed %s, left by an extract that was killed", leftover.name)


def _extract_into(staging: Path, source: Source, store_types, settings: Settings, progress) -> dict:
    users = _read_table(source, "user_data", store_types)
    posts = _read_table(source, "post_text_df", store_types)
    problems = _check_entity_table("user_data", users) + _check_entity_table("post_text_df", posts)
    if problems:
        raise DataValidationError(problems)
    pq.write_table(users, staging / "user_data.parquet")
    pq.write_table(posts, staging / "post_text_df.parquet")
    log.info("user_data: %s rows, post_text_df: %s rows", f"{users.num_rows:,}", f"{posts.num_rows:,}")

    validator = FeedValidator(
        users.column("user_id").to_numpy(), posts.column("post_id").to_numpy(), settings.orphan_rows
    )
    total = source.row_count("feed_data")
    day_schema = arrow_schema("feed_data").append(pa.field("day", pa.date32()))

    def validated_batches():
        for batch in source.stream("feed_data", store_types["feed_data"]):
            kept = validator.check(batch)
            if progress:
                progress(validator.rows_in, total)
            if not validator.problems:  # once invalid, only keep counting
                yield _with_day(kept)

    ds.write_dataset(
        pa.RecordBatchReader.from_batches(day_schema, validated_batches()),
        staging / "feed_data",
        format="parquet",
        partitioning=ds.partitioning(pa.schema([("day", pa.date32())]), flavor="hive"),
        # Bounded memory: each open day folder buffers at most this many rows.
        min_rows_per_group=200_000,
        max_rows_per_group=1_000_000,
        existing_data_behavior="error",
    )
    problems = validator.report()
    if problems:
        raise DataValidationError(problems)
    for reason, n in validator.dropped.items():
        if n:
            log.warning("feed_data: dropped %s rows with %s (RECSYS_ORPHAN_ROWS=drop)", f"{n:,}", reason)

    con = quiet_duckdb()
    try:
        tables = {}
        for table, glob in (
            ("user_data", staging / "user_data.parquet"),
            ("post_text_df", staging / "post_text_df.parquet"),
            ("feed_data", staging / "feed_data" / "*" / "*.parquet"),
        ):
            rows, checksum = _checksum(con, str(glob), [n for n, _ in TABLES[table]])
            tables[table] = {"rows": rows, "checksum": checksum}
        first, last = con.execute(
            f"SELECT min(timestamp), max(timestamp) FROM read_parquet('{staging / 'feed_data' / '*' / '*.parquet'}')"
        ).fetchone()
    finally:
        con.close()
    return {
        "source": source.url.display,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "tables": tables,
        "feed_time_range": [str(first) if first else None, str(last) if last else None],
        "dropped_feed_rows": {reason: n for reason, n in validator.dropped.items() if n},
    }


def _swap_into_place(staging: Path, final: Path) -> None:
    """Replace an extract of the same date (an idempotent rerun) with the new one."""
    retired = final.with_name(f"{RETIRED_PREFIX}{final.name}-{os.getpid()}")
    if final.exists():
        final.rename(retired)
    staging.rename(final)
    shutil.rmtree(retired, ignore_errors=True)


def verify_extract(extract_path: Path, settings: Settings) -> dict:
    """Check an extract before anything trains on it: its files still hold exactly what the extract
    validated (row counts and checksums from the manifest), and its feed covers enough days for the
    time split, with views and likes in it. Returns the manifest; raises DataValidationError."""
    manifest_path = extract_path / MANIFEST
    if not manifest_path.exists():
        raise DataValidationError([f"{extract_path}: no {MANIFEST}, so the extract never completed"])
    manifest = json.loads(manifest_path.read_text())
    problems = []
    con = quiet_duckdb()
    try:
        for table, glob in (
            ("user_data", extract_path / "user_data.parquet"),
            ("post_text_df", extract_path / "post_text_df.parquet"),
            ("feed_data", extract_path / "feed_data" / "*" / "*.parquet"),
        ):
            expected = manifest["tables"][table]
            try:
                rows, checksum = _checksum(con, str(glob), [n for n, _ in TABLES[table]])
            except duckdb.Error as error:
                problems.append(f"{table}: unreadable Parquet in {extract_path.name} ({str(error).strip()})")
                continue
            if rows != expected["rows"]:
                problems.append(f"{table}: {rows:,} rows on disk, the manifest says {expected['rows']:,}")
            elif checksum != expected["checksum"]:
                problems.append(f"{table}: {rows:,} rows whose content differs from the manifest's checksum")
        if not problems:
            days, views, likes = con.execute(
                "SELECT count(DISTINCT day), count(*) FILTER (action = 'view'), count(*) FILTER (target = 1) "
                f"FROM read_parquet('{extract_path / 'feed_data' / '*' / '*.parquet'}', hive_partitioning = true)"
            ).fetchone()
            needed = settings.valid_days + settings.test_days + 1
            if days < needed:
                problems.append(f"feed_data: {days} days of events; RECSYS_VALID_DAYS={settings.valid_days} and "
                                f"RECSYS_TEST_DAYS={settings.test_days} need at least {needed}")  # fmt: skip
            if not views or not likes:
                problems.append(f"feed_data: {views:,} views and {likes:,} liked views; training needs both")
    finally:
        con.close()
    if problems:
        raise DataValidationError([f"extract {extract_path.name}: {problem}" for problem in problems])
    log.info("extract %s verified: %s users, %s posts, %s feed rows over %d days", extract_path.name,
             f"{manifest['tables']['user_data']['rows']:,}", f"{manifest['tables']['post_text_df']['rows']:,}",
             f"{manifest['tables']['feed_data']['rows']:,}", days)  # fmt: skip
    return manifest


def list_extracts(extracts_dir: Path) -> list[Path]:
    """Complete extracts (with a manifest), oldest first."""
    if not extracts_dir.exists():
        return []
    return sorted(p for p in extracts_dir.iterdir() if not p.name.startswith(".") and (p / MANIFEST).exists())


def latest_extract(settings: Settings) -> Path:
    extracts = list_extracts(settings.extracts_dir)
    if not extracts:
        raise FileNotFoundError(f"no extract under {settings.extracts_dir}: run `recsys extract` first")
    return extracts[-1]


def _prune(extracts_dir: Path, keep: int) -> None:
    for old in list_extracts(extracts_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
        log.info("removed old extract %s (RECSYS_EXTRACTS_KEPT=%d)", old, keep)
