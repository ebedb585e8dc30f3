"""Attribution of likes to exposures: what the A/B analysis counts, per user.

An exposure is one API response (``recsys/exposures.py``): a user, the A/B group that served them,
the feed time the request asked for, and the recommended post ids. A like (a ``like`` row of
``feed_data``) counts for an exposure when its post was among the recommended ones and it came
within the attribution window after the exposure's time: ``time <= like <= time + window``.
A like counts once, however many exposures showed its post (it is dated by the first of them).

Per user: exposures, posts shown, likes (all the user's likes in the experiment period: from the
first exposure to the last one plus the window), attributed likes, hit (at least one attributed
like). A user served by both groups (after a salt change, say) cannot be compared: such users are
reported and left out of ``per_user``.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa

from recsys.sources import quiet_duckdb

log = logging.getLogger(__name__)

LIKE_SCHEMA = pa.schema([("user_id", pa.int64()), ("post_id", pa.int64()), ("timestamp", pa.timestamp("us"))])


@dataclass
class Attribution:
    per_user: pd.DataFrame  # user_id, exp_group, exposures, shown, likes, attributed_likes, hit
    daily: pd.DataFrame  # day, exp_group, users, exposures, attributed_likes, hits (users with one that day)
    both_groups: pd.DataFrame  # user_id, control_exposures, test_exposures: excluded from per_user
    period: tuple[dt.datetime, dt.datetime] | None  # first exposure, last exposure + window


def attribute(exposures: pa.Table, likes: pa.Table, window: dt.timedelta) -> Attribution:
    """exposures: rows of the exposure log (at least user_id, exp_group, time, post_ids);
    likes: user_id, post_id, timestamp of like events (any superset of the period is fine)."""
    con = quiet_duckdb()
    con.register("exposure", exposures.select(["request_id", "user_id", "exp_group", "time", "post_ids"]))
    con.register("like_event", likes.select(LIKE_SCHEMA.names).cast(LIKE_SCHEMA))
    window_us = int(window / dt.timedelta(microseconds=1))
    con.execute(f"""
        CREATE TEMP TABLE attributed AS
        SELECT l.user_id, l.post_id, l.timestamp, min(s.time) AS exposure_time
        FROM like_event l
        JOIN (SELECT user_id, time, unnest(post_ids) AS post_id FROM exposure) s
          ON s.user_id = l.user_id AND s.post_id = l.post_id
         AND l.timestamp BETWEEN s.time AND s.time + to_microseconds({window_us})
        GROUP BY ALL""")
    first, last = con.execute("SELECT min(time), max(time) FROM exposure").fetchall()[0]
    period = None if first is None else (first, last + window)
    con.execute("""
        CREATE TEMP TABLE user_group AS
        SELECT user_id, any_value(exp_group) AS exp_group, count(DISTINCT exp_group) AS groups,
               count(*) FILTER (exp_group = 'control') AS control_exposures,
               count(*) FILTER (exp_group = 'test') AS test_exposures
        FROM exposure GROUP BY user_id""")
    per_user = con.execute("""
        SELECT g.user_id, g.exp_group, e.exposures, e.shown,
               coalesce(l.likes, 0) AS likes, coalesce(a.attributed_likes, 0) AS attributed_likes,
               coalesce(a.attributed_likes, 0) > 0 AS hit
        FROM user_group g
        JOIN (SELECT user_id, count(*) AS exposures, sum(len(post_ids)) AS shown FROM exposure GROUP BY ALL) e
          USING (user_id)
        LEFT JOIN (SELECT user_id, count(*) AS likes FROM like_event
                   WHERE timestamp BETWEEN $start AND $end GROUP BY ALL) l USING (user_id)
        LEFT JOIN (SELECT user_id, count(*) AS attributed_likes FROM attributed GROUP BY ALL) a USING (user_id)
        WHERE g.groups = 1
        ORDER BY g.user_id""", {"start": first, "end": period[1] if period else None}).df()
    daily = con.execute("""
        WITH exposed AS (
            SELECT e.time::DATE AS day, e.exp_group, e.user_id, count(*) AS exposures
            FROM exposure e JOIN user_group g USING (user_id) WHERE g.groups = 1 GROUP BY ALL),
        liked AS (
            SELECT exposure_time::DATE AS day, user_id, count(*) AS attributed_likes FROM attributed GROUP BY ALL)
        SELECT day, exp_group, count(*) AS users, sum(exposures) AS exposures,
               coalesce(sum(attributed_likes), 0) AS attributed_likes, count(liked.user_id) AS hits
        FROM exposed LEFT JOIN liked USING (day, user_id)
        GROUP BY ALL ORDER BY ALL""").df()
    both_groups = con.execute("""
        SELECT user_id, control_exposures, test_exposures FROM user_group WHERE groups > 1 ORDER BY user_id""").df()
    con.close()
    if len(both_groups):
        log.warning("%d users were served by both groups; they are left out of the comparison", len(both_groups))
    return Attribution(per_user, daily, both_groups, period)
