import datetime as dt

import numpy as np
import pandas as pd
import pytest

from recsys import collab

DAY0 = dt.date(2021, 3, 1)


def days_of(n):
    return [DAY0 + dt.timedelta(days=i) for i in range(n)]


def grouped_likes(seed=0, users=80, posts=24, days=6, rows=1_500):
    """Two taste groups: users of group 0 (even ids) mostly like posts of group 0 (even ids), group 1 the odd ones."""
    rng = np.random.default_rng(seed)
    user = rng.integers(0, users, rows)
    post = rng.integers(0, posts // 2, rows) * 2 + np.where(rng.random(rows) < 0.9, user % 2, 1 - user % 2)
    day = np.array(days_of(days))[rng.integers(0, days, rows)]
    return pd.DataFrame({"user_id": user + 500, "post_id": post + 9000, "day": day})


def at_day(table, day):
    return table[table["day"] == pd.Timestamp(day)]


def test_a_fit_does_not_change_when_likes_of_later_days_are_added():
    days = days_of(8)
    likes = grouped_likes(days=8)
    cut = days[4]
    # Later days bring new users and posts, and more likes of the known ones.
    later = pd.DataFrame({"user_id": [1, 2, 500, 501] * 20, "post_id": [7, 9000, 8, 9001] * 20, "day": days[6]})
    full = collab.fit_daily(pd.concat([likes, later]), days, factors=4)
    early = collab.fit_daily(likes[likes["day"] <= cut], days, factors=4)
    for name in collab.TABLES:
        assert at_day(full[name], days[6]).shape[0] > at_day(early[name], days[6]).shape[0]  # later likes matter
        for day in days[:5]:
            a, b = at_day(full[name], day).reset_index(drop=True), at_day(early[name], day).reset_index(drop=True)
            assert len(a) > 0
            pd.testing.assert_frame_equal(a, b, check_exact=True)
        assert not at_day(full[name], days[7]).equals(at_day(early[name], days[7]))


def test_users_of_a_taste_group_score_their_groups_posts_higher_even_one_they_have_not_liked():
    likes = grouped_likes(users=300, posts=60, rows=2_400)
    user, held_out = 500, 9010  # a group 0 user and a group 0 post: the user likes four others of group 0
    likes = likes[likes["user_id"] != user]
    own_likes = pd.DataFrame({"user_id": user, "post_id": [9000, 9002, 9004, 9006], "day": DAY0})
    likes = pd.concat([likes, own_likes], ignore_index=True)
    assert (likes["post_id"] == held_out).any()  # others in the group liked it
    days = days_of(6)
    tables = collab.fit_daily(likes, days, factors=4, iterations=20)
    users = at_day(tables["users"], days[-1]).set_index("user_id")
    posts = at_day(tables["posts"], days[-1]).set_index("post_id")
    columns = list(collab.value_columns(4))
    scores = pd.Series(
        collab.score(np.repeat(users.loc[[user], columns].to_numpy(), len(posts), axis=0), posts[columns].to_numpy()),
        index=posts.index,
    )
    own, other = scores[(scores.index - 9000) % 2 == 0], scores[(scores.index - 9000) % 2 == 1]
    assert own.min() > other.max()
    assert scores[held_out] > other.max()


def test_every_known_user_and_post_has_a_row_at_every_fit_and_unknown_ones_have_none():
    days = days_of(5)
    likes = grouped_likes(days=3)  # days 0..2
    late = pd.DataFrame({"user_id": [77, 77, 500], "post_id": [9000, 4242, 4242], "day": [days[3], days[3], days[4]]})
    likes = pd.concat([likes, late], ignore_index=True)
    tables = collab.fit_daily(likes, days, factors=4)
    for name, key in (("users", "user_id"), ("posts", "post_id")):
        table = tables[name]
        assert sorted(table["day"].unique()) == [pd.Timestamp(d) for d in days]
        for day in days:
            rows = at_day(table, day)
            assert rows[key].is_unique
            assert set(rows[key]) == set(likes.loc[likes["day"] <= day, key])
            assert np.isfinite(rows[list(collab.value_columns(4))].to_numpy()).all()
    assert 77 not in set(at_day(tables["users"], days[2])["user_id"])
    assert 77 in set(at_day(tables["users"], days[3])["user_id"])
    assert 4242 not in set(at_day(tables["posts"], days[2])["post_id"])


def test_refit_every_third_day_fits_on_every_third_day_and_on_the_last():
    days = days_of(8)
    tables = collab.fit_daily(grouped_likes(days=8), days, factors=4, refit_days=3)
    expected = [pd.Timestamp(days[i]) for i in (2, 5, 7)]
    for name in collab.TABLES:
        assert sorted(tables[name]["day"].unique()) == expected


def test_the_fit_is_deterministic_for_a_seed_whatever_the_row_order():
    days = days_of(6)
    likes = grouped_likes()
    first = collab.fit_daily(likes, days, factors=4, seed=3)
    shuffled = likes.sample(frac=1, random_state=1).reset_index(drop=True)
    again = collab.fit_daily(shuffled, days, factors=4, seed=3)
    other = collab.fit_daily(likes, days, factors=4, seed=4)
    for name in collab.TABLES:
        pd.testing.assert_frame_equal(first[name], again[name], check_exact=True)
        assert not np.array_equal(first[name]["f0"].to_numpy(), other[name]["f0"].to_numpy())


def test_each_fit_starts_from_the_previous_fits_factors():
    # No likes after the first day: a warm start barely moves the factors; a restart from random
    # factors would land elsewhere (the factorization is unique only up to a rotation).
    days = days_of(3)
    likes = grouped_likes(days=1)
    tables = collab.fit_daily(likes, days, factors=4, iterations=30)
    columns = list(collab.value_columns(4))
    first, second = (at_day(tables["users"], d)[columns].to_numpy() for d in days[:2])
    cold = collab.fit_daily(likes, days[:1], factors=4, iterations=collab.WARM_ITERATIONS, seed=1)["users"]
    assert np.abs(second - first).max() < 0.05 * np.abs(first).max()
    assert np.abs(cold[columns].to_numpy() - first).max() > 0.2 * np.abs(first).max()


def test_score_is_the_rowwise_dot_product_and_nan_without_a_fit():
    users = np.array([[1.0, 2.0], [np.nan, np.nan], [0.5, 0.0]])
    posts = np.array([[3.0, 4.0], [1.0, 1.0], [np.nan, np.nan]])
    result = collab.score(users, posts)
    assert result[0] == pytest.approx(11.0)
    assert np.isnan(result[1]) and np.isnan(result[2])
    masked = collab.score(np.ma.masked_invalid(users), np.ma.masked_invalid(posts))
    np.testing.assert_array_equal(np.isnan(masked), [False, True, True])
