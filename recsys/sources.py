"""The three source tables and the two stores that can hold them.

``RECSYS_SOURCE_URL`` picks the store: ``postgresql://user:pass@host:port/db`` (production) or a
DuckDB file, ``duckdb:///relative.duckdb`` / ``duckdb:////absolute/path.duckdb`` (embedded default).
Both stores offer the same small interface: check the schema, create it, append Arrow tables (COPY
for PostgreSQL, never row inserts) and stream a table out as Arrow record batches in bounded memory.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

# Logical column types of the original tables, in column order.
INT, TEXT, TIMESTAMP = "integer", "text", "timestamp"
TABLES: dict[str, tuple[tuple[str, str], ...]] = {
    "user_data": (
        ("user_id", INT),
        ("gender", INT),
        ("age", INT),
        ("country", TEXT),
        ("city", TEXT),
        ("exp_group", INT),
        ("os", TEXT),
        ("source", TEXT),
    ),
    "post_text_df": (("post_id", INT), ("text", TEXT), ("topic", TEXT)),
    "feed_data": (
        ("timestamp", TIMESTAMP),
        ("user_id", INT),
        ("post_id", INT),
        ("action", TEXT),
        ("target", INT),
    ),
}
PRIMARY_KEYS = {"user_data": "user_id", "post_text_df": "post_id"}
ARROW_TYPES = {INT: pa.int32(), TEXT: pa.string(), TIMESTAMP: pa.timestamp("us")}
SQL_TYPES = {INT: "INTEGER", TEXT: "TEXT", TIMESTAMP: "TIMESTAMP"}
# Store types (lower case, DuckDB and PostgreSQL spellings) that already are the canonical type.
CANONICAL_STORE_TYPES = {
    INT: ("integer",),
    TEXT: ("text", "varchar"),
    TIMESTAMP: ("timestamp", "timestamp without time zone"),
}
STREAM_BATCH_ROWS = 1_000_000


class SourceError(RuntimeError):
    """The source cannot be reached or does not hold what the product needs."""


def quiet_duckdb(database: str = ":memory:", read_only: bool = False):
    """A DuckDB connection that prints no progress bar (library code keeps stdout for results)."""
    import duckdb

    con = duckdb.connect(database, read_only=read_only)
    con.execute("SET enable_progress_bar = false")
    return con


def arrow_schema(table: str) -> pa.Schema:
    return pa.schema([(name, ARROW_TYPES[kind]) for name, kind in TABLES[table]])


def logical_type(sql_type: str) -> str | None:
    """Map a store's type name (DuckDB or PostgreSQL spelling) to INT, TEXT or TIMESTAMP."""
    t = sql_type.lower()
    if "int" in t and "interval" not in t:
        return INT
    if t in ("text", "varchar", "string") or t.startswith(("character", "varchar", "char")):
        return TEXT
    if t.startswith("timestamp"):
        return TIMESTAMP
    return None


@dataclass(frozen=True)
class SourceURL:
    kind: str  # "duckdb" or "postgresql"
    target: str  # the DuckDB file path, or a libpq connection URI
    display: str  # safe to log: password hidden

    @classmethod
    def parse(cls, url: str) -> SourceURL:
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise SourceError(
                f"RECSYS_SOURCE_URL {url!r} is not a URL; expected postgresql://user@host:port/db "
                "or duckdb:///relative.duckdb or duckdb:////absolute/path.duckdb"
            ) from None
        backend = parsed.get_backend_name()
        display = parsed.render_as_string(hide_password=True)
        if backend == "duckdb":
            if not parsed.database:
                raise SourceError(f"RECSYS_SOURCE_URL {display!r} names no DuckDB file")
            return cls("duckdb", str(Path(parsed.database)), display)
        if backend in ("postgresql", "postgres"):
            libpq = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
            return cls("postgresql", libpq, display)
        raise SourceError(f"RECSYS_SOURCE_URL {display!r}: unsupported store {backend!r}; use postgresql or duckdb")


