"""Point-in-time features: nothing after an example's time reaches its features."""

import datetime as dt
import shutil

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from recsys import taste
from recsys.features import FeatureStore, ServingFeatures, evidence_split, sample_views, time_split, with_cohorts
from recsys.text_features import tfidf_components


@pytest.fixture(scope="module")
def vectors(tiny_extract):
    path, _ = tiny_extract
    posts = pq.read_table(path / "post_text_df.parquet")
    return posts.column("post_id").to_numpy(), {"control": tfidf_components(posts.column("text").to_pylist())}


def truncated_copy(extract, before: pd.Timestamp, target):
    """The same extract without any feed event at or after `before`."""
    target.mkdir()
    for name in ("user_data.parquet", "post_text_df.parquet"):
        shutil.copy(extract / name, target / name)
    with duckdb.connect() as con:
        con.execute(f"""
            COPY (SELECT * FROM read_parquet('{extract}/feed_data/*/*.parquet', hive_partitioning = true)
                  WHERE timestamp < TIMESTAMP '{before}')
            TO '{target / "feed_data"}' (FORMAT parquet, PARTITION_BY (day))""")
    return target


@pytest.mark.parametrize("moment", ["2021-10-06 07:00", "2021-10-09 15:30:10", "2021-10-13 23:59"])
def test_deleting_all_events_after_t_changes_no_feature_at_t(tiny_extract, vectors, tmp_path, moment):
    extract, _ = tiny_extract
    t = pd.Timestamp(moment)
    full = FeatureStore(extract, *vectors)
    cut = FeatureStore(truncated_copy(extract, t, tmp_path / "cut"), *vectors)
    users = full.con.execute("SELECT DISTINCT user_id FROM views ORDER BY 1 LIMIT 60").fetchnumpy()["user_id"]
    examples = pd.DataFrame({"user_id": np.repeat(users, 40), "post_id": np.tile(full.post_ids[:40], len(users))})
    examples["timestamp"] = t
    at_t = full.features(examples, "control")
    pd.testing.assert_frame_equal(at_t, cut.features(examples, "control"))
    # The test has teeth: the history is not empty, and a day later it differs.
    assert at_t["user_views"].gt(0).mean() > 0.3 and at_t["sim_liked"].notna().any()
    assert at_t["post_likes_1d"].gt(0).any() and at_t["user_days_since_active"].notna().any()
    later = full.features(examples.assign(timestamp=t + pd.Timedelta(days=1)), "control")
    assert not later["user_views"].equals(at_t["user_views"])
    assert not later["post_likes_1d"].equals(at_t["post_likes_1d"])


def test_an_example_never_sees_its_own_outcome(tiny_extract, vectors):
    """A view's own like counts in the user's and post's history only from the next day on."""
    extract, _ = tiny_extract
    store = FeatureStore(extract, *vectors)
    view = store.con.execute(
        "SELECT user_id, post_id, timestamp FROM views WHERE target = 1 ORDER BY timestamp LIMIT 1"
    ).df()
    same_day = store.features(view, "control").iloc[0]
    next_day = store.features(view.assign(timestamp=view["timestamp"] + pd.Timedelta(days=1)), "control").iloc[0]
    assert same_day["user_likes"] == 0 and same_day["post_views"] == 0  # the first like of the log
    assert next_day["user_likes"] >= 1 and next_day["post_views"] >= 1


def test_unknown_users_and_posts_get_empty_history_not_errors(tiny_extract, vectors):
    store = FeatureStore(tiny_extract[0], *vectors)
    frame = store.features(pd.DataFrame({"user_id": [10**8], "post_id": [10**8],
                                         "timestamp": [pd.Timestamp("2021-10-10 12:00")]}), "control")  # fmt: skip
    row = frame.iloc[0]
    assert row["city"] == "" and row["topic"] == "" and row["user_views"] == 0 and np.isnan(row["text_0"])


def test_text_vectors_follow_post_ids_not_row_order(tiny_extract, vectors):
    post_ids, by_space = vectors
    reverse = {space: matrix[::-1] for space, matrix in by_space.items()}
    examples = pd.DataFrame({"user_id": 0, "post_id": post_ids[:5], "timestamp": pd.Timestamp("2021-10-05")})
    forward = FeatureStore(tiny_extract[0], post_ids, by_space).features(examples, "control")
    backward = FeatureStore(tiny_extract[0], post_ids[::-1], reverse).features(examples, "control")
    pd.testing.assert_frame_equal(forward, backward)
    assert forward["text_0"].to_numpy() == pytest.approx(by_space["control"][:5, 0])


