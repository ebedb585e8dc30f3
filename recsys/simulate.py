"""The traffic simulator: feed traffic played against the running API, likes drawn from the ground truth.

It closes the experiment's loop on one machine: serve -> log exposures -> like -> attribute -> analyse.
For ``users`` users picked from the generator's ground truth (and the source's ``user_data``) and
``days`` days continuing the source's timeline, each user opens the feed in sessions (a Poisson
number a day, at a per-user rate; session starts follow a daily profile over 06:00-24:00, busiest
in the evening), each session a few requests (scrolls) about a minute apart. Every request asks
``GET /post/recommendations/?id=<user>&time=<simulated moment>&limit=<limit>&offset=<page>`` over
HTTP (a user's requests of a day page through their list, as a scrolling feed does); every
served post is a view, liked with the truth's probability ``p(user, post, time)``. The rows follow
the generator's convention exactly: a liked view has target = 1 and a separate ``like`` row (target
0) follows 8..177 s later; a (user, post) pair is liked at most once, later views of it stay unliked.

A simulated day's views and likes are appended to ``feed_data`` in one batch once all of its
requests are answered: never half a day, and a run stopped midway keeps its complete days (a rerun
then continues after them). Each day's rows, likes included, fall within 06:00-24:00 of that day.

The simulator cannot change what the API serves: an A/A run (``aa``) checks that the API's
snapshot maps both groups to the same model (``RECSYS_AB_TEST_MODEL=control recsys precompute``).
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from recsys.generate import FeedSpec
from recsys.sources import Source, SourceError, arrow_schema, open_source
from recsys.truth import GroundTruth

log = logging.getLogger(__name__)

SECOND = np.timedelta64(1, "s")
DAY_SECONDS = 86_400
AA_HOW_TO = (
    "publish an A/A snapshot with `RECSYS_AB_TEST_MODEL=control recsys precompute` and wait until the API "
    "serves it (GET /ready shows one model in group_models), then run again"
)


class SimulationError(RuntimeError):
    """The simulation cannot go on: the API answered with an error, or the source refused the rows."""


class AARefused(SimulationError):
    """An A/A run was asked for, but the API serves the two groups different models."""


@dataclass(frozen=True)
class Traffic:
    """The traffic model. Rates and counts are per simulated user."""

    sessions_per_day: float = 1.5  # mean of the per-user Poisson rate of sessions a day
    rate_shape: float = 2.0  # users differ: rate ~ Gamma(shape, sessions_per_day / shape)
    requests_per_session: float = 3.0  # 1 + Poisson(mean - 1) feed requests (scrolls) a session
    max_requests_per_session: int = 20
    gap_median_s: float = 60.0  # between a session's requests: lognormal, at least gap_min_s
    gap_sigma: float = 0.4
    gap_min_s: int = 10
    # Relative weight of a session starting in each hour from 06 to 23: a morning and a lunch bump,
    # the evening peak at 20-21 h.
    hour_weights: tuple[float, ...] = (0.4, 0.8, 1.0, 0.9, 0.8, 0.8, 1.0, 1.0, 0.8,
                                       0.8, 0.9, 1.1, 1.4, 1.7, 2.0, 2.0, 1.6, 1.0)  # fmt: skip
    first_hour: int = FeedSpec.day_start_hour  # 06:00, as the generator
    like_delay_s: tuple[int, int] = FeedSpec.like_delay_s  # a like row 8..177 s after its view, as the generator
    limit: int = 5  # posts a request asks for
    # A user's requests of a day page through their list (offset = limit x request number), starting
    # over after this many posts (RECSYS_TOP_K's default): a feed that scrolls, not the same 5 posts.
    feed_depth: int = 50

    @property
    def last_view_second(self) -> int:
        """The latest second of a day a view may have, so that its like row stays on the same day."""
        return DAY_SECONDS - 1 - self.like_delay_s[1]


@dataclass
class Responses:
    """What the API answered to each request (in request order)."""

    status: np.ndarray  # HTTP status
    group: list  # exp_group, None unless 200
    snapshot: list  # x-snapshot header
    request_id: list  # x-request-id header
    post_ids: list  # served post ids (empty unless 200)
    seconds: float  # wall time of the HTTP phase


@dataclass
class SimulationResult:
    summary: dict
    # One row per request: user_id, time, status, exp_group, snapshot, request_id, post_ids, likes.
    requests: pd.DataFrame = field(repr=False)


# --- the API -------------------------------------------------------------------------------------
def check_api(api_url: str, aa: bool, timeout: float = 10.0) -> dict:
    """The API's /ready answer; refuses (AARefused) an A/A run unless both groups get the same model,
    and warns when a normal run would meet identical models."""
    try:
        with urllib.request.urlopen(f"{api_url}/ready", timeout=timeout) as response:
            ready = json.loads(response.read())
    except urllib.error.HTTPError as error:
        body = error.read()[:300].decode(errors="replace")
        raise SimulationError(f"the API at {api_url} is not ready ({error.code}): {body}") from None
    except (OSError, ValueError) as error:
        raise SimulationError(f"cannot reach the API at {api_url}: {error}") from None
    group_models = ready.get("group_models")
    if not group_models:
        raise SimulationError(f"the API at {api_url} does not say which model serves each group (no group_models)")
    same = len(set(group_models.values())) == 1
    if aa and not same:
        raise AARefused(
            f"an A/A run needs both groups served by the same model, but the API's snapshot {ready.get('snapshot')} "
            f"serves {group_models}: {AA_HOW_TO}"
        )
    if not aa and same:
        log.warning("the API serves every group the same model (%s): this is an A/A experiment; pass --aa if meant",
                    group_models)  # fmt: skip
    return ready


def play(api_url: str, user_ids, times, limit: int = 5, concurrency: int = 4, timeout: float = 30.0,
         progress: Callable[[int], None] | None = None, offsets=None) -> Responses:  # fmt: skip
    """Send one recommendations request per (user id, time[, offset]), from ``concurrency`` threads over
    keep-alive HTTP connections.

    404 (unknown user) is recorded; any other error status, or an API that does not answer, raises
    SimulationError (the requests in flight finish, no new ones start). progress, if given, is
    called with the number of requests answered so far.

    The standard library's http.client, not httpx: the client is the bottleneck here, and it sends about
    four times as many requests a second (about 2,000/s against the tiny API on 2 cores; httpx 350-550/s).
    """
    url = urllib.parse.urlsplit(api_url)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise SimulationError(f"--api {api_url!r} is not an http(s) URL")
    connection_class = http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    path = f"{url.path.rstrip('/')}/post/recommendations/?"
    user_ids = [int(u) for u in user_ids]
    when = pd.DatetimeIndex(pd.to_datetime(np.asarray(times))).strftime("%Y-%m-%dT%H:%M:%S").tolist()
    n = len(user_ids)
    offsets = [0] * n if offsets is None else [int(o) for o in offsets]
    status = np.zeros(n, dtype=np.int16)
    group, snapshot, request_id, post_ids = [None] * n, [None] * n, [None] * n, [[] for _ in range(n)]
    pending, lock, stop = iter(range(n)), threading.Lock(), threading.Event()
    done = 0

    def fetch(connection, i):
        """(connection, response, body); a kept-alive connection the server closed is reopened once."""
        target = path + urllib.parse.urlencode({"id": user_ids[i], "time": when[i], "limit": limit,
                                                "offset": offsets[i]})  # fmt: skip
        for attempt in (0, 1):
            reused = connection is not None
            connection = connection or connection_class(url.hostname, url.port, timeout=timeout)
            try:
                connection.request("GET", target)
                response = connection.getresponse()
                return connection, response, response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as error:
                connection.close()
                connection = None
                if attempt or not reused:
                    raise SimulationError(f"the API at {api_url} dropped the connection (user {user_ids[i]}, "
                                          f"time {when[i]}): {error}") from None  # fmt: skip
            except (OSError, http.client.HTTPException) as error:
                connection.close()
                raise SimulationError(f"cannot reach the API at {api_url} (user {user_ids[i]}, time {when[i]}): "
                                      f"{type(error).__name__}: {error}") from None  # fmt: skip

    def worker() -> None:
        nonlocal done
        connection = None
        try:
            while not stop.is_set():
                with lock:
                    i = next(pending, None)
                if i is None:
                    return
                connection, response, body = fetch(connection, i)
                status[i] = response.status
                snapshot[i] = response.getheader("x-snapshot")
                request_id[i] = response.getheader("x-request-id")
                if response.status == 200:
                    answer = json.loads(body)
                    group[i] = answer["exp_group"]
                    post_ids[i] = [post["id"] for post in answer["recommendations"]]
                elif response.status != 404:
                    raise SimulationError(f"the API at {api_url} answered {response.status} to user {user_ids[i]} "
                                          f"at {when[i]}: {body[:300].decode(errors='replace')}")  # fmt: skip
                with lock:
                    done += 1
                    if progress:
                        progress(done)
        except BaseException:
            stop.set()
            raise
        finally:
            if connection is not None:
                connection.close()

    started = time.perf_counter()
    workers = max(1, min(concurrency, n))
    with ThreadPoolExecutor(workers, thread_name_prefix="simulate") as pool:
        futures = [pool.submit(worker) for _ in range(workers)]
    errors = [future.exception() for future in futures if future.exception() is not None]
    if errors:
        raise errors[0]
    return Responses(status, group, snapshot, request_id, post_ids, time.perf_counter() - started)


# --- the plan ------------------------------------------------------------------------------------
def pick_users(truth: GroundTruth, source: Source, count: int, rng) -> np.ndarray:
    """``count`` distinct users of both the ground truth and the source, sorted."""
    candidates = np.intersect1d(truth.user_ids.astype(np.int64), source.user_ids())
    if count > len(candidates):
        raise SimulationError(f"asked for {count:,} users, but only {len(candidates):,} are both in the ground "
                              f"truth and in {source.url.display}")  # fmt: skip
    return np.sort(rng.choice(candidates, size=count, replace=False))


def plan_day(rng, user_ids: np.ndarray, rates: np.ndarray, day: dt.date, traffic: Traffic) -> pd.DataFrame:
    """The requests of one day: user_id, time (whole seconds) and offset (the page), sorted by time."""
    sessions = rng.poisson(rates)
    session_user = np.repeat(user_ids, sessions)
    n_sessions = len(session_user)
    n_requests = np.minimum(1 + rng.poisson(traffic.requests_per_session - 1, n_sessions),
                            traffic.max_requests_per_session)  # fmt: skip
    weights = np.asarray(traffic.hour_weights, dtype=float)
    hours = traffic.first_hour + rng.choice(len(weights), size=n_sessions, p=weights / weights.sum())
    start = hours * 3600 + rng.integers(0, 3600, n_sessions)

    request_session = np.repeat(np.arange(n_sessions), n_requests)
    gaps = np.maximum(traffic.gap_min_s, np.round(rng.lognormal(np.log(traffic.gap_median_s), traffic.gap_sigma,
                                                                len(request_session))))  # fmt: skip
    first = np.cumsum(n_requests) - n_requests
    gaps[first] = 0
    offset = np.cumsum(gaps)
    offset -= np.repeat(offset[first], n_requests)
    duration = offset[first + n_requests - 1] if n_sessions else np.zeros(0, dtype=offset.dtype)
    # A session that would run past the day's last view second starts earlier instead.
    start = np.minimum(start, traffic.last_view_second - duration)
    keep = _no_overlaps(session_user, start, duration, traffic)
    request_keep = keep[request_session]
    seconds = (start[request_session] + offset)[request_keep].astype(np.int64)
    request_user = session_user[request_session][request_keep]
    order = np.argsort(seconds, kind="stable")
    epoch = np.datetime64(day, "s")
    plan = pd.DataFrame({"user_id": request_user[order],
                         "time": (epoch + seconds[order] * SECOND).astype("datetime64[s]")})  # fmt: skip
    plan["offset"] = plan.groupby("user_id").cumcount() * traffic.limit % max(traffic.feed_depth, traffic.limit)
    return plan


def _no_overlaps(session_user, start, duration, traffic: Traffic) -> np.ndarray:
    """A user's sessions never overlap: one that starts before the user's previous session has ended
    moves to gap_min_s after it (start is updated in place), or is dropped (False) if it then runs
    past the day's last view second. Rare: sessions last minutes."""
    keep = np.ones(len(start), dtype=bool)
    previous_user, previous_end = None, 0
    for s in np.lexsort((start, session_user)):
        user = session_user[s]
        if user == previous_user and start[s] < previous_end + traffic.gap_min_s:
            start[s] = previous_end + traffic.gap_min_s
            if start[s] + duration[s] > traffic.last_view_second:
                keep[s] = False
                continue
        previous_user, previous_end = user, start[s] + duration[s]
    return keep


