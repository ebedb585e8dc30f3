"""Evaluation: one API for every model and baseline, computed the same way for each.

Metrics (k = 5):
- served HitRate@k, the deciding one (the original's checker): each sampled test user asks for k
  posts at their first moment in the test days, from the posts seen before that day but those they
  liked; a hit if they like one of them later in the test days. Known and fresh users (no history
  before that day) are also reported apart.
- expected HitRate@k (generated data only): mean of 1 - prod(1 - p) over the served top k, with the
  generator's true p at that moment; the oracle serves the k candidates with the highest true p.
  Each method's share of the oracle's value says how much of the achievable it reaches.
- replay HitRate@k on the test days: for each (user, day) with views, rank that day's viewed posts;
  a hit if a liked one is in the top k. Next to it, the exact expected value of a random ranking.
  Unbiased only where the logged feed was random; a feed chosen by an earlier ranking biases it.
- AUC and NDCG@k on the test views.

Methods: random, the baselines of ``recsys.rankers`` (popular, trending, personal, collaborative),
the trained models, and the oracle where a ground truth exists.
"""

from __future__ import annotations

import datetime as dt
import logging
import weakref

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from recsys import rankers
from recsys.features import ServingFeatures

log = logging.getLogger(__name__)

K = 5
Z95 = 1.959964


# --- the metric API ---------------------------------------------------------------------------------
def _ranked(scores, groups, seed: int = 0):
    """Row order by group, then score descending (ties broken at random), and each row's rank."""
    scores, groups = np.asarray(scores, dtype=float), np.asarray(groups)
    tiebreak = np.random.default_rng(seed).random(len(scores))
    order = np.lexsort((tiebreak, -scores, groups))
    sorted_groups = groups[order]
    starts = np.r_[0, np.flatnonzero(sorted_groups[1:] != sorted_groups[:-1]) + 1]
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    return order, rank, sorted_groups


def hit_rate_at_k(scores, labels, groups, k: int = K) -> np.ndarray:
    """Per group (in sorted group order): 1 if any of the k best-scored rows has a positive label."""
    order, rank, sorted_groups = _ranked(scores, groups)
    _, group_index = np.unique(sorted_groups, return_inverse=True)
    top = rank < k
    hits = np.bincount(group_index[top], weights=np.asarray(labels, dtype=float)[order][top],
                       minlength=group_index.max() + 1)  # fmt: skip
    return (hits > 0).astype(float)


def random_hit_rate_at_k(labels, groups, k: int = K) -> np.ndarray:
    """Per group: the exact probability that k rows drawn at random include a positive one."""
    frame = pd.DataFrame({"group": np.asarray(groups), "label": np.asarray(labels) > 0})
    sizes = frame.groupby("group")["label"].agg(["size", "sum"])
    n, m = sizes["size"].to_numpy(), sizes["sum"].to_numpy()
    # P(no positive among k of n) = C(n - m, k) / C(n, k) = prod_{j<k} (n - m - j) / (n - j)
    miss = np.ones(len(n))
    for j in range(k):
        miss *= np.clip((n - m - j) / np.maximum(n - j, 1), 0, None)
    miss = np.where(n <= k, (m == 0).astype(float), miss)  # every row is shown
    return 1 - miss


def ndcg_at_k(scores, labels, groups, k: int = K) -> np.ndarray:
    """Per group with at least one positive: DCG@k of the ranking over the ideal DCG@k."""
    labels = np.asarray(labels, dtype=float)

    def dcg(ranking_scores):
        order, rank, sorted_groups = _ranked(ranking_scores, groups)
        group_index = np.unique(sorted_groups, return_inverse=True)[1]
        discount = np.where(rank < k, 1 / np.log2(rank + 2), 0)
        return np.bincount(group_index, weights=labels[order] * discount)

    actual, ideal = dcg(scores), dcg(labels)
    return actual[ideal > 0] / ideal[ideal > 0]


def mean_ci(values) -> dict:
    values = np.asarray(values, dtype=float)
    mean = float(values.mean()) if len(values) else float("nan")
    half = Z95 * float(values.std(ddof=1)) / np.sqrt(len(values)) if len(values) > 1 else float("nan")
    return {"mean": round(mean, 4), "ci95": [round(mean - half, 4), round(mean + half, 4)], "n": len(values)}


# --- evaluating methods on an extract ----------------------------------------------------------------
def _sample_users_sql(seed: int, rate: float) -> str:
    buckets = 1_000_003
    return f"hash(user_id, {seed}) % {buckets} < {int(rate * buckets)}"


