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
  gender) and of u's city; i's like-rate among users of u's cohort; the like-rate of i's topic
  among users of u's city, and its lift over the city's overall rate times the topic's;
- text clusters (k-means in the model's text space, so finer than topics): the like-rate of i's
  cluster for everyone, and for u, u's cohort and u's city, each also as a lift over what the level
  above predicts (the city's: over its rate on i's topic). Taste that depends on age or city shows
  here before any single post has enough views to show it.
- the joint taste model (``recsys.taste``): its log-odds for (u, i) from the fit through day d - 1,
  its coefficients stored as daily history tables like the counts above.
- time: i's likes and views in the 1, 3, 7 and 14 days before d, its recent like-rate over its
  long-run one (trend), its age since its first view; u's days since last active and last like, and
  recent likes (decayed); the share of u's likes on i's topic and on i's text cluster.
- co-likes (``recsys.collab``): the dot product of u's and i's factors of the ALS fit through d - 1.

Rates are smoothed: pulled toward the level above until a number of views (constants below) speak.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recsys import collab, taste
from recsys.sources import quiet_duckdb

log = logging.getLogger(__name__)

USER_CATEGORICAL = ("gender", "country", "city", "exp_group", "os", "source")
CATEGORICAL = (*USER_CATEGORICAL, "topic")
HISTORY = (
    "user_views", "user_likes", "user_like_rate", "user_active_days",
    "user_topic_views", "user_topic_like_rate",
    "post_views", "post_like_rate", "cohort_post_like_rate", "city_topic_like_rate", "city_topic_lift",
)  # fmt: skip
# Taste in text space is learned for the user and for the groups a user belongs to.
PROFILE_GROUPS = ("user_id", "cohort", "city")
SIMILARITY = ("sim_liked", "sim_taste", "cohort_sim_taste", "city_sim_taste")
# Like-rates per text cluster: everyone's, and for the user and the groups a user belongs to, each
# also as a lift over what the group's overall rate and the cluster's rate predict together.
CLUSTER_GROUPS = ("user_id", "cohort", "city")
CLUSTER = (
    "cluster_like_rate",
    *(f"{group.removesuffix('_id')}_cluster_{kind}" for group in CLUSTER_GROUPS for kind in ("like_rate", "lift")),
    "group_taste_logit",
)
CLUSTER_PRIOR_VIEWS = 100
# The joint taste model's log-odds of a like (``recsys.taste``), as of the example's day.
TASTE = ("taste_model_logit",)
# A user's cohort: age band and gender (the bands are generic, not fitted to any data set).
COHORT_SQL = (
    "concat(CASE WHEN age < 18 THEN 'a<18' WHEN age < 25 THEN 'a18-24' WHEN age < 35 THEN 'a25-34' "
    "WHEN age < 45 THEN 'a35-44' ELSE 'a45+' END, '/', gender)"
)
COHORT_PRIOR_VIEWS, CITY_TOPIC_PRIOR_VIEWS = 30, 50
# Daily cumulative history: table -> (prefix of its columns in a feature row, key columns, rows). The
# cohort and city tables hold what users like this one liked: the demographic side of taste.
HISTORY_TABLES = {
    "global_days": ("global", (), "views"),
    "topic_days": ("topic", ("topic",), "views JOIN posts USING (post_id)"),
    "user_days": ("user", ("user_id",), "views"),
    "user_topic_days": ("user_topic", ("user_id", "topic"), "views JOIN posts USING (post_id)"),
    "post_days": ("post", ("post_id",), "views"),
    "cohort_post_days": ("cohort_post", ("post_id", "cohort"), "views JOIN users USING (user_id)"),
    "city_topic_days": ("city_topic", ("city", "topic"), "views JOIN posts USING (post_id) JOIN users USING (user_id)"),
}
# Time: a post's likes and views over recent windows (a dense post x day table, so a window always
# ends the day before the example's) and its age; a user's recency and recent likes, decayed by
# RECENT_HALF_LIFE_DAYS from the user's last active day to the example's day.
WINDOW_DAYS = (1, 3, 7, 14)
RECENT_HALF_LIFE_DAYS = 7.0
RECENT_PRIOR_VIEWS = 20
# A news cycle lifts a whole sub-theme: its text cluster's recent like-rate shows it before any one
# post has the views to.
CLUSTER_WINDOW_DAYS = (1, 3)
TIME = (
    *(f"post_{kind}_{days}d" for days in WINDOW_DAYS for kind in ("likes", "views", "trend")),
    "post_age_days", "user_days_since_active", "user_days_since_like", "user_recent_likes",
    "user_topic_like_share", "user_cluster_like_share",
    *(f"cluster_trend_{days}d" for days in CLUSTER_WINDOW_DAYS),
)  # fmt: skip
EPOCH_SQL = "DATE '1970-01-01'"  # day numbers are days since this date
# Co-likes: the dot product of the user's and the post's factors of a matrix factorization of the
# likes (``recsys.collab``), refit through each day (every RECSYS_COLLAB_REFIT_DAYS days).
COLLAB = ("collab_score",)
# Key columns that belong to the user and to the post of an example.
USER_KEYS, POST_KEYS = ("user_id", "cohort", "city"), ("post_id", "topic", "cluster")
# Where an example's value of each key column comes from in the feature query.
KEY_SOURCES = {
    "user_id": "e.user_id", "post_id": "e.post_id", "topic": "p.topic", "cohort": "u.cohort", "city": "u.city",
    "cluster": "c.cluster",
}  # fmt: skip
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


def evidence_split(user_days: dict[dt.date, int], valid_days: int, min_test_days: int,
                   min_test_user_days: int) -> tuple[Split, str]:  # fmt: skip
    """The time split with a test window chosen by evidence, and the rule that chose it, in words.

    user_days: users with a view per day. The test days are the fewest last days that hold at least
    min_test_user_days user-days, at least min_test_days and at most a third of all days; the
    validation days are the valid_days before them; the rest trains.
    """
    first, last = min(user_days), max(user_days)
    days = (last - first).days + 1
    most = max(min_test_days, days // 3)
    held, count = 0, 0
    while count < most and (count < min_test_days or held < min_test_user_days):
        held += user_days.get(last - dt.timedelta(days=count), 0)
        count += 1
    split = time_split(first, last, valid_days, count)
    enough = held >= min_test_user_days
    rule = (f"test days {split.test[0]}..{split.test[1]}: the last {count} day(s), holding {held:,} user-days "
            f"(rule: the fewest last days with at least RECSYS_TEST_USER_DAYS={min_test_user_days:,} user-days and "
            f"RECSYS_TEST_DAYS={min_test_days} days, at most a third of the {days} days"
            f"{'' if enough else '; capped at a third: the evidence is thinner than asked'})")  # fmt: skip
    return split, rule


def _normalized(vectors: np.ndarray) -> np.ndarray:
    centered = vectors - vectors.mean(axis=0)
    norms = np.linalg.norm(centered, axis=1, keepdims=True)
    return (centered / np.where(norms > 0, norms, 1)).astype(np.float32)


class FeatureStore:
    """One extract in DuckDB, with the daily cumulative history tables built once."""

    def __init__(self, extract_path: Path, post_ids: np.ndarray, post_vectors: dict[str, np.ndarray],
                 text_clusters: int = 64, memory_limit: str = "", spill_dir: Path | None = None,
                 taste_day_rows: int = 30_000, taste_dir: Path | None = None,
                 cluster_vectors: dict[str, np.ndarray] | None = None, collab_dir: Path | None = None,
                 collab_refit_days: int = 1):  # fmt: skip
        """post_vectors: text components per variant, one row per post in the order of post_ids.
        cluster_vectors: the vectors each variant's text clusters are found in, rows as post_vectors
        (default: post_vectors themselves).

        taste_day_rows: at most this many views of each day (a hash sample) go into the joint taste
        model's fits (``recsys.taste``). taste_dir: where those fits are kept; a store that finds a
        text space's fits there loads them instead of fitting again (the nightly tasks of a version
        share them).

        collab_dir: where the co-like factors (``recsys.collab``) are kept, like taste_dir;
        collab_refit_days: they are refit every this many days (and through the last day).

        memory_limit: DuckDB's (e.g. "4GB"; empty: its default, 80% of RAM); beyond it DuckDB
        spills to spill_dir.
        """
        self.path = extract_path
        self.con = quiet_duckdb()
        if memory_limit:
            self.con.execute(f"SET memory_limit = '{memory_limit}'")
        if spill_dir is not None:
            spill_dir.mkdir(parents=True, exist_ok=True)
            self.con.execute(f"SET temp_directory = '{spill_dir}'")
        self.post_ids = np.asarray(post_ids)
        self.post_vectors = post_vectors
        self.cluster_vectors = cluster_vectors or post_vectors
        self.text_clusters = text_clusters
        self.taste_day_rows = taste_day_rows
        self.taste_dir = taste_dir
        self.collab_dir, self.collab_refit_days = collab_dir, collab_refit_days
        self._collab_built = False
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
        self._build_time_history()
        self._spaces_built: set[str] = set()  # per text space, built on first use: a task needs one

    def days(self) -> tuple[dt.date, dt.date]:
        return self.con.execute("SELECT min(day), max(day) FROM views").fetchall()[0]

    def _build_history(self) -> None:
        """Per key and day: views and likes of all days up to and including that day."""
        for table, (_, key_columns, source) in HISTORY_TABLES.items():
            keys = ", ".join(key_columns)
            window = f"OVER ({f'PARTITION BY {keys} ' if keys else ''}ORDER BY day)"
            self.con.execute(f"""
                CREATE TABLE {table} AS
                SELECT {keys + "," if keys else ""} day, sum(count(*)) {window} AS views,
                       sum(sum(target)) {window} AS likes, count(*) {window} AS active_days
                FROM {source} GROUP BY {keys + "," if keys else ""} day""")

    def _build_time_history(self) -> None:
        """Per post and calendar day since its first view: likes and views of the last 1..14 days and
        the first day; per user and active day: last active and like days, decayed recent likes."""
        self.con.execute(f"CREATE TABLE post_window_days AS {_window_days_sql('views', 'post_id', WINDOW_DAYS)}")
        # A decayed sum as of a row's day: sum of x_e 2^(-(day - e) / h), with exponents taken from the
        # first day of the extract so that they stay small (h >= 1 day: float64 holds ~1,000 days).
        half_life = RECENT_HALF_LIFE_DAYS
        self.con.execute(f"""
            CREATE TABLE user_activity_days AS
            WITH daily AS (SELECT user_id, day, sum(target) AS likes FROM views GROUP BY ALL),
                 origin AS (SELECT min(day) AS first FROM daily)
            SELECT user_id, day, day - {EPOCH_SQL} AS last_active,
                   max(CASE WHEN likes > 0 THEN day - {EPOCH_SQL} END) OVER w AS last_like,
                   sum(likes * pow(2, (day - first) / {half_life})) OVER w / pow(2, (day - first) / {half_life})
                       AS recent_likes
            FROM daily, origin WINDOW w AS (PARTITION BY user_id ORDER BY day)""")

    def _build_collab(self) -> None:
        """The co-like factors through each day, one table per side (users, posts), built on first use;
        loaded from collab_dir when another task of the version fitted them already."""
        if self._collab_built:
            return
        self._collab_built = True
        for name, frame in _fitted_tables(self.collab_dir, collab.TABLES, self._fit_collab).items():
            self.con.register("collab_frame", frame)
            self.con.execute(f"CREATE TABLE collab_{name} AS SELECT * REPLACE (CAST(day AS DATE) AS day) "
                             "FROM collab_frame")  # fmt: skip
            self.con.unregister("collab_frame")

    def _fit_collab(self) -> dict[str, pd.DataFrame]:
        likes = self.con.execute("SELECT user_id, post_id, day FROM views WHERE target = 1 ORDER BY ALL").df()
        first, last = self.days()
        days = [first + dt.timedelta(days=d) for d in range((last - first).days + 1)]
        return collab.fit_daily(likes, days, refit_days=self.collab_refit_days)

    def _build_text_space(self, variant: str) -> None:
        """The history of a text space: taste profiles and cluster like-rates."""
        if variant in self._spaces_built:
            return
        self._spaces_built.add(variant)
        self._build_profiles(variant)
        self._build_clusters(variant)
        self._build_taste(variant)

    def _build_clusters(self, variant: str) -> None:
        """Per user, cohort and city, text cluster and day: cumulative views and likes."""
        from sklearn.cluster import KMeans

        # Clustered in post_id order, so that the clusters do not depend on the order of the input.
        order = np.argsort(self.post_ids, kind="stable")
        unit_vectors = _normalized(self.cluster_vectors[variant][order])
        clusters = min(self.text_clusters, len(np.unique(unit_vectors, axis=0)))
        labels = KMeans(n_clusters=clusters, n_init=4, random_state=0).fit_predict(unit_vectors)
        self.con.register("clusters_frame", pd.DataFrame({"post_id": self.post_ids[order], "cluster": labels}))
        self.con.execute(f"CREATE TABLE clusters_{variant} AS SELECT * FROM clusters_frame")
        self.con.unregister("clusters_frame")
        window = "OVER (PARTITION BY cluster ORDER BY day)"
        self.con.execute(f"""
            CREATE TABLE cluster_{variant}_all AS
            SELECT cluster, day, sum(count(*)) {window} AS views, sum(sum(target)) {window} AS likes
            FROM views JOIN clusters_{variant} USING (post_id) GROUP BY cluster, day""")
        self.con.execute(f"""
            CREATE TABLE cluster_{variant}_window_days AS
            {_window_days_sql(f"views JOIN clusters_{variant} USING (post_id)", "cluster", CLUSTER_WINDOW_DAYS)}""")
        for group in CLUSTER_GROUPS:
            window = f"OVER (PARTITION BY {group}, cluster ORDER BY day)"
            self.con.execute(f"""
                CREATE TABLE cluster_{variant}_{group} AS
                SELECT {group}, cluster, day, sum(count(*)) {window} AS views, sum(sum(target)) {window} AS likes
                FROM views JOIN users USING (user_id) JOIN clusters_{variant} USING (post_id)
                GROUP BY {group}, cluster, day""")

    def _build_taste(self, variant: str) -> None:
        """The joint taste model's coefficients through each day (``recsys.taste``), one table each."""
        saved = None if self.taste_dir is None else self.taste_dir / variant
        for name, frame in _fitted_tables(saved, taste.TABLES, lambda: self._fit_taste(variant)).items():
            self.con.register("taste_frame", frame)
            columns = ", ".join(f"CAST({c} AS VARCHAR) AS {c}" if c == "city" else c for c in frame.columns)
            self.con.execute(f"CREATE TABLE taste_{variant}_{name} AS SELECT {columns} FROM taste_frame")
            self.con.unregister("taste_frame")

    def _fit_taste(self, variant: str) -> dict[str, pd.DataFrame]:
        buckets = 1_000_003
        # The sample of a day depends on that day's views alone, so a fit never depends on later days.
        views = self.con.execute(f"""
            SELECT user_id, post_id, day, count(*) AS views, sum(target) AS likes
            FROM (SELECT *, count(*) OVER (PARTITION BY day) AS day_views FROM views)
            WHERE hash(user_id, post_id, timestamp) % {buckets}
                  < {buckets} * least(1, {self.taste_day_rows} / day_views)
            GROUP BY ALL ORDER BY day, user_id, post_id""").df()  # a fixed order: the same sums, to the last bit
        users = self.con.execute("SELECT user_id, city, age, gender FROM users").df()
        posts = self.con.execute(
            f"SELECT post_id, topic, cluster FROM posts JOIN clusters_{variant} USING (post_id)"
        ).df()
        return taste.fit_daily(views, users, posts)

    def _build_profiles(self, variant: str) -> None:
        """Per user, cohort and city and day: cumulative sums of liked and of viewed posts' unit vectors."""
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

    def history_joins(self, variant: str) -> list[tuple[str, str, tuple[str, ...], tuple[str, ...]]]:
        """(table, prefix of its columns in a feature row, key columns, value columns) of every history table."""
        self._build_text_space(variant)
        self._build_collab()
        dims = self.post_vectors[variant].shape[1]
        sums = ("liked_n", "viewed_n", *(f"{kind}_{j}" for j in range(dims) for kind in ("liked", "viewed")))
        joins = [(table, prefix, keys, ("views", "likes", "active_days"))
                 for table, (prefix, keys, _) in HISTORY_TABLES.items()]  # fmt: skip
        joins.append(("post_window_days", "post_window", ("post_id",),
                      ("first_day", *(f"{kind}_{days}d" for days in WINDOW_DAYS for kind in ("likes", "views")))))
        joins.append(("user_activity_days", "user_activity", ("user_id",),
                      ("last_active", "last_like", "recent_likes")))  # fmt: skip
        joins += [(f"collab_{name}", f"collab_{name}", keys, values) for name, (keys, values) in collab.TABLES.items()]
        joins += [(f"profile_{variant}_{group}", group, (group,), sums) for group in PROFILE_GROUPS]
        joins.append((f"cluster_{variant}_all", "cluster", ("cluster",), ("views", "likes")))
        joins.append((f"cluster_{variant}_window_days", "cluster_window", ("cluster",),
                      tuple(f"{kind}_{days}d" for days in CLUSTER_WINDOW_DAYS for kind in ("likes", "views"))))
        joins += [(f"cluster_{variant}_{group}", f"{group}_cluster", (group, "cluster"), ("views", "likes"))
                  for group in CLUSTER_GROUPS]  # fmt: skip
        joins += [(f"taste_{variant}_{name}", f"taste_{name}", keys, values)
                  for name, (keys, values) in taste.TABLES.items()]  # fmt: skip
        return joins

    def features(self, examples: pd.DataFrame, variant: str, as_of_day=None) -> pd.DataFrame:
        """Features of examples (user_id, post_id, timestamp[, target]) for one variant.

        as_of_day: the day whose start bounds the history (default: each example's own day).
        """
        joins = self.history_joins(variant)
        frame = examples[["user_id", "post_id", "timestamp"]].copy()
        frame["example"] = np.arange(len(frame))
        if as_of_day is None:
            frame["as_of_day"] = frame["timestamp"].dt.floor("D")
        else:
            frame["as_of_day"] = pd.Timestamp(as_of_day)
        history = ", ".join(
            f"h{i}.{column} AS {prefix}_{column}"
            for i, (_, prefix, _, columns) in enumerate(joins)
            for column in columns
        )
        history_joins = "\n".join(
            f"ASOF LEFT JOIN {table} h{i} ON "
            + " AND ".join(
                [*(f"{KEY_SOURCES[key]} = h{i}.{key}" for key in keys), f"CAST(e.as_of_day AS DATE) > h{i}.day"]
            )  # fmt: skip
            for i, (table, _, keys, _) in enumerate(joins)
        )
        # CatBoost takes categories as strings; a missing value is a level of its own.
        categorical = ", ".join(
            f"coalesce(CAST({'p' if name == 'topic' else 'u'}.{name} AS VARCHAR), '') AS {name}" for name in CATEGORICAL
        )
        self.con.register("examples", frame)
        try:
            table = self.con.execute(f"""
                SELECT e.example, {categorical}, u.age, CAST(u.gender AS DOUBLE) AS gender_number, p.post_index,
                       hour(e.timestamp) AS hour, dayofweek(e.timestamp) AS day_of_week,
                       month(e.timestamp) AS month, epoch_us(e.timestamp) / 86400e6 AS time_days,
                       CAST(e.as_of_day AS DATE) - {EPOCH_SQL} AS as_of_number, {history}
                FROM examples e
                LEFT JOIN users u USING (user_id)
                LEFT JOIN posts p USING (post_id)
                LEFT JOIN clusters_{variant} c USING (post_id)
                {history_joins}
                ORDER BY e.example""").fetchnumpy()
        finally:
            self.con.unregister("examples")
        return assemble(table, self.post_vectors[variant])

    def history_as_of(self, variant: str, as_of_day) -> dict[str, tuple[tuple[str, ...], pd.DataFrame]]:
        """Every history table as the feature query sees it at the start of as_of_day: its latest
        row per key before that day. table -> (key columns, frame of keys and prefixed values)."""
        tables = {}
        for table, prefix, keys, columns in self.history_joins(variant):
            values = ", ".join(f"{column} AS {prefix}_{column}" for column in columns)
            latest = (f"QUALIFY row_number() OVER (PARTITION BY {', '.join(keys)} ORDER BY day DESC) = 1" if keys
                      else "ORDER BY day DESC LIMIT 1")  # fmt: skip
            frame = self.con.execute(
                f"SELECT {''.join(f'{key}, ' for key in keys)}{values} FROM {table} "
                f"WHERE day < DATE '{pd.Timestamp(as_of_day).date()}' {latest}"
            ).df()
            tables[table] = (keys, frame)
        # The day itself, as a one-row table: the time features count days from it.
        day_number = (pd.Timestamp(as_of_day) - pd.Timestamp("1970-01-01")).days
        tables["as_of"] = ((), pd.DataFrame({"as_of_number": [float(day_number)]}))
        return tables

    def entities(self, variant: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(users with their cohort, posts with topic and text cluster) as the feature query joins them."""
        self._build_text_space(variant)
        users = self.con.execute("SELECT * FROM users ORDER BY user_id").df()
        posts = self.con.execute(
            f"SELECT post_id, topic, cluster FROM posts JOIN clusters_{variant} USING (post_id) ORDER BY post_index"
        ).df()
        return users, posts


def assemble(t: dict, post_vectors: np.ndarray, similarities: dict | None = None) -> pd.DataFrame:
    """Feature columns from raw columns t: user and post attributes, time parts, history counts.

    post_vectors: the text space's components, indexed by t["post_index"]. similarities: the
    SIMILARITY columns when computed already (a grid of users x posts computes them at once);
    otherwise they come from the taste profile columns in t.
    """

    def numeric(name):
        return np.ma.filled(np.ma.asarray(t[name]).astype(float), np.nan)

    def filled(name):
        return np.nan_to_num(numeric(name), nan=0.0)

    out = {name: t[name] for name in CATEGORICAL}  # columns, made a frame once at the end
    for name in ("age", "hour", "day_of_week", "month"):
        out[name] = numeric(name)
    global_rate = filled("global_likes") / np.maximum(filled("global_views"), 1)
    global_rate = np.where(filled("global_views") > 0, global_rate, np.nan)
    user_views, user_likes = filled("user_views"), filled("user_likes")
    out["user_views"], out["user_likes"] = user_views, user_likes
    out["user_like_rate"] = _smoothed(user_likes, user_views, global_rate, USER_PRIOR_VIEWS)
    out["user_active_days"] = filled("user_active_days")
    topic_views = filled("user_topic_views")
    out["user_topic_views"] = topic_views
    out["user_topic_like_rate"] = _smoothed(filled("user_topic_likes"), topic_views, out["user_like_rate"],
                                            TOPIC_PRIOR_VIEWS)  # fmt: skip
    post_views = filled("post_views")
    out["post_views"] = post_views
    out["post_like_rate"] = _smoothed(filled("post_likes"), post_views, global_rate, POST_PRIOR_VIEWS)
    out["cohort_post_like_rate"] = _smoothed(filled("cohort_post_likes"), filled("cohort_post_views"),
                                             out["post_like_rate"], COHORT_PRIOR_VIEWS)  # fmt: skip

    # Rates of a group on a part of the posts are pulled toward what the group's rate one level up
    # and the part's rate for everyone predict together (e.g. a city on a topic: the city's overall
    # rate times the topic's lift); the lift is how far the group's own views move it from there.
    def group_rate(group):
        return _smoothed(filled(f"{group}_liked_n"), filled(f"{group}_viewed_n"), global_rate, USER_PRIOR_VIEWS)

    topic_rate = _smoothed(filled("topic_likes"), filled("topic_views"), global_rate, TOPIC_PRIOR_VIEWS)
    cluster_rate = _smoothed(filled("cluster_likes"), filled("cluster_views"), global_rate, TOPIC_PRIOR_VIEWS)
    expected = group_rate("city") * topic_rate / global_rate
    city_topic = _smoothed(filled("city_topic_likes"), filled("city_topic_views"), expected, CITY_TOPIC_PRIOR_VIEWS)
    out["city_topic_like_rate"], out["city_topic_lift"] = city_topic, city_topic / expected
    out["cluster_like_rate"] = cluster_rate
    for group in CLUSTER_GROUPS:
        above = city_topic / topic_rate if group == "city" else group_rate(group) / global_rate
        expected = above * cluster_rate
        rate = _smoothed(filled(f"{group}_cluster_likes"), filled(f"{group}_cluster_views"), expected,
                         CLUSTER_PRIOR_VIEWS)  # fmt: skip
        name = group.removesuffix("_id")
        out[f"{name}_cluster_like_rate"], out[f"{name}_cluster_lift"] = rate, rate / expected
    # The lifts added up on the log-odds scale, from the post's rate: one feature that already
    # weighs every level as much as its views allow (trees would need many splits to add them).
    out["group_taste_logit"] = (
        np.log(out["post_like_rate"] / (1 - out["post_like_rate"]))
        + np.log(out["cohort_cluster_lift"]) + np.log(out["city_topic_lift"]) + np.log(out["city_cluster_lift"])
    )  # fmt: skip

    _time_features(out, numeric, filled)
    factors = collab.TABLES["users"][1]
    out["collab_score"] = collab.score(np.stack([numeric(f"collab_users_{f}") for f in factors], axis=1),
                                       np.stack([numeric(f"collab_posts_{f}") for f in factors], axis=1))  # fmt: skip

    post_index = numeric("post_index")
    known_post = ~np.isnan(post_index)
    post_index = np.where(known_post, post_index, 0).astype(np.int64)
    components = post_vectors[post_index]
    components[~known_post] = np.nan
    for j in range(components.shape[1]):
        out[f"text_{j}"] = components[:, j]

    if similarities is None:
        unit = _normalized(post_vectors)[post_index]
        similarities = {
            name: np.where(valid, (unit * direction).sum(1), np.nan)
            for name, (direction, valid) in taste_directions(filled, post_vectors.shape[1]).items()
        }
    for name in SIMILARITY:
        out[name] = similarities[name]
    # All but the intercept of the joint taste model; NaN before its first fit (no history yet).
    basis = taste.demographic_basis(out["age"], numeric("gender_number"), numeric("taste_global_age_mean"),
                                    numeric("taste_global_age_sd"), numeric("taste_global_gender_mean"))  # fmt: skip
    logit = filled("taste_post_effect") + filled("taste_city_topic_effect") + filled("taste_city_cluster_effect")
    for name in taste.BASIS:
        logit += np.nan_to_num(basis[name]) * (filled(f"taste_topic_{name}") + filled(f"taste_cluster_{name}"))
    out["taste_model_logit"] = np.where(np.isnan(numeric("taste_global_age_sd")), np.nan, logit)
    for name in (*SIMILARITY, *CLUSTER, *TASTE):
        out[name] = np.where(known_post, out[name], np.nan)
    return pd.DataFrame(out)


def _time_features(out: dict, numeric, filled) -> None:
    """The TIME columns: recent windows and age of the post, its text cluster's recent like-rate, recency and
    recent likes of the user."""
    as_of, now = numeric("as_of_number"), numeric("time_days")
    for days in WINDOW_DAYS:
        likes, views = filled(f"post_window_likes_{days}d"), filled(f"post_window_views_{days}d")
        out[f"post_likes_{days}d"], out[f"post_views_{days}d"] = likes, views
        recent_rate = _smoothed(likes, views, out["post_like_rate"], RECENT_PRIOR_VIEWS)
        out[f"post_trend_{days}d"] = recent_rate / out["post_like_rate"]
    for days in CLUSTER_WINDOW_DAYS:
        recent_rate = _smoothed(filled(f"cluster_window_likes_{days}d"), filled(f"cluster_window_views_{days}d"),
                                out["cluster_like_rate"], RECENT_PRIOR_VIEWS)  # fmt: skip
        out[f"cluster_trend_{days}d"] = recent_rate / out["cluster_like_rate"]
    out["post_age_days"] = now - numeric("post_window_first_day")
    last_active = numeric("user_activity_last_active")
    out["user_days_since_active"] = as_of - last_active
    out["user_days_since_like"] = as_of - numeric("user_activity_last_like")
    out["user_recent_likes"] = filled("user_activity_recent_likes") * np.exp2(
        -np.nan_to_num(as_of - last_active) / RECENT_HALF_LIFE_DAYS
    )
    user_likes = filled("user_likes")
    has_likes = user_likes > 0
    out["user_topic_like_share"] = np.where(has_likes, filled("user_topic_likes") / np.maximum(user_likes, 1), np.nan)
    out["user_cluster_like_share"] = np.where(has_likes, filled("user_id_cluster_likes") / np.maximum(user_likes, 1),
                                              np.nan)  # fmt: skip


def _window_days_sql(source: str, key: str, windows: tuple[int, ...]) -> str:
    """Per key and calendar day from its first view on (dense, so that a window always ends the day
    before the example's): the first day, and likes and views over the last `windows` days."""
    sums = ", ".join(
        f"sum({kind}) OVER (PARTITION BY {key} ORDER BY day RANGE BETWEEN INTERVAL {days - 1} DAYS PRECEDING "
        f"AND CURRENT ROW) AS {kind}_{days}d"
        for days in windows for kind in ("likes", "views")
    )  # fmt: skip
    return f"""
        WITH daily AS (SELECT {key}, day, count(*) AS views, sum(target) AS likes FROM {source} GROUP BY ALL),
             first AS (SELECT {key}, min(day) AS first_day FROM daily GROUP BY {key}),
             calendar AS (SELECT CAST(range AS DATE) AS day FROM range(
                 (SELECT min(day) FROM daily), (SELECT max(day) FROM daily) + INTERVAL 1 DAY, INTERVAL 1 DAY)),
             grid AS (SELECT {key}, first_day, c.day, coalesce(d.views, 0) AS views, coalesce(d.likes, 0) AS likes
                      FROM first JOIN calendar c ON c.day >= first_day LEFT JOIN daily d USING ({key}, day))
        SELECT {key}, day, first_day - {EPOCH_SQL} AS first_day, {sums} FROM grid"""


def _fitted_tables(folder: Path | None, names, fit) -> dict[str, pd.DataFrame]:
    """A model's history tables (one Parquet per name in folder): loaded when a task of the version
    saved them already, otherwise fit() now and saved there (no folder: fitted, not kept)."""
    if folder is not None and folder.is_dir():
        return {name: pd.read_parquet(folder / f"{name}.parquet") for name in names}
    tables = fit()
    if folder is not None:
        _save_tables(tables, folder)
    return tables


def _save_tables(tables: dict[str, pd.DataFrame], folder: Path) -> None:
    """One Parquet per table, in a folder that appears whole or not at all (if another task saved the
    same fits first, theirs stay)."""
    partial = folder.with_name(f".{folder.name}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for name, frame in tables.items():
        frame.to_parquet(partial / f"{name}.parquet", index=False)
    try:
        partial.rename(folder)
    except OSError:  # the folder exists now
        shutil.rmtree(partial, ignore_errors=True)


def _smoothed(likes, views, prior, pseudo_views):
    """A like-rate pulled toward prior as if pseudo_views more views had that rate."""
    return (likes + pseudo_views * prior) / (views + pseudo_views)


def taste_directions(filled, dims: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per row of the profile columns (``filled(name)`` gives one): for each SIMILARITY feature, the
    direction in text space a post is compared with, and whether it exists."""

    def profile(group):
        liked = np.stack([filled(f"{group}_liked_{j}") for j in range(dims)], axis=1)
        viewed = np.stack([filled(f"{group}_viewed_{j}") for j in range(dims)], axis=1)
        return liked, viewed, filled(f"{group}_liked_n"), filled(f"{group}_viewed_n")

    def taste(group):
        """The group's taste direction: mean of liked minus mean of viewed posts."""
        liked, viewed, liked_n, viewed_n = profile(group)
        return liked / np.maximum(liked_n, 1)[:, None] - viewed / np.maximum(viewed_n, 1)[:, None], liked_n > 0

    liked = profile("user_id")[0]
    norm = np.linalg.norm(liked, axis=1)
    return {
        "sim_liked": (liked / np.where(norm > 0, norm, 1)[:, None], norm > 0),  # the posts the user liked
        "sim_taste": taste("user_id"),
        "cohort_sim_taste": taste("cohort"),
        "city_sim_taste": taste("city"),
    }


_cohort_connection = None
_cohort_lock = threading.Lock()


def with_cohorts(users: pd.DataFrame) -> pd.DataFrame:
    """users with their cohort column, by the same expression the feature store uses."""
    global _cohort_connection
    with _cohort_lock:  # one connection, reused: opening one costs more than the query
        if _cohort_connection is None:
            _cohort_connection = quiet_duckdb()
        _cohort_connection.register("users_frame", users)
        try:
            cohorts = _cohort_connection.execute(f"SELECT {COHORT_SQL} AS cohort FROM users_frame").fetchnumpy()
        finally:
            _cohort_connection.unregister("users_frame")
    return users.assign(cohort=np.asarray(cohorts["cohort"], dtype=object))


class ServingFeatures:
    """Features as of one day for a grid of users x candidate posts, from in-memory tables.

    For scoring many users against many posts (precompute) and a fresh user within a request. It
    gives what ``FeatureStore.features(..., as_of_day)`` gives for the same examples (a test holds
    them equal): the tables are ``FeatureStore.history_as_of``, and the same ``assemble`` builds the
    columns. Each table is indexed once, here, so that a call only gathers: values are looked up
    once per user and once per post and then broadcast; pair tables (user x topic, cohort x post,
    ...) become small dense matrices; taste similarities are one matrix product per block.
    """

    def __init__(self, history: dict[str, tuple[tuple[str, ...], pd.DataFrame]], posts: pd.DataFrame,
                 post_vectors: np.ndarray):  # fmt: skip
        """posts: post_id, topic, cluster in the order of post_vectors' rows (the post index)."""
        self.posts = posts.reset_index(drop=True)
        self.topics = _as_category_strings(self.posts["topic"])
        self.post_vectors = post_vectors
        self.unit = _normalized(post_vectors).astype(float)
        self.dims = post_vectors.shape[1]
        self.tables = [_ServingTable(keys, frame, self.posts) for keys, frame in history.values()]

    def features(self, users: pd.DataFrame, candidates: np.ndarray, timestamp) -> pd.DataFrame:
        """Features of each user (a row of attributes with cohort) x each of their candidate posts.

        candidates: post indices, one row per user (B x C); the result has B x C rows, user-major.
        """
        users = users.reset_index(drop=True)
        candidates = np.asarray(candidates)
        per_user = candidates.shape[1]
        flat = candidates.ravel()
        t = {name: np.repeat(_as_category_strings(users[name]), per_user) for name in USER_CATEGORICAL}
        t["topic"] = self.topics[flat]
        t["age"] = np.repeat(users["age"].to_numpy(dtype=float), per_user)
        t["gender_number"] = np.repeat(pd.to_numeric(users["gender"], errors="coerce").to_numpy(dtype=float), per_user)
        t["post_index"] = flat.astype(float)
        when = pd.Timestamp(timestamp)
        t["hour"], t["month"] = np.full(flat.size, when.hour), np.full(flat.size, when.month)
        t["day_of_week"] = np.full(flat.size, (when.day_of_week + 1) % 7)  # DuckDB's dayofweek: Sunday is 0
        t["time_days"] = np.full(flat.size, (when - pd.Timestamp(0)) / pd.Timedelta(days=1))
        user_values = {}
        for table in self.tables:
            if table.user_key is None and table.post_key is None:  # the global row
                for column, values in table.values.items():
                    t[column] = np.full(flat.size, values[0] if len(values) else np.nan)
                continue
            user_codes = None if table.user_key is None else table.user_codes(users[table.user_key].to_numpy())
            if table.post_key is None:
                rows = table.first_row[user_codes]
                for column, values in table.values.items():
                    user_values[column] = _gather(values, rows)
                    t[column] = np.repeat(user_values[column], per_user)
                continue
            if table.user_key is None:
                rows = table.post_rows[flat]
            else:
                rows = table.pair_rows(user_codes, candidates)
            for column, values in table.values.items():
                t[column] = _gather(values, rows)

        similarities = {}
        for name, (direction, valid) in taste_directions(
            lambda column: np.nan_to_num(user_values.get(column, np.full(len(users), np.nan)), nan=0.0), self.dims
        ).items():
            grid = np.take_along_axis(direction @ self.unit.T, candidates, axis=1)
            similarities[name] = np.where(valid[:, None], grid, np.nan).ravel()
        return assemble(t, self.post_vectors, similarities)


class _ServingTable:
    """One history table, indexed for ServingFeatures: its value columns as float arrays, rows grouped
    by the user-side key (if any), and each row's post (or post group) as a post index lookup."""

    def __init__(self, keys: tuple[str, ...], frame: pd.DataFrame, posts: pd.DataFrame):
        self.user_key = next((k for k in keys if k in USER_KEYS), None)
        self.post_key = next((k for k in keys if k in POST_KEYS), None)
        if self.user_key is not None:  # rows sorted by the user-side key: a user's rows are one slice
            codes, uniques = pd.factorize(frame[self.user_key])
            order = np.argsort(codes, kind="stable")
            frame, codes = frame.iloc[order].reset_index(drop=True), codes[order]
            self.user_index = pd.Index(uniques)
            self.bounds = np.searchsorted(codes, np.arange(len(uniques) + 1))
            # The last slot stands for a value the history does not know: no rows.
            self.first_row = np.append(np.where(self.bounds[:-1] < self.bounds[1:], self.bounds[:-1], -1), -1)
        self.values = {column: frame[column].to_numpy(dtype=float)
                       for column in frame.columns if column not in (self.user_key, self.post_key)}  # fmt: skip
        if self.post_key is not None:
            # For each post, the rows' matching: which value of the post-side key it has...
            post_codes, post_uniques = pd.factorize(posts[self.post_key], use_na_sentinel=True)
            post_codes = np.where(post_codes >= 0, post_codes, len(post_uniques))  # missing: the last slot
            # ...and for each row, the code of its post-side value (-1: no post has it).
            self.row_post_codes = pd.Index(post_uniques).get_indexer(frame[self.post_key])
            self.post_codes = post_codes
            self.n_values = len(post_uniques) + 1
            if self.user_key is None:
                by_value = np.full(self.n_values, -1)
                found = self.row_post_codes >= 0
                by_value[self.row_post_codes[found]] = np.flatnonzero(found)
                self.post_rows = by_value[post_codes]

    def user_codes(self, values: np.ndarray) -> np.ndarray:
        """Position of each user-side value in the table's index; unknown values get the last slot."""
        codes = self.user_index.get_indexer(values)
        return np.where(codes >= 0, codes, len(self.user_index))

    def pair_rows(self, user_codes: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        """Table row of each (user, candidate post) of a pair table, user-major; -1 where the history
        has none. A dense (distinct user-side values x post-side values) matrix first."""
        distinct, inverse = np.unique(user_codes, return_inverse=True)
        placed = np.full((len(distinct), self.n_values), -1)
        for i, code in enumerate(distinct):
            if code < len(self.user_index):
                rows = np.arange(self.bounds[code], self.bounds[code + 1])
                known = self.row_post_codes[rows] >= 0
                placed[i, self.row_post_codes[rows[known]]] = rows[known]
        return placed[inverse[:, None], self.post_codes[candidates]].ravel()


def _gather(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """values[rows], NaN where rows is -1 (no history)."""
    return np.where(rows >= 0, values[np.maximum(rows, 0)], np.nan) if len(values) else np.full(len(rows), np.nan)


def _as_category_strings(column: pd.Series) -> np.ndarray:
    """As the feature query casts categories: strings, a missing value the empty string. (A plain loop:
    for the one row of a fresh user, four pandas conversions cost more than the rest of the column.)"""
    values = column.to_numpy(dtype=object)
    strings = ["" if missing else str(value) for value, missing in zip(values, pd.isna(values), strict=True)]
    return np.array(strings, dtype=object)


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
