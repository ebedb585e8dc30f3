"""Attribution on hand-built logs, where the right answer is known."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa

from recsys.attribution import attribute
from recsys.exposures import SCHEMA

T0 = dt.datetime(2026, 11, 2, 9, 0)
HOUR = dt.timedelta(hours=1)


def exposures(*rows) -> pa.Table:
    """rows: (user_id, exp_group, time, post_ids)."""
    full = [(f"r{i}", user, group, "v1", "s1", False, time, time, posts, group)
            for i, (user, group, time, posts) in enumerate(rows)]  # fmt: skip
    columns = list(zip(*full, strict=True)) or [()] * len(SCHEMA)
    return pa.table([pa.array(column, field.type) for field, column in zip(SCHEMA, columns, strict=True)],
                    schema=SCHEMA)  # fmt: skip


def likes(*rows) -> pa.Table:
    """rows: (user_id, post_id, timestamp)."""
    users, posts, times = zip(*rows, strict=True) if rows else ((), (), ())
    return pa.table({"user_id": pa.array(users, pa.int64()), "post_id": pa.array(posts, pa.int64()),
                     "timestamp": pa.array(times, pa.timestamp("us"))})  # fmt: skip


def by_user(result) -> dict[int, dict]:
    return {row["user_id"]: row for row in result.per_user.to_dict("records")}


def test_window_edges_are_inclusive_and_nothing_outside_counts():
    result = attribute(
        exposures((1, "control", T0, [10, 11, 12])),
        likes(
            (1, 10, T0),  # at the exposure: counts
            (1, 11, T0 + HOUR),  # at the window's end: counts
            (1, 12, T0 + HOUR + dt.timedelta(microseconds=1)),  # just after it: no
            (1, 12, T0 - dt.timedelta(seconds=1)),  # before the exposure: no
        ),
        HOUR,
    )
    user = by_user(result)[1]
    assert (user["exposures"], user["shown"], user["attributed_likes"], user["hit"]) == (1, 3, 2, True)
    assert user["likes"] == 2  # the experiment period is [first exposure, last exposure + window]


def test_likes_on_posts_not_recommended_or_by_other_users_do_not_count():
    result = attribute(
        exposures((1, "test", T0, [10, 11]), (2, "test", T0, [20])),
        likes((1, 99, T0 + dt.timedelta(minutes=5)), (2, 10, T0 + dt.timedelta(minutes=5))),
        HOUR,
    )
    users = by_user(result)
    assert (users[1]["likes"], users[1]["attributed_likes"], users[1]["hit"]) == (1, 0, False)
    assert (users[2]["likes"], users[2]["attributed_likes"], users[2]["hit"]) == (1, 0, False)


def test_a_like_counts_once_even_if_several_exposures_showed_the_post():
    result = attribute(
        exposures((1, "control", T0, [10]), (1, "control", T0 + dt.timedelta(minutes=10), [10, 11])),
        likes((1, 10, T0 + dt.timedelta(minutes=20))),
        HOUR,
    )
    assert by_user(result)[1]["attributed_likes"] == 1
    assert result.daily[["users", "exposures", "attributed_likes", "hits"]].values.tolist() == [[1, 2, 1, 1]]


def test_users_served_by_both_groups_are_reported_and_left_out():
    result = attribute(
        exposures((1, "control", T0, [10]), (1, "test", T0 + HOUR, [10]), (2, "test", T0, [20])),
        likes((1, 10, T0 + dt.timedelta(minutes=1)), (2, 20, T0 + dt.timedelta(minutes=1))),
        HOUR,
    )
    assert result.per_user["user_id"].tolist() == [2]
    assert result.both_groups.to_dict("records") == [{"user_id": 1, "control_exposures": 1, "test_exposures": 1}]
    assert result.daily["users"].sum() == 1


def test_daily_metrics_date_a_like_by_its_first_exposure():
    late = dt.datetime(2026, 11, 2, 23, 50)
    result = attribute(
        exposures((1, "control", late, [10]), (2, "control", late + HOUR, [20]), (3, "test", late, [30])),
        likes((1, 10, late + dt.timedelta(minutes=30)), (2, 20, late + HOUR + dt.timedelta(minutes=1))),
        HOUR,
    )
    daily = {(str(row["day"])[:10], row["exp_group"]): row for row in result.daily.to_dict("records")}
    assert daily[("2026-11-02", "control")]["attributed_likes"] == 1  # liked after midnight, shown before
    assert daily[("2026-11-03", "control")]["hits"] == 1
    assert daily[("2026-11-02", "test")]["hits"] == 0


def test_no_exposures_is_an_empty_result():
    result = attribute(exposures(), likes(), HOUR)
    assert result.per_user.empty and result.daily.empty and result.period is None