# --- the source ----------------------------------------------------------------------------------
def last_feed_day(source: Source) -> dt.date | None:
    """The day of the latest view in feed_data (like rows of a late view may fall after midnight)."""
    value = source.query("SELECT max(\"timestamp\") FROM feed_data WHERE action = 'view'")[0][0]
    return None if value is None else pd.Timestamp(value).date()


def liked_pairs(source: Source, user_ids: np.ndarray) -> set[tuple[int, int]]:
    """(user, post) pairs the given users already liked: a pair is liked at most once."""
    if len(user_ids) == 0:
        return set()
    wanted = ", ".join(str(int(u)) for u in user_ids)
    rows = source.query(f"SELECT DISTINCT user_id, post_id FROM feed_data WHERE action = 'like' "
                          f"AND user_id IN ({wanted})")  # fmt: skip
    return {(int(u), int(p)) for u, p in rows}


def _is_lock_conflict(error: Exception) -> bool:
    text = str(error)
    return type(error).__module__.startswith(("duckdb", "_duckdb")) and (
        "lock" in text.lower() or "different configuration" in text
    )


def append_rows(source: Source, rows: pa.Table, lock_timeout: float = 30.0) -> None:
    """Append feed rows in one statement; a DuckDB file locked by a reader (the API reads the source
    every few seconds) is retried for up to lock_timeout seconds."""
    deadline = time.monotonic() + lock_timeout
    delay = 0.05
    while True:
        try:
            source.append("feed_data", rows)
            return
        except Exception as error:
            if not _is_lock_conflict(error):
                raise
            if time.monotonic() >= deadline:
                raise SimulationError(f"{source.url.display} stayed locked for {lock_timeout:.0f} s ({error}); "
                                      "stop the process holding it and run again") from None  # fmt: skip
            log.info("source locked, retrying in %.2f s: %s", delay, error)
            time.sleep(delay)
            delay = min(1.0, delay * 2)