def test_text_clusters_are_found_in_the_cluster_vectors(tiny_extract, vectors):
    post_ids, by_space = vectors
    halves = np.arange(len(post_ids)) % 2  # two groups the components know nothing of
    fuller = {"control": np.eye(2, dtype=np.float32)[halves] + 0.01 * by_space["control"][:, :2]}
    store = FeatureStore(tiny_extract[0], post_ids, by_space, text_clusters=2, cluster_vectors=fuller)
    labels = store.entities("control")[1].set_index("post_id").loc[post_ids, "cluster"].to_numpy()
    assert (labels == halves).all() or (labels == 1 - halves).all()


def test_time_split_keeps_test_days_last_and_apart():
    split = time_split(dt.date(2021, 10, 1), dt.date(2021, 10, 30), valid_days=4, test_days=5)
    assert split.train == (dt.date(2021, 10, 1), dt.date(2021, 10, 21))
    assert split.valid == (dt.date(2021, 10, 22), dt.date(2021, 10, 25))
    assert split.test == (dt.date(2021, 10, 26), dt.date(2021, 10, 30))
    with pytest.raises(ValueError, match="covers 9 days .* leave no training days"):
        time_split(dt.date(2021, 10, 1), dt.date(2021, 10, 9), valid_days=4, test_days=5)


def test_training_sample_covers_the_population_and_is_repeatable(tiny_extract, vectors):
    store = FeatureStore(tiny_extract[0], *vectors)
    first, last = dt.date(2021, 10, 1), dt.date(2021, 10, 10)
    sample = sample_views(store, first, last, max_rows=4_000, seed=1)
    (total_users,) = store.con.execute(
        f"SELECT count(DISTINCT user_id) FROM views WHERE day BETWEEN DATE '{first}' AND DATE '{last}'"
    ).fetchone()
    assert 3_000 < len(sample) < 5_000
    assert sample["user_id"].nunique() > 0.8 * total_users  # a row sample, not whole users
    assert sample.equals(sample_views(store, first, last, max_rows=4_000, seed=1))
    assert not sample.equals(sample_views(store, first, last, max_rows=4_000, seed=2))


@pytest.mark.parametrize("as_of", ["2021-10-08", "2021-10-15"])
def test_serving_features_equal_the_feature_query(tiny_extract, vectors, as_of):
    """Precompute and fresh users build features from arrays; they must be the query's features."""
    store = FeatureStore(tiny_extract[0], *vectors)
    users, posts = store.entities("control")
    serving = ServingFeatures(store.history_as_of("control", as_of), posts, vectors[1]["control"])
    chosen = users.iloc[::7].reset_index(drop=True)
    # Candidates in a different order per user, as precompute may give them.
    candidates = np.stack([np.random.default_rng(u).permutation(len(posts)) for u in range(len(chosen))])
    post_index = candidates.ravel()
    when = pd.Timestamp(as_of) + pd.Timedelta(hours=19, minutes=30)
    examples = pd.DataFrame({"user_id": np.repeat(chosen["user_id"], len(posts)).to_numpy(),
                             "post_id": posts["post_id"].to_numpy()[post_index], "timestamp": when})  # fmt: skip
    expected = store.features(examples, "control", as_of_day=as_of)
    actual = serving.features(chosen, candidates, when)
    pd.testing.assert_frame_equal(actual, expected, check_dtype=False)
    assert expected["user_views"].gt(0).any() and expected["cohort_cluster_like_rate"].nunique() > 1
    assert expected["taste_model_logit"].notna().all() and expected["taste_model_logit"].nunique() > 1
    assert expected["collab_score"].notna().any() and expected["post_likes_7d"].nunique() > 1


def test_a_store_loads_the_taste_fits_another_store_saved(tiny_extract, vectors, tmp_path, monkeypatch):
    """The nightly tasks of a version fit the taste model once; the others load it, to the same features."""
    examples = sample_views(FeatureStore(tiny_extract[0], *vectors), dt.date(2021, 10, 3), dt.date(2021, 10, 14),
                            2_000, seed=1)  # fmt: skip
    fitted = FeatureStore(tiny_extract[0], *vectors, taste_dir=tmp_path).features(examples, "control")
    assert sorted(p.name for p in (tmp_path / "control").iterdir()) == sorted(f"{n}.parquet" for n in taste.TABLES)

    def no_fit(*args):
        raise AssertionError("fitted again")

    monkeypatch.setattr(taste, "fit_daily", no_fit)
    loaded = FeatureStore(tiny_extract[0], *vectors, taste_dir=tmp_path).features(examples, "control")
    pd.testing.assert_frame_equal(loaded, fitted)


