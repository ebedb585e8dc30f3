"""Evaluation: one API for every model and baseline, computed the same way for each.

Metrics (k = 5):
- replay HitRate@k on the test days: for each (user, day) with views, rank that day's viewed posts;
  a hit if a liked one is in the top k. Valid because the feed was random (an unbiased sample of
  user x post preferences). Next to it, the exact expected value of a random ranking.
- served HitRate@k: for sampled test users at a checking time t (noon of the first test day), the k
  posts the method would serve from all posts (already-liked ones removed); a hit if the user liked
  one of them after t in the test days. Sparse with a random feed: a served post is rarely shown.
- expected HitRate@k (generated data only): mean of 1 - prod(1 - p) over the served top k, with the
  generator's true p; the oracle serves the k posts with the highest true p. Each method's share
  of the oracle's value says how much of the achievable it reaches.
- AUC and NDCG@k on the test views.
"""

from __future__ import annotations

import datetime as dt
import logging

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

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


class RandomRanker:
    text_space = "control"

    def __init__(self, seed: int):
        self.seed = seed

    def score(self, features: pd.DataFrame, examples: pd.DataFrame) -> np.ndarray:
        return np.random.default_rng(self.seed).random(len(examples))


class PopularRanker:
    """Most-popular: the post's smoothed like-rate as of the example's day (views say nothing in a random feed)."""

    text_space = "control"

    def score(self, features: pd.DataFrame, examples: pd.DataFrame) -> np.ndarray:
        return features["post_like_rate"].fillna(0).to_numpy()


class ModelRanker:
    def __init__(self, model, kind: str):
        from recsys.models import TEXT_SPACE

        self.model, self.kind, self.text_space = model, kind, TEXT_SPACE[kind]

    def score(self, features: pd.DataFrame, examples: pd.DataFrame) -> np.ndarray:
        from recsys.models import predict

        return predict(self.model, self.kind, features)


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

    def score_all_posts(self, user_ids: np.ndarray, as_of_day: dt.date, timestamp, exclude: pd.DataFrame):
        """(pairs, scores of every ranker) for each user x every post, user-major, but the distinct
        (user_id, post_id) pairs in exclude.

        Features come from ``ServingFeatures`` as of the start of as_of_day, as precompute builds
        them: the values the per-example query gives (a test holds them equal), but gathered from
        tables indexed once instead of joined per pair, which a grid of users x all posts needs at
        full scale.
        """
        spaces = {ranker.text_space for ranker in self.rankers.values()}
        post_ids = self.store.post_ids
        grid = pd.DataFrame(
            {"user_id": np.repeat(user_ids, len(post_ids)), "post_id": np.tile(post_ids, len(user_ids))}
        )
        keep = grid.merge(exclude, how="left", indicator=True)["_merge"].eq("left_only").to_numpy()
        pairs = grid[keep].reset_index(drop=True)
        pairs["timestamp"] = pd.Timestamp(timestamp)
        every_post = np.broadcast_to(np.arange(len(post_ids)), (len(user_ids), len(post_ids)))
        frames = {}
        for space in spaces:
            serving, users = self._serving_of(space, as_of_day)
            features = serving.features(users.loc[user_ids].reset_index(), every_post, timestamp)
            frames[space] = features[keep].reset_index(drop=True)
        return pairs, {name: ranker.score(frames[ranker.text_space], pairs) for name, ranker in self.rankers.items()}

    def _serving_of(self, space: str, as_of_day: dt.date):
        """(ServingFeatures of a text space as of a day, every user's attributes indexed by user_id), built once."""
        if (space, as_of_day) not in self._serving:
            users, posts = self.store.entities(space)
            serving = ServingFeatures(self.store.history_as_of(space, as_of_day), posts, self.store.post_vectors[space])
            self._serving[(space, as_of_day)] = serving, users.set_index("user_id")
        return self._serving[(space, as_of_day)]


def standard_rankers(models: dict, truth, seed: int) -> dict:
    """random, popular, each trained model, and the oracle when the ground truth is known."""
    rankers = {"random": RandomRanker(seed), "popular": PopularRanker()}
    rankers.update({kind: ModelRanker(model, kind) for kind, model in models.items()})
    if truth is not None:
        rankers["oracle"] = OracleRanker(truth)
    return rankers


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


