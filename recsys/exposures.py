"""The exposure log: one row per API response, what was shown to whom, for the A/B analysis.

A row goes through three places; only the first is on the request's thread (a list append):

1. ``append`` keeps it in memory. At most ``max_pending`` rows (RECSYS_EXPOSURE_MAX_PENDING) wait
   to reach Parquet; beyond that a row is dropped, counted and logged.
2. Every ``journal_seconds`` (0.05 s) the journal thread appends the new rows to a local journal and
   fsyncs it: ``exposures/.journal/<owner>-<n>.journal``, records of (length, CRC32, the rows as an
   Arrow IPC stream). A journal file is sealed after ``flush_seconds`` (2 s) or ``flush_rows`` rows.
3. The compactor thread writes each sealed journal file as
   ``exposures/day=<day of served_at, UTC>/part-<journal file name>.parquet``, then deletes it.

A SIGKILL loses only the rows not yet in the journal: those of the last ``journal_seconds`` (plus
the time of one journal write). Each process holds a lock on ``.journal/<owner>.lock``; the journal
files of an owner whose lock is free (its process is gone) are compacted by the next ExposureLog on
the folder. A Parquet file is named after its journal file and never rewritten once there, so
compacting a journal file twice gives no duplicates. A failed write (journal or Parquet) is retried
with backoff (at most ``MAX_BACKOFF_SECONDS`` apart) and never stops the threads; while one fails,
``status()`` says so. ``close`` writes everything left to Parquet (or, if that fails, leaves it in
the journal for the next start). A Parquet file appears under its final name only when complete, so DuckDB
readers never see half a file:

    SELECT * FROM read_parquet('data/exposures/*/*.parquet', hive_partitioning = true, union_by_name = true)

(``union_by_name``: files written before ``served_by`` was logged lack that column.)
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import os
import queue
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
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
    ("served_at", pa.timestamp("us")),  # when the API answered (UTC): its day is the partition
    ("post_ids", pa.list_(pa.int64())),
    ("served_by", pa.string()),  # the method that ranked the posts: a model kind or a baseline
])  # fmt: skip

JOURNAL = ".journal"
RECORD_HEADER = struct.Struct("<II")  # payload length, CRC32 of the payload
MAX_BACKOFF_SECONDS = 2.0
LOG_EVERY_SECONDS = 30.0  # a lasting failure or drops are logged again at most this often


@dataclass(eq=False)
class _Segment:
    """One journal file and, while this process writes it, its rows in memory."""

    path: Path
    fd: int | None = None
    tables: list[pa.Table] | None = field(default_factory=list)  # None: a file left by another process
    rows: int = 0
    opened: float = field(default_factory=time.monotonic)

    def table(self) -> pa.Table:
        if self.tables is None:
            return read_journal(self.path)
        return pa.concat_tables(self.tables) if self.tables else SCHEMA.empty_table()


class _Failures:
    """Consecutive failures of one kind of write: the backoff before the next attempt, and what to show."""

    def __init__(self, what: str):
        self.what = what
        self.consecutive = self.total = 0
        self.error: str | None = None
        self._logged_at = 0.0

    def failed(self, error: Exception) -> float:
        self.consecutive += 1
        self.total += 1
        self.error = f"{self.what}: {describe(error)}"
        now = time.monotonic()
        if self.consecutive == 1 or now - self._logged_at >= LOG_EVERY_SECONDS:
            self._logged_at = now
            log.warning("exposure log: %s failed (%s in a row), retrying", self.what, self.consecutive,
                        exc_info=error)  # fmt: skip
        return min(0.1 * 2 ** (self.consecutive - 1), MAX_BACKOFF_SECONDS)

    def succeeded(self) -> None:
        if self.consecutive:
            log.info("exposure log: %s works again after %s failed attempts", self.what, self.consecutive)
        self.consecutive, self.error = 0, None


def describe(error: Exception) -> str:
    """The error for /health and /ready: its kind, reason and file name, no absolute path (logs have it)."""
    if isinstance(error, OSError) and error.strerror:
        where = f" ({Path(os.fsdecode(error.filename)).name})" if error.filename else ""
        return f"{type(error).__name__}: {error.strerror}{where}"
    return type(error).__name__


def to_table(rows: list[tuple]) -> pa.Table:
    columns = zip(*rows, strict=True)
    return pa.table([pa.array(values, column.type) for column, values in zip(SCHEMA, columns, strict=True)],
                    schema=SCHEMA)  # fmt: skip


def journal_record(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, SCHEMA) as writer:
        writer.write_table(table)
    payload = sink.getvalue().to_pybytes()
    return RECORD_HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def read_journal(path: Path) -> pa.Table:
    """The rows of a journal file, up to its first incomplete or damaged record (a write cut short)."""
    data, at, tables = path.read_bytes(), 0, []
    while at + RECORD_HEADER.size <= len(data):
        size, crc = RECORD_HEADER.unpack_from(data, at)
        payload = data[at + RECORD_HEADER.size : at + RECORD_HEADER.size + size]
        if len(payload) < size or zlib.crc32(payload) != crc:
            log.warning("exposure journal %s: %s bytes after the last complete record ignored", path.name,
                        len(data) - at)  # fmt: skip
            break
        tables.append(pa.ipc.open_stream(payload).read_all())
        at += RECORD_HEADER.size + size
    return pa.concat_tables(tables) if tables else SCHEMA.empty_table()


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_folder(folder: Path) -> None:
    """Make a file's creation, rename or removal in the folder durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def by_served_day(table: pa.Table):
    """(day, rows) per UTC day of served_at."""
    days = pc.cast(table["served_at"], pa.date32())
    for day in pc.unique(days).to_pylist():
        yield day, table.filter(pc.equal(days, pa.scalar(day, pa.date32())))