def open_source(url: str) -> Source:
    parsed = SourceURL.parse(url)
    return DuckDBSource(parsed) if parsed.kind == "duckdb" else PostgresSource(parsed)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Source:
    """What the generator and the extract need from a store."""

    url: SourceURL
    # The information_schema filter that selects the current schema's tables.
    _schema_filter = "table_schema = current_schema()"

    def __init__(self, url: SourceURL):
        self.url = url

    # --- reading -----------------------------------------------------------------------------
    def columns(self) -> dict[str, dict[str, str]]:
        """{table: {column: store type}} for the three source tables that exist."""
        sql = (
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            f"WHERE {self._schema_filter} AND table_name IN ('user_data', 'post_text_df', 'feed_data') "
            "ORDER BY table_name, ordinal_position"
        )
        found: dict[str, dict[str, str]] = {}
        for table, column, data_type in self._fetchall(sql):
            found.setdefault(table, {})[column] = data_type
        return found

    def row_count(self, table: str) -> int:
        return int(self._fetchall(f"SELECT count(*) FROM {_quote(table)}")[0][0])

    def user_ids(self) -> np.ndarray:
        """Every user_id in user_data."""
        return np.array([row[0] for row in self._fetchall("SELECT user_id FROM user_data")], dtype=np.int64)

    def user_ids_summary(self) -> tuple[int, int, int]:
        """(count, sum, max) of user_data's ids: one row to read, and it changes when users are added."""
        count, total, top = self._fetchall("SELECT count(*), sum(user_id), max(user_id) FROM user_data")[0]
        return int(count), int(total or 0), int(top or 0)

    def find_users(self, user_ids) -> list[dict]:
        """The user_data rows of the given users (those that exist)."""
        if len(user_ids) == 0:
            return []
        names = [name for name, _ in TABLES["user_data"]]
        wanted = ", ".join(str(int(u)) for u in user_ids)
        rows = self._fetchall(f"SELECT {', '.join(map(_quote, names))} FROM user_data WHERE user_id IN ({wanted})")
        return [dict(zip(names, row, strict=True)) for row in rows]

    def likes_between(self, store_types: dict[str, str], start: dt.datetime, end: dt.datetime) -> pa.Table:
        """The like events (user_id, post_id, timestamp in UTC) with start <= timestamp <= end."""
        rows = self._fetchall(
            f"SELECT user_id, post_id, timestamp FROM ({self.select_sql('feed_data', store_types['feed_data'])}) f "
            f"WHERE action = 'like' AND timestamp BETWEEN '{start.isoformat()}' AND '{end.isoformat()}'"
        )
        users, posts, times = zip(*rows, strict=True) if rows else ((), (), ())
        return pa.table({"user_id": pa.array(users, pa.int64()), "post_id": pa.array(posts, pa.int64()),
                         "timestamp": pa.array(times, pa.timestamp("us"))})  # fmt: skip

    def select_sql(self, table: str, store_types: dict[str, str]) -> str:
        """A SELECT that returns the table's columns in canonical order and types."""
        parts = []
        for name, kind in TABLES[table]:
            column, store_type = _quote(name), store_types[name].lower()
            if kind == TIMESTAMP and "with time zone" in store_type:
                column = self._timestamptz_to_utc(column)
            if store_type not in CANONICAL_STORE_TYPES[kind]:  # casts cost time on 77 M rows: only where needed
                column = f"CAST({column} AS {SQL_TYPES[kind]})"
            parts.append(f"{column} AS {_quote(name)}")
        return f"SELECT {', '.join(parts)} FROM {_quote(table)}"

    # --- writing -----------------------------------------------------------------------------
    def create_schema(self, replace: bool = False) -> None:
        """Create the three tables; with replace, drop existing ones first."""
        statements = []
        for table, columns in TABLES.items():
            if replace:
                statements.append(f"DROP TABLE IF EXISTS {_quote(table)}")
            body = ", ".join(f"{_quote(name)} {SQL_TYPES[kind]}" for name, kind in columns)
            statements.append(f"CREATE TABLE {_quote(table)} ({body})")
        self._execute_all(statements)

    def finish_load(self) -> None:
        """Add primary keys after a bulk load (cheaper than maintaining them during it)."""
        self._execute_all(
            f"ALTER TABLE {_quote(table)} ADD PRIMARY KEY ({_quote(key)})" for table, key in PRIMARY_KEYS.items()
        )

    def query(self, sql: str) -> list[tuple]:
        """The rows of a read-only SQL query (small results: they come back as tuples)."""
        return self._fetchall(sql)

    # Subclasses implement these.
    def _fetchall(self, sql: str) -> list[tuple]:
        raise NotImplementedError

    def _execute_all(self, statements) -> None:
        raise NotImplementedError

    def _timestamptz_to_utc(self, column: str) -> str:
        raise NotImplementedError

    def append(self, table: str, data: pa.Table) -> None:
        raise NotImplementedError

    def stream(self, table: str, store_types: dict[str, str]) -> Iterator[pa.RecordBatch]:
        raise NotImplementedError


