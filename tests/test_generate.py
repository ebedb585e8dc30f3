"""The generator against the facts file (../shared/karpov-data-facts.md), with stated tolerances, and the
dynamic world against its own rules."""

import hashlib
import json

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from recsys.generate import DAY_SECONDS, PRESETS, SECOND, SourceNotEmptyError, build, generate_into
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
    assert truth.meta["world"] == "static" and not truth.is_dynamic


def test_truth_saved_before_worlds_existed_loads_as_static(tmp_path):
    generated = build(PRESETS["tiny"], 5)
    generated.truth.save(tmp_path)
    meta = json.loads((tmp_path / "truth.json").read_text())
    del meta["world"]
    (tmp_path / "truth.json").write_text(json.dumps(meta))
    truth = GroundTruth.load(tmp_path)
    users, posts = np.meshgrid(truth.user_ids[:20], truth.post_ids[:20])
    time = np.datetime64("2021-10-09T15:00", "us")
    assert not truth.is_dynamic
    assert np.array_equal(truth.like_probability(users, posts, time),
                          generated.truth.like_probability(users, posts, time))  # fmt: skip


def test_generate_refuses_to_overwrite_data(tmp_path):
    source = open_source(f"duckdb:///{tmp_path / 'source.duckdb'}")
    generate_into(source, PRESETS["tiny"], seed=1, replace=False, truth_dir=tmp_path / "truth")
    with pytest.raises(SourceNotEmptyError, match=r"already holds data \(feed_data: [\d,]+ rows, .*\); pass --replace"):
        generate_into(source, PRESETS["tiny"], seed=2, replace=False, truth_dir=tmp_path / "truth")
    generate_into(source, PRESETS["tiny"], seed=2, replace=True, truth_dir=tmp_path / "truth")
    assert GroundTruth.load(tmp_path / "truth").meta["seed"] == 2


# --- the static world stays what it was ------------------------------------------------------------
# Computed on the code before the dynamic world existed.
STATIC_TINY_SEED_1_SHA256 = "4671f254a7d873580b6e8c06e1b1f03af2840d678e6c70cb877ff9f0eaf550d3"


def _world_checksum(generated) -> str:
    digest = hashlib.sha256()
    for table in (generated.users, generated.posts, _feed(generated)):
        for name in table.column_names:
            values = table[name].to_numpy()
            digest.update("\x00".join(map(str, values)).encode() if values.dtype == object else values.tobytes())
    truth = generated.truth
    for name in ("user_ids", "post_ids", "user_bias", "post_quality", "post_subtheme", "taste"):
        digest.update(getattr(truth, name).tobytes())
    digest.update(repr((truth.intercept, truth.hour_amplitude, truth.hour_peak)).encode())
    return digest.hexdigest()


def test_static_world_is_unchanged_for_a_seed():
    assert _world_checksum(build(PRESETS["tiny"], 1)) == STATIC_TINY_SEED_1_SHA256


# --- the dynamic world ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dynamic():
    """The tiny preset's dynamic world in memory, with its feed as numpy columns."""
    generated = build(PRESETS["tiny"], 1, world="dynamic")
    feed = _feed(generated)
    columns = {name: feed[name].to_numpy(zero_copy_only=False) for name in feed.column_names}
    columns["timestamp"] = columns["timestamp"].astype("datetime64[us]")
    return generated, columns


def test_dynamic_world_same_seed_same_data_and_shares_the_static_population(dynamic):
    generated, _ = dynamic
    again = build(PRESETS["tiny"], 1, world="dynamic")
    assert _feed(generated).equals(_feed(again))
    static = build(PRESETS["tiny"], 1)
    assert generated.users.equals(static.users) and generated.posts.equals(static.posts)
    assert not _feed(generated).equals(_feed(static))
    assert generated.truth.meta["world"] == "dynamic"


def test_dynamic_no_view_or_like_before_the_post_is_published(dynamic):
    generated, feed = dynamic
    truth = generated.truth
    published = truth.post_published[truth.post_index(feed["post_id"])]
    assert (feed["timestamp"] >= published).all()
    start = np.datetime64(generated.truth.meta["preset"]["start"], "us")
    assert (truth.post_published < start).mean() == pytest.approx(0.2, abs=0.01)  # some exist at the start
    assert (truth.post_published > start + np.timedelta64(7, "D")).any()  # the rest come over the period


def test_dynamic_truth_falls_with_age_and_is_zero_before_publication(dynamic, tmp_path):
    generated, _ = dynamic
    generated.truth.save(tmp_path)
    truth = GroundTruth.load(tmp_path)  # what evaluation reads
    user = truth.user_ids[0]
    day = np.timedelta64(1, "D")
    fresh, aged = truth.post_published + day, truth.post_published + 8 * day
    p_fresh = truth.like_probability(user, truth.post_ids, fresh)
    p_aged = truth.like_probability(user, truth.post_ids, aged)
    # Where the sub-theme's trend is the same at both times, age alone moves the probability.
    same_trend = truth.trend_at(truth.post_subtheme, fresh) == truth.trend_at(truth.post_subtheme, aged)
    assert same_trend.sum() >= 50
    assert (p_aged[same_trend] < p_fresh[same_trend]).all()
    before = truth.like_probability(user, truth.post_ids, truth.post_published - np.timedelta64(1, "s"))
    assert (before == 0).all()
    assert np.array_equal(p_fresh, generated.truth.like_probability(user, truth.post_ids, fresh))