def replay_examples(store, first: dt.date, last: dt.date, max_rows: int, seed: int) -> pd.DataFrame:
    """Test-day views, one row per (user, day, post): liked if any view of it that day was liked.

    Users are sampled (whole users, by hash) when the test days hold more than max_rows.
    """
    days = f"day BETWEEN DATE '{first}' AND DATE '{last}'"
    (total,) = store.con.execute(f"SELECT count(*) FROM views WHERE {days}").fetchone()
    rate = min(1.0, max_rows / max(total, 1))
    return store.con.execute(f"""
        SELECT user_id, post_id, day, min(timestamp) AS timestamp, max(target) AS target
        FROM views WHERE {days} AND {_sample_users_sql(seed, rate)}
        GROUP BY user_id, post_id, day ORDER BY user_id, day, post_id""").df()


class BaselineRanker:
    """One of ``recsys.rankers.BASELINES``, scored from the feature frame like every other method."""

    text_space = "control"

    def __init__(self, method: str):
        self.method = method

    def score(self, features: pd.DataFrame, examples: pd.DataFrame) -> np.ndarray:
        return rankers.score(self.method, features)


class RandomRanker:
    text_space = "control"

    def __init__(self, seed: int):
        self.seed = seed

    def score(self, features: pd.DataFrame, examples: pd.DataFrame) -> np.ndarray:
        return np.random.default_rng(self.seed).random(len(examples))


class ModelRanker:
    """A trained model, ranking as it is served (``models.ranking_scores``); power overrides the
    exposure power kept in the model file. Rankers of one model at several powers (``power_rankers``)
    share its predictions."""

    def __init__(self, model, kind: str, power: float | None = None, predictions: LastPredictions | None = None):
        from recsys.models import TEXT_SPACE

        self.model, self.kind, self.text_space, self.power = model, kind, TEXT_SPACE[kind], power
        self.predictions = predictions

    def score(self, features: pd.DataFrame, examples: pd.DataFrame) -> np.ndarray:
        from recsys.models import ranking_scores

        probability = None if self.predictions is None else self.predictions(features)
        return ranking_scores(self.model, self.kind, features, self.power, probability)


class LastPredictions:
    """A model's like probabilities for the last feature frame it was given. ``Scorers`` hands every
    ranker the same frame, so rankers of one model at several exposure powers predict once. The frame
    is held weakly: a cached frame is never kept alive, nor mistaken for a later one."""

    def __init__(self, model, kind: str):
        self.model, self.kind = model, kind
        self._frame, self._values = None, None

    def __call__(self, frame: pd.DataFrame) -> np.ndarray:
        from recsys.models import predict

        if self._frame is None or self._frame() is not frame:
            self._frame, self._values = weakref.ref(frame), predict(self.model, self.kind, frame)
        return self._values


def power_rankers(model, kind: str, powers) -> dict[str, ModelRanker]:
    """One ranker per exposure power (named by the power) of the same model, predicting once per frame."""
    predictions = LastPredictions(model, kind)
    return {str(power): ModelRanker(model, kind, power, predictions) for power in powers}


class OracleRanker:
    """The generator's true like probability: the best any method could do."""

    text_space = "control"

    def __init__(self, truth):
        self.truth = truth

    def score(self, features: pd.DataFrame, examples: pd.DataFrame) -> np.ndarray:
        return self.truth.like_probability(examples["user_id"].to_numpy(), examples["post_id"].to_numpy(),
                                           examples["timestamp"].to_numpy().astype("datetime64[us]"))  # fmt: skip


