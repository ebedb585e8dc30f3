"""Point-in-time features over an extract, computed with DuckDB.

Every history feature of an example is computed *as of the start of a day*: only events of
earlier days count. A training example on day d sees the history of days before d (so never its
own outcome, nor anything after it); a served recommendation sees the history before the day after
the extract (the data cutoff). One code path serves both: daily cumulative tables joined with
``ASOF JOIN ... ON example.as_of_day > history.day``.

Features of an example (user u, post i, time t, as-of day d):
- user: gender, age, country, city, exp_group, os, source;  post: topic and text components;
- time: hour of day and day of week of t (and the month, for the original's recipe);
- history before d: the user's views, likes, smoothed like-rate and active days; the user's views
  and smoothed like-rate on i's topic; i's views and smoothed like-rate; the cosine similarity of
  i to the posts u liked, and to u's taste direction (mean of liked minus mean of viewed posts),
  both in the model's own text space; the same taste direction of u's cohort (age band and
  gender) and of u's city; i's like-rate among users of u's cohort and the like-rate of i's topic
  among users of u's city.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.sources import quiet_duckdb

log = logging.getLogger(__name__)

USER_CATEGORICAL = ("gender", "country", "city", "exp_group", "os", "source")
CATEGORICAL = (*USER_CATEGORICAL, "topic")
HISTORY = (
    "user_views", "user_likes", "user_like_rate", "user_active_days",
    "user_topic_views", "user_topic_like_rate",
    "post_views", "post_like_rate", "cohort_post_like_rate", "city_topic_like_rate",
)  # fmt: skip
# Taste in text space is learned for the user and for the groups a user belongs to.
PROFILE_GROUPS = ("user_id", "cohort", "city")
SIMILARITY = ("sim_liked", "sim_taste", "cohort_sim_taste", "city_sim_taste")
# A user's cohort: age band and gender (the bands are generic, not fitted to any data set).
COHORT_SQL = (
    "concat(CASE WHEN age < 18 THEN 'a<18' WHEN age < 25 THEN 'a18-24' WHEN age < 35 THEN 'a25-34' "
    "WHEN age < 45 THEN 'a35-44' ELSE 'a45+' END, '/', gender)"
)
COHORT_PRIOR_VIEWS, CITY_TOPIC_PRIOR_VIEWS = 30, 50
# Daily cumulative history: table -> (key columns, rows). The cohort and city tables hold what
# users like this one liked: the demographic side of taste, learned from history.
HISTORY_TABLES = {
    "global_days": ("", "views"),
    "user_days": ("user_id", "views"),
    "user_topic_days": ("user_id, topic", "views JOIN posts USING (post_id)"),
    "post_days": ("post_id", "views"),
    "cohort_post_days": ("post_id, cohort", "views JOIN users USING (user_id)"),
    "city_topic_days": ("city, topic", "views JOIN posts USING (post_id) JOIN users USING (user_id)"),
}
# Pseudo-counts of the smoothed rates: a rate is pulled toward its prior until this many views.
USER_PRIOR_VIEWS, TOPIC_PRIOR_VIEWS, POST_PRIOR_VIEWS = 20, 10, 50


@dataclass(frozen=True)
class Split:
    train: tuple[dt.date, dt.date]
    valid: tuple[dt.date, dt.date]
    test: tuple[dt.date, dt.date]

    def as_dict(self) -> dict:
        return {name: [str(a), str(b)] for name, (a, b) in vars(self).items()}


def time_split(first: dt.date, last: dt.date, valid_days: int, test_days: int) -> Split:
    """Train days, then validation days, then test days (the last ones)."""
    days = (last - first).days + 1
    if days - valid_days - test_days < 1:
        raise ValueError(
            f"the extract covers {days} days ({first}..{last}); RECSYS_VALID_DAYS={valid_days} plus "
            f"RECSYS_TEST_DAYS={test_days} leave no training days"
        )
    test_start = last - dt.timedelta(days=test_days - 1)
    valid_start = test_start - dt.timedelta(days=valid_days)
    return Split(
        train=(first, valid_start - dt.timedelta(days=1)),
        valid=(valid_start, test_start - dt.timedelta(days=1)),
        test=(test_start, last),
    )


def _normalized(vectors: np.ndarray) -> np.ndarray:
    centered = vectors - vectors.mean(axis=0)
    norms = np.linalg.norm(centered, axis=1, keepdims=True)
    return (centered / np.where(norms > 0, norms, 1)).astype(np.float32)


class FeatureStore:
    """One extract in DuckDB, with the daily cumulative history tables built once."""

    def __init__(self, extract_path: Path, post_ids: np.ndarray, post_vectors: dict[str, np.ndarray]):
        """post_vectors: text components per variant, one row per post in the order of post_ids."""
        self.path = extract_path
        self.con = quiet_duckdb()
        self.post_ids = np.asarray(post_ids)
        self.post_vectors = post_vectors
        feed = extract_path / "feed_data" / "*" / "*.parquet"
        self.con.execute(
            f"CREATE TABLE users AS SELECT *, {COHORT_SQL} AS cohort "
            f"FROM read_parquet('{extract_path / 'user_data.parquet'}')"
        )
        order = pd.DataFrame({"post_id": self.post_ids, "post_index": np.arange(len(self.post_ids))})
        self.con.register("post_order", order)
        self.con.execute(
            "CREATE TABLE posts AS SELECT p.*, o.post_index "
            f"FROM read_parquet('{extract_path / 'post_text_df.parquet'}') p LEFT JOIN post_order o USING (post_id)"
        )
        self.con.unregister("post_order")
        self.con.execute(
            "CREATE VIEW views AS SELECT user_id, post_id, timestamp, target, day "
            f"FROM read_parquet('{feed}', hive_partitioning = true) WHERE action = 'view'"
        )
        self._build_history()
        self._profiles_built: set[str] = set()  # per text space, built on first use: a task needs one

    def days(self) -> tuple[dt.date, dt.date]:
        return self.con.execute("SELECT min(day), max(day) FROM views").fetchone()

    def _build_history(self) -> None:
        """Per key and day: views and likes of all days up to and including that day."""
        for table, (keys, source) in HISTORY_TABLES.items():
            window = f"OVER ({f'PARTITION BY {keys} ' if keys else ''}ORDER BY day)"
            self.con.execute(f"""
                CREATE TABLE {table} AS
                SELECT {keys + ',' if keys else ''} day, sum(count(*)) {window} AS views,
                       sum(sum(target)) {window} AS likes, count(*) {window} AS active_days
                FROM {source} GROUP BY {keys + ',' if keys else ''} day""")

    def _build_profiles(self, variant: str) -> None:
        """Per user, cohort and city and day: cumulative sums of liked and of viewed posts' unit vectors."""
        if variant in self._profiles_built:
            return
        self._profiles_built.add(variant)
        unit_vectors = _normalized(self.post_vectors[variant])
        dims = unit_vectors.shape[1]
        vectors = pd.DataFrame(unit_vectors, columns=[f"v{j}" for j in range(dims)])
        vectors.insert(0, "post_id", self.post_ids)
        self.con.register("vectors_frame", vectors)
        self.con.execute(f"CREATE TABLE vectors_{variant} AS SELECT * FROM vectors_frame")
        self.con.unregister("vectors_frame")
        for group in PROFILE_GROUPS:
            window = f"OVER (PARTITION BY {group} ORDER BY day)"
            sums = ", ".join(
                f"sum(sum(target * v{j})) {window} AS liked_{j}, sum(sum(v{j})) {window} AS viewed_{j}"
                for j in range(dims)
            )
            self.con.execute(f"""
                CREATE TABLE profile_{variant}_{group} AS
                SELECT {group}, day, sum(sum(target)) {window} AS liked_n, sum(count(*)) {window} AS viewed_n, {sums}
                FROM views JOIN users USING (user_id) JOIN vectors_{variant} USING (post_id)
                GROUP BY {group}, day""")

    def features(self, examples: pd.DataFrame, variant: str, as_of_day=None) -> pd.DataFrame:
        """Features of examples (user_id, post_id, timestamp[, target]) for one variant.

        as_of_day: the day whose start bounds the history (default: each example's own day).
        """
        self._build_profiles(variant)
        frame = examples[["user_id", "post_id", "timestamp"]].copy()
        frame["example"] = np.arange(len(frame))
        if as_of_day is None:
            frame["as_of_day"] = frame["timestamp"].dt.floor("D")
        else:
            frame["as_of_day"] = pd.Timestamp(as_of_day)
        self.con.register("examples", frame)
        try:
            dims = self.post_vectors[variant].shape[1]
            sums = ("liked_n", "viewed_n", *(f"{kind}_{j}" for j in range(dims) for kind in ("liked", "viewed")))
            profile = ", ".join(
                f"{group}_profile.{column} AS {group}_{column}" for group in PROFILE_GROUPS for column in sums
            )
            profile_joins = "\n".join(
                f"ASOF LEFT JOIN profile_{variant}_{group} {group}_profile ON u.{group} = {group}_profile.{group} "
                f"AND CAST(e.as_of_day AS DATE) > {group}_profile.day"
                for group in PROFILE_GROUPS
            )
            # CatBoost takes categories as strings; a missing value is a level of its own.
            categorical = ", ".join(
                f"coalesce(CAST({'p' if name == 'topic' else 'u'}.{name} AS VARCHAR), '') AS {name}"
                for name in CATEGORICAL
            )
            table = self.con.execute(f"""
                SELECT e.example, {categorical}, u.age, p.post_index,
                       hour(e.timestamp) AS hour, dayofweek(e.timestamp) AS day_of_week,
                       month(e.timestamp) AS month,
                       g.views AS global_views, g.likes AS global_likes,
                       ud.views AS user_views, ud.likes AS user_likes, ud.active_days AS user_active_days,
                       utd.views AS user_topic_views, utd.likes AS user_topic_likes,
                       pd.views AS post_views, pd.likes AS post_likes,
                       cpd.views AS cohort_post_views, cpd.likes AS cohort_post_likes,
                       ctd.views AS city_topic_views, ctd.likes AS city_topic_likes,
                       {profile}
                FROM examples e
                LEFT JOIN users u USING (user_id)
                LEFT JOIN posts p USING (post_id)
                ASOF LEFT JOIN global_days g ON CAST(e.as_of_day AS DATE) > g.day
                ASOF LEFT JOIN user_days ud ON e.user_id = ud.user_id AND CAST(e.as_of_day AS DATE) > ud.day
                ASOF LEFT JOIN user_topic_days utd
                    ON e.user_id = utd.user_id AND p.topic = utd.topic AND CAST(e.as_of_day AS DATE) > utd.day
                ASOF LEFT JOIN post_days pd ON e.post_id = pd.post_id AND CAST(e.as_of_day AS DATE) > pd.day
                ASOF LEFT JOIN cohort_post_days cpd
                    ON e.post_id = cpd.post_id AND u.cohort = cpd.cohort AND CAST(e.as_of_day AS DATE) > cpd.day
                ASOF LEFT JOIN city_topic_days ctd
                    ON u.city = ctd.city AND p.topic = ctd.topic AND CAST(e.as_of_day AS DATE) > ctd.day
                {profile_joins}
                ORDER BY e.example""").fetchnumpy()
        finally:
            self.con.unregister("examples")
        return self._assemble(table, variant, dims)

    def _assemble(self, t: dict, variant: str, dims: int) -> pd.DataFrame:
        def numeric(name):
            return np.ma.filled(np.ma.asarray(t[name]).astype(float), np.nan)

        def filled(name):
            return np.nan_to_num(numeric(name), nan=0.0)

        out = pd.DataFrame({name: t[name] for name in CATEGORICAL})
        for name in ("age", "hour", "day_of_week", "month"):
            out[name] = numeric(name)
        global_rate = filled("global_likes") / np.maximum(filled("global_views"), 1)
        global_rate = np.where(filled("global_views") > 0, global_rate, np.nan)
        user_views, user_likes = filled("user_views"), filled("user_likes")
        out["user_views"], out["user_likes"] = user_views, user_likes
        out["user_like_rate"] = (user_likes + USER_PRIOR_VIEWS * global_rate) / (user_views + USER_PRIOR_VIEWS)
        out["user_active_days"] = filled("user_active_days")
        topic_views = filled("user_topic_views")
        out["user_topic_views"] = topic_views
        out["user_topic_like_rate"] = (filled("user_topic_likes") + TOPIC_PRIOR_VIEWS * out["user_like_rate"]) / (
            topic_views + TOPIC_PRIOR_VIEWS
        )
        post_views = filled("post_views")
        out["post_views"] = post_views
        post_likes = filled("post_likes")
        out["post_like_rate"] = (post_likes + POST_PRIOR_VIEWS * global_rate) / (post_views + POST_PRIOR_VIEWS)
        out["cohort_post_like_rate"] = (filled("cohort_post_likes") + COHORT_PRIOR_VIEWS * out["post_like_rate"]) / (
            filled("cohort_post_views") + COHORT_PRIOR_VIEWS
        )
        out["city_topic_like_rate"] = (filled("city_topic_likes") + CITY_TOPIC_PRIOR_VIEWS * global_rate) / (
            filled("city_topic_views") + CITY_TOPIC_PRIOR_VIEWS
        )

        post_index = numeric("post_index")
        known_post = ~np.isnan(post_index)
        post_index = np.where(known_post, post_index, 0).astype(np.int64)
        components = self.post_vectors[variant][post_index]
        components[~known_post] = np.nan
        for j in range(components.shape[1]):
            out[f"text_{j}"] = components[:, j]

        unit = _normalized(self.post_vectors[variant])[post_index]

        def profile(group):
            liked = np.stack([filled(f"{group}_liked_{j}") for j in range(dims)], axis=1)
            viewed = np.stack([filled(f"{group}_viewed_{j}") for j in range(dims)], axis=1)
            return liked, viewed, filled(f"{group}_liked_n"), filled(f"{group}_viewed_n")

        def taste_similarity(group):
            """The post against the group's taste direction: mean of liked minus mean of viewed posts."""
            liked, viewed, liked_n, viewed_n = profile(group)
            taste = liked / np.maximum(liked_n, 1)[:, None] - viewed / np.maximum(viewed_n, 1)[:, None]
            return np.where(liked_n > 0, (unit * taste).sum(1), np.nan)

        liked = profile("user_id")[0]
        liked_norm = np.linalg.norm(liked, axis=1)
        out["sim_liked"] = np.where(liked_norm > 0, (unit * liked).sum(1) / np.where(liked_norm > 0, liked_norm, 1),
                                    np.nan)  # fmt: skip
        out["sim_taste"] = taste_similarity("user_id")
        out["cohort_sim_taste"] = taste_similarity("cohort")
        out["city_sim_taste"] = taste_similarity("city")
        out.loc[~known_post, list(SIMILARITY)] = np.nan
        return out


def sample_views(store: FeatureStore, first: dt.date, last: dt.date, max_rows: int, seed: int) -> pd.DataFrame:
    """A uniform random sample of the views of days first..last, at most about max_rows.

    A hash of the row decides, so the sample covers every user and day (never LIMIT) and is the same
    on every run.
    """
    (total,) = store.con.execute(
        f"SELECT count(*) FROM views WHERE day BETWEEN DATE '{first}' AND DATE '{last}'"
    ).fetchone()
    rate = min(1.0, max_rows / max(total, 1))
    buckets = 1_000_003
    return store.con.execute(f"""
        SELECT user_id, post_id, timestamp, target FROM views
        WHERE day BETWEEN DATE '{first}' AND DATE '{last}'
          AND hash(user_id, post_id, timestamp, {seed}) % {buckets} < {int(rate * buckets)}
        ORDER BY timestamp, user_id, post_id""").df()