# --- views and likes -----------------------------------------------------------------------------
def draw_likes(truth: GroundTruth, views: pd.DataFrame, uniforms: np.ndarray, liked: set) -> np.ndarray:
    """Which views are liked: uniform < p(user, post, time), and the pair not liked before (liked,
    updated in place). views must be in time order."""
    if len(views) == 0:
        return np.zeros(0, dtype=bool)
    p = truth.like_probability(views["user_id"].to_numpy(), views["post_id"].to_numpy(),
                               views["time"].to_numpy().astype("datetime64[us]"))  # fmt: skip
    candidate = uniforms < p
    result = np.zeros(len(views), dtype=bool)
    users, posts = views["user_id"].to_numpy(), views["post_id"].to_numpy()
    for i in np.flatnonzero(candidate):
        pair = (int(users[i]), int(posts[i]))
        if pair not in liked:
            liked.add(pair)
            result[i] = True
    return result


def feed_rows(views: pd.DataFrame, liked: np.ndarray, delays: np.ndarray) -> pa.Table:
    """feed_data rows of the generator's convention: every view (target 1 if liked), and for a liked
    view a ``like`` row (target 0) ``delay`` seconds later; sorted by time, a view before its like."""
    view_times = views["time"].to_numpy().astype("datetime64[us]")
    like_times = view_times[liked] + delays[liked].astype(np.int64) * np.timedelta64(1_000_000, "us")
    n_views, n_likes = len(views), int(liked.sum())
    times = np.concatenate([view_times, like_times])
    order = np.argsort(times, kind="stable")
    users, posts = views["user_id"].to_numpy(), views["post_id"].to_numpy()
    return pa.table({
        "timestamp": pa.array(times[order], pa.timestamp("us")),
        "user_id": pa.array(np.concatenate([users, users[liked]])[order].astype(np.int32)),
        "post_id": pa.array(np.concatenate([posts, posts[liked]])[order].astype(np.int32)),
        "action": pa.array(np.array(["view"] * n_views + ["like"] * n_likes, dtype=object)[order], pa.string()),
        "target": pa.array(np.concatenate([liked, np.zeros(n_likes, bool)])[order].astype(np.int32)),
    }, schema=arrow_schema("feed_data"))  # fmt: skip


