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

Two worlds share those users, posts and tastes (``build(..., world=...)``, ``recsys generate --world``):

- ``static`` (the default, unchanged for a seed): every post exists from day 0, taste is fixed and
  the logged feed is random.
- ``dynamic``: what real logs have (shape targets from ``../shared/real-logs-facts.md``, parameters
  in ``DynamicSpec``). Posts are published over the period (20% exist at the start, up to 21 days
  old; post ids grow with publication) and are never shown before. A post's appeal fades by
  ``decay`` logit per day of age (lognormal over posts, median 0.1: some evergreen, some news gone
  in days). Each sub-theme has a few news cycles (bursts of +0.5..1.5 on the logit that rise and
  fall over 1..5 days; about 3 of 36 sub-themes trend at a time), a [sub-theme, 3 h] matrix in the
  truth. 35% of users are there at the start, the rest join over the period; a user is active
  after an active day with chance 0.4 and after an idle one with a chance of their own (lognormal,
  median 0.03), so activity is heavy-tailed and bursty. The feed was chosen by an earlier
  recommender: a post's weight on a day is exp(2 × its true appeal then - age / 30 days + a
  per-post popularity of sd 2.2), 1% of it spread evenly; a user who has seen the favoured posts
  gets flatter weights (power 0.7) instead of repeats. The intercept is solved for the same 0.12
  view like-rate (the facts have no feed like-rate to prefer), on the views of a pilot sample of
  users made as the feed makes them.

  On the demo preset, seed 1: 0.48 M rows; views per user median 67, 90th percentile 225, max 646
  (movie log: 65, 244, 737); Gini of views per post 0.61, of likes 0.67 (movie log 0.63, 0.67;
  news log 0.79; the full preset: 0.75); 12% of the last week's likes go to the top 5% of posts by
  earlier likes (movie log 30%) and 47% to posts first shown that week (news log 70%); 44% of likes
  are of posts under 3 days old; view like-rate 0.118.
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


WORLDS = ("static", "dynamic")


@dataclass(frozen=True)
class DynamicSpec:
    """What the dynamic world adds: publication, age decay, news cycles, arriving users, a biased feed.

    Calibrated against the shape of real logs (``../shared/real-logs-facts.md``), see the module
    docstring for what comes out on the demo preset. Logit effects are on the like logit.
    """

    # Posts: a share exists at the start (already aged), the rest appear over the period.
    initial_post_share: float = 0.2
    initial_post_max_age_days: float = 21.0
    decay_median: float = 0.1  # logit lost per day of age; lognormal over posts
    decay_sigma: float = 1.2  # 10% of posts under 0.02 a day (evergreen), 10% over 0.47 (news)
    # News cycles: bursts of a sub-theme's appeal, rising over the first part of their span.
    bursts_per_subtheme_week: float = 0.3
    burst_days: tuple[float, float] = (1.0, 5.0)
    burst_amplitude: tuple[float, float] = (0.5, 1.5)
    burst_rise_share: float = 0.3
    trend_step_hours: float = 3.0
    # Users: a share is present at the start, the rest join over the period (active on the day they
    # join); after that a user is active on a day with chance `stay_active` after an active day and
    # their own `comeback` chance after an idle one, so active days come in bursts.
    initial_user_share: float = 0.35
    comeback_median: float = 0.03
    comeback_sigma: float = 1.5
    comeback_max: float = 0.6
    stay_active: float = 0.4
    # The earlier recommender that chose the logged feed: a post's weight on a day is
    # exp(exposure_appeal * appeal - age / exposure_age_days + noise), appeal being the post's part
    # of the true logit (quality + trend - decay * age); noise is its own error, fixed per post.
    exposure_appeal: float = 2.0
    exposure_age_days: float = 30.0
    exposure_noise: float = 2.2
    exposure_explore: float = 0.01  # share of the feed spread evenly over the published posts (> 0)
    # A user's feed redraws a post they have seen this many times from the weights, then goes deeper
    # (what the earlier recommender favours can be used up): from the weights to this power.
    favoured_redraws: int = 5
    deeper_temper: float = 0.7


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
    joined_day: np.ndarray  # the day each user joined, counted from the start (0: present from the start)
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
    return _intercept_for(truth, users, posts, times, like_rate)