class DuckDBSource(Source):
    def __init__(self, url: SourceURL):
        super().__init__(url)
        self.path = Path(url.target)
        self._writer = None

    def _connect(self, read_only: bool):
        if read_only and not self.path.exists():
            raise SourceError(f"DuckDB source file {self.path} does not exist (RECSYS_SOURCE_URL={self.url.display})")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return quiet_duckdb(str(self.path), read_only=read_only)

    @contextmanager
    def writer(self):
        """Keep one write connection open across many appends (DuckDB allows one writer)."""
        self._writer = self._connect(read_only=False)
        try:
            yield self
        finally:
            self._writer.close()
            self._writer = None

    def _with_connection(self, work, read_only: bool):
        if self._writer is not None:
            return work(self._writer)
        con = self._connect(read_only=read_only)
        try:
            return work(con)
        finally:
            con.close()

    def _fetchall(self, sql: str) -> list[tuple]:
        return self._with_connection(lambda con: con.execute(sql).fetchall(), read_only=True)

    def user_ids(self) -> np.ndarray:
        # As arrays, not Python tuples: the API's watcher thread calls this while requests run.
        return self._with_connection(
            lambda con: con.execute("SELECT user_id FROM user_data").fetchnumpy()["user_id"].astype(np.int64),
            read_only=True,
        )

    def columns(self) -> dict[str, dict[str, str]]:
        if self._writer is None and not self.path.exists():
            return {}  # a source not created yet holds no tables
        return super().columns()

    def _execute_all(self, statements) -> None:
        def run(con):
            for statement in statements:
                con.execute(statement)

        self._with_connection(run, read_only=False)

    def _timestamptz_to_utc(self, column: str) -> str:
        return f"timezone('UTC', {column})"

    def append(self, table: str, data: pa.Table) -> None:
        columns = ", ".join(_quote(name) for name, _ in TABLES[table])

        def insert(con):
            con.register("incoming_rows", data)
            try:
                con.execute(f"INSERT INTO {_quote(table)} ({columns}) SELECT {columns} FROM incoming_rows")
            finally:
                con.unregister("incoming_rows")

        self._with_connection(insert, read_only=False)

    def stream(self, table: str, store_types: dict[str, str]) -> Iterator[pa.RecordBatch]:
        schema = arrow_schema(table)
        con = self._connect(read_only=True)
        try:
            reader = con.sql(self.select_sql(table, store_types)).to_arrow_reader(STREAM_BATCH_ROWS)
            for batch in reader:
                yield batch.cast(schema)
        finally:
            con.close()


class PostgresSource(Source):
    def _connect(self):
        import psycopg2

        try:
            return psycopg2.connect(self.url.target)
        except psycopg2.OperationalError as error:
            raise SourceError(f"cannot connect to {self.url.display}: {str(error).strip()}") from None

    @contextmanager
    def writer(self):
        yield self

    def _fetchall(self, sql: str) -> list[tuple]:
        con = self._connect()
        try:
            with con.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall()
        finally:
            con.close()

    def _execute_all(self, statements) -> None:
        con = self._connect()
        try:
            with con, con.cursor() as cur:
                for statement in statements:
                    cur.execute(statement)
        finally:
            con.close()

    def _timestamptz_to_utc(self, column: str) -> str:
        return f"({column} AT TIME ZONE 'UTC')"

    def append(self, table: str, data: pa.Table) -> None:
        """COPY the rows in as CSV: PostgreSQL's bulk path, far faster than INSERTs."""
        buffer = io.BytesIO()
        pacsv.write_csv(data, buffer, write_options=pacsv.WriteOptions(include_header=False))
        buffer.seek(0)
        columns = ", ".join(_quote(name) for name, _ in TABLES[table])
        con = self._connect()
        try:
            with con, con.cursor() as cur:
                cur.copy_expert(f"COPY {_quote(table)} ({columns}) FROM STDIN WITH (FORMAT csv)", buffer)
        finally:
            con.close()

    def stream(self, table: str, store_types: dict[str, str]) -> Iterator[pa.RecordBatch]:
        """COPY ... TO STDOUT through a pipe into Arrow's streaming CSV reader: bounded memory."""
        schema = arrow_schema(table)
        sql = f"COPY ({self.select_sql(table, store_types)}) TO STDOUT WITH (FORMAT csv)"
        read_fd, write_fd = os.pipe()
        failure: list[BaseException] = []
        con = self._connect()

        def produce():
            try:
                with os.fdopen(write_fd, "wb") as pipe, con.cursor() as cur:
                    cur.copy_expert(sql, pipe)
            except BaseException as error:  # surfaced to the reader below
                failure.append(error)

        producer = threading.Thread(target=produce, name=f"copy-{table}", daemon=True)
        producer.start()
        pipe_in = os.fdopen(read_fd, "rb")
        try:
            reader = pacsv.open_csv(
                pipe_in,
                read_options=pacsv.ReadOptions(column_names=schema.names, block_size=16 << 20),
                # Texts may hold newlines; PostgreSQL writes NULL unquoted and '' quoted.
                parse_options=pacsv.ParseOptions(newlines_in_values=True),
                convert_options=pacsv.ConvertOptions(
                    column_types=schema,
                    null_values=[""],
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=False,
                ),
            )
            for batch in reader:
                yield batch.cast(schema)
        except Exception:
            pipe_in.close()
            producer.join()  # so that a failure of the COPY itself is known before deciding
            if not failure:
                raise
        finally:
            pipe_in.close()  # unblocks a producer still writing when the reader stops early
            producer.join()
            con.close()
        if failure:
            raise SourceError(f"reading {table} from {self.url.display} failed: {str(failure[0]).strip()}")
