import datetime as dt

import numpy as np
import pandas as pd
import pytest

from recsys import taste


def planted(seed=0, users=600, posts=60, days=4):
    """Random feed with a known effect: users of city "A" like topic "x" far more than anyone else."""
    rng = np.random.default_rng(seed)
    user_frame = pd.DataFrame({
        "user_id": np.arange(users),
        "city": rng.choice(["A", "B", "C"], users),
        "age": rng.integers(14, 70, users),
        "gender": rng.integers(0, 2, users),
    })  # fmt: skip
    post_frame = pd.DataFrame({"post_id": np.arange(posts) + 1000, "topic": np.where(np.arange(posts) % 2, "x", "y"),
                               "cluster": np.arange(posts) % 4})  # fmt: skip
    rows = 40_000
    user, post = rng.integers(0, users, rows), rng.integers(0, posts, rows)
    boosted = (user_frame.city.to_numpy()[user] == "A") & (post_frame.topic.to_numpy()[post] == "x")
    likes = rng.random(rows) < np.where(boosted, 0.4, 0.1)
    day = np.array([dt.date(2021, 1, 1) + dt.timedelta(days=d) for d in range(days)])[rng.integers(0, days, rows)]
    views = pd.DataFrame({"user_id": user, "post_id": post + 1000, "day": day, "views": 1, "likes": likes.astype(int)})
    return views, user_frame, post_frame


def test_the_fit_finds_a_planted_city_taste_and_stores_one_fit_per_day():
    views, users, posts = planted()
    tables = taste.fit_daily(views, users, posts)
    city_topic = tables["city_topic"]
    assert sorted(city_topic["day"].unique()) == sorted(views["day"].unique())
    last = city_topic[city_topic["day"] == city_topic["day"].max()].set_index(["city", "topic"])["effect"]
    # log-odds of 0.4 vs 0.1 is 1.8: shrunk by the prior, but far above every other city and topic.
    assert last[("A", "x")] > 0.8
    others = last.drop(("A", "x"))
    assert others.abs().max() < 0.5 * last[("A", "x")]
    assert set(tables["global"].columns) == {"age_mean", "age_sd", "gender_mean", "day"}


def test_an_effect_seen_on_few_views_is_shrunk_toward_zero():
    views, users, posts = planted()
    early = taste.fit_daily(views[views["day"] == views["day"].min()], users, posts)["city_topic"]
    late = taste.fit_daily(views, users, posts)["city_topic"]

    def effect(tables):
        last = tables[tables["day"] == tables["day"].max()]
        return last.set_index(["city", "topic"])["effect"][("A", "x")]

    assert 0 < effect(early) < effect(late)


def test_a_fit_depends_only_on_its_own_and_earlier_days():
    views, users, posts = planted()
    first_days = sorted(views["day"].unique())[:2]
    alone = taste.fit_daily(views[views["day"].isin(first_days)], users, posts)["post"]
    within = taste.fit_daily(views, users, posts)["post"]
    within = within[within["day"].isin(first_days)].reset_index(drop=True)
    pd.testing.assert_frame_equal(alone.reset_index(drop=True), within)


@pytest.mark.parametrize("missing", ["city", "age"])
def test_users_without_a_city_or_age_still_fit(missing):
    views, users, posts = planted()
    users[missing] = users[missing].astype(object)
    users.loc[users.index % 3 == 0, missing] = None
    tables = taste.fit_daily(views, users, posts)
    assert np.isfinite(tables["post"]["effect"]).all()
