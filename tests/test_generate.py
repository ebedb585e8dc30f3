"""The generator against the facts file (../shared/karpov-data-facts.md), with stated tolerances."""

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from recsys.generate import PRESETS, SourceNotEmptyError, build, generate_into
from recsys.sources import open_source
from recsys.truth import GroundTruth


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo preset generated into a DuckDB source, queried as the product would see it."""
    root = tmp_path_factory.mktemp("demo")
    source = open_source(f"duckdb:///{root / 'source.duckdb'}")
    generate_into(source, PRESETS["demo"], seed=7, replace=False, truth_dir=root / "truth")
    con = duckdb.connect(str(root / "source.duckdb"), read_only=True)
    yield con, GroundTruth.load(root / "truth")
    con.close()


def one(con, sql):
    return con.execute(sql).fetchone()


def shares(con, table, column):
    rows = con.execute(f"SELECT {column}, count(*) / sum(count(*)) OVER () FROM {table} GROUP BY 1").fetchall()
    return dict(rows)


def test_sizes_and_ids_with_gaps(demo):
    con, _ = demo
    users, distinct_users, max_user = one(con, "SELECT count(*), count(DISTINCT user_id), max(user_id) FROM user_data")
    posts, distinct_posts, max_post = one(
        con, "SELECT count(*), count(DISTINCT post_id), max(post_id) FROM post_text_df"
    )
    assert users == distinct_users == 5_000 and max_user > 200 + users
    assert posts == distinct_posts == 1_000 and max_post > posts


def test_user_feature_shares(demo):
    con, _ = demo
    assert shares(con, "user_data", "os")["Android"] == pytest.approx(0.649, abs=0.03)
    assert shares(con, "user_data", "source")["ads"] == pytest.approx(0.623, abs=0.03)
    country = shares(con, "user_data", "country")
    assert country["Russia"] == pytest.approx(0.876, abs=0.01)
    assert len(country) == 11 and max(country, key=country.get) == "Russia"
    city = shares(con, "user_data", "city")
    assert city["Moscow"] == pytest.approx(0.134, abs=0.03)  # 21,874 of 163,205
    assert len(city) > 60  # heavy tail
    low, high, median, mean = one(con, "SELECT min(age), max(age), median(age), avg(age) FROM user_data")
    assert 14 <= low and high <= 92
    assert 22 <= median <= 26 and 25.5 <= mean <= 29.5  # right-skewed: median 24, mean 27.4
    assert set(shares(con, "user_data", "exp_group")) == {0, 1, 2, 3, 4}


def test_topic_shares_and_texts(demo):
    con, _ = demo
    topic = shares(con, "post_text_df", "topic")
    original = {"movie": 3000, "covid": 1799, "business": 510, "sport": 510, "politics": 417, "tech": 401,
                "entertainment": 386}  # fmt: skip
    for name, count in original.items():
        assert topic[name] == pytest.approx(count / 7_023, abs=0.005)
    distinct, total = one(con, "SELECT count(DISTINCT text), count(*) FROM post_text_df")
    assert 0.97 <= distinct / total < 1.0  # a few texts repeat, as in the original


def test_view_like_rate_and_its_spread(demo):
    con, _ = demo
    (rate,) = one(con, "SELECT avg(target) FROM feed_data WHERE action = 'view'")
    assert 0.10 <= rate <= 0.14
    user_p5, user_p95 = one(con, """
        SELECT quantile_cont(r, 0.05), quantile_cont(r, 0.95)
        FROM (SELECT avg(target) r FROM feed_data WHERE action = 'view' GROUP BY user_id HAVING count(*) >= 50)""")
    assert 0.02 <= user_p5 <= 0.06 and 0.17 <= user_p95 <= 0.27  # real slice: 0.036..0.21
    post_p1, post_p99 = one(con, """
        SELECT quantile_cont(r, 0.01), quantile_cont(r, 0.99)
        FROM (SELECT avg(target) r FROM feed_data WHERE action = 'view' GROUP BY post_id)""")
    assert 0.05 <= post_p1 <= 0.09 and 0.14 <= post_p99 <= 0.21  # original: 0.076..0.155


def test_views_only_between_six_and_midnight_evenly(demo):
    con, _ = demo
    hours = dict(
        con.execute("SELECT hour(timestamp), count(*) FROM feed_data WHERE action = 'view' GROUP BY 1").fetchall()
    )
    assert set(hours) == set(range(6, 24))
    counts = np.array(list(hours.values()))
    assert counts.min() > 0.85 * counts.mean() and counts.max() < 1.15 * counts.mean()


def test_every_like_row_follows_its_liked_view_by_8_to_177_seconds(demo):
    con, _ = demo
    likes, liked_views = one(
        con, "SELECT count(*) FILTER (action = 'like'), count(*) FILTER (target = 1) FROM feed_data"
    )
    assert likes == liked_views > 0
    assert one(con, "SELECT count(*) FROM feed_data WHERE action = 'like' AND target <> 0")[0] == 0
    matched, min_delay, max_delay, median_delay = one(con, """
        SELECT count(*), min(d), max(d), median(d) FROM (
            SELECT min(date_diff('second', v.timestamp, l.timestamp)) d
            FROM feed_data l JOIN feed_data v
              ON v.user_id = l.user_id AND v.post_id = l.post_id AND v.action = 'view' AND v.target = 1
             AND v.timestamp BETWEEN l.timestamp - INTERVAL 177 SECOND AND l.timestamp - INTERVAL 8 SECOND
            WHERE l.action = 'like' GROUP BY l.timestamp, l.user_id, l.post_id)""")
    assert matched == likes
    assert 8 <= min_delay and max_delay <= 177 and 80 <= median_delay <= 105  # original median 93 s


def test_sessions_and_repeats(demo):
    con, _ = demo
    # A session ends where a user's next view comes more than 30 minutes later.
    median_length, median_gap = one(con, """
        WITH v AS (
            SELECT user_id, timestamp,
                   date_diff('second', lag(timestamp) OVER w, timestamp) AS gap
            FROM feed_data WHERE action = 'view' WINDOW w AS (PARTITION BY user_id ORDER BY timestamp)),
        s AS (SELECT *, sum(CASE WHEN gap IS NULL OR gap > 1800 THEN 1 ELSE 0 END) OVER
                 (PARTITION BY user_id ORDER BY timestamp) AS session FROM v)
        SELECT (SELECT median(n) FROM (SELECT count(*) n FROM s GROUP BY user_id, session)),
               (SELECT median(gap) FROM s WHERE gap <= 1800)""")
    assert 25 <= median_length <= 33  # original: 23..34, median 29
    assert 85 <= median_gap <= 110  # original: median 97 s
    (repeat_share,) = one(con, """
        SELECT avg((n > 1)::INT) FROM (
            SELECT row_number() OVER (PARTITION BY user_id, post_id ORDER BY timestamp) n
            FROM feed_data WHERE action = 'view')""")
    assert 0.035 <= repeat_share <= 0.055  # original: about 4.5%
    never_shown = one(con, "SELECT count(*) FROM post_text_df WHERE post_id NOT IN (SELECT post_id FROM feed_data)")[0]
    assert 10 <= never_shown <= 50  # original: 192 of 7,023 posts never shown


def test_active_days_vary_widely(demo):
    con, _ = demo
    p10, p50, p90 = one(con, """
        SELECT quantile_cont(d, 0.1), quantile_cont(d, 0.5), quantile_cont(d, 0.9) FROM (
            SELECT count(DISTINCT CAST(timestamp AS DATE)) d FROM feed_data GROUP BY user_id)""")
    assert p90 >= 2 * p10 and 3 <= p50 <= 6  # 13 of 90 days in the original, scaled to 30


def test_true_probability_is_learnable_but_not_trivial(demo):
    """Views in the top decile of the true p are liked at least 3x as often as the bottom decile."""
    con, truth = demo
    views = con.execute("SELECT user_id, post_id, timestamp, target FROM feed_data WHERE action = 'view'").fetchnumpy()
    p = truth.like_probability(views["user_id"], views["post_id"], views["timestamp"])
    liked = views["target"].astype(bool)
    assert p.mean() == pytest.approx(liked.mean(), abs=0.005)
    low, high = np.quantile(p, [0.1, 0.9])
    bottom, top = liked[p <= low].mean(), liked[p >= high].mean()
    assert top >= 3 * bottom
    assert top <= 0.6  # not trivial: even the best decile is mostly not liked


def _feed(generated):
    return pa.concat_tables(generated.feed_chunks())


def test_same_seed_same_data_other_seed_other_data():
    first, again, other = (build(PRESETS["tiny"], seed) for seed in (3, 3, 4))
    assert first.users.equals(again.users) and first.posts.equals(again.posts)
    assert _feed(first).equals(_feed(again))
    assert not _feed(first).equals(_feed(other))
    assert not first.posts.equals(other.posts)


def test_ground_truth_round_trip_and_unknown_ids(tmp_path):
    generated = build(PRESETS["tiny"], 5)
    generated.truth.save(tmp_path)
    truth = GroundTruth.load(tmp_path)
    users, posts = truth.user_ids[:3], truth.post_ids[-3:]
    times = np.array(["2021-10-01T07:00", "2021-10-01T12:00", "2021-10-01T20:00"], dtype="datetime64[us]")
    assert np.allclose(truth.like_probability(users, posts, times),
                       generated.truth.like_probability(users, posts, times))  # fmt: skip
    with pytest.raises(KeyError, match="1 user ids are not in the ground truth"):
        truth.like_probability([int(truth.user_ids.max()) + 1], posts[:1], times[:1])


def test_generate_refuses_to_overwrite_data(tmp_path):
    source = open_source(f"duckdb:///{tmp_path / 'source.duckdb'}")
    generate_into(source, PRESETS["tiny"], seed=1, replace=False, truth_dir=tmp_path / "truth")
    with pytest.raises(SourceNotEmptyError, match=r"already holds data \(feed_data: [\d,]+ rows, .*\); pass --replace"):
        generate_into(source, PRESETS["tiny"], seed=2, replace=False, truth_dir=tmp_path / "truth")
    generate_into(source, PRESETS["tiny"], seed=2, replace=True, truth_dir=tmp_path / "truth")
    assert GroundTruth.load(tmp_path / "truth").meta["seed"] == 2