def test_dynamic_trending_subtheme_rises_during_its_burst(dynamic):
    generated, _ = dynamic
    truth = generated.truth
    step = np.timedelta64(int(truth.trend_step_hours * 3600 * SECOND), "us")
    # Each sub-theme's highest point, against the same hour 5 days earlier (before any burst's start);
    # the post of that sub-theme published by then that fades least.
    peak_step = truth.trend.argmax(axis=1)
    peak = truth.trend_start + peak_step * step
    earlier = peak - np.timedelta64(5, "D")
    flat_before = truth.trend_at(np.arange(len(truth.subthemes)), earlier) == 0
    candidates = [(truth.trend[s, peak_step[s]], s) for s in np.flatnonzero(flat_before)
                  if (truth.post_published[truth.post_subtheme == s] < earlier[s]).any()]  # fmt: skip
    height, subtheme = max(candidates)
    assert height >= 0.5
    posts = np.flatnonzero((truth.post_subtheme == subtheme) & (truth.post_published < earlier[subtheme]))
    post = posts[np.argmin(truth.post_decay[posts])]
    user = truth.user_ids[:1]
    p_before, p_peak = (truth.like_probability(user, truth.post_ids[post], time)
                        for time in (earlier[subtheme], peak[subtheme]))  # fmt: skip
    assert p_peak > p_before
    logit = np.log(p_peak / (1 - p_peak)) - np.log(p_before / (1 - p_before))
    assert logit == pytest.approx(height - 5 * truth.post_decay[post], abs=1e-4)


def test_dynamic_users_have_no_views_before_joining(dynamic):
    generated, feed = dynamic
    truth = generated.truth
    start = np.datetime64(truth.meta["preset"]["start"], "us")
    view_day = (feed["timestamp"] - start).astype(np.int64) // (DAY_SECONDS * SECOND)
    joined = generated.joined_day[truth.user_index(feed["user_id"])]
    assert (view_day >= joined).all()
    late = np.unique(feed["user_id"][joined > 0])
    assert len(late) >= 0.4 * len(truth.user_ids)  # most users arrive during the period, and they are active


def test_dynamic_exposure_favours_recent_posts(dynamic):
    generated, feed = dynamic
    truth = generated.truth
    views = feed["action"] == "view"
    times = feed["timestamp"][views].astype(np.int64)
    published = truth.post_published.astype(np.int64)  # sorted: ids grow with publication
    viewed_age = times - published[truth.post_index(feed["post_id"][views])]
    # The mean age of all posts published by each view's time.
    available = np.searchsorted(published, times, side="right")
    catalogue_age = times - np.r_[0, np.cumsum(published)][available] / available
    assert viewed_age.mean() < 0.75 * catalogue_age.mean()  # a uniform feed: about 1; the demo preset: 0.5
    per_post = np.sort(np.bincount(truth.post_index(feed["post_id"][views])))
    gini = (2 * np.arange(1, len(per_post) + 1) - len(per_post) - 1) @ per_post / (len(per_post) * per_post.sum())
    assert gini > 0.45  # a uniform feed: about 0.1


def test_dynamic_tiny_through_generate_into_duckdb(tmp_path):
    source = open_source(f"duckdb:///{tmp_path / 'source.duckdb'}")
    summary = generate_into(source, PRESETS["tiny"], seed=1, replace=False, truth_dir=tmp_path / "truth",
                            world="dynamic")  # fmt: skip
    assert summary["world"] == "dynamic" and summary["feed_rows"] > 0
    truth = GroundTruth.load(tmp_path / "truth")
    assert truth.is_dynamic and truth.meta["world"] == "dynamic"
    con = duckdb.connect(str(tmp_path / "source.duckdb"), read_only=True)
    views = con.execute("SELECT user_id, post_id, timestamp, target FROM feed_data WHERE action = 'view'").fetchnumpy()
    likes, liked_views = one(
        con, "SELECT count(*) FILTER (action = 'like'), count(*) FILTER (target = 1) FROM feed_data"
    )
    con.close()
    assert likes == liked_views > 0
    p = truth.like_probability(views["user_id"], views["post_id"], views["timestamp"])
    assert (p > 0).all()
    assert p.mean() == pytest.approx(0.12, abs=0.015)  # the intercept is solved for the views
    # Below that: the tiny catalogue runs dry, and a repeat view of a liked post cannot be liked again.
    assert 0.08 <= views["target"].mean() <= 0.13
