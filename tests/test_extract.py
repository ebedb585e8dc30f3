"""Extract: same content from either store, clear errors on bad data, nothing half-written."""

import datetime as dt
import json
import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor

import duckdb
import psycopg2
import pytest

from recsys.extract import MANIFEST, DataValidationError, extract, latest_extract, list_extracts
from recsys.generate import PRESETS, generate_into
from recsys.sources import open_source

DAY = dt.date(2021, 11, 1)


@pytest.fixture(scope="module")
def tiny_duckdb(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "source.duckdb"
    generate_into(open_source(f"duckdb:///{path}"), PRESETS["tiny"], seed=11, replace=False,
                  truth_dir=path.parent / "truth")  # fmt: skip
    return path


@pytest.fixture
def bad_source(tiny_duckdb, tmp_path, settings_for):
    """A copy of the tiny source; call it with SQL that breaks it, get settings that point at it."""
    path = tmp_path / "source.duckdb"
    shutil.copy(tiny_duckdb, path)

    def breaks(*statements, **env):
        with duckdb.connect(str(path)) as con:
            for statement in statements:
                con.execute(statement)
        return settings_for(f"duckdb:///{path}", **env)

    return breaks


def test_duckdb_and_postgres_extract_to_the_same_content(tmp_path, postgres_url, settings_for, monkeypatch):
    manifests = {}
    for name, url in (("duckdb", f"duckdb:///{tmp_path / 'source.duckdb'}"), ("postgresql", postgres_url)):
        generate_into(open_source(url), PRESETS["tiny"], seed=21, replace=False, truth_dir=tmp_path / name)
        settings = settings_for(url, RECSYS_DATA_DIR=str(tmp_path / f"data-{name}"))
        manifests[name] = json.loads((extract(settings, DAY) / MANIFEST).read_text())
    duck, pg = manifests["duckdb"]["tables"], manifests["postgresql"]["tables"]
    assert duck == pg
    assert duck["feed_data"]["rows"] > 10_000 and duck["user_data"]["rows"] == 400


def test_layout_partitions_the_feed_by_day(bad_source):
    settings = bad_source()
    path = extract(settings, DAY)
    assert path == settings.extracts_dir / "2021-11-01" == latest_extract(settings)
    days = sorted(p.name for p in (path / "feed_data").iterdir())
    assert days[0] == "day=2021-10-01" and len(days) >= 14
    with duckdb.connect() as con:
        (misplaced,) = con.execute(
            "SELECT count(*) FILTER (CAST(timestamp AS DATE) <> day) "
            f"FROM read_parquet('{path}/feed_data/*/*.parquet')"
        ).fetchone()
    assert misplaced == 0


def expect_problems(settings, *fragments):
    with pytest.raises(DataValidationError) as caught:
        extract(settings, DAY)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message
    assert not settings.extracts_dir.exists() or list(settings.extracts_dir.iterdir()) == []  # nothing left
    return message


def test_missing_table(bad_source):
    expect_problems(bad_source("DROP TABLE post_text_df"), "table post_text_df is missing from duckdb:///")


def test_missing_column(bad_source):
    expect_problems(
        bad_source("ALTER TABLE user_data DROP COLUMN city"),
        "user_data.city: column is missing (the table has: user_id, gender, age, country, exp_group",
    )


def test_wrong_type(bad_source):
    expect_problems(bad_source("ALTER TABLE user_data ALTER age TYPE VARCHAR"),
                    "user_data.age: type VARCHAR where integer is expected")  # fmt: skip


def test_unknown_action(bad_source):
    settings = bad_source(
        "UPDATE feed_data SET action = 'share' "
        "WHERE rowid IN (SELECT rowid FROM feed_data WHERE action = 'like' LIMIT 7)"
    )
    expect_problems(settings, "feed_data.action: 7 rows have a value other than 'view' or 'like' (found 'share' ×7)")


# The generated tables have primary keys; data brought by users may not.
WITHOUT_KEYS = tuple(
    statement
    for table in ("user_data", "post_text_df")
    for statement in (f"CREATE TABLE copy AS SELECT * FROM {table}", f"DROP TABLE {table}",
                      f"ALTER TABLE copy RENAME TO {table}")  # fmt: skip
)


def test_null_keys(bad_source):
    settings = bad_source(
        *WITHOUT_KEYS,
        "UPDATE feed_data SET user_id = NULL WHERE rowid IN (SELECT rowid FROM feed_data LIMIT 3)",
        "UPDATE feed_data SET timestamp = NULL WHERE rowid IN (SELECT rowid FROM feed_data LIMIT 2 OFFSET 10)",
        "INSERT INTO post_text_df VALUES (NULL, 'a post without id', 'movie')",
    )
    message = expect_problems(settings, "post_text_df.post_id: 1 rows are null")
    assert "feed_data" not in message  # the feed is checked once users and posts are sound
    settings = bad_source("DELETE FROM post_text_df WHERE post_id IS NULL")
    expect_problems(settings, "feed_data.user_id: 3 rows are null", "feed_data.timestamp: 2 rows are null")


def test_bad_target(bad_source):
    settings = bad_source("UPDATE feed_data SET target = 5 WHERE rowid IN (SELECT rowid FROM feed_data LIMIT 4)")
    expect_problems(settings, "feed_data.target: 4 rows are not 0 or 1")


def test_duplicate_ids(bad_source):
    settings = bad_source(
        *WITHOUT_KEYS,
        "INSERT INTO user_data SELECT * FROM user_data LIMIT 2",
        "INSERT INTO post_text_df SELECT * FROM post_text_df LIMIT 1",
    )
    expect_problems(settings, "user_data.user_id: 2 rows repeat an id that is already taken",
                    "post_text_df.post_id: 1 rows repeat an id that is already taken")  # fmt: skip


ORPHANS = (
    "DELETE FROM user_data WHERE user_id = (SELECT user_id FROM feed_data GROUP BY 1 ORDER BY count(*) LIMIT 1)",
    "INSERT INTO feed_data VALUES ('2021-10-02 10:00:00', 200, 999999, 'view', 0)",
)


def test_orphan_feed_rows_fail_by_default(bad_source):
    settings = bad_source(*ORPHANS)
    with duckdb.connect(str(settings.source_url.removeprefix("duckdb:///")), read_only=True) as con:
        orphans = con.execute("SELECT count(*) FROM feed_data WHERE user_id NOT IN (SELECT user_id FROM user_data)").fetchone()[0]  # noqa: E501
    expect_problems(settings, f"feed_data.user_id: {orphans:,} rows reference users missing from user_data",
                    "feed_data.post_id: 1 rows reference posts missing from post_text_df",
                    "RECSYS_ORPHAN_ROWS=drop")  # fmt: skip


def test_orphan_feed_rows_can_be_dropped_with_counts(bad_source, caplog):
    settings = bad_source(*ORPHANS, RECSYS_ORPHAN_ROWS="drop")
    manifest = json.loads((extract(settings, DAY) / MANIFEST).read_text())
    dropped = manifest["dropped_feed_rows"]
    assert dropped["unknown post_id"] == 1 and dropped["unknown user_id"] > 1
    assert "dropped 1 rows with unknown post_id" in caplog.text
    with duckdb.connect(str(settings.source_url.removeprefix("duckdb:///")), read_only=True) as con:
        total = con.execute("SELECT count(*) FROM feed_data").fetchone()[0]
    assert manifest["tables"]["feed_data"]["rows"] == total - dropped["unknown post_id"] - dropped["unknown user_id"]


def test_postgres_bad_data_is_named_too(postgres_url, settings_for):
    with psycopg2.connect(postgres_url) as con, con.cursor() as cur:
        cur.execute("CREATE TABLE user_data (user_id int, gender int, age text, country text, city text, "
                    "exp_group int, os text, source text)")  # fmt: skip
        cur.execute("CREATE TABLE post_text_df (post_id int, text text)")
    expect_problems(settings_for(postgres_url), "table feed_data is missing from postgresql://",
                    "user_data.age: type text where integer is expected",
                    "post_text_df.topic: column is missing (the table has: post_id, text)")  # fmt: skip


def test_empty_source_says_what_to_do(settings_for, tmp_path):
    expect_problems(settings_for(f"duckdb:///{tmp_path / 'none.duckdb'}"), "holds none of the tables",
                    "run `recsys generate`")  # fmt: skip


def test_a_failure_mid_stream_leaves_the_previous_extract(bad_source, monkeypatch):
    settings = bad_source()
    good = extract(settings, DAY)
    before = (good / MANIFEST).read_text()

    def explode(batch):
        raise OSError("disk full")

    monkeypatch.setattr("recsys.extract._with_day", explode)
    with pytest.raises(OSError, match="disk full"):
        extract(settings, DAY)
    assert (good / MANIFEST).read_text() == before
    assert [p.name for p in settings.extracts_dir.iterdir()] == ["2021-11-01"]  # no staging left


@pytest.mark.parametrize("table", ["user_data", "post_text_df", "feed_data"])
def test_an_empty_table_is_named(bad_source, table):
    expect_problems(bad_source(f"DELETE FROM {table}"), f"{table}: the table holds no rows")


def test_a_feed_whose_every_row_is_dropped_is_named(bad_source):
    settings = bad_source("UPDATE feed_data SET post_id = post_id + 1000000", RECSYS_ORPHAN_ROWS="drop")
    with duckdb.connect(str(settings.source_url.removeprefix("duckdb:///")), read_only=True) as con:
        rows = con.execute("SELECT count(*) FROM feed_data").fetchone()[0]
    expect_problems(settings, f"feed_data: all {rows:,} rows were dropped ({rows:,} with unknown post_id; "
                              "RECSYS_ORPHAN_ROWS=drop): none is left to extract")  # fmt: skip


def left_by_a_killed_extract(extracts_dir, prefix: str):
    """A half-written folder named as an extract that was killed names its staging or retired folder."""
    killed = subprocess.Popen(["true"])
    killed.wait()  # its process id no longer runs
    folder = extracts_dir / f"{prefix}2021-10-31-{killed.pid}"
    (folder / "feed_data").mkdir(parents=True)
    (folder / "user_data.parquet").write_bytes(b"PAR1 half written")
    return folder


def test_the_next_extract_removes_the_folders_of_a_killed_one(bad_source):
    settings = bad_source()
    left = [left_by_a_killed_extract(settings.extracts_dir, prefix) for prefix in (".staging-", ".retired-")]
    extract(settings, DAY)
    assert not any(folder.exists() for folder in left)
    assert [p.name for p in settings.extracts_dir.iterdir()] == ["2021-11-01"]


def test_an_extract_leaves_the_folders_of_a_running_one_alone(bad_source):
    """Two extracts at once: neither removes the other's staging folder, and a folder left by a killed
    extract meanwhile waits for the next extract that runs alone."""
    settings = bad_source()
    streaming, finish = threading.Event(), threading.Event()

    def hold_while_streaming(done, total):
        streaming.set()
        finish.wait(timeout=120)

    with ThreadPoolExecutor(1) as thread:
        first = thread.submit(extract, settings, DAY, hold_while_streaming)
        assert streaming.wait(timeout=120)
        left = left_by_a_killed_extract(settings.extracts_dir, ".staging-")
        staged = sorted(settings.extracts_dir.glob(".staging-*"))
        assert len(staged) == 2  # the running extract's and the killed one's
        extract(settings, dt.date(2021, 11, 2))
        assert all(folder.exists() for folder in staged)
        finish.set()
        assert first.result(timeout=120) == settings.extracts_dir / "2021-11-01"
    assert left.exists()
    extract(settings, dt.date(2021, 11, 3))
    assert not left.exists()
    assert [p.name for p in sorted(settings.extracts_dir.iterdir())] == ["2021-11-01", "2021-11-02", "2021-11-03"]


def test_rerun_replaces_and_old_extracts_are_pruned(bad_source):
    settings = bad_source(RECSYS_EXTRACTS_KEPT="2")
    for day in (1, 2, 3):
        extract(settings, dt.date(2021, 11, day))
    first = json.loads((extract(settings, dt.date(2021, 11, 3)) / MANIFEST).read_text())
    assert [p.name for p in list_extracts(settings.extracts_dir)] == ["2021-11-02", "2021-11-03"]
    assert first["tables"]["feed_data"]["rows"] > 0


def test_verify_extract_names_a_changed_file_and_too_few_days(tiny_extract, tmp_path, settings_for):
    import pyarrow.parquet as pq

    from recsys.extract import verify_extract

    copy = tmp_path / "extract"
    shutil.copytree(tiny_extract[0], copy)
    settings = settings_for()
    assert verify_extract(copy, settings)["tables"]["feed_data"]["rows"] > 0

    users = pq.read_table(copy / "user_data.parquet")
    pq.write_table(users.slice(0, users.num_rows - 3), copy / "user_data.parquet")
    with pytest.raises(DataValidationError, match=f"user_data: {users.num_rows - 3:,} rows on disk, the manifest "
                                                  f"says {users.num_rows:,}"):  # fmt: skip
        verify_extract(copy, settings)

    pq.write_table(users, copy / "user_data.parquet")
    days = len(list((copy / "feed_data").iterdir()))
    with pytest.raises(DataValidationError, match=f"feed_data: {days} days of events; RECSYS_VALID_DAYS=8"):
        verify_extract(copy, settings_for(RECSYS_VALID_DAYS="8", RECSYS_TEST_DAYS=str(days)))