def evaluate_served(scorers: Scorers, test_first: dt.date, test_last: dt.date, users: int, seed: int,
                    truth=None, batch_rows: int = 1_000_000) -> dict:  # fmt: skip
    """What each method would serve at noon of the first test day, to a sample of test users.

    With the generator's ground truth, also the expected HitRate of what is served.
    """
    con = scorers.store.con
    days = f"day BETWEEN DATE '{test_first}' AND DATE '{test_last}'"
    (active,) = con.execute(f"SELECT count(DISTINCT user_id) FROM views WHERE {days}").fetchone()
    rate = min(1.0, users / max(active, 1))
    user_ids = con.execute(f"""
        SELECT DISTINCT user_id FROM views WHERE {days} AND {_sample_users_sql(seed + 1, rate)}
        ORDER BY user_id""").fetchnumpy()["user_id"]
    checking_time = pd.Timestamp(test_first) + pd.Timedelta(hours=12)
    post_ids = scorers.store.post_ids
    liked_before = con.execute(
        f"SELECT DISTINCT user_id, post_id FROM views WHERE target = 1 AND day < DATE '{test_first}'"
    ).df()
    liked_after = con.execute(
        f"SELECT DISTINCT user_id, post_id FROM views "
        f"WHERE target = 1 AND {days} AND timestamp >= TIMESTAMP '{checking_time}'"
    ).df()
    liked_after_keys = set(zip(liked_after["user_id"], liked_after["post_id"], strict=True))
    per_batch = max(1, batch_rows // len(post_ids))
    served_hits: dict[str, list] = {}
    expected: dict[str, list] = {}
    for start in range(0, len(user_ids), per_batch):
        batch = user_ids[start : start + per_batch]
        # Candidates: every post the user has not liked yet.
        pairs, scores = scorers.score_all_posts(batch, test_first, checking_time, exclude=liked_before)
        group = pairs.groupby("user_id").ngroup().to_numpy()
        truth_p = None if truth is None else OracleRanker(truth).score(None, pairs)
        for method, method_scores in scores.items():
            order, rank, _ = _ranked(method_scores, group)
            top = order[rank < K]
            top_users, top_posts = pairs["user_id"].to_numpy()[top], pairs["post_id"].to_numpy()[top]
            hit = np.array([(u, p) in liked_after_keys for u, p in zip(top_users, top_posts, strict=True)])
            served_hits.setdefault(method, []).append(pd.Series(hit).groupby(group[top]).max().to_numpy())
            if truth_p is not None:
                # P(at least one like among the served posts) = 1 - prod(1 - p), per user
                log_miss = pd.Series(np.log1p(-truth_p[top])).groupby(group[top]).sum().to_numpy()
                expected.setdefault(method, []).append(1 - np.exp(log_miss))
    results = {}
    for method, hits in served_hits.items():
        results[method] = {"served_hit_rate": mean_ci(np.concatenate(hits).astype(float))}
        if expected:
            results[method]["expected_hit_rate"] = mean_ci(np.concatenate(expected[method]))
    if "oracle" in expected:
        oracle = results["oracle"]["expected_hit_rate"]["mean"]
        for method in results:
            results[method]["share_of_oracle"] = round(results[method]["expected_hit_rate"]["mean"] / oracle, 4)
    return {"methods": results, "users": len(user_ids), "checking_time": str(checking_time)}


# --- presenting a report -----------------------------------------------------------------------------
def format_report(report: dict) -> str:
    """A readable table of every method's numbers."""
    header = f"{'method':<9} {'replay HR@5 [95% CI]':<26} {'AUC':>6} {'NDCG@5':>7} {'served HR@5':>11} " \
             f"{'expected HR@5':>13} {'of oracle':>9}"  # fmt: skip
    lines = [header, "-" * len(header)]
    for method, m in report["methods"].items():
        replay = m["replay_hit_rate"]
        expected = m.get("expected_hit_rate", {}).get("mean")
        share = m.get("share_of_oracle")
        lines.append(
            f"{method:<9} {replay['mean']:.4f} [{replay['ci95'][0]:.4f}, {replay['ci95'][1]:.4f}]   "
            f"{m['auc']:>6.4f} {m['ndcg']:>7.4f} {m['served_hit_rate']['mean']:>11.4f} "
            f"{'' if expected is None else f'{expected:.4f}':>13} {'' if share is None else f'{share:.3f}':>9}"
        )
    random_expected = report["replay"]["random_expected_replay_hit_rate"]["mean"]
    lines.append(f"exact expected replay HR@5 of a random ranking: {random_expected:.4f} "
                 f"({report['replay']['groups']:,} user-days, {report['served']['users']:,} users served)")  # fmt: skip
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
            "expected_hit_rate": m.get("expected_hit_rate", {}).get("mean"),
            "share_of_oracle": m.get("share_of_oracle"),
        })  # fmt: skip
    return pd.DataFrame(rows)


def plot_report(report: dict, path) -> None:
    """Bars per method: replay HitRate@5 with its 95% CI, and expected HitRate@5 as a share of the oracle."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(report["methods"])
    replay = [report["methods"][m]["replay_hit_rate"] for m in methods]
    shares = [report["methods"][m].get("share_of_oracle") for m in methods]
    panels = 2 if any(s is not None for s in shares) else 1
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4), squeeze=False)
    ax = axes[0][0]
    means = [r["mean"] for r in replay]
    errors = [[r["mean"] - r["ci95"][0] for r in replay], [r["ci95"][1] - r["mean"] for r in replay]]
    ax.bar(methods, means, yerr=errors, capsize=4, color="#4C72B0")
    ax.axhline(report["replay"]["random_expected_replay_hit_rate"]["mean"], color="grey", ls="--",
               label="random ranking (exact)")  # fmt: skip
    ax.set_title(f"replay HitRate@5, test days {report['split']['test'][0]}..{report['split']['test'][1]}")
    ax.set_ylim(min(means) * 0.9, max(r["ci95"][1] for r in replay) * 1.03)
    ax.legend(loc="lower right")
    if panels == 2:
        ax = axes[0][1]
        ax.bar(methods, [s or 0 for s in shares], color="#55A868")
        ax.set_title("expected HitRate@5 as a share of the oracle")
        ax.set_ylim(0, 1.05)
        for x, share in enumerate(shares):
            ax.text(x, (share or 0) + 0.01, f"{share:.3f}" if share is not None else "", ha="center")
    for row in axes:
        for a in row:
            a.tick_params(axis="x", rotation=20)
    fig.suptitle(f"evaluation of {report['version']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