class Scorers:
    """Scores of every ranker for the same examples, with features built once per text space."""

    def __init__(self, store, rankers: dict):
        self.store, self.rankers = store, rankers
        self._serving: dict = {}

    def score(self, examples: pd.DataFrame, as_of_day=None) -> dict[str, np.ndarray]:
        spaces = {ranker.text_space for ranker in self.rankers.values()}
        frames = {space: self.store.features(examples, space, as_of_day) for space in spaces}
        return {name: ranker.score(frames[ranker.text_space], examples) for name, ranker in self.rankers.items()}

    def score_candidates(self, users: pd.DataFrame, candidates: np.ndarray, as_of_day: dt.date, timestamp,
                         exclude: pd.DataFrame):  # fmt: skip
        """(pairs, scores of every ranker) for each user x each candidate post (post ids), user-major, but
        the (user_id, post_id) pairs in exclude. users: user_id and moment (the time a pair is asked at,
        which the oracle's true probability depends on).

        Features come from ``ServingFeatures`` as of the start of as_of_day at the given timestamp, as
        precompute builds them: the values the per-example query gives (a test holds them equal), but
        gathered from tables indexed once instead of joined per pair, which a grid of users x all posts
        needs at full scale.
        """
        spaces = {ranker.text_space for ranker in self.rankers.values()}
        user_ids = users["user_id"].to_numpy()
        grid = pd.DataFrame({"user_id": np.repeat(user_ids, len(candidates)),
                             "post_id": np.tile(candidates, len(user_ids))})  # fmt: skip
        keep = grid.merge(exclude, how="left", indicator=True)["_merge"].eq("left_only").to_numpy()
        pairs = grid[keep].reset_index(drop=True)
        pairs["timestamp"] = np.repeat(users["moment"].to_numpy(), len(candidates))[keep]
        post_index = pd.Index(self.store.post_ids).get_indexer(candidates)
        every_candidate = np.broadcast_to(post_index, (len(user_ids), len(candidates)))
        frames = {}
        for space in spaces:
            serving, attributes = self._serving_of(space, as_of_day)
            features = serving.features(attributes.loc[user_ids].reset_index(), every_candidate, timestamp)
            frames[space] = features[keep].reset_index(drop=True)
        return pairs, {name: ranker.score(frames[ranker.text_space], pairs) for name, ranker in self.rankers.items()}

    def _serving_of(self, space: str, as_of_day: dt.date):
        """(ServingFeatures of a text space as of a day, every user's attributes indexed by user_id); the
        tables of one day at a time are kept."""
        if (space, as_of_day) not in self._serving:
            for key in [key for key in self._serving if key[1] != as_of_day]:
                del self._serving[key]
            users, posts = self.store.entities(space)
            serving = ServingFeatures(self.store.history_as_of(space, as_of_day), posts, self.store.post_vectors[space])
            self._serving[(space, as_of_day)] = serving, users.set_index("user_id")
        return self._serving[(space, as_of_day)]


def standard_rankers(models: dict, truth, seed: int) -> dict:
    """random, every baseline, each trained model, and the oracle when the ground truth is known."""
    methods = {"random": RandomRanker(seed)}
    methods.update({name: BaselineRanker(name) for name in rankers.BASELINES})
    methods.update({kind: ModelRanker(model, kind) for kind, model in models.items()})
    if truth is not None:
        methods["oracle"] = OracleRanker(truth)
    return methods


def evaluate_replay(scorers: Scorers, examples: pd.DataFrame) -> dict:
    groups = examples.groupby(["user_id", "day"]).ngroup().to_numpy()
    labels = examples["target"].to_numpy()
    results = {}
    for method, scores in scorers.score(examples).items():
        results[method] = {
            "replay_hit_rate": mean_ci(hit_rate_at_k(scores, labels, groups)),
            "auc": round(float(roc_auc_score(labels, scores)), 4),
            "ndcg": round(float(ndcg_at_k(scores, labels, groups).mean()), 4),
        }
    random_expected = mean_ci(random_hit_rate_at_k(labels, groups))
    return {"methods": results, "random_expected_replay_hit_rate": random_expected,
            "groups": int(groups.max() + 1), "rows": len(examples)}  # fmt: skip


def served_checks(con, test_first: dt.date, test_last: dt.date, users: int, seed: int) -> pd.DataFrame:
    """The test users a served evaluation asks for, and when: each sampled user's first view in the
    test days (moment), its day (features as of that day's start) and whether the user had no view
    before it (fresh). Whole users are sampled by hash, at most about `users`."""
    days = f"day BETWEEN DATE '{test_first}' AND DATE '{test_last}'"
    (active,) = con.execute(f"SELECT count(DISTINCT user_id) FROM views WHERE {days}").fetchone()
    rate = min(1.0, users / max(active, 1))
    return con.execute(f"""
        WITH first_seen AS (SELECT user_id, min(day) AS first_day FROM views GROUP BY user_id)
        SELECT user_id, min(timestamp) AS moment, CAST(min(timestamp) AS DATE) AS day,
               any_value(first_day) = CAST(min(timestamp) AS DATE) AS fresh
        FROM views JOIN first_seen USING (user_id)
        WHERE {days} AND {_sample_users_sql(seed + 1, rate)}
        GROUP BY user_id ORDER BY user_id""").df()