def _intercept_for(truth: GroundTruth, users: np.ndarray, posts: np.ndarray, times: np.ndarray, like_rate: float):
    """The intercept at which the mean like probability of these (user, post, time) views is like_rate."""
    truth.intercept = 0.0
    logits = truth.logit_by_index(users, posts, times)
    return float(brentq(lambda b: expit(logits + b).mean() - like_rate, -15, 15))


def make_post_dynamics(rng, n_posts: int, n_subthemes: int, days: int, dynamics: DynamicSpec):
    """Publication seconds (from the start), age decay per post, and the trend matrix [sub-theme, step]
    with the seconds of its first step."""
    initial = max(1, round(n_posts * dynamics.initial_post_share))  # someone must be there on day 0
    # Sorted: post ids grow with publication, as in a real table.
    published = np.sort(np.concatenate([
        -rng.uniform(0, dynamics.initial_post_max_age_days * DAY_SECONDS, initial),
        rng.uniform(0, days * DAY_SECONDS, n_posts - initial),
    ])).astype(np.int64)  # fmt: skip
    decay = rng.lognormal(np.log(dynamics.decay_median), dynamics.decay_sigma, n_posts).astype(np.float32)

    # Bursts start from one longest burst before the period to its end, so that the period begins
    # and ends mid-cycle; the matrix reaches one longest burst beyond either side, so its first and
    # last steps are 0.
    margin = dynamics.burst_days[1]
    step_days = dynamics.trend_step_hours / 24
    steps = int(np.ceil((days + 2 * margin) / step_days)) + 1
    step_time = -margin + step_days * np.arange(steps)  # in days from the start
    n_bursts = rng.poisson(dynamics.bursts_per_subtheme_week / 7 * (days + margin), n_subthemes)
    burst_subtheme = np.repeat(np.arange(n_subthemes), n_bursts)
    start = rng.uniform(-margin, days, len(burst_subtheme))
    length = rng.uniform(*dynamics.burst_days, len(burst_subtheme))
    amplitude = rng.uniform(*dynamics.burst_amplitude, len(burst_subtheme))
    phase = (step_time[None, :] - start[:, None]) / length[:, None]
    rise = dynamics.burst_rise_share
    shape = np.where(phase < rise, phase / rise, (1 - phase) / (1 - rise)).clip(0, None)
    shape[(phase < 0) | (phase > 1)] = 0
    trend = np.zeros((n_subthemes, steps), dtype=np.float32)
    np.add.at(trend, burst_subtheme, (amplitude[:, None] * shape).astype(np.float32))
    return published, decay, trend, int(-margin * DAY_SECONDS)


def plan_dynamic_activity(rng, n_users: int, days: int, feed: FeedSpec, dynamics: DynamicSpec):
    """Per user: the day they join (0: present at the start) and their sessions on each day [user, day]."""
    present = rng.random(n_users) < dynamics.initial_user_share
    joined = np.where(present, 0, rng.integers(1, days, n_users))
    comeback = np.minimum(rng.lognormal(np.log(dynamics.comeback_median), dynamics.comeback_sigma, n_users),
                          dynamics.comeback_max)  # fmt: skip
    # Users present at the start begin in their long-run state: active with the chain's stationary share.
    active = present & (rng.random(n_users) < comeback / (comeback + 1 - dynamics.stay_active))
    sessions = np.zeros((n_users, days), dtype=np.int8)
    for day in range(days):
        chance = np.where(active, dynamics.stay_active, comeback)
        active = ((rng.random(n_users) < chance) & (day >= joined)) | ((day == joined) & ~present)
        sessions[active, day] = 1 + rng.poisson(feed.extra_sessions_per_day, active.sum())
    sessions[rng.random(n_users) < feed.inactive_users] = 0
    return joined, sessions