# --- the run -------------------------------------------------------------------------------------
def simulate(settings, api_url: str, users: int, days: int, *, aa: bool = False, seed: int | None = None,
             start: dt.date | None = None, concurrency: int = 4, traffic: Traffic = Traffic(),
             truth: GroundTruth | None = None, progress: Callable[[int, int], None] | None = None,
             lock_timeout: float = 30.0) -> SimulationResult:  # fmt: skip
    """Play ``days`` days of feed traffic of ``users`` users against the API at ``api_url`` and append
    the views and likes to the source's feed_data, one complete day at a time.

    seed defaults to RECSYS_SEED; start to the day after the last view in feed_data; truth to the
    generator's ground truth under RECSYS_DATA_DIR. progress, if given, is called with (requests
    answered, requests planned). Raises AARefused, SimulationError or SourceError.
    """
    if users < 1 or days < 1 or concurrency < 1:
        raise SimulationError("users, days and concurrency must be at least 1")
    started = time.perf_counter()
    api_url = api_url.rstrip("/")
    seed = settings.seed if seed is None else seed
    ready = check_api(api_url, aa)
    truth = truth if truth is not None else GroundTruth.load(settings.ground_truth_dir)
    source = open_source(settings.source_url)
    if not {"feed_data", "user_data"} <= set(source.columns()):
        raise SourceError(f"{source.url.display} has no feed_data/user_data tables: run `recsys generate` first")
    last_day = last_feed_day(source)
    if start is None:
        if last_day is None:
            raise SimulationError(f"feed_data in {source.url.display} holds no views: pass --start YYYY-MM-DD")
        start = last_day + dt.timedelta(days=1)
    elif last_day is not None and start <= last_day:
        log.warning("--start %s is not after the last feed day %s: simulated rows will interleave with existing ones",
                    start, last_day)  # fmt: skip

    user_ids = pick_users(truth, source, users, np.random.default_rng([seed, 0]))
    rates = np.random.default_rng([seed, 1]).gamma(traffic.rate_shape, traffic.sessions_per_day / traffic.rate_shape,
                                                   len(user_ids))  # fmt: skip
    dates = [start + dt.timedelta(days=d) for d in range(days)]
    plans = [plan_day(np.random.default_rng([seed, 2, d.toordinal()]), user_ids, rates, d, traffic) for d in dates]
    planned = sum(len(plan) for plan in plans)
    liked = liked_pairs(source, user_ids)
    log.info("simulating %s users x %s days from %s: %s requests planned against %s (snapshot %s, models %s)",
             f"{len(user_ids):,}", days, start, f"{planned:,}", api_url, ready.get("snapshot"),
             ready.get("group_models"))  # fmt: skip

    frames, http_seconds, appended, answered = [], 0.0, 0, 0

    def on_answer(n: int) -> None:
        progress(answered + n, planned)

    for number, (day, plan) in enumerate(zip(dates, plans, strict=True)):
        if aa and number:
            check_api(api_url, aa)  # a snapshot swapped in meanwhile must still be A/A
        try:
            responses = play(api_url, plan["user_id"], plan["time"], traffic.limit, concurrency,
                             progress=on_answer if progress else None, offsets=plan["offset"])  # fmt: skip
        except SimulationError as error:
            kept = f"{number} complete days appended before it" if number else "nothing appended"
            raise SimulationError(f"{error} (on simulated day {day}: not appended; {kept})") from None
        answered += len(plan)
        http_seconds += responses.seconds

        # Views in time order (requests are planned in time order); likes drawn with the day's own stream.
        served = np.fromiter(map(len, responses.post_ids), np.int64, len(plan))
        request_of_view = np.repeat(np.arange(len(plan)), served)
        views = pd.DataFrame({
            "user_id": plan["user_id"].to_numpy()[request_of_view],
            "post_id": np.fromiter((p for posts in responses.post_ids for p in posts), np.int64, served.sum()),
            "time": plan["time"].to_numpy()[request_of_view],
        })  # fmt: skip
        rng = np.random.default_rng([seed, 3, day.toordinal()])
        uniforms = rng.random(len(views))
        delays = rng.integers(traffic.like_delay_s[0], traffic.like_delay_s[1] + 1, len(views))
        is_liked = draw_likes(truth, views, uniforms, liked)
        rows = feed_rows(views, is_liked, delays)
        if rows.num_rows:
            append_rows(source, rows, lock_timeout)
        appended += rows.num_rows
        frames.append(plan.assign(status=responses.status, exp_group=responses.group, snapshot=responses.snapshot,
                                  request_id=responses.request_id, post_ids=responses.post_ids,
                                  likes=np.bincount(request_of_view, weights=is_liked, minlength=len(plan))
                                  .astype(np.int64)))  # fmt: skip
        log.info("%s: %s requests in %.1f s (%.0f requests/s), %s views, %s likes; appended %s rows",
                 day, f"{len(plan):,}", responses.seconds, len(plan) / max(responses.seconds, 1e-9),
                 f"{len(views):,}", f"{int(is_liked.sum()):,}", f"{rows.num_rows:,}")  # fmt: skip

    requests = pd.concat(frames, ignore_index=True)
    summary = _summary(requests, user_ids, dates, ready, aa, appended, time.perf_counter() - started, http_seconds)
    log.info("simulation done: %s", summary)
    return SimulationResult(summary, requests)


