import datetime as dt

import psycopg2
import pyarrow as pa
import pytest

from recsys.sources import INT, TEXT, TIMESTAMP, SourceError, SourceURL, arrow_schema, logical_type, open_source


@pytest.mark.parametrize(
    ("url", "kind", "target"),
    [
        ("duckdb:///relative.duckdb", "duckdb", "relative.duckdb"),
        ("duckdb:////abs/path/source.duckdb", "duckdb", "/abs/path/source.duckdb"),
        ("postgresql://app:secret@db:5433/feed", "postgresql", "postgresql://app:secret@db:5433/feed"),
        ("postgresql+psycopg2://app@db/feed", "postgresql", "postgresql://app@db/feed"),
    ],
)
def test_source_urls(url, kind, target):
    parsed = SourceURL.parse(url)
    assert (parsed.kind, parsed.target) == (kind, target)
    assert "secret" not in parsed.display


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u@h/db", "unsupported store 'mysql'"),
        ("not a url", "is not a URL"),
        ("duckdb://", "names no DuckDB file"),
    ],
)
def test_bad_source_urls_say_what_is_wrong(url, message):
    with pytest.raises(SourceError, match=message):
        SourceURL.parse(url)


@pytest.mark.parametrize(
    ("store_type", "kind"),
    [
        ("INTEGER", INT), ("bigint", INT), ("smallint", INT), ("VARCHAR", TEXT), ("text", TEXT),
        ("character varying", TEXT), ("TIMESTAMP", TIMESTAMP), ("timestamp without time zone", TIMESTAMP),
        ("timestamp with time zone", TIMESTAMP), ("DOUBLE", None), ("interval", None), ("DATE", None),
    ],
)  # fmt: skip
def test_store_types_map_to_logical_types(store_type, kind):
    assert logical_type(store_type) == kind


TRICKY_POSTS = pa.Table.from_pydict(
    {
        "post_id": [1, 2, 3, 4],
        "text": ['He said "hi", then left.\nNew line, comma', "", None, "Ünïcödé — ✓"],
        "topic": ["a", "b", "c", None],
    },
    schema=arrow_schema("post_text_df"),
)


def _round_trip(url):
    source = open_source(url)
    with source.writer():
        source.create_schema()
        source.append("post_text_df", TRICKY_POSTS)
    types = source.columns()["post_text_df"]
    return pa.Table.from_batches(list(source.stream("post_text_df", types)))


def test_duckdb_round_trip_keeps_quotes_newlines_nulls_and_empty_strings(tmp_path):
    assert _round_trip(f"duckdb:///{tmp_path / 's.duckdb'}").equals(TRICKY_POSTS)


def test_postgres_round_trip_keeps_quotes_newlines_nulls_and_empty_strings(postgres_url):
    assert _round_trip(postgres_url).equals(TRICKY_POSTS)


def test_postgres_timestamps_are_utc_whatever_the_server_time_zone(postgres_url):
    """timestamptz is converted to UTC; a plain timestamp is taken as it is, not shifted."""
    with psycopg2.connect(postgres_url) as con, con.cursor() as cur:
        cur.execute("SELECT current_database()")
        cur.execute(f"ALTER DATABASE {cur.fetchone()[0]} SET timezone TO 'Asia/Tokyo'")
        cur.execute('CREATE TABLE feed_data ("timestamp" timestamptz, user_id bigint, post_id int, '
                    "action text, target smallint)")
        cur.execute("INSERT INTO feed_data VALUES ('2021-10-01 09:30:00+03', 1, 2, 'view', 0)")
        cur.execute('CREATE TABLE plain AS SELECT "timestamp" AT TIME ZONE \'UTC\' AS "timestamp", user_id, '
                    "post_id, action, target FROM feed_data")
    source = open_source(postgres_url)
    (zoned,) = source.stream("feed_data", source.columns()["feed_data"])
    assert zoned.schema == arrow_schema("feed_data")
    assert zoned.column("timestamp")[0].as_py() == dt.datetime(2021, 10, 1, 6, 30)
    with psycopg2.connect(postgres_url) as con, con.cursor() as cur:
        cur.execute("DROP TABLE feed_data")
        cur.execute("ALTER TABLE plain RENAME TO feed_data")
    (plain,) = source.stream("feed_data", source.columns()["feed_data"])
    assert plain.column("timestamp")[0].as_py() == dt.datetime(2021, 10, 1, 6, 30)


def test_unreachable_postgres_is_a_clear_error(postgres_server):
    source = open_source(f"postgresql://nobody@127.0.0.1:{postgres_server['port']}/missing_db")
    with pytest.raises(SourceError, match="cannot connect to postgresql://nobody@127.0.0.1"):
        source.columns()


def test_missing_duckdb_file_holds_no_tables(tmp_path):
    assert open_source(f"duckdb:///{tmp_path / 'nothing.duckdb'}").columns() == {}
    assert not (tmp_path / "nothing.duckdb").exists()
