"""The built-in data generator: the three source tables, of the original's shape, with ground truth.

Shape targets come from ``../shared/karpov-data-facts.md`` (user shares, topic shares, ids with gaps,
a random feed in sessions between 06:00 and 24:00, like rows 8..177 s after their view, ~4.5%
repeat views, a view like-rate of about 0.12). These figures belong to the generator alone: the
product never assumes them.

How likes arise (the model saved as ground truth, see ``recsys.truth``): each post is on one
sub-theme of its topic; each user has a taste for every sub-theme, made of parts that user features
explain (age, gender, country, city) and a personal part that only the user's own history reveals,
at topic and at sub-theme level; users differ in how much they like overall (partly explained by
age, os, source, country, city), posts in quality; an hour-of-day wave adds a little. The intercept
is solved so that the view like-rate comes out at ``LatentSpec.like_rate``.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
from scipy.optimize import brentq
from scipy.special import expit

from recsys.sources import Source, arrow_schema
from recsys.synthetic_text import SUBTHEMES, compose_text
from recsys.truth import GroundTruth

log = logging.getLogger(__name__)

SECOND = 1_000_000  # timestamps are microseconds
DAY_SECONDS = 86_400
USERS_PER_CHUNK = 8_192  # fixed, so that the output does not depend on anything but the seed


@dataclass(frozen=True)
class Preset:
    users: int
    posts: int
    days: int
    start: dt.date = dt.date(2021, 10, 1)


PRESETS = {
    "tiny": Preset(users=400, posts=150, days=14),
    "demo": Preset(users=5_000, posts=1_000, days=30),
    "full": Preset(users=163_205, posts=7_023, days=90),
}


@dataclass(frozen=True)
class LatentSpec:
    """Parameters of the like model; standard deviations are on the logit scale.

    As in the original ("what separates users is personal taste, age and city far more than topic
    alone"), taste is mostly explained by age and city, with a smaller personal part. With these
    values, ranking by the demographic part of taste alone reaches about 0.86 of the oracle's
    expected HitRate@5 on the demo preset, and adding post quality about 0.96.
    """

    like_rate: float = 0.12  # the view like-rate the intercept is solved for
    post_quality: float = 0.27
    hour_amplitude: float = 0.12
    # user_bias: how much a user likes overall
    bias_personal: float = 0.40
    bias_age: float = 0.15
    bias_os: float = 0.10
    bias_source: float = 0.10
    bias_country: float = 0.10
    bias_city: float = 0.15
    # taste for a topic, shared by its sub-themes
    topic_age: float = 0.40
    topic_gender: float = 0.15
    topic_country: float = 0.10
    topic_city: float = 0.25
    topic_personal: float = 0.20
    # taste for a sub-theme on top of its topic
    subtheme_age: float = 0.40
    subtheme_gender: float = 0.20
    subtheme_country: float = 0.05
    subtheme_city: float = 0.35
    subtheme_personal: float = 0.30


@dataclass(frozen=True)
class FeedSpec:
    """The shape of the feed log (facts file figures)."""

    inactive_users: float = 0.01  # users who never open the feed
    active_day_share_median: float = 0.144  # 13 of 90 days
    active_day_share_sigma: float = 0.4
    active_day_share_range: tuple[float, float] = (0.02, 0.27)  # 2..24 of 90 days
    extra_sessions_per_day: float = 0.06  # Poisson mean beyond the first session of an active day
    session_views_mean: float = 29.0
    session_views_sd: float = 8.0
    view_gap_median_s: float = 97.0
    view_gap_sigma: float = 0.35
    repeat_share: float = 0.045
    like_delay_s: tuple[int, int] = (8, 177)
    day_start_hour: int = 6  # no views before 06:00
    never_shown_posts: float = 0.027  # 192 of 7,023
    boosted_posts: float = 0.23  # shown about three times as often: mean views/post ≈ 1.46 × median
    boost: tuple[float, float] = (2.5, 3.3)


# Source-table value shares of the original (facts file).
COUNTRIES = (
    "Russia", "Ukraine", "Belarus", "Azerbaijan", "Kazakhstan", "Finland",
    "Turkey", "Latvia", "Cyprus", "Switzerland", "Estonia",
)  # fmt: skip
RUSSIA_SHARE = 143_035 / 163_205
TOP_CITIES = {
    "Russia": {
        "Moscow": 21_874, "Saint Petersburg": 6_904, "Novosibirsk": 1_987, "Yekaterinburg": 1_924,
        "Nizhniy Novgorod": 1_632, "Chelyabinsk": 1_574, "Kazan": 1_545, "Rostov": 1_541,
    },
    "Ukraine": {"Kyiv": 1}, "Belarus": {"Minsk": 1}, "Azerbaijan": {"Baku": 1},
    "Kazakhstan": {"Almaty": 1}, "Finland": {"Helsinki": 1}, "Turkey": {"Istanbul": 1},
    "Latvia": {"Riga": 1}, "Cyprus": {"Nicosia": 1}, "Switzerland": {"Zurich": 1}, "Estonia": {"Tallinn": 1},
}  # fmt: skip
CITIES_PER_USER = 3_915 / 163_205
TOPIC_COUNTS = {
    "movie": 3_000, "covid": 1_799, "business": 510, "sport": 510,
    "politics": 417, "tech": 401, "entertainment": 386,
}  # fmt: skip
ANDROID_SHARE = 105_972 / 163_205
ADS_SHARE = 101_685 / 163_205
MALE_SHARE = 0.55
ID_FILL = {"user": 163_205 / (168_552 - 200 + 1), "post": 7_023 / 7_319}
DUPLICATE_TEXT_SHARE = 1 - 6_924 / 7_023


@dataclass
class Generated:
    users: pa.Table
    posts: pa.Table
    truth: GroundTruth
    views_per_user: np.ndarray  # expected views of each user (the progress total)
    feed_chunks: Callable  # () -> iterator of feed_data Arrow tables


def _ids(rng, count: int, fill: float, first: int) -> np.ndarray:
    span = max(count, round(count / fill))
    return (first + np.sort(rng.choice(span, size=count, replace=False))).astype(np.int32)


def _exact_shares(rng, count: int, weights: dict[str, float]) -> np.ndarray:
    """Labels in exactly proportional numbers (largest remainder), shuffled."""
    names = list(weights)
    share = np.array([weights[n] for n in names], dtype=float)
    share = share / share.sum() * count
    counts = np.floor(share).astype(int)
    counts[np.argsort(share - counts)[::-1][: count - counts.sum()]] += 1
    labels = np.repeat(np.array(names, dtype=object), counts)
    rng.shuffle(labels)
    return labels


def _town_names(rng, count: int) -> list[str]:
    """Invented, pronounceable town names for the long tail of cities."""
    starts = ["Kras", "Bel", "Nov", "Ozer", "Sever", "Zel", "Dub", "Lip", "Ryab", "Sos", "Kam", "Vol",
              "Yar", "Tver", "Orl", "Gor", "Mir", "Stan", "Ber", "Kur", "Pol", "Sar", "Tal", "Ust"]  # fmt: skip
    middles = ["", "o", "a", "e", "ino", "ovo", "en", "ar"]
    ends = ["sk", "grad", "ovka", "insk", "ovo", "yevo", "any", "itsa", "evsk", "ozero", "pol", "burg"]
    names: set[str] = set()
    out: list[str] = []
    while len(out) < count:
        name = rng.choice(starts) + rng.choice(middles) + rng.choice(ends)
        if len(names) >= len(starts) * len(middles) * len(ends) * 0.9:
            name = f"{name} {len(out)}"  # more towns than syllable combinations
        if name not in names:
            names.add(name)
            out.append(name)
    return out


def _cities(rng, countries: np.ndarray) -> np.ndarray:
    """Heavy-tailed cities per country: the named big cities, then a Zipf tail of towns."""
    cities = np.empty(len(countries), dtype=object)
    tail_total = max(1, round(CITIES_PER_USER * len(countries)))
    for country in COUNTRIES:
        members = np.flatnonzero(countries == country)
        if len(members) == 0:
            continue
        top = TOP_CITIES[country]
        if country == "Russia":
            top_shares = np.array(list(top.values())) / 143_035
        else:
            top_shares = np.array([0.3])
        tail_count = max(1, round(tail_total * len(members) / len(countries)))
        tail = np.arange(1, tail_count + 1, dtype=float) ** -0.9
        tail = tail / tail.sum() * (1 - top_shares.sum())
        names = list(top) + _town_names(rng, tail_count)
        weights = np.concatenate([top_shares, tail])
        cities[members] = np.array(names, dtype=object)[rng.choice(len(names), len(members), p=weights / weights.sum())]
    return cities


def make_users(rng, count: int) -> pa.Table:
    rest = np.array([0.6**k for k in range(len(COUNTRIES) - 1)])
    country_weights = dict(zip(COUNTRIES, [RUSSIA_SHARE, *(rest / rest.sum() * (1 - RUSSIA_SHARE))], strict=True))
    countries = _exact_shares(rng, count, country_weights)
    # Right-skewed age, 14..92: median 24, mean about 27.
    age = np.clip(np.round(14 + rng.lognormal(np.log(10), 0.765, count)), 14, 92)
    table = {
        "user_id": _ids(rng, count, ID_FILL["user"], first=200),
        "gender": (rng.random(count) < MALE_SHARE).astype(np.int32),
        "age": age.astype(np.int32),
        "country": countries,
        "city": _cities(rng, countries),
        "exp_group": rng.integers(0, 5, count).astype(np.int32),
        "os": np.where(rng.random(count) < ANDROID_SHARE, "Android", "iOS"),
        "source": np.where(rng.random(count) < ADS_SHARE, "ads", "organic"),
    }
    return pa.Table.from_pydict({k: list(v) if v.dtype == object else v for k, v in table.items()},
                                schema=arrow_schema("user_data"))  # fmt: skip


def make_posts(rng, count: int) -> tuple[pa.Table, np.ndarray, list[str]]:
    """Posts with topic shares of the original; returns the table, sub-theme index and labels."""
    labels = [f"{topic}/{sub}" for topic in TOPIC_COUNTS for sub in SUBTHEMES[topic]]
    topics = _exact_shares(rng, count, TOPIC_COUNTS)
    subtheme = np.empty(count, dtype=np.int16)
    for topic in TOPIC_COUNTS:
        members = np.flatnonzero(topics == topic)
        first = labels.index(f"{topic}/{SUBTHEMES[topic][0]}")
        subtheme[members] = first + rng.integers(0, len(SUBTHEMES[topic]), len(members))
    texts = [compose_text(topic, labels[s].split("/", 1)[1], rng) for topic, s in zip(topics, subtheme, strict=True)]
    # A few posts repeat another post's text, as in the original.
    copies = rng.choice(count, size=round(count * DUPLICATE_TEXT_SHARE), replace=False)
    for i in copies:
        same_topic = np.flatnonzero(topics == topics[i])
        texts[i] = texts[rng.choice(same_topic)]
    table = pa.Table.from_pydict(
        {"post_id": _ids(rng, count, ID_FILL["post"], first=1), "text": texts, "topic": list(topics)},
        schema=arrow_schema("post_text_df"),
    )
    return table, subtheme, labels


def _standardize(values: np.ndarray) -> np.ndarray:
    return (values - values.mean()) / (values.std() or 1.0)


def _effects(rng, levels: np.ndarray, sd: float, width: int | None = None) -> np.ndarray:
    """Random effect per level (per level and column when width is given), looked up per row."""
    uniques, inverse = np.unique(levels, return_inverse=True)
    shape = (len(uniques),) if width is None else (len(uniques), width)
    return rng.normal(0, sd, shape)[inverse]


def make_latent(rng, users: pa.Table, subtheme: np.ndarray, labels: list[str], spec: LatentSpec):
    """User bias, post quality and the user x sub-theme taste matrix (before the intercept)."""
    n_users = users.num_rows
    topic_of = np.unique([label.split("/")[0] for label in labels], return_inverse=True)[1]
    n_topics, n_sub = topic_of.max() + 1, len(labels)
    age = _standardize(users["age"].to_numpy().astype(float))
    gender = users["gender"].to_numpy().astype(float) * 2 - 1
    country = users["country"].to_numpy(zero_copy_only=False)
    city = users["city"].to_numpy(zero_copy_only=False)
    os_ = users["os"].to_numpy(zero_copy_only=False)
    source = users["source"].to_numpy(zero_copy_only=False)

    bias = (
        rng.normal(0, spec.bias_age) * age
        + _effects(rng, os_, spec.bias_os)
        + _effects(rng, source, spec.bias_source)
        + _effects(rng, country, spec.bias_country)
        + _effects(rng, city, spec.bias_city)
        + rng.normal(0, spec.bias_personal, n_users)
    )
    # Age enters through a linear and a curved term, so tastes can peak at middle age.
    age_basis = np.stack([age, (age**2 - 1) / np.sqrt(2)], axis=1)
    topic_taste = (
        age_basis @ rng.normal(0, spec.topic_age / np.sqrt(2), (2, n_topics))
        + np.outer(gender, rng.normal(0, spec.topic_gender, n_topics))
        + _effects(rng, country, spec.topic_country, n_topics)
        + _effects(rng, city, spec.topic_city, n_topics)
        + rng.normal(0, spec.topic_personal, (n_users, n_topics))
    )
    subtheme_taste = (
        age_basis @ rng.normal(0, spec.subtheme_age / np.sqrt(2), (2, n_sub))
        + np.outer(gender, rng.normal(0, spec.subtheme_gender, n_sub))
        + _effects(rng, country, spec.subtheme_country, n_sub)
        + _effects(rng, city, spec.subtheme_city, n_sub)
        + rng.normal(0, spec.subtheme_personal, (n_users, n_sub))
    )
    taste = (topic_taste[:, topic_of] + subtheme_taste).astype(np.float32)
    quality = rng.normal(0, spec.post_quality, len(subtheme)).astype(np.float32)
    return bias.astype(np.float32), quality, taste


def plan_activity(rng, n_users: int, days: int, feed: FeedSpec) -> tuple[np.ndarray, np.ndarray]:
    """Per user: number of active days (0 for inactive users) and expected views."""
    share = np.clip(rng.lognormal(np.log(feed.active_day_share_median), feed.active_day_share_sigma, n_users),
                    *feed.active_day_share_range)  # fmt: skip
    active_days = np.clip(np.round(share * days), 1, days).astype(np.int64)
    active_days[rng.random(n_users) < feed.inactive_users] = 0
    expected_views = active_days * (1 + feed.extra_sessions_per_day) * feed.session_views_mean
    return active_days, expected_views


def exposure_weights(rng, n_posts: int, feed: FeedSpec) -> np.ndarray:
    """How often the random feed shows each post: most alike, some boosted, a few never."""
    weights = np.ones(n_posts)
    boosted = rng.random(n_posts) < feed.boosted_posts
    weights[boosted] = rng.uniform(*feed.boost, boosted.sum())
    weights[rng.choice(n_posts, size=round(n_posts * feed.never_shown_posts), replace=False)] = 0
    return weights / weights.sum()


def solve_intercept(rng, truth: GroundTruth, views: np.ndarray, post_weights: np.ndarray, like_rate: float) -> float:
    """The intercept at which the expected like-rate of the generated views equals like_rate."""
    sample = 200_000
    users = rng.choice(len(views), sample, p=views / views.sum())
    posts = rng.choice(len(post_weights), sample, p=post_weights)
    seconds = rng.integers(truth.meta["day_start_hour"] * 3600, DAY_SECONDS, sample)
    times = (seconds * SECOND).astype("datetime64[us]")
    truth.intercept = 0.0
    logits = truth.logit_by_index(users, posts, times)
    return float(brentq(lambda b: expit(logits + b).mean() - like_rate, -15, 15))


def _distinct_per_user(rng, view_user: np.ndarray, posts: np.ndarray, cumulative: np.ndarray, n_posts: int):
    """Redraw posts a user was already given, so that repeats are only the planted ones."""
    key = view_user.astype(np.int64) * n_posts + posts
    order = np.argsort(key)
    sorted_key = key[order]
    duplicate = np.r_[False, sorted_key[1:] == sorted_key[:-1]]
    taken, redo = sorted_key[~duplicate], order[duplicate]
    accepted = np.empty(0, dtype=np.int64)  # keys taken by redraws, few enough to re-sort
    for _ in range(30):  # a user with more views than posts to show keeps some repeats
        if len(redo) == 0:
            break
        fresh = np.searchsorted(cumulative, rng.random(len(redo)), side="right")
        fresh_key = view_user[redo].astype(np.int64) * n_posts + fresh
        first_of_key = np.zeros(len(redo), dtype=bool)
        first_of_key[np.unique(fresh_key, return_index=True)[1]] = True
        ok = first_of_key & ~_contains(taken, fresh_key) & ~_contains(accepted, fresh_key)
        posts[redo[ok]] = fresh[ok]
        accepted = np.sort(np.concatenate([accepted, fresh_key[ok]]))
        redo = redo[~ok]
    return posts


def _contains(sorted_values: np.ndarray, values: np.ndarray) -> np.ndarray:
    if len(sorted_values) == 0:
        return np.zeros(len(values), dtype=bool)
    return sorted_values[np.searchsorted(sorted_values, values).clip(max=len(sorted_values) - 1)] == values


def _plant_repeats(rng, view_user: np.ndarray, posts: np.ndarray, user_start: np.ndarray, share: float):
    """Turn a share of views into repeats of a post the same user saw earlier."""
    position = np.arange(len(posts)) - user_start[view_user]
    repeat = (position > 0) & (rng.random(len(posts)) < share)
    originals = np.flatnonzero(~repeat)
    originals_before = np.cumsum(~repeat) - ~repeat  # originals at earlier positions, globally
    first_original = originals_before[user_start[view_user[repeat]]]
    earlier = originals_before[repeat] - first_original
    source = originals[first_original + (rng.random(repeat.sum()) * earlier).astype(np.int64)]
    posts = posts.copy()
    posts[repeat] = posts[source]
    return posts


def feed_chunk(rng, users: np.ndarray, active_days: np.ndarray, preset: Preset, feed: FeedSpec,
               post_weights: np.ndarray, truth: GroundTruth, user_ids, post_ids) -> pa.Table:  # fmt: skip
    """The feed rows of a group of users: sessions, views with likes drawn from the truth, like rows."""
    # Active days (distinct, random) and sessions per active day.
    day_rank = rng.random((len(users), preset.days)).argsort(axis=1)
    chosen = day_rank < active_days[users, None]
    session_user, session_day = np.nonzero(chosen)
    repeats = 1 + rng.poisson(feed.extra_sessions_per_day, len(session_user))
    session_user, session_day = np.repeat(session_user, repeats), np.repeat(session_day, repeats)
    n_views = np.clip(np.round(rng.normal(feed.session_views_mean, feed.session_views_sd, len(session_user))), 3, None)
    n_views = n_views.astype(np.int64)

    # Views of a session are ~97 s apart. Sessions start uniformly over the day's feed hours; one
    # that would run past midnight goes on at the start of the same day's feed hours instead, so
    # that views spread evenly over the hours without cutting sessions short.
    view_session = np.repeat(np.arange(len(session_user)), n_views)
    gaps = np.maximum(5, rng.lognormal(np.log(feed.view_gap_median_s), feed.view_gap_sigma, len(view_session)))
    session_first = np.cumsum(n_views) - n_views
    gaps[session_first] = 0
    offset = np.cumsum(gaps)
    offset -= np.repeat(offset[session_first], n_views)
    feed_hours = DAY_SECONDS - feed.day_start_hour * 3600
    start = rng.random(len(session_user)) * feed_hours
    seconds = (
        session_day[view_session] * DAY_SECONDS
        + feed.day_start_hour * 3600
        + np.mod(start[view_session] + offset, feed_hours)
    )
    view_user = session_user[view_session]

    seconds = np.floor(seconds).astype(np.int64)
    order = np.argsort(view_user * (preset.days * DAY_SECONDS) + seconds)  # by user, then time
    view_user, seconds = view_user[order], seconds[order]
    user_start = np.searchsorted(view_user, np.arange(len(users)))

    cumulative = np.cumsum(post_weights)
    posts = np.searchsorted(cumulative, rng.random(len(view_user)), side="right")
    posts = _distinct_per_user(rng, view_user, posts, cumulative, len(post_weights))
    posts = _plant_repeats(rng, view_user, posts, user_start, feed.repeat_share)

    epoch = np.datetime64(preset.start, "us")
    times = epoch + seconds * SECOND
    global_user = users[view_user]
    liked = rng.random(len(posts)) < expit(truth.logit_by_index(global_user, posts, times))
    # A post can be liked once: later views of a liked post stay unliked.
    key = view_user.astype(np.int64) * len(post_weights) + posts
    order = np.argsort(key * (preset.days * DAY_SECONDS) + seconds)  # by (user, post), then time
    liked_sorted = liked[order].astype(np.int64)
    group_start = np.r_[True, key[order][1:] != key[order][:-1]]
    running = np.cumsum(liked_sorted)
    before = running - liked_sorted - np.maximum.accumulate(np.where(group_start, running - liked_sorted, 0))
    liked[order[before > 0]] = False

    like_at = seconds[liked] + rng.integers(feed.like_delay_s[0], feed.like_delay_s[1] + 1, liked.sum())
    all_seconds = np.concatenate([seconds, like_at])
    order = np.argsort(all_seconds, kind="stable")
    n_likes = int(liked.sum())
    action = pa.DictionaryArray.from_arrays(
        pa.array(np.r_[np.zeros(len(posts), np.int8), np.ones(n_likes, np.int8)][order]), ["view", "like"]
    ).cast(pa.string())
    return pa.table(
        {
            "timestamp": pa.array(epoch + all_seconds[order] * SECOND, pa.timestamp("us")),
            "user_id": pa.array(np.r_[user_ids[global_user], user_ids[global_user[liked]]][order], pa.int32()),
            "post_id": pa.array(np.r_[post_ids[posts], post_ids[posts[liked]]][order], pa.int32()),
            "action": action,
            "target": pa.array(np.r_[liked, np.zeros(n_likes, bool)][order].astype(np.int32)),
        },
        schema=arrow_schema("feed_data"),
    )


def build(preset: Preset, seed: int, spec: LatentSpec = LatentSpec(), feed: FeedSpec = FeedSpec()) -> Generated:
    """Users, posts and ground truth in memory, and a generator of the feed, chunk by chunk."""
    streams = np.random.SeedSequence(seed).spawn(6)
    users = make_users(np.random.default_rng(streams[0]), preset.users)
    posts, subtheme, labels = make_posts(np.random.default_rng(streams[1]), preset.posts)
    bias, quality, taste = make_latent(np.random.default_rng(streams[2]), users, subtheme, labels, spec)
    active_days, views = plan_activity(np.random.default_rng(streams[3]), preset.users, preset.days, feed)
    weights = exposure_weights(np.random.default_rng(streams[4]), preset.posts, feed)
    truth = GroundTruth(
        user_ids=users["user_id"].to_numpy(),
        post_ids=posts["post_id"].to_numpy(),
        user_bias=bias,
        post_quality=quality,
        post_subtheme=subtheme,
        taste=taste,
        intercept=0.0,
        hour_amplitude=spec.hour_amplitude,
        hour_peak=float(np.random.default_rng(streams[5]).uniform(12, 24)),
        subthemes=labels,
        meta={
            "seed": seed,
            "preset": asdict(preset) | {"start": preset.start.isoformat()},
            "latent": asdict(spec),
            "day_start_hour": feed.day_start_hour,
        },
    )
    truth.intercept = solve_intercept(np.random.default_rng([seed, 1]), truth, views, weights, spec.like_rate)
    user_ids, post_ids = truth.user_ids, truth.post_ids

    def feed_chunks():
        chunk_streams = np.random.SeedSequence([seed, 2]).spawn((preset.users + USERS_PER_CHUNK - 1) // USERS_PER_CHUNK)
        for number, stream in enumerate(chunk_streams):
            members = np.arange(number * USERS_PER_CHUNK, min(preset.users, (number + 1) * USERS_PER_CHUNK))
            yield feed_chunk(np.random.default_rng(stream), members, active_days, preset, feed, weights, truth,
                             user_ids, post_ids)  # fmt: skip

    return Generated(users, posts, truth, views, feed_chunks)


class SourceNotEmptyError(RuntimeError):
    """Generating would overwrite tables that already hold data."""


def generate_into(source: Source, preset: Preset, seed: int, replace: bool, truth_dir, progress=None) -> dict:
    """Generate the three tables into the source and the ground truth into truth_dir.

    progress, if given, is called after each feed chunk with (rows so far, rows expected).
    """
    existing = source.columns()
    if existing and not replace:
        counts = {table: source.row_count(table) for table in existing}
        if any(counts.values()):
            held = ", ".join(f"{t}: {n:,} rows" for t, n in counts.items())
            raise SourceNotEmptyError(
                f"{source.url.display} already holds data ({held}); pass --replace to overwrite it"
            )
    started = time.perf_counter()
    generated = build(preset, seed)
    log.info("users %s, posts %s built in %.1f s", generated.users.num_rows, generated.posts.num_rows,
             time.perf_counter() - started)  # fmt: skip
    rows, expected = 0, int(generated.views_per_user.sum() * (1 + LatentSpec.like_rate))
    # One loader thread writes chunk n while chunk n+1 is generated (numpy and the COPY release the GIL).
    with source.writer(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="load") as loader:
        source.create_schema(replace=True)
        source.append("user_data", generated.users)
        source.append("post_text_df", generated.posts)
        loading = None
        for chunk in generated.feed_chunks():
            if loading:
                loading.result()
            loading = loader.submit(source.append, "feed_data", chunk)
            rows += chunk.num_rows
            if progress:
                progress(rows, expected)
        if loading:
            loading.result()
        source.finish_load()
    generated.truth.meta["source"] = source.url.display
    generated.truth.save(truth_dir)
    elapsed = time.perf_counter() - started
    log.info("generated %s feed rows in %.1f s (%.0f rows/s)", f"{rows:,}", elapsed, rows / elapsed)
    return {"users": generated.users.num_rows, "posts": generated.posts.num_rows, "feed_rows": rows,
            "seconds": round(elapsed, 1)}  # fmt: skip