def test_a_user_unknown_to_the_history_gets_group_features(tiny_extract, vectors):
    """A fresh user has no history of their own, but their cohort and city have one."""
    store = FeatureStore(tiny_extract[0], *vectors)
    users, posts = store.entities("control")
    serving = ServingFeatures(store.history_as_of("control", "2021-10-15"), posts, vectors[1]["control"])
    fresh = with_cohorts(users.drop(columns="cohort").iloc[[0]].assign(user_id=10**9))
    frame = serving.features(fresh, np.arange(len(posts))[None, :], pd.Timestamp("2021-10-15 09:00"))
    assert (frame["user_views"] == 0).all() and frame["sim_liked"].isna().all()
    assert frame["cohort_sim_taste"].notna().all() and frame["post_like_rate"].nunique() > 1
    # With no views of their own, a user's rate on a cluster is what the levels above predict: the
    # cluster's rate for everyone (their own overall rate is everyone's).
    assert np.allclose(frame["user_cluster_lift"], 1.0)
    assert np.allclose(frame["user_cluster_like_rate"], frame["cluster_like_rate"])
    assert frame["city_cluster_lift"].nunique() > 1 and frame["group_taste_logit"].notna().all()


def test_recent_windows_count_the_likes_of_the_days_just_before(tiny_extract, vectors):
    store = FeatureStore(tiny_extract[0], *vectors)
    day = dt.date(2021, 10, 11)
    counts = store.con.execute(f"""
        SELECT post_id,
               count_if(target = 1 AND day = DATE '{day}' - 1) AS likes_1d,
               count_if(target = 1 AND day >= DATE '{day}' - 7 AND day < DATE '{day}') AS likes_7d,
               count_if(day >= DATE '{day}' - 7 AND day < DATE '{day}') AS views_7d,
               min(day) AS first_day
        FROM views WHERE day < DATE '{day}' GROUP BY post_id ORDER BY post_id""").df()
    (user_id,) = store.con.execute("SELECT min(user_id) FROM views").fetchall()[0]
    examples = pd.DataFrame({"user_id": user_id, "post_id": counts["post_id"],
                             "timestamp": pd.Timestamp(day) + pd.Timedelta(hours=6)})  # fmt: skip
    frame = store.features(examples, "control")
    assert counts["likes_7d"].gt(counts["likes_1d"]).any()  # the windows differ
    np.testing.assert_array_equal(frame["post_likes_1d"], counts["likes_1d"])
    np.testing.assert_array_equal(frame["post_likes_7d"], counts["likes_7d"])
    np.testing.assert_array_equal(frame["post_views_7d"], counts["views_7d"])
    age = (pd.Timestamp(day) + pd.Timedelta(hours=6) - pd.to_datetime(counts["first_day"])) / pd.Timedelta(days=1)
    np.testing.assert_allclose(frame["post_age_days"], age)


def test_a_user_recent_likes_fade_with_the_days_since_they_were_active(tiny_extract, vectors):
    store = FeatureStore(tiny_extract[0], *vectors)
    user_id, last_day = store.con.execute("""
        SELECT user_id, max(day) FROM views WHERE day < DATE '2021-10-08' GROUP BY user_id
        HAVING sum(target) > 0 ORDER BY user_id LIMIT 1""").fetchall()[0]
    post_id = int(store.post_ids[0])
    frames = [store.features(pd.DataFrame({"user_id": [user_id], "post_id": [post_id],
                                           "timestamp": [pd.Timestamp(last_day) + pd.Timedelta(days=gap, hours=9)]}),
                             "control") for gap in (1, 8)]  # fmt: skip
    near, far = frames
    assert near["user_days_since_active"].iloc[0] == 1
    if far["user_days_since_active"].iloc[0] == 8:  # no activity in between: the same likes, a week older
        assert far["user_recent_likes"].iloc[0] == pytest.approx(near["user_recent_likes"].iloc[0] / 2)
    assert near["user_recent_likes"].iloc[0] > 0


def test_a_sparse_last_week_widens_the_test_window_and_the_rule_says_so():
    days = [dt.date(2021, 10, 1) + dt.timedelta(days=d) for d in range(30)]
    busy = {day: 800 for day in days}
    split, rule = evidence_split(busy, valid_days=4, min_test_days=1, min_test_user_days=3_000)
    assert split.test == (dt.date(2021, 10, 27), dt.date(2021, 10, 30))  # 4 days hold 3,200 user-days
    assert "the last 4 day(s), holding 3,200 user-days" in rule
    sparse = {day: (800 if day < dt.date(2021, 10, 26) else 20) for day in days}
    split, rule = evidence_split(sparse, valid_days=4, min_test_days=1, min_test_user_days=3_000)
    assert split.test == (dt.date(2021, 10, 22), dt.date(2021, 10, 30))  # 5 sparse days of 100, then 4 busy days
    assert split.valid == (dt.date(2021, 10, 18), dt.date(2021, 10, 21))
    thin = {day: 10 for day in days}
    split, rule = evidence_split(thin, valid_days=4, min_test_days=1, min_test_user_days=3_000)
    assert split.test == (dt.date(2021, 10, 21), dt.date(2021, 10, 30)) and "thinner than asked" in rule