class DailyExposure:
    """The earlier recommender's feed in the dynamic world: a weight per post and day, and the draw.

    The weights favour posts that are appealing at the time (quality, trend, little decay) and
    recent; a post published during a day is drawn only for views after its publication.
    """

    def __init__(self, rng, truth: GroundTruth, published: np.ndarray, days: int, day_start_hour: int,
                 dynamics: DynamicSpec):  # fmt: skip
        n_posts = len(published)
        # Weigh each day at the middle of its feed hours, or at publication for posts that appear later.
        middle = (np.arange(days) * DAY_SECONDS + (day_start_hour * 3600 + DAY_SECONDS) // 2)[:, None]
        at = np.maximum(middle, published[None, :])
        times = np.datetime64(truth.meta["preset"]["start"], "us") + at * SECOND
        posts = np.arange(n_posts)
        appeal = truth.post_appeal(posts, times)
        age = truth.age_days(posts, times)
        noise = rng.normal(0, dynamics.exposure_noise, n_posts)
        log_weight = dynamics.exposure_appeal * appeal - age / dynamics.exposure_age_days + noise
        shown = published[None, :] < (np.arange(days)[:, None] + 1) * DAY_SECONDS
        self.favoured = self._cumulative(log_weight, shown, dynamics.exposure_explore)
        self.deeper = self._cumulative(dynamics.deeper_temper * log_weight, shown, dynamics.exposure_explore)
        self.last_shown = n_posts - 1 - np.argmax(shown[:, ::-1], axis=1)
        self.published = published
        self.n_posts = n_posts
        self.favoured_redraws = dynamics.favoured_redraws

    @staticmethod
    def _cumulative(log_weight: np.ndarray, shown: np.ndarray, explore: float) -> np.ndarray:
        """All days' cumulative shares in one increasing array, day d's in [d, d + 1], so that one
        searchsorted draws for views of any days."""
        weights = np.where(shown, np.exp(log_weight - log_weight[shown].max()), 0.0)  # max: no overflow
        shares = ((1 - explore) * weights / weights.sum(axis=1, keepdims=True)
                  + explore * shown / shown.sum(axis=1, keepdims=True))  # fmt: skip
        return (np.cumsum(shares, axis=1) + np.arange(len(shown))[:, None]).ravel()

    def draw(self, rng, seconds: np.ndarray, attempt: int = 0) -> np.ndarray:
        """A post for each view at seconds since the start, never one published after the view.

        attempt counts the redraws of a post the user has seen: after ``favoured_redraws`` the
        feed goes deeper, with flatter weights."""
        cumulative = self.favoured if attempt < self.favoured_redraws else self.deeper
        day = seconds // DAY_SECONDS
        posts = np.empty(len(seconds), dtype=np.int64)
        todo = np.arange(len(seconds))
        while len(todo):
            needles = day[todo] + rng.random(len(todo))
            order = np.argsort(needles)  # searchsorted is much faster with sorted needles
            found = np.empty(len(todo), dtype=np.int64)
            found[order] = np.searchsorted(cumulative, needles[order], side="right")
            # Rounding may put a draw a hair beyond its day's bounds: keep it on the day's shown posts
            # (post 0 is the earliest published, always shown).
            found = np.clip(found - day[todo] * self.n_posts, 0, self.last_shown[day[todo]])
            ok = self.published[found] <= seconds[todo]
            posts[todo[ok]] = found[ok]
            todo = todo[~ok]
        return posts


def solve_dynamic_intercept(rng, truth: GroundTruth, sessions: np.ndarray, exposure: DailyExposure, preset: Preset,
                            feed: FeedSpec, like_rate: float) -> float:  # fmt: skip
    """The intercept at which the expected like-rate of the views equals like_rate.

    Measured on the views of a pilot sample of users, made as the feed makes them: a user's posts
    are distinct, so heavy users go deeper into older, faded posts than independent draws would.
    """
    pilot = np.sort(rng.choice(len(sessions), min(len(sessions), 2_000), replace=False))
    session_user, session_day = _planned_sessions(sessions[pilot])
    view_user, seconds, posts = _views(rng, len(pilot), session_user, session_day, preset, feed, exposure.draw,
                                       len(truth.post_ids))  # fmt: skip
    times = np.datetime64(preset.start, "us") + seconds * SECOND
    return _intercept_for(truth, pilot[view_user], posts, times, like_rate)


def _distinct_per_user(rng, view_user: np.ndarray, posts: np.ndarray, draw_posts: Callable, seconds: np.ndarray,
                       n_posts: int):  # fmt: skip
    """Redraw posts a user was already given, so that repeats are only the planted ones."""
    key = view_user.astype(np.int64) * n_posts + posts
    order = np.argsort(key)
    sorted_key = key[order]
    duplicate = np.r_[False, sorted_key[1:] == sorted_key[:-1]]
    taken, redo = sorted_key[~duplicate], order[duplicate]
    accepted = np.empty(0, dtype=np.int64)  # keys taken by redraws, few enough to re-sort
    for attempt in range(30):  # a user with more views than posts to show keeps some repeats
        if len(redo) == 0:
            break
        fresh = draw_posts(rng, seconds[redo], attempt)
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
    """The static world's feed rows of a group of users: random active days, a random feed."""
    # Active days (distinct, random) and sessions per active day.
    day_rank = rng.random((len(users), preset.days)).argsort(axis=1)
    chosen = day_rank < active_days[users, None]
    session_user, session_day = np.nonzero(chosen)
    repeats = 1 + rng.poisson(feed.extra_sessions_per_day, len(session_user))
    session_user, session_day = np.repeat(session_user, repeats), np.repeat(session_day, repeats)
    cumulative = np.cumsum(post_weights)

    def draw_posts(rng, seconds, attempt=0):
        return np.searchsorted(cumulative, rng.random(len(seconds)), side="right")

    views = _views(rng, len(users), session_user, session_day, preset, feed, draw_posts, len(post_ids))
    return _feed_rows(rng, users, *views, preset, feed, truth, user_ids, post_ids)


def dynamic_feed_chunk(rng, users: np.ndarray, sessions: np.ndarray, preset: Preset, feed: FeedSpec,
                       exposure: DailyExposure, truth: GroundTruth, user_ids, post_ids) -> pa.Table:  # fmt: skip
    """The dynamic world's feed rows of a group of users: their planned sessions, the earlier recommender's posts."""
    session_user, session_day = _planned_sessions(sessions[users])
    views = _views(rng, len(users), session_user, session_day, preset, feed, exposure.draw, len(post_ids))
    return _feed_rows(rng, users, *views, preset, feed, truth, user_ids, post_ids)


def _planned_sessions(sessions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, day) of every session in a [user, day] matrix of session counts."""
    session_user, session_day = np.nonzero(sessions)
    repeats = sessions[session_user, session_day]
    return np.repeat(session_user, repeats), np.repeat(session_day, repeats)


def _views(rng, n_users: int, session_user: np.ndarray, session_day: np.ndarray, preset: Preset, feed: FeedSpec,
           draw_posts: Callable, n_posts: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Sessions (user row, day) to views (user row, seconds since the start, post), by user and time;
    draw_posts(rng, seconds, attempt) picks the posts (attempt: the redraws so far of a seen post)."""
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
    user_start = np.searchsorted(view_user, np.arange(n_users))

    posts = draw_posts(rng, seconds)
    posts = _distinct_per_user(rng, view_user, posts, draw_posts, seconds, n_posts)
    posts = _plant_repeats(rng, view_user, posts, user_start, feed.repeat_share)
    return view_user, seconds, posts


def _feed_rows(rng, users: np.ndarray, view_user: np.ndarray, seconds: np.ndarray, posts: np.ndarray,
               preset: Preset, feed: FeedSpec, truth: GroundTruth, user_ids, post_ids) -> pa.Table:  # fmt: skip
    """Views to feed rows: likes drawn from the truth, a like row 8..177 s after each liked view."""
    n_posts = len(post_ids)
    epoch = np.datetime64(preset.start, "us")
    times = epoch + seconds * SECOND
    global_user = users[view_user]
    liked = rng.random(len(posts)) < expit(truth.logit_by_index(global_user, posts, times))
    # A post can be liked once: later views of a liked post stay unliked.
    key = view_user.astype(np.int64) * n_posts + posts
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


def build(preset: Preset, seed: int, spec: LatentSpec = LatentSpec(), feed: FeedSpec = FeedSpec(),
          world: str = "static", dynamics: DynamicSpec = DynamicSpec()) -> Generated:  # fmt: skip
    """Users, posts and ground truth in memory, and a generator of the feed, chunk by chunk.

    Both worlds share users, posts and their latent taste for a seed; the dynamic one adds its own
    draws (``DynamicSpec``) on streams of its own, so the static world stays what it was.
    """
    if world not in WORLDS:
        raise ValueError(f"world {world!r}: expected one of {', '.join(WORLDS)}")
    streams = np.random.SeedSequence(seed).spawn(6)
    users = make_users(np.random.default_rng(streams[0]), preset.users)
    posts, subtheme, labels = make_posts(np.random.default_rng(streams[1]), preset.posts)
    bias, quality, taste = make_latent(np.random.default_rng(streams[2]), users, subtheme, labels, spec)
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
            "world": world,
        },
    )
    if world == "static":
        active_days, views = plan_activity(np.random.default_rng(streams[3]), preset.users, preset.days, feed)
        weights = exposure_weights(np.random.default_rng(streams[4]), preset.posts, feed)
        truth.intercept = solve_intercept(np.random.default_rng([seed, 1]), truth, views, weights, spec.like_rate)
        joined_day = np.zeros(preset.users, dtype=np.int64)

        def chunk(rng, members):
            return feed_chunk(rng, members, active_days, preset, feed, weights, truth, truth.user_ids, truth.post_ids)
    else:
        exposure, joined_day, sessions = _dynamic_world(seed, truth, preset, feed, dynamics)
        views = sessions.sum(axis=1) * feed.session_views_mean
        truth.intercept = solve_dynamic_intercept(np.random.default_rng([seed, 1]), truth, sessions, exposure, preset,
                                                  feed, spec.like_rate)  # fmt: skip

        def chunk(rng, members):
            return dynamic_feed_chunk(rng, members, sessions, preset, feed, exposure, truth, truth.user_ids,
                                      truth.post_ids)  # fmt: skip

    def feed_chunks():
        chunk_streams = np.random.SeedSequence([seed, 2]).spawn((preset.users + USERS_PER_CHUNK - 1) // USERS_PER_CHUNK)
        for number, stream in enumerate(chunk_streams):
            members = np.arange(number * USERS_PER_CHUNK, min(preset.users, (number + 1) * USERS_PER_CHUNK))
            yield chunk(np.random.default_rng(stream), members)

    return Generated(users, posts, truth, views, joined_day, feed_chunks)


def _dynamic_world(seed: int, truth: GroundTruth, preset: Preset, feed: FeedSpec, dynamics: DynamicSpec):
    """Fill the truth's dynamic arrays; return the earlier recommender's exposure, join days and sessions."""
    posts_stream, users_stream, exposure_stream = np.random.SeedSequence([seed, 3]).spawn(3)
    published, decay, trend, trend_start = make_post_dynamics(
        np.random.default_rng(posts_stream), len(truth.post_ids), len(truth.subthemes), preset.days, dynamics
    )
    epoch = np.datetime64(preset.start, "us")
    truth.post_published = epoch + published * SECOND
    truth.post_decay = decay
    truth.trend = trend
    truth.trend_start = epoch + trend_start * SECOND
    truth.trend_step_hours = dynamics.trend_step_hours
    truth.meta["dynamics"] = asdict(dynamics)
    joined_day, sessions = plan_dynamic_activity(np.random.default_rng(users_stream), len(truth.user_ids),
                                                 preset.days, feed, dynamics)  # fmt: skip
    exposure = DailyExposure(np.random.default_rng(exposure_stream), truth, published, preset.days,
                             feed.day_start_hour, dynamics)  # fmt: skip
    return exposure, joined_day, sessions


class SourceNotEmptyError(RuntimeError):
    """Generating would overwrite tables that already hold data."""


def generate_into(source: Source, preset: Preset, seed: int, replace: bool, truth_dir, progress=None,
                  world: str = "static") -> dict:  # fmt: skip
    """Generate the three tables of a static or dynamic world into the source and the ground truth into truth_dir.

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
    generated = build(preset, seed, world=world)
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
    return {"world": world, "users": generated.users.num_rows, "posts": generated.posts.num_rows, "feed_rows": rows,
            "seconds": round(elapsed, 1)}  # fmt: skip
