"""The exposure log: one row per API response, what was shown to whom, for the A/B analysis.

Rows are buffered in memory and appended as Parquet files
``RECSYS_DATA_DIR/exposures/day=<YYYY-MM-DD>/part-<time>-<n>.parquet`` by a background thread,
every ``flush_seconds`` or ``flush_rows`` rows, and on close (the API's shutdown). A file appears
under its final name only when complete, so DuckDB readers never see half a file:

    SELECT * FROM read_parquet('data/exposures/*/*.parquet', hive_partitioning = true, union_by_name = true)

(``union_by_name``: files written before ``served_by`` was logged lack that column.)
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import os
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

SCHEMA = pa.schema([
    ("request_id", pa.string()),
    ("user_id", pa.int64()),
    ("exp_group", pa.string()),
    ("model_version", pa.string()),
    ("snapshot", pa.string()),
    ("fresh_user", pa.bool_()),
    ("time", pa.timestamp("us")),  # the feed time the request asked for
    ("served_at", pa.timestamp("us")),  # when the API answered (UTC)
    ("post_ids", pa.list_(pa.int64())),
    ("served_by", pa.string()),  # the method that ranked the posts: a model kind or a baseline
])  # fmt: skip


class ExposureLog:
    def __init__(self, folder: Path, flush_rows: int = 5_000, flush_seconds: float = 2.0):
        self.folder = folder
        self.flush_rows, self.flush_seconds = flush_rows, flush_seconds
        self._rows: list[tuple] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._files = itertools.count()
        # A process's first Parquet write takes about 0.5 s: pay it here, at start-up, rather than in
        # the first flush beside the first requests.
        pq.write_table(SCHEMA.empty_table(), pa.BufferOutputStream())
        self._thread = threading.Thread(target=self._run, name="exposure-log", daemon=True)
        self._thread.start()
        self.written = 0

    def append(self, row: tuple) -> None:
        """One row, its values in SCHEMA's order (time a datetime; served_at a datetime or integer
        microseconds since the epoch, UTC). Cheap: a list append under a lock; the writing happens in the background."""
        with self._lock:
            self._rows.append(row)
            full = len(self._rows) >= self.flush_rows
        if full:
            self._wake.set()

    def _run(self) -> None:
        while not self._closed.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            self.flush()

    def flush(self) -> int:
        with self._lock:
            rows, self._rows = self._rows, []
        if not rows:
            return 0
        time_column = SCHEMA.get_field_index("time")
        by_day = sorted(rows, key=lambda row: row[time_column])
        for day, day_rows in itertools.groupby(by_day, key=lambda row: row[time_column].date()):
            self._write(day, list(day_rows))
        self.written += len(rows)
        return len(rows)

    def _write(self, day: dt.date, rows: list[tuple]) -> None:
        folder = self.folder / f"day={day}"
        folder.mkdir(parents=True, exist_ok=True)
        name = f"part-{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%f}-{os.getpid()}-{next(self._files)}.parquet"
        columns = zip(*rows, strict=True)
        table = pa.table([pa.array(values, field.type) for field, values in zip(SCHEMA, columns, strict=True)],
                         schema=SCHEMA)  # fmt: skip
        partial = folder / f".{name}.partial"
        pq.write_table(table, partial)
        partial.replace(folder / name)

    def close(self) -> None:
        """Stop the writer and write what is left: nothing logged is lost on a clean shutdown."""
        self._closed.set()
        self._wake.set()
        self._thread.join(timeout=30)
        self.flush()
        log.info("exposure log closed: %s rows written", f"{self.written:,}")