def _summary(requests: pd.DataFrame, user_ids, dates, ready, aa, appended, seconds, http_seconds) -> dict:
    ok = requests[requests["status"] == 200]
    served = ok["post_ids"].map(len)
    groups = {}
    for name, part in ok.groupby("exp_group"):
        views, likes = int(served[part.index].sum()), int(part["likes"].sum())
        active = int(part["user_id"].nunique())
        groups[name] = {"users": active, "requests": len(part), "views": views, "likes": likes,
                        "like_rate": round(likes / views, 4) if views else None,
                        "likes_per_user": round(likes / active, 3)}  # fmt: skip
    views, likes = int(served.sum()), int(ok["likes"].sum())
    return {
        "users": len(user_ids),
        "active_users": int(ok["user_id"].nunique()),
        "days": len(dates),
        "start": dates[0].isoformat(),
        "end": dates[-1].isoformat(),
        "aa": aa,
        "group_models": ready.get("group_models"),
        "snapshots": sorted({s for s in ok["snapshot"] if s}),
        "requests": len(requests),
        "served_posts": views,
        "views": views,
        "likes": likes,
        "like_rate": round(likes / views, 4) if views else None,
        "likes_per_active_user": round(likes / ok["user_id"].nunique(), 3) if len(ok) else None,
        "groups": groups,
        "errors": {"unknown_user": int((requests["status"] == 404).sum()),
                   "unknown_user_ids": int(requests.loc[requests["status"] == 404, "user_id"].nunique())},
        "appended_rows": appended,
        "seconds": round(seconds, 2),
        "http_seconds": round(http_seconds, 2),
        "requests_per_second": round(len(requests) / http_seconds, 1) if http_seconds else None,
    }  # fmt: skip