def evaluate_served(scorers: Scorers, test_first: dt.date, test_last: dt.date, users: int, seed: int,
                    truth=None, batch_rows: int = 1_000_000) -> dict:  # fmt: skip
    """Served HitRate@5, the original checker's metric: each sampled test user asks for K posts at
    their first moment in the test days; a hit if they like one of them later in the test days.

    Every method serves from the same candidates: the posts seen before that day (what a service knows
    of the catalogue), but those the user liked before it (a service never shows them again). Features
    are as of the start of the day, at noon (as precompute builds them). With the generator's ground
    truth, also the expected HitRate of what is served, and the oracle's (the best K of the same
    candidates by true probability at the moment).

    Returns the summary per method (all users, known and fresh ones apart) and ``per_user``: one row
    per method and user (method, user_id, fresh, hit, expected), for paired comparisons.
    """
    con = scorers.store.con
    checks = served_checks(con, test_first, test_last, users, seed)
    con.register("checks_frame", checks[["user_id", "moment"]])
    try:
        liked_later = con.execute(f"""
            SELECT DISTINCT v.user_id, v.post_id FROM views v JOIN checks_frame c USING (user_id)
            WHERE v.target = 1 AND v.day <= DATE '{test_last}' AND v.timestamp >= c.moment""").df()
    finally:
        con.unregister("checks_frame")
    liked_later_keys = set(zip(liked_later["user_id"], liked_later["post_id"], strict=True))
    rows = []
    for day, day_checks in checks.groupby("day", sort=True):
        day = pd.Timestamp(day).date()
        candidates = con.execute(
            f"SELECT DISTINCT post_id FROM views WHERE day < DATE '{day}' ORDER BY post_id"
        ).fetchnumpy()["post_id"]
        if len(candidates) == 0:
            continue
        con.register("day_users", day_checks[["user_id"]])
        try:
            liked_before = con.execute(f"""
                SELECT DISTINCT user_id, post_id FROM views JOIN day_users USING (user_id)
                WHERE target = 1 AND day < DATE '{day}'""").df()
        finally:
            con.unregister("day_users")
        per_batch = max(1, batch_rows // len(candidates))
        for start in range(0, len(day_checks), per_batch):
            batch = day_checks.iloc[start : start + per_batch]
            pairs, scores = scorers.score_candidates(batch, candidates, day, pd.Timestamp(day) + pd.Timedelta(hours=12),
                                                     liked_before)  # fmt: skip
            group = pairs.groupby("user_id", sort=True).ngroup().to_numpy()
            group_users = np.unique(pairs["user_id"].to_numpy())
            fresh = batch.set_index("user_id").loc[group_users, "fresh"].to_numpy()
            truth_p = None if truth is None else OracleRanker(truth).score(None, pairs)
            for method, method_scores in scores.items():
                order, rank, _ = _ranked(method_scores, group)
                top = order[rank < K]
                top_users, top_posts = pairs["user_id"].to_numpy()[top], pairs["post_id"].to_numpy()[top]
                hit = np.array([(u, p) in liked_later_keys for u, p in zip(top_users, top_posts, strict=True)])
                expected = np.full(len(group_users), np.nan)
                if truth_p is not None:
                    # P(at least one like among the served posts) = 1 - prod(1 - p), per user
                    log_miss = pd.Series(np.log1p(-truth_p[top])).groupby(group[top]).sum().to_numpy()
                    expected = 1 - np.exp(log_miss)
                rows.append(pd.DataFrame({
                    "method": method, "user_id": group_users, "fresh": fresh,
                    "hit": pd.Series(hit).groupby(group[top]).max().to_numpy().astype(float), "expected": expected,
                }))  # fmt: skip
    per_user = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
        columns=["method", "user_id", "fresh", "hit", "expected"])  # fmt: skip
    results = {}
    for method, frame in per_user.groupby("method", sort=False):
        results[method] = {
            "served_hit_rate": mean_ci(frame["hit"]),
            "served_hit_rate_known": mean_ci(frame.loc[~frame["fresh"], "hit"]),
            "served_hit_rate_fresh": mean_ci(frame.loc[frame["fresh"], "hit"]),
        }
        if truth is not None:
            results[method]["expected_hit_rate"] = mean_ci(frame["expected"])
    if "oracle" in results:
        oracle = results["oracle"]["expected_hit_rate"]["mean"]
        for method in results:
            results[method]["share_of_oracle"] = round(results[method]["expected_hit_rate"]["mean"] / oracle, 4)
    return {"methods": results, "users": int(per_user["user_id"].nunique()),
            "fresh_users": int(per_user.loc[per_user["fresh"], "user_id"].nunique()),
            "checking_days": sorted(str(pd.Timestamp(d).date()) for d in checks["day"].unique()),
            "per_user": per_user}  # fmt: skip


