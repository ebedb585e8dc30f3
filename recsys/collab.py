"""The collaborative (co-like) signal: implicit-feedback ALS on the likes, refit on the history before each day.

Users who liked the same posts get similar factors, and so do posts liked by the same users: a
post scores high for a user when users with a similar like history liked it, whatever its text.
The model is the implicit-feedback matrix factorization of Hu, Koren and Volinsky (2008), fitted
by the ``implicit`` library's alternating least squares (conjugate-gradient solver): every
(user, post) pair is a preference p = 1 if the user liked the post and 0 otherwise, weighted by a
confidence c = 1 + ``alpha`` x (number of likes of the pair) where it is liked and 1 where not,
and the factors minimize sum c (p - user . post)^2 + ``regularization`` x (|users|^2 + |posts|^2).

Point in time: the fit "through day d" uses only likes of days up to d. Its factors are rows of
two history tables (``TABLES``) with ``day`` = d, one row per user and per post that had a like
up to d; a feature row of day d + 1 reads them (the feature store's ``day < as-of day`` rule), and
``score`` turns a user's and a post's rows into the signal. Every known user and post has a row at
every fit, so the latest rows of a user and of a post always come from the same fit.

Fits are made every ``refit_days``-th day of ``days`` (the refit_days-th, 2 x refit_days-th, ...,
counted from the first) and on the last day. Each starts from the previous fit's factors (new users
and posts get small random ones) and runs ``WARM_ITERATIONS`` sweeps; the first runs
``iterations``. Users and posts get their matrix rows in the order of their first like (then id),
so the rows of the fit through d depend on likes up to d alone, and a fit never sees a later one.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time

import numpy as np
import pandas as pd
import scipy.sparse

log = logging.getLogger(__name__)

FACTORS = 16


def value_columns(factors: int) -> tuple[str, ...]:
    return tuple(f"f{j}" for j in range(factors))


VALUE_COLUMNS = value_columns(FACTORS)
# Factor tables: name -> (key columns, value columns). Each also has ``day``: the last day of the
# history its fit saw.
TABLES = {"users": (("user_id",), VALUE_COLUMNS), "posts": (("post_id",), VALUE_COLUMNS)}
# Defaults measured on synthetic likes of users in taste groups (400 to 163,000 users), by how
# often a held-out like outscores a random post (AUC): regularization 100 with alpha 40 was best or
# close to it at every size (0.74 to 0.84, popularity 0.66 to 0.76); alpha 1 or 10 a little worse;
# regularization 300 to 1,000 shrinks the factors to popularity on the smaller data sets.
REGULARIZATION = 100.0
ALPHA = 40.0  # confidence of a liked pair: 1 + ALPHA x its likes (an unliked pair: 1)
# Sweeps of a fit that starts from the previous fit's factors: 1, 2 or 3 a day end as good as a
# fit from scratch with 15.
WARM_ITERATIONS = 2
MAX_THREADS = 2
INIT_SCALE = 0.01  # new rows start uniform in [0, INIT_SCALE), like implicit's own initialization


def fit_daily(
    likes: pd.DataFrame,
    days: list[dt.date],
    factors: int = FACTORS,
    refit_days: int = 1,
    iterations: int = 15,
    regularization: float = REGULARIZATION,
    alpha: float = ALPHA,
    seed: int = 0,
) -> dict[str, pd.DataFrame]:
    """Fit the model through every ``refit_days``-th day of ``days`` and its last one; the factor tables.

    likes: one row per like (user_id, post_id, day: its date); likes after the last of ``days`` are
    ignored, likes before the first count from the first fit on. days: every day of the extract, in
    order. Returns {"users": user_id, day, f0..f{factors-1}; "posts": post_id, day, f0..}, factors
    as float32 and ``day`` the fit's day (datetime64, midnight): one row per user and post known at
    each fit (the table's columns are ``value_columns(factors)``; ``TABLES`` names the default 16).
    Deterministic for a seed, whatever the order of the rows.
    """
    if refit_days < 1:
        raise ValueError("refit_days must be at least 1")
    started = time.perf_counter()
    day_values = np.asarray(pd.to_datetime(pd.Series(list(days), dtype=object)).to_numpy(), dtype="datetime64[D]")
    if len(day_values) and np.any(np.diff(day_values) <= np.timedelta64(0, "D")):
        raise ValueError("days must be increasing")
    columns = value_columns(factors)
    plan = _Plan.of(likes, day_values)
    fits = [i for i in range(len(day_values))
            if ((i + 1) % refit_days == 0 or i == len(day_values) - 1) and plan.ends[i] > 0]  # fmt: skip
    # Written in place, a factor per row: the tables' columns without a copy.
    users_out = _Output(plan.user_ids, [plan.known_users(i) for i in fits], factors)
    posts_out = _Output(plan.post_ids, [plan.known_posts(i) for i in fits], factors)
    rng = np.random.default_rng(seed)
    user_factors = np.zeros((0, factors), dtype=np.float32)
    post_factors = np.zeros((0, factors), dtype=np.float32)
    model = None
    # Imported before the limit: importing implicit loads scipy's OpenBLAS, which a limit set
    # earlier would not reach (and implicit's constructor would warn about its threads).
    import implicit.cpu.als  # noqa: F401
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):  # implicit parallelizes over rows itself
        for fit_index in fits:
            fit_started = time.perf_counter()
            end, users, posts = plan.ends[fit_index], plan.known_users(fit_index), plan.known_posts(fit_index)
            user_factors = _extended(user_factors, users, rng)
            post_factors = _extended(post_factors, posts, rng)
            if model is None:
                model = _model(factors, regularization, iterations, seed)
            else:
                model.iterations = WARM_ITERATIONS
            confidence = plan.confidence(end, users, posts, alpha)
            # Set beforehand with the right shapes, implicit's fit starts from these factors (it
            # draws its own only where they are None, and does not check their shapes).
            model.user_factors, model.item_factors = user_factors, post_factors
            model.fit(confidence, show_progress=False)
            user_factors = np.ascontiguousarray(model.user_factors, dtype=np.float32)
            post_factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)
            day = day_values[fit_index]
            users_out.add(day, user_factors)
            posts_out.add(day, post_factors)
            log.info("collaborative fit through %s: %s users, %s posts, %s likes, %d sweeps, %.1f s",
                     day, f"{users:,}", f"{posts:,}", f"{end:,}", model.iterations,
                     time.perf_counter() - fit_started)  # fmt: skip
    total = int(plan.ends[-1]) if len(day_values) else 0
    log.info("collaborative model fit %d times through %d days on %s likes in %.1f s", len(fits), len(day_values),
             f"{total:,}", time.perf_counter() - started)  # fmt: skip
    return {"users": users_out.frame("user_id", columns), "posts": posts_out.frame("post_id", columns)}


def score(user_factors: np.ndarray, post_factors: np.ndarray) -> np.ndarray:
    """Row-wise dot products of users' and posts' factors (n x k each): NaN where either row has a NaN
    (no fit has seen that user or post yet). Masked arrays (DuckDB's NULLs) count as NaN."""
    users = np.ma.filled(np.ma.asarray(user_factors, dtype=float), np.nan)
    posts = np.ma.filled(np.ma.asarray(post_factors, dtype=float), np.nan)
    if users.ndim == 1:
        users, posts = users[:, None], posts[:, None]
    if users.shape != posts.shape:
        raise ValueError(f"factor shapes differ: {users.shape} and {posts.shape}")
    missing = np.isnan(users).any(axis=1) | np.isnan(posts).any(axis=1)
    result = np.einsum("ij,ij->i", np.nan_to_num(users), np.nan_to_num(posts))
    result[missing] = np.nan
    return result


class _Plan:
    """The likes as matrix coordinates, in day order, and who is known by each day.

    Users (and posts) are numbered by their first like's day, then id: those known at a fit are a
    prefix of the numbering, so each fit extends the previous one's rows.
    """

    def __init__(self, user_ids, post_ids, user_first, post_first, rows, cols, ends):
        self.user_ids, self.post_ids = user_ids, post_ids
        self._user_first, self._post_first = user_first, post_first
        self.rows, self.cols, self.ends = rows, cols, ends

    @classmethod
    def of(cls, likes: pd.DataFrame, day_values: np.ndarray) -> _Plan:
        frame = likes[["user_id", "post_id", "day"]].dropna()
        like_day = pd.to_datetime(frame["day"]).to_numpy().astype("datetime64[D]")
        position = np.searchsorted(day_values, like_day, side="left")  # the first fit day on or after it
        keep = position < len(day_values)
        user, post = frame["user_id"].to_numpy()[keep], frame["post_id"].to_numpy()[keep]
        position = position[keep]
        user_ids, user_index, user_first = _numbered(user, position)
        post_ids, post_index, post_first = _numbered(post, position)
        # In day order, so that a fit's likes are a prefix. Within a day the input's order stays, but
        # a fit sums each pair's likes into a sorted matrix (exact integer counts): the same matrix
        # whatever the input's row order. (A stable sort of small integers is a radix sort.)
        order = np.argsort(position.astype(np.int16 if len(day_values) < 2**15 else np.int64), kind="stable")
        ends = np.searchsorted(position[order], np.arange(len(day_values)), side="right")
        return cls(user_ids, post_ids, user_first, post_first, user_index[order].astype(np.int32),
                   post_index[order].astype(np.int32), ends)  # fmt: skip

    def known_users(self, fit_index: int) -> int:
        return int(np.searchsorted(self._user_first, fit_index, side="right"))

    def known_posts(self, fit_index: int) -> int:
        return int(np.searchsorted(self._post_first, fit_index, side="right"))

    def confidence(self, end: int, users: int, posts: int, alpha: float) -> scipy.sparse.csr_matrix:
        """users x posts, 1 + alpha x likes where liked (CSR, float32, summed duplicates, sorted)."""
        counts = scipy.sparse.csr_matrix(
            (np.ones(end, dtype=np.float32), (self.rows[:end], self.cols[:end])), shape=(users, posts)
        )
        counts.sum_duplicates()
        counts.data = (1 + alpha * counts.data).astype(np.float32)
        return counts


def _numbered(ids: np.ndarray, position: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids in the order of their first position then id, each row's number, each id's first position)."""
    codes, unique = pd.factorize(ids, sort=False)  # a hash table: faster than sorting all rows
    unique = np.asarray(unique)
    first = np.full(len(unique), np.iinfo(np.int64).max)
    np.minimum.at(first, codes, position)
    order = np.lexsort((unique, first))
    number = np.empty(len(unique), dtype=np.int64)
    number[order] = np.arange(len(unique))
    return unique[order], number[codes], first[order]


def _extended(factors: np.ndarray, rows: int, rng: np.random.Generator) -> np.ndarray:
    new = rows - len(factors)
    if new <= 0:
        return factors
    start = rng.random((new, factors.shape[1]), dtype=np.float32) * np.float32(INIT_SCALE)
    return np.ascontiguousarray(np.vstack([factors, start]), dtype=np.float32)


def _model(factors: int, regularization: float, iterations: int, seed: int):
    from implicit.cpu.als import AlternatingLeastSquares

    threads = max(1, min(MAX_THREADS, os.cpu_count() or 1))
    # alpha 1: the matrix passed to fit already holds the confidences (implicit multiplies it by
    # alpha: its confidence is alpha x value, not 1 + alpha x value).
    return AlternatingLeastSquares(factors=factors, regularization=regularization, alpha=1.0, dtype=np.float32,
                                   iterations=iterations, num_threads=threads, random_state=seed)  # fmt: skip


class _Output:
    """One factor table, filled fit by fit: the first ``rows`` ids of the numbering at each fit."""

    def __init__(self, ids: np.ndarray, rows: list[int], factors: int):
        self.ids, self.rows = ids, rows
        self.values = np.empty((factors, sum(rows)), dtype=np.float32)
        self.days = np.empty(sum(rows), dtype="datetime64[us]")
        self.keys = np.empty(sum(rows), dtype=ids.dtype)
        self.filled = 0

    def add(self, day: np.datetime64, factors: np.ndarray) -> None:
        at, n = self.filled, len(factors)
        self.values[:, at : at + n] = factors.T
        self.days[at : at + n] = day
        self.keys[at : at + n] = self.ids[:n]
        self.filled += n

    def frame(self, key: str, columns: tuple[str, ...]) -> pd.DataFrame:
        assert self.filled == len(self.keys)
        data = {key: self.keys, "day": self.days, **{c: self.values[j] for j, c in enumerate(columns)}}
        return pd.DataFrame(data, copy=False)