def owner_of(journal_file: Path) -> str:
    return journal_file.stem.rsplit("-", 1)[0]


def owner_is_alive(lock_path: Path) -> bool:
    """Whether a process holds this owner lock (a lock is released when its process dies, SIGKILL too)."""
    try:
        fd = os.open(lock_path, os.O_RDWR)
    except FileNotFoundError:
        return False
    except OSError:
        return True  # cannot tell: leave its journal alone
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


class ExposureLog:
    def __init__(self, folder: Path, max_pending: int = 100_000, flush_rows: int = 5_000, flush_seconds: float = 2.0,
                 journal_seconds: float = 0.05):  # fmt: skip
        self.folder = folder
        self.journal_dir = folder / JOURNAL
        self.max_pending = max_pending
        self.flush_rows, self.flush_seconds, self.journal_seconds = flush_rows, flush_seconds, journal_seconds
        self.written = self.dropped = 0
        self._rows: list[tuple] = []  # appended, not yet in the journal
        self._pending = 0  # appended, not yet in Parquet
        self._lock = threading.Lock()
        self._owner = f"{os.getpid()}-{os.urandom(4).hex()}"
        self._owner_lock: int | None = None
        self._segment_numbers = itertools.count()
        self._segment: _Segment | None = None
        self._sealed: queue.Queue[_Segment | None] = queue.Queue()  # None: the journal thread is done
        self._journal_failures, self._parquet_failures = _Failures("journal write"), _Failures("Parquet write")
        self._drops_logged, self._drops_logged_at = 0, 0.0
        self._closing = threading.Event()
        # A process's first Parquet write takes about 0.5 s: pay it here, at start-up, rather than in
        # the first flush beside the first requests.
        pq.write_table(SCHEMA.empty_table(), pa.BufferOutputStream())
        self._journal_thread = threading.Thread(target=self._journal_loop, name="exposure-journal", daemon=True)
        self._compactor = threading.Thread(target=self._compact_loop, name="exposure-compactor", daemon=True)
        self._journal_thread.start()
        self._compactor.start()

    def append(self, row: tuple) -> None:
        """One row, its values in SCHEMA's order (time a datetime; served_at a datetime or integer
        microseconds since the epoch, UTC). Cheap: a list append under a lock; the writing happens in the background."""
        with self._lock:
            if self._pending >= self.max_pending:
                self.dropped += 1
                return
            self._pending += 1
            self._rows.append(row)

    def status(self) -> dict:
        """For /health and /ready: healthy unless a write is failing now."""
        errors = [failures.error for failures in (self._journal_failures, self._parquet_failures) if failures.error]
        return {"healthy": not errors, "error": "; ".join(errors) or None, "pending": self._pending,
                "max_pending": self.max_pending, "dropped": self.dropped, "written": self.written,
                "failed_writes": self._journal_failures.total + self._parquet_failures.total}  # fmt: skip

    # --- the journal thread ---

    def _journal_loop(self) -> None:
        delay = self.journal_seconds
        while not self._closing.wait(delay):
            delay = self._journal_new_rows()
            self._log_drops()
        self._journal_new_rows()
        self._seal()
        self._sealed.put(None)

    def _journal_new_rows(self) -> float:
        """Append the rows appended since the last round to the journal; the delay before the next round."""
        with self._lock:
            rows, self._rows = self._rows, []
        if rows:
            try:
                self._write_journal(to_table(rows))
            except Exception as error:
                with self._lock:
                    self._rows[:0] = rows
                self._seal()  # the retry goes to a new file: a torn record must not precede it
                return self._journal_failures.failed(error)
            self._journal_failures.succeeded()
        segment = self._segment
        if segment and (segment.rows >= self.flush_rows or time.monotonic() - segment.opened >= self.flush_seconds):
            self._seal()
        return self.journal_seconds

    def _write_journal(self, table: pa.Table) -> None:
        if self._segment is None:
            self._segment = self._open_segment()
            fsync_folder(self.journal_dir)  # the new file's name survives a crash too
        write_all(self._segment.fd, journal_record(table))
        os.fsync(self._segment.fd)
        self._segment.tables.append(table)
        self._segment.rows += table.num_rows

    def _open_segment(self) -> _Segment:
        if self._owner_lock is None:
            self.journal_dir.mkdir(parents=True, exist_ok=True)
            self._owner_lock = self._lock_owner()
        path = self.journal_dir / f"{self._owner}-{next(self._segment_numbers):06d}.journal"
        return _Segment(path, os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644))

    def _lock_owner(self) -> int:
        """Hold this process's owner lock, taken before its first journal file exists. Another
        process may find the new lock file still free and remove it: then take a fresh one."""
        path = self.journal_dir / f"{self._owner}.lock"
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    return fd
            except FileNotFoundError:
                pass
            os.close(fd)

    def _seal(self) -> None:
        segment, self._segment = self._segment, None
        if segment is None:
            return
        with contextlib.suppress(OSError):  # its records are written and fsync'd already
            os.close(segment.fd)
        self._sealed.put(segment)

    def _log_drops(self) -> None:
        now = time.monotonic()
        if self.dropped > self._drops_logged and now - self._drops_logged_at >= LOG_EVERY_SECONDS:
            log.warning("exposure log: %s rows dropped so far (%s waiting to be written, at most "
                        "RECSYS_EXPOSURE_MAX_PENDING=%s)", self.dropped, self._pending, self.max_pending)  # fmt: skip
            self._drops_logged, self._drops_logged_at = self.dropped, now

    # --- the compactor thread ---

    def _compact_loop(self) -> None:
        try:
            orphans = self._orphan_segments()
        except OSError:
            log.warning("exposure log: could not look for journals left by ended processes", exc_info=True)
            orphans = []
        for orphan in orphans:
            self._compact_until_done(orphan)
        while (segment := self._sealed.get()) is not None:
            self._compact_until_done(segment)

    def _orphan_segments(self) -> list[_Segment]:
        """Journal files of owners whose process is gone, oldest first; their lock files are removed."""
        files = sorted(self.journal_dir.glob("*.journal"))
        owners = {owner_of(path) for path in files} - {self._owner}
        gone = {owner for owner in owners if not owner_is_alive(self.journal_dir / f"{owner}.lock")}
        for owner in gone:
            with contextlib.suppress(OSError):  # a lock file left behind is harmless
                (self.journal_dir / f"{owner}.lock").unlink(missing_ok=True)
        if gone:
            log.info("exposure log: recovering the journal of %s ended process(es)", len(gone))
        return [_Segment(path, tables=None) for path in files if owner_of(path) in gone]

    def _compact_until_done(self, segment: _Segment) -> bool:
        """Retry until the segment is in Parquet; once closing, a failure leaves its journal file for the next start."""
        while True:
            try:
                written = self._compact(segment)
            except Exception as error:
                delay = self._parquet_failures.failed(error)
                if self._closing.is_set():
                    log.warning("exposure log: %s left in the journal for the next start", segment.path.name)
                    return False
                self._closing.wait(delay)
                continue
            with self._lock:
                self._pending -= segment.rows
                self.written += written
            self._parquet_failures.succeeded()
            return True

    def _compact(self, segment: _Segment) -> int:
        try:
            table = segment.table()
        except FileNotFoundError:  # compacted meanwhile by another process recovering it
            return 0
        for day, rows in by_served_day(table):
            self._write_parquet(self.folder / f"day={day}", f"part-{segment.path.stem}.parquet", rows)
        segment.path.unlink(missing_ok=True)
        return table.num_rows

    def _write_parquet(self, folder: Path, name: str, table: pa.Table) -> None:
        """Write the file durably under its final name, unless it is there already."""
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / name
        if target.exists():
            return
        partial = folder / f".{name}.{os.getpid()}.partial"
        try:
            with open(partial, "wb") as file:
                pq.write_table(table, file)
                file.flush()
                os.fsync(file.fileno())
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
        fsync_folder(folder)

    # --- shutdown ---

    def close(self, timeout: float = 30) -> None:
        """Stop both threads after writing everything to Parquet: nothing logged is lost on a clean
        shutdown (what cannot be written now stays in the journal for the next start)."""
        self._closing.set()
        self._journal_thread.join(timeout)
        self._compactor.join(timeout)
        self._write_unjournaled()
        if self._owner_lock is not None:
            (self.journal_dir / f"{self._owner}.lock").unlink(missing_ok=True)
            os.close(self._owner_lock)
            self._owner_lock = None
        log.info("exposure log closed: %s rows written, %s dropped", f"{self.written:,}", f"{self.dropped:,}")

    def _write_unjournaled(self) -> None:
        """Rows the journal could not take before closing: straight to Parquet, or counted as dropped."""
        with self._lock:
            rows, self._rows = self._rows, []
        if not rows:
            return
        segment = _Segment(self.journal_dir / f"{self._owner}-unjournaled.journal", tables=[to_table(rows)],
                           rows=len(rows))  # fmt: skip
        if not self._compact_until_done(segment):
            log.error("exposure log: %s rows could not be written before closing", len(rows))
            with self._lock:
                self.dropped += len(rows)