# --- presenting a report -----------------------------------------------------------------------------
def format_report(report: dict) -> str:
    """A readable table of every method's numbers, the deciding served HitRate@5 first."""

    def number(value, digits=4):
        return "" if value is None or value != value else f"{value:.{digits}f}"

    header = (f"{'method':<14} {'served HR@5 [95% CI]':<26} {'known':>6} {'fresh':>6} {'expected':>8} "
              f"{'of oracle':>9} {'replay HR@5':>11} {'AUC':>6} {'NDCG@5':>7}")  # fmt: skip
    lines = [header, "-" * len(header)]
    for method, m in report["methods"].items():
        served = m.get("served_hit_rate", {"mean": None, "ci95": [None, None]})
        lines.append(
            f"{method:<14} {number(served['mean']):>6} [{number(served['ci95'][0])}, {number(served['ci95'][1])}]"
            f"{'':<{26 - 20}} {number(m.get('served_hit_rate_known', {}).get('mean')):>6} "
            f"{number(m.get('served_hit_rate_fresh', {}).get('mean')):>6} "
            f"{number(m.get('expected_hit_rate', {}).get('mean')):>8} {number(m.get('share_of_oracle'), 3):>9} "
            f"{number(m['replay_hit_rate']['mean']):>11} {number(m['auc']):>6} {number(m['ndcg']):>7}"
        )
    served = report["served"]
    random_expected = report["replay"]["random_expected_replay_hit_rate"]["mean"]
    lines.append(f"served to {served['users']:,} test users ({served['fresh_users']:,} fresh) at their first moment "
                 f"in the test days; replay over {report['replay']['groups']:,} user-days (a random order's exact "
                 f"expectation {random_expected:.4f})")  # fmt: skip
    return "\n".join(lines)


def report_rows(report: dict) -> pd.DataFrame:
    """One row per method, for the ``evaluations`` view."""
    rows = []
    for method, m in report["methods"].items():
        rows.append({
            "version": report["version"], "method": method,
            "test_first": report["split"]["test"][0], "test_last": report["split"]["test"][1],
            "replay_hit_rate": m["replay_hit_rate"]["mean"], "replay_ci_low": m["replay_hit_rate"]["ci95"][0],
            "replay_ci_high": m["replay_hit_rate"]["ci95"][1], "auc": m["auc"], "ndcg": m["ndcg"],
            "served_hit_rate": m.get("served_hit_rate", {}).get("mean"),
            "served_ci_low": m.get("served_hit_rate", {}).get("ci95", [None])[0],
            "served_ci_high": m.get("served_hit_rate", {}).get("ci95", [None, None])[1],
            "served_hit_rate_known": m.get("served_hit_rate_known", {}).get("mean"),
            "served_hit_rate_fresh": m.get("served_hit_rate_fresh", {}).get("mean"),
            "expected_hit_rate": m.get("expected_hit_rate", {}).get("mean"),
            "share_of_oracle": m.get("share_of_oracle"),
        })  # fmt: skip
    return pd.DataFrame(rows)


def plot_report(report: dict, path) -> None:
    """Bars per method: served HitRate@5 with its 95% CI, and expected HitRate@5 as a share of the oracle."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = [m for m in report["methods"] if "served_hit_rate" in report["methods"][m]]
    served = [report["methods"][m]["served_hit_rate"] for m in methods]
    shares = [report["methods"][m].get("share_of_oracle") for m in methods]
    panels = 2 if any(s is not None for s in shares) else 1
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 4.5), squeeze=False)
    ax = axes[0][0]
    means = np.array([r["mean"] for r in served], dtype=float)
    errors = np.nan_to_num([[r["mean"] - r["ci95"][0] for r in served], [r["ci95"][1] - r["mean"] for r in served]])
    ax.bar(methods, means, yerr=errors, capsize=4, color="#4C72B0")
    ax.set_title(f"served HitRate@5 [95% CI], test days {report['split']['test'][0]}..{report['split']['test'][1]}",
                 fontsize=10)  # fmt: skip
    ax.set_ylim(0, min(1.0, float(np.nanmax(means + errors[1])) * 1.1 + 1e-6))
    if panels == 2:
        ax = axes[0][1]
        ax.bar(methods, [s or 0 for s in shares], color="#55A868")
        ax.set_title("expected HitRate@5 as a share of the oracle")
        ax.set_ylim(0, 1.05)
        for x, share in enumerate(shares):
            ax.text(x, (share or 0) + 0.01, f"{share:.3f}" if share is not None else "", ha="center")
    for row in axes:
        for a in row:
            a.tick_params(axis="x", rotation=45)
    fig.suptitle(f"evaluation of {report['version']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
